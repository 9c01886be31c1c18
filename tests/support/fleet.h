// Test support for end-to-end tests of whole fleets: `batonctl dev` on a
// workflows folder, CLI processes run with a bound and their output captured,
// JSON-lines files, run views over HTTP and a run's audit stream in Redis.
//
// Everything here is for one test thread. Failures to read what a test relies
// on are reported with EXPECT (read_jsonl, read_run_audit) and an empty result;
// nothing throws.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "common/util/status.h"
#include "tests/support/process.h"

namespace baton::testing {

// examples/<name> in the source tree (BATON_SOURCE_DIR when set, else the tree
// this file was compiled from).
std::string example_dir(const std::string& name);

// The JSON values of a JSON-lines file, in order. A missing or malformed file
// fails the calling test (EXPECT) and gives what was read before the error.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

// A waitpid status as "exit N", "signal N" or "status N", for messages.
std::string exit_text(int wait_status);

// `batonctl dev --workflows <workflows> --namespace <ns> --partitions <n>` on a
// free HTTP port (127.0.0.1:0) with its own state dir in a fresh temp dir. Its
// stdout and stderr go to log(). The destructor stops it (SIGTERM, then SIGKILL
// after 30 s) and removes its temp dirs.
class DevFleet {
 public:
  DevFleet(std::string workflows, std::string ns, int partitions = 4);
  ~DevFleet();
  DevFleet(const DevFleet&) = delete;
  DevFleet& operator=(const DevFleet&) = delete;

  // Starts batonctl (with `extra` flags after the usual ones, e.g.
  // {"--auth-tokens", path}); false when it cannot be started.
  bool start(const std::vector<std::string>& extra = {});
  // Waits until env.json exists and parses; fails with the log when batonctl
  // exits first or `timeout` passes.
  ::testing::AssertionResult wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(90));

  std::string env_path() const { return state_ + "/env.json"; }
  const std::string& state_dir() const { return state_; }
  // The path of the batonctl log (read it with read_file).
  const std::string& log() const { return log_; }
  // env.json as read by wait_ready (null before).
  const nlohmann::json& env() const { return env_; }
  std::string api() const { return env_.value("api", ""); }
  std::string redis() const { return env_.value("redis", ""); }
  Process& process() { return proc_; }
  // The pids env.json names ("batonctl", "broker", "redis", "coordinator", "worker-<role>").
  std::map<std::string, int> pids() const;

 private:
  std::string workflows_, ns_, dir_, state_, log_;
  int partitions_;
  Process proc_;
  nlohmann::json env_;
};

// What a CLI process did: whether it exited within the bound, its waitpid
// status (-1 when it did not), its stdout and stderr.
struct CliResult {
  bool exited = false;
  int status = -1;
  std::string out, err;
};

// Runs `argv` (argv[0] a path) with stdout and stderr in separate files of a
// temp dir of its own (removed after); SIGKILLed when it runs past `timeout`.
CliResult run_cli(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

// GET <api>/v1/runs/<run_id>: the run view; an error when the request fails,
// the answer is not 200 (kNotFound, with the status and body) or not a JSON object.
Result<nlohmann::json> get_run(const std::string& api, const std::string& run_id);

// One entry of a run's audit stream: its kind and parsed detail (null when not JSON).
struct AuditEntry {
  std::string kind;
  nlohmann::json detail;
};

// The audit stream baton:<ns>:{run:<run_id>}:audit, oldest first. A Redis
// error fails the calling test (EXPECT) and gives an empty list.
std::vector<AuditEntry> read_run_audit(redis::Client& rc, const std::string& ns, const std::string& run_id);

}  // namespace baton::testing
