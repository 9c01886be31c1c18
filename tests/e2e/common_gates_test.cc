// Approval gates through the real processes (`batonctl dev` on
// examples/lead-to-meeting, with bearer tokens and a webhook): a partial fit
// waits for a sales manager; approve with a corrected owner, reject, SLA
// escalation and timeout, an operator retry of a timed-out gate; every role
// against every endpoint; the gate_opened webhook; every call in the API audit.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <mutex>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/keys.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const char* kTokens = R"(tokens:
  - { name: vic, role: viewer, token: viewer-token }
  - { name: maria, role: approver, groups: [sales-managers], token: maria-token }
  - { name: dora, role: approver, groups: [sales-directors], token: dora-token }
  - { name: bob, role: approver, groups: [support], token: bob-token }
  - { name: ops, role: operator, token: ops-token }
  - { name: root, role: admin, token: admin-token }
)";

// A local webhook receiver: keeps every body it is sent.
class Receiver {
 public:
  Receiver() {
    auto s = http::Server::start({}, [this](const http::Request& r) {
      std::lock_guard<std::mutex> lock(mu_);
      bodies_.push_back(json::parse(r.body, nullptr, false));
      return http::Response{200, "application/json", "{}", {}};
    });
    if (s) server_ = std::move(s).value();
  }
  ~Receiver() {
    if (server_) server_->stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_ ? server_->port() : 0) + "/hook"; }
  std::vector<json> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }

 private:
  std::unique_ptr<http::Server> server_;
  std::mutex mu_;
  std::vector<json> bodies_;
};

struct Answer {
  int status = 0;
  json body;
};

Answer call(const std::string& method, const std::string& url, const std::string& token, const json& body = json(),
            const std::string& content_type = "application/json", const std::string& raw = "") {
  std::map<std::string, std::string> h;
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  h["Content-Type"] = content_type;
  auto r = http::request(method, url, raw.empty() ? (body.is_null() ? "" : body.dump()) : raw, 10000, h);
  if (!r) return {};
  return {r->status, json::parse(r->body, nullptr, false)};
}

json lead(const std::string& dir, const std::string& id) {
  for (const auto& l : read_jsonl(dir + "/leads.jsonl"))
    if (l.value("lead_id", "") == id) return l;
  ADD_FAILURE() << "no lead " << id;
  return json::object();
}

std::string start_run(const std::string& api, const json& input) {
  Answer a = call("POST", api + "/v1/runs", "ops-token", json{{"workflow", "lead-to-meeting"}, {"input", input}});
  EXPECT_EQ(a.status, 202) << a.body.dump();
  return a.body.value("run_id", "");
}

// batonctl with a bearer token in its environment.
CliResult batonctl(const std::string& token, std::vector<std::string> args) {
  setenv("BATON_TOKEN", token.c_str(), 1);
  args.insert(args.begin(), bin_dir() + "/batonctl");
  CliResult r = run_cli(args, seconds(30));
  unsetenv("BATON_TOKEN");
  return r;
}

json approvals(const std::string& api, const std::string& token) {
  return call("GET", api + "/v1/approvals", token).body;
}

bool gate_open(const json& list, const std::string& run, const std::string& step, const std::string& group = "") {
  if (!list.contains("approvals")) return false;
  for (const auto& g : list["approvals"])
    if (g["run_id"] == run && g["step"] == step && (group.empty() || g["group"] == group)) return true;
  return false;
}

std::string record_field(const std::string& redis_addr, const std::string& ns, const std::string& key,
                         const std::string& field) {
  auto ep = redis::parse_endpoint(redis_addr);
  if (!ep) return "";
  auto c = redis::Client::connect(*ep);
  if (!c) return "";
  auto r = (*c)->command({"HGET", keys::record(ns, key), field});
  return r && !r->is_nil() ? r->str : "";
}

