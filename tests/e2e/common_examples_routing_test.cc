// End-to-end runs of the routing examples (examples/invoice-processing,
// examples/support-triage, examples/content-review): for each, `batonctl dev`
// with the example's folder, then the README's
//   batonctl run <name> --inputs inputs.jsonl --wait --expect expected.jsonl
// must exit 0 with the summary's counts those of expected.jsonl, and each
// pattern leaves its facts in the runs' audit streams in Redis (`routed`,
// `handoff` / `handoff_refused`, `joined` / `join_failed`).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/json.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

const char* kNs = "exa";

// The result of running one example: per input id, its run id and audit trail.
struct ExampleRun {
  std::map<std::string, std::string> run_of;                 // id value -> run id
  std::map<std::string, std::vector<AuditEntry>> audit_of;   // id value -> audit
};

// Starts the fleet on the example's folder, runs the README's batonctl command
// with --expect, checks exit 0 and the summary counts, and reads every run's
// audit stream. `id_key` names the input field that identifies an input.
void run_example(const std::string& name, const std::string& id_key, ExampleRun& out) {
  const std::string dir = example_dir(name);
  auto inputs = read_jsonl(dir + "/inputs.jsonl");
  auto expected = read_jsonl(dir + "/expected.jsonl");
  ASSERT_GE(inputs.size(), 6u);
  ASSERT_EQ(inputs.size(), expected.size());

  DevFleet dev(dir, kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto r = run_cli({bin_dir() + "/batonctl", "run", name, "--api", dev.api(), "--inputs", dir + "/inputs.jsonl",
                    "--wait", "--timeout", "60", "-o", "json", "--expect", dir + "/expected.jsonl"},
                   seconds(90));
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      << exit_text(r.status) << "\n" << r.out << r.err << "\nbatonctl dev log:\n" << read_file(dev.log());
  auto summary = parse_json_object(r.out);
  ASSERT_TRUE(summary.is_ok()) << r.out << r.err;
  std::size_t want_completed = 0;
  for (const auto& e : expected) want_completed += e.value("outcome", "") == "completed";
  EXPECT_EQ((*summary)["total"], inputs.size());
  EXPECT_EQ((*summary)["expected"], expected.size());
  EXPECT_EQ((*summary)["errors"], 0);
  EXPECT_EQ((*summary)["unfinished"], 0);
  EXPECT_TRUE((*summary)["mismatches"].empty()) << (*summary)["mismatches"].dump(2);
  EXPECT_EQ((*summary)["completed"], want_completed);
  EXPECT_EQ((*summary)["exceptions"], expected.size() - want_completed);

  // Each run's own input (from the API) names it; then its audit from Redis.
  auto ep = redis::parse_endpoint(dev.redis());
  ASSERT_TRUE(ep.is_ok()) << dev.redis();
  auto rc = redis::Client::connect(*ep);
  ASSERT_TRUE(rc.is_ok()) << rc.status().to_string();
  for (const auto& run : (*summary)["runs"]) {
    std::string run_id = run.value("run_id", "");
    ASSERT_FALSE(run_id.empty()) << run.dump();
    auto got = http::request("GET", dev.api() + "/v1/runs/" + run_id, "", 5000);
    ASSERT_TRUE(got.is_ok()) << got.status().to_string();
    ASSERT_EQ(got->status, 200) << got->body;
    auto view = parse_json_object(got->body);
    ASSERT_TRUE(view.is_ok()) << got->body;
    std::string id = (*view)["input"].value(id_key, "");
    ASSERT_FALSE(id.empty()) << got->body;
    out.run_of[id] = run_id;
    out.audit_of[id] = read_run_audit(**rc, kNs, run_id);
  }
  EXPECT_EQ(out.run_of.size(), inputs.size());
}

// The first audit entry of `kind` in the run of input `id` (null when none).
const AuditEntry* find_audit(const ExampleRun& ex, const std::string& id, const std::string& kind) {
  auto it = ex.audit_of.find(id);
  if (it == ex.audit_of.end()) return nullptr;
  for (const auto& a : it->second)
    if (a.kind == kind) return &a;
  return nullptr;
}

std::string kinds_of(const ExampleRun& ex, const std::string& id) {
  std::string s;
  auto it = ex.audit_of.find(id);
  if (it != ex.audit_of.end())
    for (const auto& a : it->second) s += (s.empty() ? "" : ",") + a.kind;
  return s;
}

// Sequential + routing: extract -> validate -> route to post, hold or exception.
TEST(ExamplesRouting, InvoiceProcessingRoutesEveryInvoiceAsExpected) {
  ExampleRun ex;
  ASSERT_NO_FATAL_FAILURE(run_example("invoice-processing", "invoice_id", ex));
  const std::map<std::string, std::string> routed_to = {
      {"INV-001", "post"}, {"INV-004", "hold"}, {"INV-005", "exception"}, {"INV-008", "exception"}};
  for (const auto& [id, to] : routed_to) {
    const AuditEntry* a = find_audit(ex, id, "routed");
    ASSERT_NE(a, nullptr) << id << ": " << kinds_of(ex, id);
    EXPECT_EQ(a->detail.value("step", ""), "validate") << id;
    EXPECT_EQ(a->detail.value("to", ""), to) << id << ": " << a->detail.dump();
  }
  // INV-005 fails the checks (first rule); INV-008 passes them but names another PO (second rule).
  EXPECT_EQ(find_audit(ex, "INV-005", "routed")->detail.value("when", ""), "not output.valid");
  EXPECT_EQ(find_audit(ex, "INV-008", "routed")->detail.value("when", ""),
            "run.steps.extract.po_number != input.po.number");
  // An unreadable invoice never reaches the router.
  EXPECT_EQ(find_audit(ex, "INV-009", "routed"), nullptr) << kinds_of(ex, "INV-009");
  const AuditEntry* exc = find_audit(ex, "INV-009", "run_exception");
  ASSERT_NE(exc, nullptr) << kinds_of(ex, "INV-009");
  EXPECT_EQ(exc->detail.value("reason", ""), "needs_review");
}

// Handoff: classify (route on confidence) -> assign (handoff to a specialist).
TEST(ExamplesRouting, SupportTriageHandsOffOnlyToAllowedSpecialists) {
  ExampleRun ex;
  ASSERT_NO_FATAL_FAILURE(run_example("support-triage", "ticket_id", ex));
  const std::map<std::string, std::string> handed_to = {
      {"T-101", "billing"}, {"T-103", "compliance"}, {"T-105", "general"}};
  for (const auto& [id, to] : handed_to) {
    const AuditEntry* a = find_audit(ex, id, "handoff");
    ASSERT_NE(a, nullptr) << id << ": " << kinds_of(ex, id);
    EXPECT_EQ(a->detail.value("step", ""), "assign") << id;
    EXPECT_EQ(a->detail.value("to", ""), to) << id;
  }
  for (const char* id : {"T-107", "T-112"}) {
    const AuditEntry* a = find_audit(ex, id, "handoff_refused");
    ASSERT_NE(a, nullptr) << id << ": " << kinds_of(ex, id);
    EXPECT_EQ(a->detail["named"], "sales") << id;
    EXPECT_EQ(find_audit(ex, id, "handoff"), nullptr) << id << ": refused, never dispatched";
  }
  // Low confidence: routed to the exception queue before any handoff.
  const AuditEntry* low = find_audit(ex, "T-108", "routed");
  ASSERT_NE(low, nullptr) << kinds_of(ex, "T-108");
  EXPECT_EQ(low->detail.value("to", ""), "exception");
  EXPECT_EQ(find_audit(ex, "T-108", "handoff"), nullptr);
}

// Concurrent: three reviewers in parallel, quorum(2), route on the verdicts.
TEST(ExamplesRouting, ContentReviewJoinsOnAQuorumOfReviewers) {
  ExampleRun ex;
  ASSERT_NO_FATAL_FAILURE(run_example("content-review", "post_id", ex));
  for (const char* id : {"C-01", "C-04", "C-07", "C-08"}) {
    const AuditEntry* a = find_audit(ex, id, "joined");
    ASSERT_NE(a, nullptr) << id << ": " << kinds_of(ex, id);
    EXPECT_EQ(a->detail.value("mode", ""), "quorum") << id;
    EXPECT_EQ(a->detail["succeeded"].size(), 2u) << id << ": " << a->detail.dump();
  }
  // C-07 has no headline: the brand reviewer fails, the other two make the
  // quorum. Which comes first is a race: brand's failure is either seen by the
  // join (failed, with a branch_failed entry) or arrives after it (cancelled).
  const AuditEntry* j7 = find_audit(ex, "C-07", "joined");
  ASSERT_NE(j7, nullptr);
  EXPECT_EQ(std::set<std::string>(j7->detail["succeeded"].begin(), j7->detail["succeeded"].end()),
            (std::set<std::string>{"legal", "accuracy"}))
      << j7->detail.dump();
  if (j7->detail["failed"] == json::array({"brand"})) {
    EXPECT_NE(find_audit(ex, "C-07", "branch_failed"), nullptr) << kinds_of(ex, "C-07");
  } else {
    EXPECT_EQ(j7->detail["cancelled"], json::array({"brand"})) << j7->detail.dump();
  }
  // C-10: brand and accuracy both fail: a quorum of 2 cannot be reached.
  const AuditEntry* jf = find_audit(ex, "C-10", "join_failed");
  ASSERT_NE(jf, nullptr) << kinds_of(ex, "C-10");
  EXPECT_EQ(std::set<std::string>(jf->detail["failed"].begin(), jf->detail["failed"].end()),
            (std::set<std::string>{"brand", "accuracy"}))
      << jf->detail.dump();
  EXPECT_EQ(find_audit(ex, "C-10", "joined"), nullptr);
  // A rejected draft: joined, then routed to the exception queue.
  const AuditEntry* r4 = find_audit(ex, "C-04", "routed");
  ASSERT_NE(r4, nullptr) << kinds_of(ex, "C-04");
  EXPECT_EQ(r4->detail.value("step", ""), "review");
  EXPECT_EQ(r4->detail.value("to", ""), "exception");
}

}  // namespace
}  // namespace baton::testing
