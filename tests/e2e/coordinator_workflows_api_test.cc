// End-to-end: workflow versions applied over the control plane, with real
// baton-broker, redis-server, baton-coordinator (two replicas), baton-worker
// and batonctl processes. A run started on v1 before v2 is applied finishes on
// v1; a run on v2 (which the worker's directory does not have) finishes with
// v2's steps; PUT answers 201/200/400/409/413 with JSON bodies; `batonctl
// workflows validate|apply|list` exit codes and output.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kNs = "versions";

// v1: one step. v2: the same step with another tag, and a second step.
const char* kV1 =
    "name: memo\nversion: 1\nsteps:\n"
    "  - id: draft\n    role: writer\n    agent: { kind: echo, set: { tag: \"v1\" } }\n";
const char* kV2 =
    "name: memo\nversion: 2\nsteps:\n"
    "  - id: draft\n    role: writer\n    agent: { kind: echo, set: { tag: \"v2\" } }\n    next: review\n"
    "  - id: review\n    role: writer\n    agent: { kind: echo, set: { reviewed: true } }\n";
const char* kV3 =
    "name: memo\nversion: 3\nsteps:\n"
    "  - id: draft\n    role: writer\n    agent: { kind: echo, set: { tag: \"v3\" } }\n";
const char* kBad = "name: memo\nversion: 9\nsteps:\n  - id: draft\n    role: writer\n    timeout: 30\n";