class Gates : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = make_temp_dir("baton-gates");
    write_file(work_ + "/tokens.yaml", kTokens);
    write_file(work_ + "/notify.yaml", "webhooks:\n  - name: sales\n    url: " + receiver_.url() +
                                          "\n    format: generic\n    events: [gate_opened, gate_escalated, exception]\n");
  }
  void TearDown() override { remove_tree(work_); }
  std::vector<std::string> flags() const {
    return {"--auth-tokens", work_ + "/tokens.yaml", "--notify", work_ + "/notify.yaml"};
  }

  std::string work_;
  Receiver receiver_;
};

TEST_F(Gates, PartialFitWaitsForASalesManagerWhoApprovesWithAnotherOwner) {
  const std::string dir = example_dir("lead-to-meeting");
  DevFleet fleet(dir, "gates1");
  ASSERT_TRUE(fleet.start(flags()));
  ASSERT_TRUE(fleet.wait_ready());
  const std::string api = fleet.api();
  const std::string id = start_run(api, lead(dir, "L-004"));  // a partial fit
  ASSERT_FALSE(id.empty());

  // The gate opens for sales-managers; maria (theirs) and the viewer see it, bob (support) does not.
  json list;
  ASSERT_TRUE(wait_until([&] { return gate_open(list = approvals(api, "maria-token"), id, "qualify"); }, seconds(30)))
      << list.dump();
  json gate;
  for (const auto& g : list["approvals"])
    if (g["run_id"] == id) gate = g;
  EXPECT_EQ(gate["group"], "sales-managers");
  EXPECT_EQ(gate["kind"], "approval");
  EXPECT_LT(gate["output"]["score"].get<double>(), 0.5);
  EXPECT_GT(gate["due_ms"].get<int64_t>(), gate["opened_ms"].get<int64_t>());
  EXPECT_TRUE(gate_open(approvals(api, "viewer-token"), id, "qualify"));
  EXPECT_FALSE(gate_open(approvals(api, "bob-token"), id, "qualify"));
  // Held: nothing of qualify is in the record yet.
  EXPECT_EQ(record_field(fleet.redis(), "gates1", "lead:L-004", "owner"), "");

  // The webhook was told, without anyone watching a screen.
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& b : receiver_.bodies())
          if (b.value("event", "") == "gate_opened" && b.value("run_id", "") == id) return true;
        return false;
      },
      seconds(20)));

  // The CLI lists it for maria; bob may not decide it.
  CliResult ls = batonctl("maria-token", {"approvals", "list", "--api", api});
  EXPECT_EQ(WEXITSTATUS(ls.status), 0) << ls.err;
  EXPECT_NE(ls.out.find(id), std::string::npos) << ls.out;
  CliResult denied = batonctl("bob-token", {"approvals", "approve", id, "qualify", "--api", api});
  EXPECT_NE(WEXITSTATUS(denied.status), 0);
  EXPECT_NE(denied.err.find("403"), std::string::npos) << denied.err;

  // maria approves with a different owner.
  write_file(work_ + "/corrected.json", R"({"score": 0.45, "reason": "strategic logo", "owner": "sales-vip"})");
  CliResult ok = batonctl("maria-token", {"approvals", "approve", id, "qualify", "--api", api, "--output",
                                          work_ + "/corrected.json", "--comment", "strategic logo, take it"});
  ASSERT_EQ(WEXITSTATUS(ok.status), 0) << ok.out << ok.err;
  json run;
  ASSERT_TRUE(wait_until(
      [&] { return (run = call("GET", api + "/v1/runs/" + id, "viewer-token").body).value("status", "") == "completed"; },
      seconds(30)))
      << run.dump();
  EXPECT_EQ(run["path"], json::array({"respond", "qualify", "book"}));
  for (const auto& s : run["steps"]) {
    if (s["id"] == "book") {
      EXPECT_NE(s["output"].value("invite", "").find("host sales-vip"), std::string::npos) << s.dump();
    }
  }
  EXPECT_EQ(record_field(fleet.redis(), "gates1", "lead:L-004", "owner"), "\"sales-vip\"");
  EXPECT_FALSE(gate_open(approvals(api, "maria-token"), id, "qualify"));

  // The audit trail: who decided, with what comment, and the record write in maria's name.
  json audit = call("GET", api + "/v1/runs/" + id + "/audit", "viewer-token").body;
  bool decided = false, written = false;
  for (const auto& e : audit["entries"]) {
    if (e["kind"] == "gate_decided") {
      decided = e["actor"] == "maria" && e["detail"]["decision"] == "corrected" &&
                e["detail"]["comment"] == "strategic logo, take it" && e["detail"]["overturned"] == true;
    }
    if (e["kind"] == "record_written" && e["actor"] == "maria")
      written = e["detail"]["fields"]["owner"]["new"] == "sales-vip";
  }
  EXPECT_TRUE(decided) << audit.dump();
  EXPECT_TRUE(written) << audit.dump();
  CliResult timeline = batonctl("viewer-token", {"audit", id, "--api", api});
  EXPECT_NE(timeline.out.find("gate_opened"), std::string::npos) << timeline.out;
  EXPECT_NE(timeline.out.find("corrected for sales-managers"), std::string::npos) << timeline.out;

  // Redaction: the lead's email (a sensitive record field) is in the record,
  // and in no API answer, audit entry or log line.
  const std::string email = lead(dir, "L-004").value("email", "");
  ASSERT_FALSE(email.empty());
  EXPECT_EQ(record_field(fleet.redis(), "gates1", "lead:L-004", "email"), "\"" + email + "\"");
  for (const std::string& path : std::vector<std::string>{"/v1/runs/" + id, "/v1/runs/" + id + "/audit", "/v1/approvals", "/v1/exceptions"}) {
    Answer a = call("GET", api + path, "admin-token");
    EXPECT_EQ(a.status, 200) << path;
    EXPECT_EQ(a.body.dump().find(email), std::string::npos) << path << ": " << a.body.dump();
  }
  EXPECT_NE(call("GET", api + "/v1/runs/" + id, "admin-token").body.dump().find("[redacted]"), std::string::npos);
  {
    auto ep = redis::parse_endpoint(fleet.redis());
    ASSERT_TRUE(ep.is_ok());
    auto rc = redis::Client::connect(*ep);
    ASSERT_TRUE(rc.is_ok());
    auto audit_raw = (*rc)->command({"XRANGE", keys::run_audit("gates1", id), "-", "+"});
    ASSERT_TRUE(audit_raw.is_ok());
    std::string all;
    for (const auto& e : audit_raw->elements)
      for (const auto& f : e.elements.at(1).elements) all += f.str + "\n";
    EXPECT_FALSE(all.empty());
    EXPECT_EQ(all.find(email), std::string::npos) << all;
  }
  std::string logs = read_file(fleet.log());
  for (const auto& entry : std::filesystem::directory_iterator(fleet.state_dir() + "/logs"))
    logs += read_file(entry.path().string());
  EXPECT_GT(logs.size(), 0u);
  EXPECT_EQ(logs.find(email), std::string::npos);

  // The audit trail is exported to baton.<ns>.audit too (redacted the same way).
  {
    kafka::KafkaConfig kc;
    kc.brokers = fleet.env().value("brokers", "");
    auto consumer = kafka::make_consumer(kc, "gates-audit-reader");
    ASSERT_TRUE(consumer.is_ok()) << consumer.status().to_string();
    ASSERT_TRUE((*consumer)->subscribe({keys::audit_topic("gates1")}).is_ok());
    bool exported_decision = false;
    std::string exported;
    ASSERT_TRUE(wait_until(
        [&] {
          std::vector<kafka::Message> batch;
          (void)(*consumer)->poll_batch(batch, 500, 200);
          for (const auto& m : batch) {
            exported += m.payload + "\n";
            json msg = json::parse(m.payload, nullptr, false);
            if (!msg.is_object() || msg.value("run_id", "") != id || !msg["entries"].is_array()) continue;
            for (const auto& e : msg["entries"])
              exported_decision |= e.value("kind", "") == "gate_decided" && e.value("actor", "") == "maria";
          }
          return exported_decision;
        },
        seconds(30)));
    EXPECT_EQ(exported.find(lead(dir, "L-004").value("email", "?")), std::string::npos);
    (*consumer)->close();
  }

  // KPIs: the gate's decision counts against the agent at that step.
  Answer kpis = call("GET", api + "/v1/stats?workflow=lead-to-meeting", "viewer-token");
  ASSERT_EQ(kpis.status, 200) << kpis.body.dump();
  ASSERT_EQ(kpis.body["workflows"].size(), 1u) << kpis.body.dump();
  const json& w = kpis.body["workflows"][0];
  EXPECT_EQ(w["completed"], 1);
  EXPECT_EQ(w["gates"]["qualify"]["decisions"], 1) << w.dump();
  EXPECT_EQ(w["gates"]["qualify"]["overturned"], 1) << w.dump();
  EXPECT_EQ(w["approval_latency_ms"]["count"], 1) << w.dump();
  CliResult st = batonctl("viewer-token", {"stats", "--api", api});
  EXPECT_EQ(WEXITSTATUS(st.status), 0) << st.err;
  EXPECT_NE(st.out.find("agent accuracy 0.0%"), std::string::npos) << st.out;

  // A second decision on the closed gate: 409.
  EXPECT_EQ(call("POST", api + "/v1/approvals/" + id + "/qualify", "maria-token", json{{"decision", "reject"}}).status,
            409);
}

