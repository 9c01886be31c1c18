// End-to-end: the pattern examples of helper B through a whole fleet started by
// `batonctl dev` (real broker, Redis, coordinator and one worker per role):
//   examples/client-intake  - maker-checker `loop` (feedback reaches the next round)
//   examples/market-brief   - `planner` with the `plan` agent (dynamic, bounded plans)
//   examples/weekly-report  - `parallel` gather with `join: all` (and a `schedule:` key)
// Each runs the README's command, `batonctl run <name> --inputs ... --wait
// --expect expected.jsonl`, asserts exit 0 and the summary counts, then reads
// each run's audit stream in Redis (baton:<ns>:{run:<id>}:audit) for the facts
// of its pattern. Every wait is bounded; every process is stopped.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/redis/client.h"
#include "common/util/json.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const char* kNs = "exb";

std::vector<json> facts(const std::vector<AuditEntry>& all, const std::string& kind) {
  std::vector<json> out;
  for (const auto& f : all)
    if (f.kind == kind) out.push_back(f.detail);
  return out;
}

// The output of a step instance in a run view (null when absent).
// The output of `name`'s last instance (the run view lists instances in start
// order: "draft", "draft#2", ...), or of exactly that instance id.
json output_of(const json& run, const std::string& name) {
  json out;
  if (!run.contains("steps")) return out;
  for (const auto& s : run["steps"])
    if (s.value("id", "") == name || s.value("step", "") == name) out = s.contains("output") ? s["output"] : json();
  return out;
}

// What one example's batch gave: per input line, its run id, expected line and run view.
struct Outcome {
  json input, expected, run;
  std::string run_id;
  std::vector<AuditEntry> audit;
};

// Runs the README's command for `name` against a fresh fleet; asserts exit 0,
// no mismatch and the summary counts; returns every run with its audit.
void run_example(const std::string& name, std::size_t want_completed, std::size_t want_exceptions,
                 std::vector<Outcome>* outcomes) {
  const std::string dir = example_dir(name);
  auto inputs = read_jsonl(dir + "/inputs.jsonl");
  auto expected = read_jsonl(dir + "/expected.jsonl");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_EQ(inputs.size(), want_completed + want_exceptions);
  std::size_t completed_in_file = 0;
  for (const auto& e : expected) completed_in_file += e.value("outcome", "") == "completed";
  ASSERT_EQ(completed_in_file, want_completed) << "expected.jsonl and the test disagree";

  DevFleet fleet(dir, kNs, 2);
  ASSERT_TRUE(fleet.start()) << "cannot start batonctl";
  ASSERT_TRUE(fleet.wait_ready(seconds(60)));
  auto r = run_cli({bin_dir() + "/batonctl", "run", name, "--api", fleet.api(), "--inputs", dir + "/inputs.jsonl",
                    "--wait", "--timeout", "60", "-o", "json", "--expect", dir + "/expected.jsonl"},
                   seconds(90));
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0) << exit_text(r.status) << "\n" << r.out << r.err;
  auto summary = parse_json_object(r.out);
  ASSERT_TRUE(summary.is_ok()) << r.out << r.err;
  EXPECT_EQ((*summary)["total"], inputs.size());
  EXPECT_EQ((*summary)["completed"], want_completed);
  EXPECT_EQ((*summary)["exceptions"], want_exceptions);
  EXPECT_EQ((*summary)["errors"], 0);
  EXPECT_EQ((*summary)["unfinished"], 0);
  EXPECT_EQ((*summary)["expected"], expected.size());
  EXPECT_TRUE((*summary)["mismatches"].empty()) << (*summary)["mismatches"].dump(2);

  auto ep = redis::parse_endpoint(fleet.redis());
  ASSERT_TRUE(ep.is_ok()) << fleet.redis();
  auto client = redis::Client::connect(*ep);
  ASSERT_TRUE(client.is_ok()) << client.status().to_string();
  // Runs are listed with their line in inputs.jsonl; expected.jsonl is in the same order.
  outcomes->assign(inputs.size(), Outcome());
  for (const auto& run : (*summary)["runs"]) {
    std::size_t line = run.value("line", std::size_t{0});
    ASSERT_GE(line, 1u);
    ASSERT_LE(line, inputs.size());
    Outcome& o = (*outcomes)[line - 1];
    o.input = inputs[line - 1];
    o.expected = expected[line - 1];
    o.run_id = run.value("run_id", "");
    auto view = get_run(fleet.api(), o.run_id);
    o.run = view ? *view : json();
    ASSERT_TRUE(o.run.is_object()) << o.run_id;
    o.audit = read_run_audit(**client, kNs, o.run_id);
    ASSERT_FALSE(o.audit.empty()) << o.run_id;
  }
  if (::testing::Test::HasFailure()) std::cerr << "--- batonctl log ---\n" << read_file(fleet.log()) << "\n";
}

