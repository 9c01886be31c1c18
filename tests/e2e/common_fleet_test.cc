// End-to-end tests of the real binaries as separate processes: `batonctl dev`
// (start, env.json, clean stop, PDEATHSIG, bad workflows), the coordinator's
// refusals of bad API input, the 50 sample leads of examples/lead-to-meeting
// through a whole fleet, and a qualifier worker SIGKILLed mid-flight.
#include <gtest/gtest.h>

#include <algorithm>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

#include <yaml-cpp/yaml.h>

namespace baton::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const char* kNs = "e2e";

std::string lead_dir() { return example_dir("lead-to-meeting"); }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A pid is gone when /proc has no entry or only a zombie (an orphan reparented
// to an init that does not reap is a zombie: it no longer runs).
bool pid_gone(int pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] == 'Z';
}

// ---------------------------------------------------------------------------
// 1. batonctl dev: start, env.json, healthz, clean stop on SIGTERM.

TEST(BatonctlDev, StartsWritesEnvAndStopsEverythingOnSigterm) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());

  const json& env = dev.env();
  EXPECT_EQ(env.value("namespace", ""), "e2e");
  EXPECT_FALSE(env.value("brokers", "").empty());
  EXPECT_FALSE(env.value("redis", "").empty());
  ASSERT_FALSE(dev.api().empty());
  auto health = http::request("GET", dev.api() + "/healthz", "", 5000);
  ASSERT_TRUE(health.is_ok()) << health.status().to_string();
  EXPECT_EQ(health->status, 200) << health->body;

  // Every process it started is named with a live pid, and the log files exist.
  auto pids = dev.pids();
  for (const char* name : {"batonctl", "broker", "redis", "coordinator"}) {
    ASSERT_TRUE(pids.count(name)) << name << " missing from " << env.dump();
  }
  auto wf = workflow::parse_workflow_file(lead_dir() + "/workflow.yaml");
  ASSERT_TRUE(wf.is_ok()) << wf.status().message();
  for (const auto& role : (*wf)->roles()) EXPECT_TRUE(pids.count("worker-" + role)) << role;
  EXPECT_EQ(pids["batonctl"], dev.process().pid());
  for (const auto& [name, pid] : pids) EXPECT_FALSE(pid_gone(pid)) << name << " pid " << pid;
  std::string temp_dir = env.value("temp_dir", "");
  ASSERT_FALSE(temp_dir.empty());
  EXPECT_TRUE(fs::is_directory(temp_dir));
  EXPECT_TRUE(fs::exists(dev.state_dir() + "/logs/coordinator.log"));
  EXPECT_NE(read_file(dev.log()).find(dev.api()), std::string::npos) << "the api URL is printed:\n" << read_file(dev.log());

  dev.process().signal(SIGTERM);
  int st = 0;
  ASSERT_TRUE(dev.process().wait_exit(seconds(60), &st)) << "batonctl did not exit; log:\n" << read_file(dev.log());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << exit_text(st) << "\n" << read_file(dev.log());
  // batonctl reaped its children before exiting: nothing is left.
  for (const auto& [name, pid] : pids) EXPECT_TRUE(pid_gone(pid)) << name << " pid " << pid << " still there";
  EXPECT_FALSE(fs::exists(temp_dir)) << temp_dir;
  EXPECT_FALSE(fs::exists(dev.env_path()));
  EXPECT_TRUE(fs::exists(dev.state_dir() + "/logs/coordinator.log")) << "logs are kept";
}

// Ctrl-C (SIGINT to batonctl alone: the children run in their own process
// groups) stops everything in order too.
TEST(BatonctlDev, StopsEverythingOnSigint) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto pids = dev.pids();
  std::string temp_dir = dev.env().value("temp_dir", "");
  dev.process().signal(SIGINT);
  int st = 0;
  ASSERT_TRUE(dev.process().wait_exit(seconds(60), &st)) << read_file(dev.log());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << exit_text(st) << "\n" << read_file(dev.log());
  for (const auto& [name, pid] : pids) EXPECT_TRUE(pid_gone(pid)) << name << " pid " << pid << " still there";
  EXPECT_FALSE(temp_dir.empty() || fs::exists(temp_dir)) << temp_dir;
  EXPECT_FALSE(fs::exists(dev.env_path()));
}