TEST_F(Gates, EveryRoleAgainstEveryEndpoint) {
  const std::string dir = example_dir("lead-to-meeting");
  DevFleet fleet(dir, "gates2");
  ASSERT_TRUE(fleet.start(flags()));
  ASSERT_TRUE(fleet.wait_ready());
  const std::string api = fleet.api();
  const std::string gated = start_run(api, lead(dir, "L-009"));
  const std::string failed = start_run(api, lead(dir, "L-007"));  // a missing field: exception queue
  ASSERT_TRUE(wait_until([&] { return gate_open(approvals(api, "admin-token"), gated, "qualify"); }, seconds(30)));
  ASSERT_TRUE(wait_until(
      [&] { return call("GET", api + "/v1/runs/" + failed, "admin-token").body.value("status", "") == "exception"; },
      seconds(30)));
  const std::string yaml = read_file(dir + "/workflow.yaml");

  struct Endpoint {
    std::string name, method, path;
    json body;
    std::string min_role;  // viewer, approver, operator, admin
  };
  // Bodies a caller with the role gets past the check with; the answer then is
  // the endpoint's own (202, 409, ...), never 401 or 403.
  std::vector<Endpoint> endpoints = {
      {"get run", "GET", "/v1/runs/" + gated, json(), "viewer"},
      {"get audit", "GET", "/v1/runs/" + gated + "/audit", json(), "viewer"},
      {"list exceptions", "GET", "/v1/exceptions", json(), "viewer"},
      {"list approvals", "GET", "/v1/approvals", json(), "viewer"},
      {"list workflows", "GET", "/v1/workflows", json(), "viewer"},
      {"whoami", "GET", "/v1/whoami", json(), "viewer"},
      {"start run", "POST", "/v1/runs", json{{"workflow", "lead-to-meeting"}, {"input", lead(dir, "L-001")}}, "operator"},
      {"act on exception", "POST", "/v1/exceptions/" + failed, json{{"action", "bogus"}}, "operator"},
      {"apply workflow", "PUT", "/v1/workflows", json(), "admin"},
  };
  const std::vector<std::pair<std::string, std::string>> callers = {
      {"viewer", "viewer-token"}, {"approver", "bob-token"}, {"operator", "ops-token"}, {"admin", "admin-token"}};
  auto rank = [](const std::string& r) { return r == "viewer" ? 0 : r == "approver" ? 1 : r == "operator" ? 2 : 3; };
  for (const auto& e : endpoints) {
    // No token at all: 401 with a JSON error.
    Answer anon = call(e.method, api + e.path, "", e.body);
    EXPECT_EQ(anon.status, 401) << e.name;
    EXPECT_EQ(anon.body["error"]["code"], "unauthenticated") << e.name;
    EXPECT_EQ(call(e.method, api + e.path, "not-a-token", e.body).status, 401) << e.name;
    for (const auto& [role, token] : callers) {
      Answer a = e.method == "PUT" ? call("PUT", api + e.path, token, json(), "application/yaml", yaml)
                                   : call(e.method, api + e.path, token, e.body);
      bool allowed = rank(role) >= rank(e.min_role);
      if (allowed) {
        EXPECT_NE(a.status, 401) << e.name << " as " << role;
        EXPECT_NE(a.status, 403) << e.name << " as " << role << ": " << a.body.dump();
        EXPECT_GT(a.status, 0) << e.name << " as " << role;
      } else {
        EXPECT_EQ(a.status, 403) << e.name << " as " << role << ": " << a.body.dump();
        EXPECT_EQ(a.body["error"]["code"], "forbidden") << e.name << " as " << role;
      }
    }
  }
  // Deciding a gate: approvers of its group, operators and admins; not other
  // approvers, not viewers. (Rejections end the run, so each caller that may
  // decide is tried on a body the API refuses after the role check.)
  const std::string decide = api + "/v1/approvals/" + gated + "/qualify";
  EXPECT_EQ(call("POST", decide, "viewer-token", json{{"decision", "approve"}}).status, 403);
  EXPECT_EQ(call("POST", decide, "bob-token", json{{"decision", "approve"}}).status, 403);
  for (const char* token : {"maria-token", "ops-token", "admin-token"})
    EXPECT_EQ(call("POST", decide, token, json{{"decision", "maybe"}}).status, 400) << token;
  EXPECT_EQ(call("POST", decide, "maria-token", json{{"decision", "approve"}}).status, 202);
  // Health endpoints need no token.
  EXPECT_EQ(call("GET", api + "/healthz", "").status, 200);

  // Every call is in the API audit with its caller.
  auto ep = redis::parse_endpoint(fleet.redis());
  ASSERT_TRUE(ep.is_ok());
  auto rc = redis::Client::connect(*ep);
  ASSERT_TRUE(rc.is_ok());
  auto entries = (*rc)->command({"XRANGE", keys::api_audit("gates2"), "-", "+"});
  ASSERT_TRUE(entries.is_ok());
  std::set<std::string> callers_seen;
  int forbidden = 0;
  for (const auto& e : entries->elements) {
    std::map<std::string, std::string> f;
    const auto& kv = e.elements.at(1).elements;
    for (std::size_t i = 0; i + 1 < kv.size(); i += 2) f[kv[i].str] = kv[i + 1].str;
    callers_seen.insert(f["caller"]);
    forbidden += f["status"] == "403";
  }
  for (const char* who : {"vic", "bob", "ops", "root", "maria"}) EXPECT_TRUE(callers_seen.count(who)) << who;
  EXPECT_GT(forbidden, 5);
}