bool path_has(const json& expected, const std::string& instance) {
  if (!expected.contains("path")) return false;
  for (const auto& p : expected["path"])
    if (p == instance) return true;
  return false;
}

// ---------------------------------------------------------------------------

TEST(ClientIntakeExample, LoopFeedsTheReviewBackAndEndsAsExpected) {
  std::vector<Outcome> runs;
  run_example("client-intake", 6, 4, &runs);
  if (HasFatalFailure()) return;
  int passed_first = 0, passed_second = 0, exhausted = 0;
  for (const auto& o : runs) {
    std::string id = o.input.value("inquiry_id", "");
    SCOPED_TRACE(id + " run " + o.run_id);
    auto done = facts(o.audit, "loop_done");
    auto rounds = facts(o.audit, "loop_round");
    auto out_of_rounds = facts(o.audit, "loop_exhausted");
    if (!path_has(o.expected, "draft")) {  // stopped at intake: the loop never started
      EXPECT_TRUE(rounds.empty());
      EXPECT_EQ(o.run.value("reason", ""), "needs_review");
      continue;
    }
    if (o.expected.value("outcome", "") == "completed") {
      ASSERT_EQ(done.size(), 1u);
      EXPECT_EQ(done[0]["step"], "propose");
      EXPECT_EQ(done[0]["until"], "output.score == 1");
      int n = done[0]["rounds"].get<int>();
      EXPECT_EQ(static_cast<int>(rounds.size()), n);
      (n == 1 ? passed_first : passed_second)++;
      // What was sent is the last draft, which the last review passed.
      json sent = output_of(o.run, "send");
      std::string last = n == 1 ? "draft" : "draft#" + std::to_string(n);
      EXPECT_EQ(sent["subject"], output_of(o.run, last)["title"]);
      EXPECT_NE(sent["body"].get<std::string>().find(output_of(o.run, last)["price_usd"].get<std::string>() + " USD"),
                std::string::npos)
          << sent.dump();
      EXPECT_EQ(sent["review_rounds"], std::to_string(n));
    } else {
      EXPECT_TRUE(done.empty());
      ASSERT_EQ(out_of_rounds.size(), 1u);
      EXPECT_EQ(out_of_rounds[0]["rounds"], 3);
      EXPECT_EQ(out_of_rounds[0]["to"], "exception");
      EXPECT_EQ(rounds.size(), 3u);
      ++exhausted;
    }
  }
  EXPECT_EQ(passed_first, 2);
  EXPECT_EQ(passed_second, 4);
  EXPECT_EQ(exhausted, 2);

  // The feedback reached the next round: each round's instance keeps its own
  // output in the run view (earlier rounds from the run's history).
  // INQ-103 was quoted 24000 over a 20000 budget: the passed draft carries
  // the reviewer's fix, not the quote.
  const Outcome& over = runs[2];
  ASSERT_EQ(over.input.value("inquiry_id", ""), "INQ-103");
  EXPECT_EQ(output_of(over.run, "draft")["price_usd"], "20000");
  EXPECT_EQ(output_of(over.run, "draft#2")["price_usd"], "20000");
  EXPECT_NE(output_of(over.run, "draft")["price_usd"], json());  // round 1 is kept too
  json first_round;
  for (const auto& s : over.run["steps"])
    if (s.value("id", "") == "draft") first_round = s["output"];
  EXPECT_EQ(first_round["price_usd"], "24000") << "round 1 quoted over the budget";
  EXPECT_EQ(output_of(over.run, "review")["score"], 1);
  EXPECT_EQ(output_of(over.run, "review")["feedback"], json::array());
  EXPECT_EQ(output_of(over.run, "propose")["rounds"], 2);
  // INQ-104 had no timeline: round 2 took the reviewer's standard one and kept the rest.
  const Outcome& no_timeline = runs[3];
  ASSERT_EQ(no_timeline.input.value("inquiry_id", ""), "INQ-104");
  EXPECT_EQ(output_of(no_timeline.run, "draft")["timeline"], "6 weeks from kickoff (standard plan)");
  EXPECT_EQ(output_of(no_timeline.run, "draft")["price_usd"], "9500");
  // INQ-107's budget (3000) is under the minimum engagement: the price swung
  // 6000 -> 3000 (budget) -> 5000 (minimum); the last review still refuses it,
  // says why and what it would take.
  const Outcome& swing = runs[6];
  ASSERT_EQ(swing.input.value("inquiry_id", ""), "INQ-107");
  EXPECT_EQ(output_of(swing.run, "draft")["price_usd"], "5000");
  json last_review = output_of(swing.run, "review");
  EXPECT_EQ(last_review["feedback"],
            json::array({"Price 5000 USD is over the client's budget of 3000 USD: quote a phase that fits."}));
  EXPECT_EQ(last_review["fixes"]["price_usd"], 3000);
  EXPECT_EQ(last_review["matched"], json::array({"scope", "timeline", "minimum_engagement"}));
}

