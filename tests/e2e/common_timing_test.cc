// Schedules and windows through the real processes: two coordinator replicas
// of one namespace both see a `schedule:` workflow come due and exactly one
// run starts for the fire time; a run started while its workflow's window is
// closed waits (status `waiting`) and runs when the window opens; a route on
// `record.` sees the record as the step wrote it. Schedule and window happen
// at the next minute boundary, so the test takes up to about 90 s.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr const char* kNs = "timing";

std::string hhmm_utc(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[8];
  std::snprintf(buf, sizeof buf, "%02d:%02d", tm.tm_hour, tm.tm_min);
  return buf;
}

int64_t now_s() { return now_unix_ms() / 1000; }

std::string start_coordinator(Process& p, const std::string& dir, const std::string& name, const Broker& broker,
                              const RedisServer& redis, const std::string& workflows) {
  std::string port_file = dir + "/" + name + ".port";
  if (!p.start({bin_dir() + "/baton-coordinator", "--brokers", broker.bootstrap(), "--redis", redis.address(),
                "--namespace", kNs, "--workflows", workflows, "--http", "127.0.0.1:0", "--http-port-file", port_file},
               dir + "/" + name + ".log"))
    return "";
  if (!wait_until([&] { return !read_file(port_file).empty() || !p.running(); }, seconds(30)) || !p.running())
    return "";
  return "http://127.0.0.1:" + std::to_string(std::stoi(read_file(port_file)));
}

json get_run(const std::string& api, const std::string& id) {
  auto r = http::request("GET", api + "/v1/runs/" + id, "", 5000);
  if (!r || r->status != 200) return json::object();
  json j = json::parse(r->body, nullptr, false);
  return j.is_object() ? j : json::object();
}