// SIGKILL of batonctl: every child gets SIGTERM from PR_SET_PDEATHSIG and ends.
TEST(BatonctlDev, ChildrenDieWhenBatonctlIsKilled) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto pids = dev.pids();
  ASSERT_GE(pids.size(), 5u) << dev.env().dump();
  dev.process().kill();
  pids.erase("batonctl");
  EXPECT_TRUE(wait_until(
      [&] {
        for (const auto& [name, pid] : pids)
          if (!pid_gone(pid)) return false;
        return true;
      },
      seconds(30),
      [&] {
        std::string alive;
        for (const auto& [name, pid] : pids)
          if (!pid_gone(pid)) alive += name + "(" + std::to_string(pid) + ") ";
        return "still running: " + alive;
      },
      milliseconds(100)));
  // Whatever outlived the bound must not leak past the test.
  for (const auto& [name, pid] : pids)
    if (!pid_gone(pid)) ::kill(pid, SIGKILL);
}

// An unexpected child exit stops everything with exit 1, naming the child.
TEST(BatonctlDev, ChildCrashStopsEverythingWithExit1) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto pids = dev.pids();
  ASSERT_TRUE(pids.count("coordinator"));
  ::kill(pids["coordinator"], SIGKILL);
  int st = 0;
  ASSERT_TRUE(dev.process().wait_exit(seconds(60), &st)) << read_file(dev.log());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << exit_text(st);
  EXPECT_NE(read_file(dev.log()).find("coordinator"), std::string::npos) << read_file(dev.log());
  for (const auto& [name, pid] : pids) EXPECT_TRUE(pid_gone(pid)) << name << " pid " << pid << " still there";
  EXPECT_FALSE(fs::exists(dev.env_path()));
}

// 2. A bad workflow dir: exit 2 with the parser's file:line:col message.
TEST(BatonctlDev, BadWorkflowExits2WithFileLineCol) {
  std::string dir = make_temp_dir("baton-e2e-badwf");
  write_file(dir + "/bad.yaml", R"(name: broken
steps:
  - id: first
    role: greeter
    next: nowhere
)");
  DevFleet dev(dir, kNs);
  ASSERT_TRUE(dev.start());
  int st = 0;
  ASSERT_TRUE(dev.process().wait_exit(seconds(30), &st)) << read_file(dev.log());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << exit_text(st) << "\n" << read_file(dev.log());
  std::string log = read_file(dev.log());
  EXPECT_TRUE(std::regex_search(log, std::regex(R"(bad\.yaml:5:\d+: )"))) << log;
  EXPECT_NE(log.find("nowhere"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(dev.env_path()));
  remove_tree(dir);
}

// Bad API input: malformed JSON -> 400, oversized body -> 413, both JSON errors.
TEST(CoordinatorApi, RefusesMalformedAndOversizedBodiesWithJsonErrors) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  std::map<std::string, std::string> ct = {{"Content-Type", "application/json"}};

  auto bad = http::request("POST", dev.api() + "/v1/runs", R"({"workflow": "lead-to-meeting", "input": {)", 5000, ct);
  ASSERT_TRUE(bad.is_ok()) << bad.status().to_string();
  EXPECT_EQ(bad->status, 400) << bad->body;
  auto bj = parse_json_object(bad->body);
  ASSERT_TRUE(bj.is_ok()) << bad->body;
  ASSERT_TRUE((*bj)["error"].is_object()) << bad->body;
  EXPECT_TRUE((*bj)["error"]["code"].is_string()) << bad->body;
  EXPECT_TRUE((*bj)["error"]["message"].is_string()) << bad->body;

  std::string big = R"({"workflow":"lead-to-meeting","input":{"blob":")" +
                    std::string(limits::kMaxJsonBodyBytes + 1024, 'x') + "\"}}";
  auto large = http::request("POST", dev.api() + "/v1/runs", big, 10000, ct);
  ASSERT_TRUE(large.is_ok()) << large.status().to_string();
  EXPECT_EQ(large->status, 413) << large->body.substr(0, 300);
  auto lj = parse_json_object(large->body);
  ASSERT_TRUE(lj.is_ok()) << large->body.substr(0, 300);
  EXPECT_TRUE((*lj)["error"].is_object()) << large->body.substr(0, 300);

  // Unknown workflow and unknown run: 404 with a JSON error.
  auto unknown = http::request("POST", dev.api() + "/v1/runs", R"({"workflow":"no-such-flow","input":{}})", 5000, ct);
  ASSERT_TRUE(unknown.is_ok());
  EXPECT_EQ(unknown->status, 404) << unknown->body;
  auto missing = http::request("GET", dev.api() + "/v1/runs/0123456789abcdef0123456789abcdef", "", 5000);
  ASSERT_TRUE(missing.is_ok());
  EXPECT_EQ(missing->status, 404) << missing->body;
  EXPECT_TRUE(parse_json_object(missing->body).is_ok()) << missing->body;

  // The fleet survived all of it.
  auto health = http::request("GET", dev.api() + "/healthz", "", 5000);
  ASSERT_TRUE(health.is_ok());
  EXPECT_EQ(health->status, 200);
  EXPECT_TRUE(dev.process().running());
}