TEST_F(Gates, RejectEscalateTimeOutAndRetry) {
  // The example with short SLAs: 1 s for managers, then 1 s for directors.
  const std::string src = example_dir("lead-to-meeting");
  const std::string dir = work_ + "/workflows";
  std::filesystem::create_directories(dir);
  std::string yaml = read_file(src + "/workflow.yaml");
  for (const std::string from : {"sla: 4h", "sla: 2h"}) {
    auto at = yaml.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    yaml.replace(at, from.size(), "sla: 1500ms");
  }
  write_file(dir + "/workflow.yaml", yaml);
  DevFleet fleet(dir, "gates3");
  ASSERT_TRUE(fleet.start(flags()));
  ASSERT_TRUE(fleet.wait_ready());
  const std::string api = fleet.api();

  // Reject: on_reject is `end`, the run completes at qualify and nothing is written.
  const std::string rejected = start_run(api, lead(src, "L-004"));
  // (An operator decides: with a 1.5 s SLA the gate may already be the directors'.)
  ASSERT_TRUE(wait_until([&] { return gate_open(approvals(api, "admin-token"), rejected, "qualify"); }, seconds(30)));
  CliResult r = batonctl("ops-token", {"approvals", "reject", rejected, "qualify", "--api", api, "--comment", "too small"});
  ASSERT_EQ(WEXITSTATUS(r.status), 0) << r.err;
  json run;
  ASSERT_TRUE(wait_until(
      [&] { return (run = call("GET", api + "/v1/runs/" + rejected, "viewer-token").body).value("status", "") == "completed"; },
      seconds(20)))
      << run.dump();
  EXPECT_EQ(run["ended_step"], "qualify");
  EXPECT_EQ(run["path"], json::array({"respond", "qualify"}));
  EXPECT_EQ(record_field(fleet.redis(), "gates3", "lead:L-004", "score"), "");

  // Nobody decides: escalated to sales-directors, then the exception queue.
  const std::string late = start_run(api, lead(src, "L-009"));
  ASSERT_TRUE(wait_until([&] { return gate_open(approvals(api, "dora-token"), late, "qualify", "sales-directors"); },
                         seconds(30)));
  EXPECT_FALSE(gate_open(approvals(api, "maria-token"), late, "qualify"));  // no longer theirs
  ASSERT_TRUE(wait_until(
      [&] { return (run = call("GET", api + "/v1/runs/" + late, "viewer-token").body).value("status", "") == "exception"; },
      seconds(30)))
      << run.dump();
  EXPECT_EQ(run["reason"], "approval_timeout");
  json q = call("GET", api + "/v1/exceptions", "viewer-token").body;
  bool queued = false;
  for (const auto& e : q["exceptions"]) queued |= e["run_id"] == late && e["reason"] == "approval_timeout";
  EXPECT_TRUE(queued) << q.dump();
  bool escalated_hook = false, exception_hook = false;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const auto& b : receiver_.bodies()) {
          if (b.value("run_id", "") != late) continue;
          escalated_hook |= b.value("event", "") == "gate_escalated" && b.value("group", "") == "sales-directors";
          exception_hook |= b.value("event", "") == "exception" && b.value("reason", "") == "approval_timeout";
        }
        return escalated_hook && exception_hook;
      },
      seconds(20)));

  // An operator retries from qualify: a new instance runs and its gate opens again.
  CliResult retry = batonctl("ops-token", {"exceptions", "retry", late, "--api", api, "--comment", "managers back"});
  ASSERT_EQ(WEXITSTATUS(retry.status), 0) << retry.err;
  ASSERT_TRUE(wait_until([&] { return gate_open(approvals(api, "admin-token"), late, "qualify#2"); }, seconds(30)));
  CliResult ok = batonctl("ops-token", {"approvals", "approve", late, "qualify#2", "--api", api});
  ASSERT_EQ(WEXITSTATUS(ok.status), 0) << ok.err;
  ASSERT_TRUE(wait_until(
      [&] { return (run = call("GET", api + "/v1/runs/" + late, "viewer-token").body).value("status", "") == "completed"; },
      seconds(30)))
      << run.dump();
  EXPECT_EQ(run["ended_step"], "book");
}

}  // namespace
}  // namespace baton::testing