void write_file(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

struct CliResult {
  bool exited = false;
  int status = -1;
  std::string out, err;
  int code() const { return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1; }
};

// Runs batonctl with stdout and stderr in separate files, bounded by `timeout`.
CliResult run_cli(const std::vector<std::string>& args, const std::string& dir,
                  milliseconds timeout = seconds(30)) {
  std::string out = dir + "/cli.out", err = dir + "/cli.err";
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$@\" >\"$BATON_E2E_OUT\" 2>\"$BATON_E2E_ERR\"", "sh",
                                   bin_dir() + "/batonctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  Process p;
  CliResult r;
  if (!p.start(argv, "", {{"BATON_E2E_OUT", out}, {"BATON_E2E_ERR", err}})) return r;
  r.exited = p.wait_exit(timeout, &r.status);
  if (!r.exited) p.kill();
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

struct Answer {
  int status = 0;
  json body;
  std::string raw;
};

Answer call(const std::string& method, const std::string& url, const std::string& body = "",
            const std::map<std::string, std::string>& headers = {}) {
  Answer a;
  auto r = http::request(method, url, body, 10000, headers);
  if (!r) {
    a.raw = r.status().to_string();
    return a;
  }
  a.status = r->status;
  a.raw = r->body;
  a.body = json::parse(r->body, nullptr, false);
  return a;
}

class Coordinator {
 public:
  Coordinator(const std::string& dir, const std::string& name) : dir_(dir), name_(name) {}
  bool start(const Broker& broker, const RedisServer& redis, const std::string& workflows) {
    std::string port_file = dir_ + "/" + name_ + ".port";
    if (!proc_.start({bin_dir() + "/baton-coordinator", "--brokers", broker.bootstrap(), "--redis", redis.address(),
                      "--namespace", kNs, "--workflows", workflows, "--http", "127.0.0.1:0", "--http-port-file",
                      port_file},
                     log()))
      return false;
    auto ok = wait_until(
        [&] {
          std::string port = read_file(port_file);
          if (port.empty() || std::atoi(port.c_str()) <= 0) return !proc_.running();
          api_ = "http://127.0.0.1:" + std::to_string(std::atoi(port.c_str()));
          auto r = http::request("GET", api_ + "/readyz", "", 2000);
          return r.is_ok() && r->status == 200;
        },
        seconds(60), [&] { return read_file(log()); }, milliseconds(100));
    return ok && proc_.running();
  }
  const std::string& api() const { return api_; }
  std::string log() const { return dir_ + "/" + name_ + ".log"; }

 private:
  std::string dir_, name_, api_;
  Process proc_;
};

json get_run(const std::string& api, const std::string& id) {
  Answer a = call("GET", api + "/v1/runs/" + id);
  return a.status == 200 && a.body.is_object() ? a.body : json::object();
}

json step(const json& run, const std::string& id) {
  if (run.is_object() && run.contains("steps"))
    for (const auto& s : run["steps"])
      if (s.is_object() && s.value("id", "") == id) return s;
  return json::object();
}

TEST(WorkflowsApi, ANewVersionAppliedOverHttpRunsWhileOlderRunsStayOnTheirVersion) {
  namespace fs = std::filesystem;
  std::string dir = make_temp_dir("baton-e2e-versions");
  fs::create_directories(dir + "/workflows");
  write_file(dir + "/workflows/memo.yaml", kV1);
  write_file(dir + "/v2.yaml", kV2);
  write_file(dir + "/v3.yaml", kV3);
  write_file(dir + "/bad.yaml", kBad);
  write_file(dir + "/v1-changed.yaml", std::string(kV1) + "    timeout: 5s\n");

  RedisServer redis;
  ASSERT_TRUE(redis.ok());
  Broker broker(2, kNs, "writer");
  ASSERT_TRUE(broker.ok());
  Coordinator c1(dir, "coordinator-1");
  ASSERT_TRUE(c1.start(broker, redis, dir + "/workflows")) << read_file(c1.log());
  const std::string api = c1.api();

  // The file-loaded version is listed with its path.
  Answer list = call("GET", api + "/v1/workflows");
  ASSERT_EQ(list.status, 200) << list.raw;
  EXPECT_EQ(list.body, (json{{"workflows",
                              {{{"name", "memo"},
                                {"version", 1},
                                {"steps", 1},
                                {"roles", {"writer"}},
                                {"source", dir + "/workflows/memo.yaml"}}}}}));

  // Run A starts on v1 before v2 exists (no worker yet: its task waits in Kafka).
  std::map<std::string, std::string> ct = {{"Content-Type", "application/json"}};
  Answer a = call("POST", api + "/v1/runs", json{{"workflow", "memo"}, {"input", {{"text", "a"}}}}.dump(), ct);
  ASSERT_EQ(a.status, 202) << a.raw;
  EXPECT_EQ(a.body["version"], 1);
  const std::string run_a = a.body.value("run_id", "");
  ASSERT_TRUE(wait_until([&] { return step(get_run(api, run_a), "draft").value("attempts", 0) >= 1; }, seconds(30),
                         [&] { return get_run(api, run_a).dump(); }));

  // PUT: created, then unchanged (same model, other layout), then the refusals.
  std::map<std::string, std::string> yaml_ct = {{"Content-Type", "application/yaml"}};
  Answer put = call("PUT", api + "/v1/workflows", kV2, yaml_ct);
  EXPECT_EQ(put.status, 201) << put.raw;
  EXPECT_EQ(put.body, (json{{"name", "memo"}, {"version", 2}, {"status", "created"}}));
  Answer again = call("PUT", api + "/v1/workflows", std::string("# the same, reformatted\n") + kV2, yaml_ct);
  EXPECT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body, (json{{"name", "memo"}, {"version", 2}, {"status", "unchanged"}}));

  Answer bad = call("PUT", api + "/v1/workflows", kBad, yaml_ct);
  EXPECT_EQ(bad.status, 400) << bad.raw;
  EXPECT_EQ(bad.body["error"]["code"], "invalid_workflow") << bad.raw;
  EXPECT_EQ(bad.body["error"]["message"].get<std::string>().rfind("<applied>:6:14: `timeout` must be a duration", 0),
            0u)
      << bad.raw;
  Answer conflict = call("PUT", api + "/v1/workflows", std::string(kV1) + "    timeout: 5s\n", yaml_ct);
  EXPECT_EQ(conflict.status, 409) << conflict.raw;
  EXPECT_EQ(conflict.body["error"]["code"], "conflict") << conflict.raw;
  EXPECT_NE(conflict.body["error"]["message"].get<std::string>().find("workflow `memo` version 1 already exists"),
            std::string::npos)
      << conflict.raw;
  Answer big = call("PUT", api + "/v1/workflows", std::string(limits::kMaxWorkflowFileBytes + 1, '#'), yaml_ct);
  EXPECT_EQ(big.status, 413) << big.raw.substr(0, 300);
  EXPECT_TRUE(big.body.is_object() && big.body["error"].is_object()) << big.raw.substr(0, 300);
  Answer del = call("DELETE", api + "/v1/workflows");
  EXPECT_EQ(del.status, 405) << del.raw;

  // The stored text is the first one applied.
  {
    auto ep = redis::parse_endpoint(redis.address());
    auto rc = redis::Client::connect(*ep);
    ASSERT_TRUE(rc);
    auto v = (*rc)->command({"HGET", keys::workflows(kNs), "memo@2"});
    ASSERT_TRUE(v && v->is_string());
    EXPECT_EQ(v->str, kV2);
    auto n = (*rc)->command({"HLEN", keys::workflows(kNs)});
    ASSERT_TRUE(n);
    EXPECT_EQ(n->integer, 1);  // refusals wrote nothing
  }

  // Reads: one name's versions, one version's model, unknowns.
  Answer versions = call("GET", api + "/v1/workflows/memo");
  ASSERT_EQ(versions.status, 200) << versions.raw;
  ASSERT_EQ(versions.body["workflows"].size(), 2u) << versions.raw;
  EXPECT_EQ(versions.body["workflows"][1],
            (json{{"name", "memo"}, {"version", 2}, {"steps", 2}, {"roles", {"writer"}}, {"source", "applied"}}));
  Answer model = call("GET", api + "/v1/workflows/memo/2");
  ASSERT_EQ(model.status, 200) << model.raw;
  EXPECT_EQ(model.body["name"], "memo");
  EXPECT_EQ(model.body["version"], 2);
  EXPECT_EQ(model.body["steps"].size(), 2u) << model.raw;
  EXPECT_EQ(call("GET", api + "/v1/workflows/memo/7").status, 404);
  EXPECT_EQ(call("GET", api + "/v1/workflows/memo/x").status, 400);
  EXPECT_EQ(call("GET", api + "/v1/workflows/nothing").status, 404);

  // Run B without a version: the latest, v2, usable right after the 201.
  Answer b = call("POST", api + "/v1/runs", json{{"workflow", "memo"}, {"input", {{"text", "b"}}}}.dump(), ct);
  ASSERT_EQ(b.status, 202) << b.raw;
  EXPECT_EQ(b.body["version"], 2);
  const std::string run_b = b.body.value("run_id", "");

  // The worker's directory has only v1: v2's tasks make it read v2 from Redis.
  Process worker;
  ASSERT_TRUE(worker.start({bin_dir() + "/baton-worker", "--role", "writer", "--brokers", broker.bootstrap(),
                            "--redis", redis.address(), "--namespace", kNs, "--workflows", dir + "/workflows"},
                           dir + "/worker.log"));
  auto ended = [&](const std::string& id) {
    std::string s = get_run(api, id).value("status", "");
    return s == "completed" || s == "exception";
  };
  ASSERT_TRUE(wait_until([&] { return ended(run_a) && ended(run_b); }, seconds(90),
                         [&] {
                           return get_run(api, run_a).dump() + "\n" + get_run(api, run_b).dump() + "\nworker log:\n" +
                                  read_file(dir + "/worker.log");
                         },
                         milliseconds(100)));
  json ra = get_run(api, run_a);
  json rb = get_run(api, run_b);
  EXPECT_EQ(ra.value("status", ""), "completed") << ra.dump();
  EXPECT_EQ(ra["version"], 1);
  EXPECT_EQ(step(ra, "draft")["output"], (json{{"text", "a"}, {"tag", "v1"}})) << ra.dump();
  EXPECT_TRUE(step(ra, "review").empty()) << ra.dump();  // v1 has no review step
  EXPECT_EQ(rb.value("status", ""), "completed") << rb.dump();
  EXPECT_EQ(rb["version"], 2);
  EXPECT_EQ(step(rb, "draft")["output"], (json{{"text", "b"}, {"tag", "v2"}})) << rb.dump();
  EXPECT_EQ(step(rb, "review")["output"]["reviewed"], true) << rb.dump();

  // batonctl workflows validate: offline, exit 0 / 1.
  CliResult good = run_cli({"workflows", "validate", dir + "/workflows/memo.yaml", dir + "/v2.yaml"}, dir);
  EXPECT_EQ(good.code(), 0) << good.out << good.err;
  EXPECT_EQ(good.out, dir + "/workflows/memo.yaml: ok (memo@1, 1 step, roles: writer)\n" + dir +
                          "/v2.yaml: ok (memo@2, 2 steps, roles: writer)\n");
  CliResult invalid = run_cli({"workflows", "validate", dir + "/v2.yaml", dir + "/bad.yaml"}, dir);
  EXPECT_EQ(invalid.code(), 1) << invalid.out << invalid.err;
  EXPECT_EQ(invalid.out, dir + "/v2.yaml: ok (memo@2, 2 steps, roles: writer)\n");
  EXPECT_EQ(invalid.err.rfind(dir + "/bad.yaml:6:14: `timeout` must be a duration", 0), 0u) << invalid.err;

  // batonctl workflows apply: created, unchanged, refused.
  CliResult applied = run_cli({"workflows", "apply", dir + "/v3.yaml", "--api", api}, dir);
  EXPECT_EQ(applied.code(), 0) << applied.out << applied.err;
  EXPECT_EQ(applied.out, "created memo@3\n");
  CliResult unchanged = run_cli({"workflows", "apply", dir + "/v3.yaml", "--api", api}, dir);
  EXPECT_EQ(unchanged.code(), 0) << unchanged.out << unchanged.err;
  EXPECT_EQ(unchanged.out, "unchanged memo@3\n");
  CliResult refused = run_cli({"workflows", "apply", dir + "/v1-changed.yaml", "--api", api}, dir);
  EXPECT_EQ(refused.code(), 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("HTTP 409 conflict"), std::string::npos) << refused.err;

  // batonctl workflows list: -o json is the API's JSON; text is a table.
  CliResult lj = run_cli({"workflows", "list", "-o", "json", "--api", api}, dir);
  EXPECT_EQ(lj.code(), 0) << lj.err;
  Answer now = call("GET", api + "/v1/workflows");
  EXPECT_EQ(json::parse(lj.out, nullptr, false), now.body) << lj.out;
  ASSERT_EQ(now.body["workflows"].size(), 3u) << now.raw;
  CliResult lt = run_cli({"workflows", "list", "--api", api}, dir);
  EXPECT_EQ(lt.code(), 0) << lt.err;
  EXPECT_EQ(lt.out.rfind("NAME  VERSION  STEPS  ROLES   SOURCE\n", 0), 0u) << lt.out;
  EXPECT_NE(lt.out.find("\nmemo  2        2      writer  applied\n"), std::string::npos) << lt.out;

  // A second replica loads the applied versions at start, and finds one
  // applied later on the first replica through its miss handler.
  Coordinator c2(dir, "coordinator-2");
  ASSERT_TRUE(c2.start(broker, redis, dir + "/workflows")) << read_file(c2.log());
  EXPECT_EQ(call("GET", c2.api() + "/v1/workflows").body, now.body);
  Answer v4 = call("PUT", api + "/v1/workflows", std::string(kV3).replace(std::string(kV3).find("version: 3"), 10,
                                                                            "version: 4"),
                   yaml_ct);
  ASSERT_EQ(v4.status, 201) << v4.raw;
  Answer seen = call("GET", c2.api() + "/v1/workflows/memo/4");
  EXPECT_EQ(seen.status, 200) << seen.raw;
  EXPECT_EQ(seen.body["version"], 4);

  worker.stop();
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
