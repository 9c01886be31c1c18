// End-to-end tests of the real binaries as separate processes: `batonctl dev`
// (start, env.json, clean stop, PDEATHSIG, bad workflows), the coordinator's
// refusals of bad API input, the 50 sample leads of examples/lead-to-meeting
// through a whole fleet, and a qualifier worker SIGKILLed mid-flight.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
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
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string example_dir() { return source_dir() + "/examples/lead-to-meeting"; }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    out.push_back(json::parse(line));
  }
  return out;
}

// A pid is gone when /proc has no entry or only a zombie (an orphan reparented
// to an init that does not reap is a zombie: it no longer runs).
bool pid_gone(int pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return true;
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] == 'Z';
}

std::string exit_text(int st) {
  if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
  return "status " + std::to_string(st);
}

// `batonctl dev` on a free HTTP port with its own state dir.
class DevFleet {
 public:
  explicit DevFleet(std::string workflows = example_dir()) : workflows_(std::move(workflows)) {
    dir_ = make_temp_dir("baton-e2e-dev");
    state_ = dir_ + "/state";
    log_ = dir_ + "/batonctl.log";
  }
  ~DevFleet() {
    proc_.stop(seconds(30));
    std::string tmp = env_.is_object() ? env_.value("temp_dir", "") : "";
    if (!tmp.empty()) remove_tree(tmp);  // left behind only when batonctl was SIGKILLed
    remove_tree(dir_);
  }

  // stdout (the "where everything is" block) and stderr (logs) both go to log().
  bool start() {
    return proc_.start({bin_dir() + "/batonctl", "dev", "--workflows", workflows_, "--state-dir", state_, "--http",
                        "127.0.0.1:0", "--namespace", "e2e", "--partitions", "4"},
                       log_);
  }

  // Waits until env.json exists and parses.
  ::testing::AssertionResult wait_ready(milliseconds timeout = seconds(90)) {
    auto r = wait_until(
        [&] {
          if (!proc_.running()) return true;  // reported below
          auto j = parse_json_object(read_file(env_path()));
          if (!j) return false;
          env_ = *j;
          return true;
        },
        timeout, [&] { return "batonctl log:\n" + read_file(log_); }, milliseconds(100));
    if (!r) return r;
    if (!env_.is_object()) return ::testing::AssertionFailure() << "batonctl dev exited early:\n" << read_file(log_);
    return ::testing::AssertionSuccess();
  }

  std::string env_path() const { return state_ + "/env.json"; }
  const std::string& state_dir() const { return state_; }
  const std::string& log() const { return log_; }
  const json& env() const { return env_; }
  std::string api() const { return env_.value("api", ""); }
  Process& process() { return proc_; }
  std::map<std::string, int> pids() const {
    std::map<std::string, int> out;
    if (env_.contains("pids"))
      for (const auto& [k, v] : env_["pids"].items()) out[k] = v.get<int>();
    return out;
  }

 private:
  std::string workflows_, dir_, state_, log_;
  Process proc_;
  json env_;
};

// ---------------------------------------------------------------------------
// 1. batonctl dev: start, env.json, healthz, clean stop on SIGTERM.

TEST(BatonctlDev, StartsWritesEnvAndStopsEverythingOnSigterm) {
  DevFleet dev;
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
  auto wf = workflow::parse_workflow_file(example_dir() + "/workflow.yaml");
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

// SIGKILL of batonctl: every child gets SIGTERM from PR_SET_PDEATHSIG and ends.
TEST(BatonctlDev, ChildrenDieWhenBatonctlIsKilled) {
  DevFleet dev;
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
  DevFleet dev;
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
  DevFleet dev(dir);
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
  DevFleet dev;
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

}  // namespace
}  // namespace baton::testing
