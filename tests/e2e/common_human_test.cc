// The read side of human control through the real processes: the exception
// queue (GET /v1/exceptions, `batonctl exceptions list|show`) and a run's
// audit trail (GET /v1/runs/{id}/audit, `batonctl audit`), on the
// support-triage example.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <set>
#include <string>

#include "common/http/http.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

json get_json(const std::string& url, int* status) {
  auto r = http::request("GET", url, "", 5000);
  *status = r ? r->status : 0;
  if (!r) return json();
  return json::parse(r->body, nullptr, false);
}

TEST(HumanControl, ExceptionQueueAndAuditTrailReadThroughApiAndBatonctl) {
  const std::string dir = example_dir("support-triage");
  DevFleet fleet(dir, "human");
  ASSERT_TRUE(fleet.start());
  ASSERT_TRUE(fleet.wait_ready());
  auto run = run_cli({bin_dir() + "/batonctl", "run", "support-triage", "--api", fleet.api(), "--inputs",
                      dir + "/inputs.jsonl", "--wait", "--timeout", "60", "-o", "json"},
                     seconds(90));
  ASSERT_TRUE(run.exited) << run.err;
  json summary = json::parse(run.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << run.out << run.err;
  const std::size_t want = summary.value("exceptions", 0u);
  ASSERT_GT(want, 0u);

  // The queue holds every run that ended in an exception, with its reason and step.
  int status = 0;
  json q = get_json(fleet.api() + "/v1/exceptions", &status);
  ASSERT_EQ(status, 200) << q.dump();
  ASSERT_EQ(q["exceptions"].size(), want) << q.dump();
  std::map<std::string, std::string> reason_of;
  for (const auto& e : q["exceptions"]) {
    EXPECT_EQ(e["workflow"], "support-triage");
    reason_of[e["run_id"]] = e["reason"];
    json r = get_json(fleet.api() + "/v1/runs/" + e["run_id"].get<std::string>(), &status);
    ASSERT_EQ(status, 200);
    EXPECT_EQ(r["status"], "exception");
    EXPECT_EQ(r["reason"], e["reason"]);
    EXPECT_EQ(r["ended_step"], e["step"]);
  }
  std::set<std::string> reasons;
  for (const auto& [id, reason] : reason_of) reasons.insert(reason);
  EXPECT_EQ(reasons, (std::set<std::string>{"handoff_not_allowed", "routed_to_exception"}));
  EXPECT_EQ(get_json(fleet.api() + "/v1/exceptions?limit=1", &status)["exceptions"].size(), 1u);
  EXPECT_TRUE(get_json(fleet.api() + "/v1/exceptions?workflow=other", &status)["exceptions"].empty());
  json bad = get_json(fleet.api() + "/v1/exceptions?limit=0", &status);
  EXPECT_EQ(status, 400);
  EXPECT_EQ(bad["error"]["code"], "invalid_argument");

  // A refused handoff: its audit trail, in order.
  std::string refused;
  for (const auto& [id, reason] : reason_of)
    if (reason == "handoff_not_allowed") refused = id;
  json audit = get_json(fleet.api() + "/v1/runs/" + refused + "/audit", &status);
  ASSERT_EQ(status, 200);
  std::vector<std::string> kinds;
  for (const auto& e : audit["entries"]) kinds.push_back(e["kind"]);
  EXPECT_EQ(kinds, (std::vector<std::string>{"run_started", "task_dispatched", "step_result", "routed",
                                             "task_dispatched", "step_result", "handoff_refused", "run_exception"}));
  EXPECT_EQ(audit["entries"][3]["detail"]["to"], "assign");
  EXPECT_EQ(audit["entries"][6]["detail"]["named"], "sales");
  EXPECT_EQ(audit["truncated"], false);
  EXPECT_EQ(get_json(fleet.api() + "/v1/runs/no-such-run/audit", &status)["error"]["code"], "not_found");
  EXPECT_EQ(status, 404);

  // The same through batonctl.
  auto text = run_cli({bin_dir() + "/batonctl", "audit", refused, "--api", fleet.api()}, seconds(30));
  ASSERT_TRUE(text.exited);
  EXPECT_TRUE(WIFEXITED(text.status) && WEXITSTATUS(text.status) == 0) << text.err;
  EXPECT_NE(text.out.find("8 audit entries"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("handoff_refused"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("assign named sales"), std::string::npos) << text.out;
  auto list = run_cli({bin_dir() + "/batonctl", "exceptions", "list", "-o", "json", "--api", fleet.api()}, seconds(30));
  ASSERT_TRUE(list.exited);
  EXPECT_EQ(json::parse(list.out, nullptr, false)["exceptions"].size(), want) << list.out << list.err;
  auto show = run_cli({bin_dir() + "/batonctl", "exceptions", "show", refused, "--api", fleet.api()}, seconds(30));
  ASSERT_TRUE(show.exited);
  EXPECT_TRUE(WIFEXITED(show.status) && WEXITSTATUS(show.status) == 0) << show.err;
  EXPECT_NE(show.out.find("reason:   handoff_not_allowed"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("step:     assign"), std::string::npos) << show.out;
  auto missing = run_cli({bin_dir() + "/batonctl", "audit", "no-such-run", "--api", fleet.api()}, seconds(30));
  ASSERT_TRUE(missing.exited);
  EXPECT_TRUE(WIFEXITED(missing.status) && WEXITSTATUS(missing.status) == 1);
  EXPECT_NE(missing.err.find("404 not_found"), std::string::npos) << missing.err;

  // Operator actions. The batch summary maps tickets to runs.
  std::map<std::string, std::string> run_of;
  for (const auto& r : summary["runs"]) run_of[r["input"].value("ticket_id", "")] = r.value("run_id", "");
  ASSERT_EQ(reason_of[run_of["T-107"]], "handoff_not_allowed");
  ASSERT_EQ(reason_of[run_of["T-108"]], "routed_to_exception");
  auto wait_status = [&](const std::string& id, const std::string& want) {
    json r;
    bool ok = wait_until(
        [&] {
          r = get_json(fleet.api() + "/v1/runs/" + id, &status);
          return r.value("status", "") == want;
        },
        seconds(20));
    EXPECT_TRUE(ok) << id << " is not " << want << ": " << r.dump();
    return r;
  };
  // Resolve: a person names the specialist the classifier could not; the run goes on to billing.
  std::string work = make_temp_dir("baton-e2e-human");
  write_file(work + "/out.json", R"({"specialist": "billing"})");
  auto resolve = run_cli({bin_dir() + "/batonctl", "exceptions", "resolve", run_of["T-107"], "--output",
                          work + "/out.json", "--comment", "sales questions go to billing", "--api", fleet.api()},
                         seconds(30));
  ASSERT_TRUE(resolve.exited);
  EXPECT_TRUE(WIFEXITED(resolve.status) && WEXITSTATUS(resolve.status) == 0) << resolve.err;
  json resolved = wait_status(run_of["T-107"], "completed");
  EXPECT_EQ(resolved["path"], json::array({"classify", "assign", "billing"}));
  EXPECT_EQ(resolved["ended_step"], "billing");
  // Retry with an edited input: a clearer message classifies with confidence.
  json input = read_jsonl(dir + "/inputs.jsonl")[0];  // T-101, a billing question
  input["ticket_id"] = "T-108";
  write_file(work + "/in.json", input.dump());
  auto retry = run_cli({bin_dir() + "/batonctl", "exceptions", "retry", run_of["T-108"], "--input", work + "/in.json",
                        "--api", fleet.api()},
                       seconds(30));
  ASSERT_TRUE(retry.exited);
  EXPECT_TRUE(WIFEXITED(retry.status) && WEXITSTATUS(retry.status) == 0) << retry.err;
  json retried = wait_status(run_of["T-108"], "completed");
  EXPECT_EQ(retried["path"], json::array({"classify", "classify#2", "assign", "billing"}));
  EXPECT_EQ(retried["input"]["message"], input["message"]);
  // Cancel: out of the queue for good.
  auto cancel = http::request("POST", fleet.api() + "/v1/exceptions/" + run_of["T-109"],
                              R"({"action": "cancel", "comment": "duplicate ticket"})", 5000);
  ASSERT_TRUE(cancel && cancel->status == 202) << (cancel ? cancel->body : "");
  wait_status(run_of["T-109"], "cancelled");
  json after = get_json(fleet.api() + "/v1/exceptions", &status);
  std::set<std::string> left;
  for (const auto& e : after["exceptions"]) left.insert(e["run_id"]);
  EXPECT_EQ(left.size(), want - 3) << after.dump();
  for (const char* gone : {"T-107", "T-108", "T-109"}) EXPECT_EQ(left.count(run_of[gone]), 0u) << gone;
  // Every action is in the audit trail, with its comment.
  json trail = get_json(fleet.api() + "/v1/runs/" + run_of["T-107"] + "/audit", &status);
  bool seen = false;
  for (const auto& e : trail["entries"])
    seen |= e["kind"] == "operator_action" && e["detail"]["comment"] == "sales questions go to billing";
  EXPECT_TRUE(seen) << trail.dump();
  // Refusals: not in the queue (409), unknown run (404), bad bodies (400).
  auto again = http::request("POST", fleet.api() + "/v1/exceptions/" + run_of["T-107"], R"({"action": "cancel"})", 5000);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409) << again->body;
  auto unknown = http::request("POST", fleet.api() + "/v1/exceptions/no-such-run", R"({"action": "cancel"})", 5000);
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  for (const char* body : {R"({"action": "delete"})", R"({"action": "resolve"})", R"({"action": 3})", "not json"}) {
    auto r = http::request("POST", fleet.api() + "/v1/exceptions/" + run_of["T-112"], body, 5000);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " " << r->body;
    EXPECT_TRUE(json::parse(r->body, nullptr, false).contains("error")) << r->body;
  }
  remove_tree(work);
}

// Resolving a step that writes the shared record writes the manual output's
// fields, in the operator's name, and the run goes on from there: a lead whose
// form missed a field is answered by hand and then qualified.
TEST(HumanControl, ResolvingAStepWritesTheRecordAndTheRunGoesOn) {
  const std::string dir = example_dir("lead-to-meeting");
  DevFleet fleet(dir, "human2");
  ASSERT_TRUE(fleet.start());
  ASSERT_TRUE(fleet.wait_ready());
  json lead = read_jsonl(dir + "/leads.jsonl")[6];  // L-007: a missing field
  ASSERT_EQ(lead["lead_id"], "L-007");
  auto r = http::request("POST", fleet.api() + "/v1/runs", json{{"workflow", "lead-to-meeting"}, {"input", lead}}.dump());
  ASSERT_TRUE(r && r->status == 202);
  std::string id = json::parse(r->body)["run_id"];
  int status = 0;
  json run;
  ASSERT_TRUE(wait_until(
      [&] {
        run = get_json(fleet.api() + "/v1/runs/" + id, &status);
        return run.value("status", "") == "exception";
      },
      seconds(20)))
      << run.dump();
  ASSERT_EQ(run["ended_step"], "respond");
  json manual = {{"valid", true},
                 {"first_touch", "Called back by phone"},
                 {"source", "phone"},
                 {"request", "a demo"},
                 {"email", "hannah@pixelandpine.example"}};
  auto act = http::request("POST", fleet.api() + "/v1/exceptions/" + id,
                           json{{"action", "resolve"}, {"output", manual}, {"comment", "called them"}}.dump(), 5000,
                           {{"X-Baton-User", "maria@example.com"}});
  ASSERT_TRUE(act && act->status == 202) << (act ? act->body : "");
  // The run goes on: qualify runs (and books, or waits for a manager on a partial fit).
  ASSERT_TRUE(wait_until(
      [&] {
        run = get_json(fleet.api() + "/v1/runs/" + id, &status);
        for (const auto& s : run["steps"])
          if (s["id"] == "qualify" && (s["status"] == "succeeded" || s["status"] == "awaiting_approval")) return true;
        return false;
      },
      seconds(20)))
      << run.dump();
  EXPECT_NE(run["status"], "exception") << run.dump();
  json audit = get_json(fleet.api() + "/v1/runs/" + id + "/audit", &status);
  bool written = false, by_operator = false;
  for (const auto& e : audit["entries"]) {
    if (e["kind"] == "record_written" && e["actor"] == "maria@example.com") {
      written = e["detail"]["fields"]["first_touch"]["new"] == "Called back by phone";
    }
    by_operator |= e["kind"] == "operator_action" && e["actor"] == "maria@example.com";
  }
  EXPECT_TRUE(written) << audit.dump();
  EXPECT_TRUE(by_operator) << audit.dump();
}

}  // namespace
}  // namespace baton::testing