// ---------------------------------------------------------------------------
// 3 and 4: the sample leads through a whole fleet.

// The step a run ended on: the one dispatched last (workflow order on a tie).
std::string ended_step(const json& run) {
  std::string best;
  int64_t at = -1;
  if (!run.contains("steps") || !run["steps"].is_array()) return best;
  for (const auto& s : run["steps"]) {
    if (s.value("attempts", 0) <= 0) continue;
    int64_t d = s.value("dispatched_ms", int64_t{0});
    if (d >= at) {
      at = d;
      best = s.value("id", "");
    }
  }
  return best;
}

// The run's status, or "awaiting_approval" for a running run held at a gate
// (a partial fit waiting for a sales manager).
std::string outcome(const json& run) {
  std::string st = run.value("status", "");
  if (st != "running" || !run.contains("steps")) return st;
  for (const auto& s : run["steps"])
    if (s.value("status", "") == "awaiting_approval") return "awaiting_approval";
  return st;
}

std::map<std::string, std::string> hgetall(redis::Client& c, const std::string& key) {
  std::map<std::string, std::string> out;
  auto r = c.command({"HGETALL", key});
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r.is_ok()) return out;
  for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) out[r->elements[i].str] = r->elements[i + 1].str;
  return out;
}

// Every run ended as expected.jsonl says, and its record holds exactly what its
// succeeded steps wrote, each write applied once (_v = number of writing steps).
void check_outcomes_and_records(const std::string& api, const std::string& redis_addr, const std::string& ns,
                                const workflow::Workflow& wf, const std::map<std::string, std::string>& run_of_lead,
                                const std::vector<json>& expected) {
  auto ep = redis::parse_endpoint(redis_addr);
  ASSERT_TRUE(ep.is_ok());
  auto client = redis::Client::connect(*ep);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  redis::Client& rc = **client;
  for (const auto& e : expected) {
    std::string lead = e.at("lead_id").get<std::string>();
    SCOPED_TRACE("lead " + lead);
    auto it = run_of_lead.find(lead);
    ASSERT_NE(it, run_of_lead.end()) << "no run for " << lead;
    auto run = get_run(api, it->second);
    ASSERT_TRUE(run.is_ok()) << run.status().to_string();
    EXPECT_EQ(outcome(*run), e.value("outcome", "")) << run->dump();
    EXPECT_EQ(ended_step(*run), e.value("step", "")) << run->dump();
    if (outcome(*run) != "awaiting_approval") {
      EXPECT_GT(run->value("ended_ms", int64_t{0}), 0);
    }

    // What the record must hold: for each succeeded step, the fields of its
    // `writes` present in its output (the worker writes exactly those).
    std::map<std::string, json> fields;
    std::map<std::string, std::string> writer;
    int writing_steps = 0;
    for (const auto& s : (*run)["steps"]) {
      if (s.value("status", "") != "succeeded") continue;
      const workflow::Step* step = wf.find_step(s.value("id", ""));
      ASSERT_NE(step, nullptr);
      bool wrote = false;
      json output = s.contains("output") ? s["output"] : json();
      for (const auto& f : step->writes) {
        if (output.is_object() && output.contains(f)) {
          fields[f] = output[f];
          writer[f] = run->value("run_id", "") + ":" + step->id;
          wrote = true;
        }
      }
      if (wrote) ++writing_steps;
    }
    std::string rkey = run->value("record_key", "");
    ASSERT_EQ(rkey, "lead:" + lead);
    auto rec = hgetall(rc, keys::record(ns, rkey));
    if (writing_steps == 0) {
      EXPECT_TRUE(rec.empty()) << "record " << rkey << " exists but no step wrote to it";
    } else {
      EXPECT_EQ(rec["_v"], std::to_string(writing_steps)) << "record " << rkey;
    }
    std::set<std::string> got, want;
    for (const auto& [k, v] : rec)
      if (!k.empty() && k[0] != '_') got.insert(k);
    for (const auto& [k, v] : fields) want.insert(k);
    EXPECT_EQ(got, want) << "record " << rkey;
    const auto sensitive = wf.sensitive_fields();
    for (const auto& [k, v] : fields) {
      auto stored = parse_json(rec[k]);
      ASSERT_TRUE(stored.is_ok()) << k << " = " << rec[k];
      if (std::find(sensitive.begin(), sensitive.end(), k) != sensitive.end()) {
        // The API shows a sensitive field redacted; the record holds the value.
        EXPECT_EQ(v, "[redacted]") << k;
        EXPECT_TRUE(stored->is_string() && *stored != "[redacted]" && !stored->get<std::string>().empty()) << k;
      } else {
        EXPECT_EQ(*stored, v) << k;
      }
      EXPECT_EQ(rec["_w:" + k], writer[k]) << k;
    }
  }
}