TEST(Timing, ScheduleStartsOneRunPerFireTimeAcrossReplicasAndWindowsHoldRuns) {
  // Leave at least 30 s before the boundary to start everything.
  if (now_s() % 60 > 30) std::this_thread::sleep_for(seconds(61 - now_s() % 60));
  const int64_t boundary = (now_s() / 60 + 1) * 60;  // the next whole minute
  std::string dir = make_temp_dir("baton-e2e-timing");
  std::string wf_dir = dir + "/workflows";
  ASSERT_EQ(std::system(("mkdir -p " + wf_dir).c_str()), 0);
  {
    std::ofstream(wf_dir + "/tick.yaml") << R"(name: tick
schedule: { cron: "* * * * *", timezone: UTC, input: { source: cron } }
steps:
  - { id: a, role: ticker, agent: { kind: echo } }
)";
    // A route on the shared record as the step's write left it (the
    // coordinator reads the record for conditions on `record.`).
    std::ofstream(wf_dir + "/acct.yaml") << R"(name: acct
record: "acct:{{input.id}}"
steps:
  - id: a
    role: ticker
    agent: { kind: echo, fields: [tier] }
    writes: [tier]
    route:
      - { when: "record.tier == \"gold\"", to: b }
      - { else: end }
  - { id: b, role: ticker, agent: { kind: echo } }
)";
    // Open for two minutes from the boundary, every day.
    std::ofstream(wf_dir + "/batch.yaml") << "name: batch\nwindow: { from: \"" << hhmm_utc(boundary) << "\", to: \""
                                          << hhmm_utc(boundary + 120) << "\", timezone: UTC }\n"
                                          << "steps:\n  - { id: a, role: ticker, agent: { kind: echo } }\n";
  }
  Broker broker(4, kNs, "ticker");
  RedisServer redis;
  ASSERT_TRUE(broker.ok() && redis.ok());
  Process c1, c2, worker;
  std::string api1 = start_coordinator(c1, dir, "c1", broker, redis, wf_dir);
  std::string api2 = start_coordinator(c2, dir, "c2", broker, redis, wf_dir);
  ASSERT_FALSE(api1.empty());
  ASSERT_FALSE(api2.empty());
  ASSERT_TRUE(worker.start({bin_dir() + "/baton-worker", "--role", "ticker", "--brokers", broker.bootstrap(), "--redis",
                            redis.address(), "--namespace", kNs, "--workflows", wf_dir},
                           dir + "/worker.log"));
  for (const auto& api : {api1, api2}) {
    ASSERT_TRUE(wait_until(
        [&] {
          auto r = http::request("GET", api + "/readyz", "", 2000);
          return r && r->status == 200;
        },
        seconds(60)));
  }
  ASSERT_LT(now_s(), boundary) << "the fleet took too long to start";

  // A run started now, before the window opens, waits.
  auto r = http::request("POST", api1 + "/v1/runs", json{{"workflow", "batch"}, {"input", {{"n", 1}}}}.dump());
  ASSERT_TRUE(r && r->status == 202) << (r ? r->body : r.status().to_string());
  std::string waiting_id = json::parse(r->body).value("run_id", "");
  ASSERT_TRUE(wait_until([&] { return get_run(api1, waiting_id).value("status", "") == "waiting"; }, seconds(20)))
      << get_run(api1, waiting_id).dump();
  ASSERT_LT(now_s(), boundary);

  std::map<std::string, std::string> acct;  // tier -> run id
  for (const char* tier : {"gold", "silver"}) {
    auto a = http::request("POST", api1 + "/v1/runs",
                           json{{"workflow", "acct"}, {"input", {{"id", std::string("A-") + tier}, {"tier", tier}}}}.dump());
    ASSERT_TRUE(a && a->status == 202);
    acct[tier] = json::parse(a->body).value("run_id", "");
  }
  for (const auto& [tier, id] : acct) {
    json run;
    ASSERT_TRUE(wait_until(
        [&] {
          run = get_run(api1, id);
          return run.value("status", "") == "completed";
        },
        seconds(20)))
        << run.dump();
    EXPECT_EQ(run["path"], tier == "gold" ? json::array({"a", "b"}) : json::array({"a"})) << tier;
  }

  // The scheduled run of the boundary: its id follows from the fire time.
  const int64_t fire_ms = boundary * 1000;
  const std::string tick_id = run_id_for_dedupe("tick", "schedule:tick:" + std::to_string(fire_ms));
  json tick;
  ASSERT_TRUE(wait_until(
      [&] {
        tick = get_run(api2, tick_id);
        return tick.value("status", "") == "completed";
      },
      seconds(90)))
      << tick.dump();
  EXPECT_EQ(tick["input"]["source"], "cron");
  EXPECT_EQ(tick["input"]["scheduled_at_ms"], fire_ms);
  json batch;
  ASSERT_TRUE(wait_until(
      [&] {
        batch = get_run(api1, waiting_id);
        return batch.value("status", "") == "completed";
      },
      seconds(30)))
      << batch.dump();
  EXPECT_GE(batch["steps"][0].value("dispatched_ms", int64_t{0}), fire_ms) << "ran before its window opened";

  // Exactly one run of `tick` exists for that fire time (and none for any
  // other before it): count run hashes of workflow tick started by the schedule.
  auto client = redis::Client::connect(*redis::parse_endpoint(redis.address()));
  ASSERT_TRUE(client);
  std::vector<std::string> tick_runs;
  std::string cursor = "0";
  for (int i = 0; i < 1000; ++i) {
    auto scan = (*client)->command({"SCAN", cursor, "MATCH", "baton:timing:{run:*}", "COUNT", "1000"});
    ASSERT_TRUE(scan && scan->elements.size() == 2);
    cursor = scan->elements[0].str;
    for (const auto& k : scan->elements[1].elements) {
      if (k.str.back() != '}') continue;  // the run hash only, not :ctx/:audit/:outbox
      auto wf = (*client)->command({"HGET", k.str, "wf"});
      if (wf && wf->str == "tick") tick_runs.push_back(k.str);
    }
    if (cursor == "0") break;
  }
  // Runs for later fire times may have started meanwhile; none before the boundary.
  ASSERT_GE(tick_runs.size(), 1u);
  EXPECT_LE(tick_runs.size(), static_cast<std::size_t>((now_s() - boundary) / 60 + 1));
  auto audit = (*client)->command({"XRANGE", keys::run_audit(kNs, tick_id), "-", "+"});
  ASSERT_TRUE(audit);
  int started = 0, results = 0;
  for (const auto& e : audit->elements) {
    std::string text;
    for (const auto& f : e.elements[1].elements) text += f.str + " ";
    started += text.find("run_started") != std::string::npos;
    results += text.find("step_result") != std::string::npos;
  }
  EXPECT_EQ(started, 1);
  EXPECT_EQ(results, 1);

  worker.stop();
  c1.stop();
  c2.stop();
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