TEST(MarketBriefExample, PlannerRunsBoundedPlansAndEndsAsExpected) {
  std::vector<Outcome> runs;
  run_example("market-brief", 4, 4, &runs);
  if (HasFatalFailure()) return;
  for (const auto& o : runs) {
    std::string id = o.input.value("request_id", "");
    SCOPED_TRACE(id + " run " + o.run_id);
    auto plans = facts(o.audit, "plan");
    std::string reason = o.expected.value("reason", "");
    if (reason == "step_failed") {  // the planner itself failed: no plan to audit
      EXPECT_TRUE(plans.empty());
      EXPECT_EQ(facts(o.audit, "task_dispatched").size(), 1u);
      continue;
    }
    ASSERT_FALSE(plans.empty());
    // The first plan: the market and one research task per competitor, in order.
    if (o.input.contains("competitors")) {
      json want = json::array({"market"});
      for (const auto& c : o.input["competitors"]) want.push_back("rival-" + c["slug"].get<std::string>());
      json got = json::array();
      for (const auto& s : plans[0]["plan"]["steps"]) got.push_back(s["id"]);
      EXPECT_EQ(got, want);
    }
    if (o.expected.value("outcome", "") == "completed") {
      ASSERT_EQ(plans.size(), 3u);  // research, write, done
      EXPECT_EQ(plans[2]["plan"]["done"], true);
      json post = output_of(o.run, "publish");
      EXPECT_NE(post["post"].get<std::string>().find(o.input["product"].get<std::string>() + ": market brief"),
                std::string::npos)
          << post.dump();
      EXPECT_TRUE(facts(o.audit, "planner_exhausted").empty());
    } else if (reason == "planner_exhausted") {
      auto ex = facts(o.audit, "planner_exhausted");
      ASSERT_EQ(ex.size(), 1u);
      EXPECT_EQ(ex[0]["planned"], 6);
      EXPECT_EQ(ex[0]["asked"], 1);
      EXPECT_EQ(output_of(o.run, "publish"), json());
    } else if (reason == "invalid_plan") {
      EXPECT_EQ(plans.size(), 1u);
      // Nothing of an invalid plan was dispatched.
      EXPECT_TRUE(facts(o.audit, "task_dispatched").size() == 1u) << "only the planner ran";
    } else {
      ADD_FAILURE() << "unexpected reason " << reason;
    }
  }
}

TEST(WeeklyReportExample, ParallelGatherJoinsAllAndEndsAsExpected) {
  std::vector<Outcome> runs;
  run_example("weekly-report", 5, 2, &runs);
  if (HasFatalFailure()) return;
  int joined_all = 0, joined_without_finance = 0;
  for (const auto& o : runs) {
    std::string id = o.input.value("report_id", "");
    SCOPED_TRACE(id + " run " + o.run_id);
    auto fan = facts(o.audit, "fan_out");
    ASSERT_EQ(fan.size(), 1u);
    EXPECT_EQ(fan[0]["branches"], json::array({"sales", "support", "finance"}));
    auto joined = facts(o.audit, "joined");
    if (o.expected.value("outcome", "") != "completed") {
      EXPECT_TRUE(joined.empty());
      continue;
    }
    ASSERT_EQ(joined.size(), 1u);
    EXPECT_EQ(joined[0]["mode"], "all");
    json summary = output_of(o.run, "summary");
    if (o.input.contains("finance")) {
      EXPECT_EQ(joined[0]["failed"], json::array());
      EXPECT_EQ(summary["finance"], "Finance: " + output_of(o.run, "finance")["line"].get<std::string>() + ".");
      ++joined_all;
    } else {
      EXPECT_EQ(joined[0]["failed"], json::array({"finance"}));
      EXPECT_EQ(facts(o.audit, "branch_failed").size(), 1u);
      EXPECT_EQ(summary["finance"], "Finance: figures not available this week.");
      ++joined_without_finance;
    }
    EXPECT_EQ(summary["sales"], "Sales: " + output_of(o.run, "sales")["headline"].get<std::string>() + "; " +
                                    output_of(o.run, "sales")["pipeline"].get<std::string>() + ".");
  }
  EXPECT_EQ(joined_all, 4);
  EXPECT_EQ(joined_without_finance, 1);
}

}  // namespace
}  // namespace baton::testing