TEST(LeadToMeeting, FiftyLeadsThroughBatonctlDevEndAsExpected) {
  DevFleet dev(lead_dir(), kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto r = run_cli({bin_dir() + "/batonctl", "run", "lead-to-meeting", "--api", dev.api(), "--inputs",
                    lead_dir() + "/leads.jsonl", "--wait", "--timeout", "180", "-o", "json", "--expect",
                    lead_dir() + "/expected.jsonl"},
                   seconds(240));
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << exit_text(r.status) << "\n" << r.out << r.err;
  auto summary = parse_json_object(r.out);
  ASSERT_TRUE(summary.is_ok()) << r.out << r.err;
  auto expected = read_jsonl(lead_dir() + "/expected.jsonl");
  auto leads = read_jsonl(lead_dir() + "/leads.jsonl");
  EXPECT_EQ(leads.size(), 50u);
  EXPECT_EQ((*summary)["total"], leads.size());
  EXPECT_EQ((*summary)["errors"], 0);
  EXPECT_EQ((*summary)["unfinished"], 0);
  EXPECT_EQ((*summary)["expected"], expected.size());
  EXPECT_TRUE((*summary)["mismatches"].empty()) << (*summary)["mismatches"].dump(2);
  std::size_t want_completed = 0;
  for (const auto& e : expected) want_completed += e.value("outcome", "") == "completed";
  std::size_t want_awaiting = 0;
  for (const auto& e : expected) want_awaiting += e.value("outcome", "") == "awaiting_approval";
  EXPECT_GT(want_awaiting, 0u);
  EXPECT_EQ((*summary)["completed"], want_completed);
  EXPECT_EQ((*summary)["awaiting_approval"], want_awaiting);
  EXPECT_EQ((*summary)["exceptions"], expected.size() - want_completed - want_awaiting);

  std::map<std::string, std::string> run_of_lead;
  for (const auto& run : (*summary)["runs"]) {
    run_of_lead[run["input"].value("lead_id", "")] = run.value("run_id", "");
  }
  auto wf = workflow::parse_workflow_file(lead_dir() + "/workflow.yaml");
  ASSERT_TRUE(wf.is_ok()) << wf.status().message();
  check_outcomes_and_records(dev.api(), dev.redis(), kNs, **wf, run_of_lead, expected);
}

// A whole fleet started by the test (not batonctl, which would stop everything
// when a child dies): a qualifier worker is SIGKILLed while runs are in flight
// and restarted. Every run still ends as expected and no write is applied twice.
TEST(LeadToMeeting, QualifierKilledMidFlightStillEndsEveryRunOnce) {
  const std::string ns = "chaos";
  std::string dir = make_temp_dir("baton-e2e-chaos");
  // A copy of the workflow whose qualify step times out after 2 s and retries
  // often, so a task lost with the killed worker is retried quickly.
  YAML::Node doc = YAML::LoadFile(lead_dir() + "/workflow.yaml");
  bool patched = false;
  for (auto step : doc["steps"]) {
    if (step["id"].as<std::string>() == "qualify") {
      // Enough attempts to outlast the consumer group handing the dead
      // worker's partitions to its replacement.
      step["timeout"] = "2s";
      YAML::Node retry;
      retry["max_attempts"] = 40;
      retry["backoff"] = "500ms";
      retry["max_backoff"] = "1s";
      step["retry"] = retry;
      patched = true;
    }
  }
  ASSERT_TRUE(patched);
  fs::create_directories(dir + "/workflows");
  YAML::Emitter em;
  em << doc;
  write_file(dir + "/workflows/workflow.yaml", em.c_str());
  auto wf = workflow::parse_workflow_file(dir + "/workflows/workflow.yaml");
  ASSERT_TRUE(wf.is_ok()) << wf.status().message();
  ASSERT_EQ((*wf)->find_step("qualify")->timeout_ms, 2000);

  std::string roles;
  for (const auto& r : (*wf)->roles()) roles += (roles.empty() ? "" : ",") + r;
  RedisServer redis;
  ASSERT_TRUE(redis.ok());
  Broker broker(4, ns, roles);
  ASSERT_TRUE(broker.ok());

  Process coordinator;
  std::string port_file = dir + "/coordinator.port";
  ASSERT_TRUE(coordinator.start({bin_dir() + "/baton-coordinator", "--brokers", broker.bootstrap(), "--redis",
                                 redis.address(), "--namespace", ns, "--workflows", dir + "/workflows", "--http",
                                 "127.0.0.1:0", "--http-port-file", port_file},
                                dir + "/coordinator.log"));
  std::string api;
  ASSERT_TRUE(wait_until(
      [&] {
        std::string port = read_file(port_file);
        if (port.empty() || std::atoi(port.c_str()) <= 0) return false;
        api = "http://127.0.0.1:" + std::to_string(std::atoi(port.c_str()));
        auto h = http::request("GET", api + "/healthz", "", 1000);
        return h.is_ok() && h->status == 200;
      },
      seconds(30), [&] { return read_file(dir + "/coordinator.log"); }, milliseconds(100)));

  auto worker_argv = [&](const std::string& role) {
    return std::vector<std::string>{bin_dir() + "/baton-worker", "--role", role, "--brokers", broker.bootstrap(),
                                    "--redis", redis.address(), "--namespace", ns, "--workflows",
                                    dir + "/workflows", "--concurrency", "4"};
  };
  std::map<std::string, Process> workers;
  for (const auto& role : (*wf)->roles()) {
    ASSERT_TRUE(workers[role].start(worker_argv(role), dir + "/worker-" + role + ".log"));
  }

  auto leads = read_jsonl(lead_dir() + "/leads.jsonl");
  auto expected = read_jsonl(lead_dir() + "/expected.jsonl");
  std::map<std::string, std::string> run_of_lead;
  auto submit = [&](std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to && i < leads.size(); ++i) {
      json body = {{"workflow", "lead-to-meeting"}, {"input", leads[i]}};
      auto r = http::request("POST", api + "/v1/runs", body.dump(), 5000, {{"Content-Type", "application/json"}});
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      ASSERT_EQ(r->status, 202) << r->body;
      run_of_lead[leads[i].value("lead_id", "")] = json::parse(r->body).value("run_id", "");
    }
  };
  ASSERT_GE(leads.size(), 20u);
  submit(0, 10);
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  // Reads every run; counts those whose qualify step was dispatched, and those
  // where it is dispatched but not finished (stuck with the dead worker).
  auto qualify_counts = [&](int* dispatched, int* open, int* ended) {
    *dispatched = *open = *ended = 0;
    for (const auto& [lead, id] : run_of_lead) {
      auto run = get_run(api, id);
      if (!run.is_ok()) continue;
      std::string st = outcome(*run);
      if (st == "completed" || st == "exception" || st == "awaiting_approval") ++*ended;
      for (const auto& s : (*run)["steps"]) {
        if (s.value("id", "") != "qualify" || s.value("attempts", 0) <= 0) continue;
        ++*dispatched;
        std::string ss = s.value("status", "");
        if (ss == "running" || ss == "pending" || ss == "retry_wait") ++*open;
      }
    }
  };
  int dispatched = 0, open = 0, ended = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        qualify_counts(&dispatched, &open, &ended);
        return dispatched > 0;
      },
      seconds(60), [&] { return "no qualify step dispatched yet"; }, milliseconds(50)));
  workers["qualifier"].kill();
  // The rest arrive while no qualifier is alive.
  submit(10, leads.size());
  ASSERT_FALSE(::testing::Test::HasFatalFailure());

  // With no qualifier alive, qualify tasks are left in flight.
  ASSERT_TRUE(wait_until(
      [&] {
        qualify_counts(&dispatched, &open, &ended);
        return open > 0;
      },
      seconds(60),
      [&] {
        return "dispatched " + std::to_string(dispatched) + ", open " + std::to_string(open) + ", ended " +
               std::to_string(ended);
      },
      milliseconds(100)));
  ASSERT_TRUE(workers["qualifier"].start(worker_argv("qualifier"), dir + "/worker-qualifier.log"));

  EXPECT_TRUE(wait_until(
      [&] {
        qualify_counts(&dispatched, &open, &ended);
        return ended == static_cast<int>(run_of_lead.size());
      },
      seconds(180),
      [&] { return "ended " + std::to_string(ended) + " of " + std::to_string(run_of_lead.size()); },
      milliseconds(200)));
  check_outcomes_and_records(api, redis.address(), ns, **wf, run_of_lead, expected);

  // Informational: how much recovery the kill caused (timing-dependent, not asserted).
  int retried = 0;
  for (const auto& [lead, id] : run_of_lead) {
    auto run = get_run(api, id);
    if (!run.is_ok()) continue;
    for (const auto& s : (*run)["steps"])
      if (s.value("id", "") == "qualify" && s.value("attempts", 0) > 1) ++retried;
  }
  RecordProperty("runs_with_qualify_retried", retried);
  std::cout << "runs whose qualify step was retried after the kill: " << retried << " of " << run_of_lead.size()
            << "\n";

  for (auto& [role, w] : workers) w.stop();
  coordinator.stop();
  if (::testing::Test::HasFailure()) {
    std::string log = read_file(dir + "/coordinator.log");
    std::cerr << "--- coordinator log (tail) ---\n" << log.substr(log.size() > 20000 ? log.size() - 20000 : 0) << "\n";
  }
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
