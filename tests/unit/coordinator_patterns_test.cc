// The orchestration patterns in the pure engine: route, handoff, parallel +
// join, maker-checker loop, planner, and windows. Workflows are written in
// YAML and parsed, so these tests also pin the format's semantics.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/workflow/parser.h"
#include "coordinator/engine.h"

namespace baton::coordinator {
namespace {

using nlohmann::json;
using baton::v1::StepResult;

workflow::WorkflowPtr load(const std::string& yaml) {
  auto wf = workflow::parse_workflow(yaml, "wf.yaml");
  EXPECT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  return wf ? *wf : nullptr;
}

std::vector<std::string> dispatched(const Transition& t) {
  std::vector<std::string> out;
  for (const auto& task : t.dispatch) out.push_back(task.step_id());
  return out;
}

bool has_audit(const Transition& t, const std::string& kind) {
  return std::any_of(t.audit.begin(), t.audit.end(), [&](const AuditRecord& a) { return a.kind == kind; });
}

const AuditRecord* audit(const Transition& t, const std::string& kind) {
  for (const auto& a : t.audit)
    if (a.kind == kind) return &a;
  return nullptr;
}

class Patterns : public ::testing::Test {
 protected:
  Engine engine{EngineOptions{"test"}};
  workflow::WorkflowPtr wf;
  RunState st;
  int64_t now = 1000;

  Transition start(const std::string& yaml, const std::string& input = R"({"id":"T-1"})") {
    wf = load(yaml);
    baton::v1::RunStarted s;
    s.set_workflow(wf->name);
    s.set_input_json(input);
    return engine.start(wf.get(), "run-1", 0, s, now, st);
  }
  Transition result(const std::string& step, StepResult::Status status, const json& output = json::object(),
                    uint32_t attempt = 1, const json* record = nullptr) {
    StepResult r;
    r.set_step_id(step);
    r.set_attempt(attempt);
    r.set_status(status);
    r.set_output_json(output.dump());
    r.set_worker_id("w");
    now += 10;
    return engine.on_result(*wf, st, r, {}, now, record);
  }
  Transition ok(const std::string& step, const json& output = json::object()) {
    return result(step, StepResult::OK, output);
  }
};

const char* kRoute = R"(name: qualify
steps:
  - id: qualify
    role: q
    route:
      - { when: "output.score >= 0.7", to: book }
      - { when: "output.confidence < 0.6", to: review }
      - { when: "output.spam", to: exception }
      - { when: "output.score < 0.2", to: end }
  - id: book
    role: b
  - id: review
    role: r
)";

TEST_F(Patterns, RouteFirstMatchWinsAndIsAudited) {
  start(kRoute);
  Transition t = ok("qualify", {{"score", 0.9}, {"confidence", 0.1}});
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"book"});
  const AuditRecord* a = audit(t, "routed");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->detail["when"], "output.score >= 0.7");
  EXPECT_EQ(a->detail["to"], "book");
}

TEST_F(Patterns, RouteOnConfidence) {
  start(kRoute);
  EXPECT_EQ(dispatched(ok("qualify", {{"score", 0.5}, {"confidence", 0.4}})), std::vector<std::string>{"review"});
}

TEST_F(Patterns, RouteToBuiltInTargets) {
  start(kRoute);
  Transition t = ok("qualify", {{"score", 0.5}, {"confidence", 0.9}, {"spam", true}});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "routed_to_exception");

  st = RunState();
  start(kRoute);
  t = ok("qualify", {{"score", 0.1}, {"confidence", 0.9}});
  EXPECT_EQ(t.ending, "completed");
}

TEST_F(Patterns, NoMatchingRouteIsAnExceptionWithoutDispatch) {
  start(kRoute);
  Transition t = ok("qualify", {{"score", 0.5}, {"confidence", 0.9}});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.reason, "no_route");
  EXPECT_TRUE(has_audit(t, "no_route"));
}

TEST_F(Patterns, RouteElseAndInputPaths) {
  start(R"(name: x
steps:
  - id: a
    role: r
    route:
      - { when: "input.tier == \"gold\" and output.ok", to: b }
      - { else: c }
  - { id: b, role: r }
  - { id: c, role: r }
)",
        R"({"tier":"gold"})");
  EXPECT_EQ(dispatched(ok("a", {{"ok", false}})), std::vector<std::string>{"c"});
}

TEST_F(Patterns, RouteBackToAStepRunsANewInstance) {
  start(R"(name: x
max_steps: 4
steps:
  - id: a
    role: r
    route:
      - { when: "output.again", to: a }
      - { else: end }
)");
  Transition t = ok("a", {{"again", true}});
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"a#2"});
  EXPECT_EQ(t.dispatch[0].idempotency_key(), "run-1:a#2:1");
  ok("a#2", {{"again", true}});
  ok("a#3", {{"again", true}});
  t = ok("a#4", {{"again", true}});
  EXPECT_EQ(st.reason, "max_steps");
}

const char* kHandoff = R"(name: triage
steps:
  - id: classify
    role: triage
    handoff: { from_output: specialist, allowed: [billing, general] }
  - { id: billing, role: billing }
  - { id: general, role: general }
  - { id: compliance, role: compliance }
)";

TEST_F(Patterns, HandoffDispatchesTheNamedSpecialist) {
  start(kHandoff);
  Transition t = ok("classify", {{"specialist", "billing"}});
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"billing"});
  EXPECT_TRUE(has_audit(t, "handoff"));
  EXPECT_EQ(ok("billing").ending, "completed");
}

TEST_F(Patterns, HandoffOutsideAllowedIsAnExceptionNeverADispatch) {
  for (json named : {json("compliance"), json("nobody"), json(3), json(nullptr)}) {
    st = RunState();
    start(kHandoff);
    json out = json::object();
    if (!named.is_null()) out["specialist"] = named;
    Transition t = ok("classify", out);
    EXPECT_TRUE(t.dispatch.empty()) << named;
    EXPECT_EQ(st.reason, "handoff_not_allowed") << named;
    EXPECT_TRUE(has_audit(t, "handoff_refused"));
  }
}

std::string parallel_yaml(const std::string& mode, const std::string& c_policy = "") {
  return R"(name: review
steps:
  - id: fan
    parallel: [a, b, )" +
         (c_policy.empty() ? std::string("c") : "{ step: c, on_failure: " + c_policy + " }") + R"(]
    join: { mode: )" + mode + R"( }
    next: publish
  - { id: a, role: ra }
  - { id: b, role: rb }
  - { id: c, role: rc, retry: { max_attempts: 1 } }
  - { id: publish, role: p }
)";
}

TEST_F(Patterns, ParallelAllWaitsForEveryBranchAndMergesByBranchId) {
  Transition t = start(parallel_yaml("all"));
  EXPECT_EQ(dispatched(t), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(ok("a", {{"v", 1}}).dispatch.empty());
  EXPECT_TRUE(ok("c", {{"v", 3}}).dispatch.empty());
  t = ok("b", {{"v", 2}});
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"publish"});
  json ctx = json::parse(t.dispatch[0].context_json());
  EXPECT_EQ(ctx["fan"], (json{{"a", {{"v", 1}}}, {"b", {{"v", 2}}}, {"c", {{"v", 3}}}}));
  EXPECT_TRUE(has_audit(t, "joined"));
}

TEST_F(Patterns, ParallelAllFailsOnABranchFailureUnlessIgnored) {
  start(parallel_yaml("all"));
  ok("a");
  Transition t = result("c", StepResult::FAILED);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "step_failed");

  st = RunState();
  start(parallel_yaml("all", "ignore"));
  ok("a");
  EXPECT_TRUE(result("c", StepResult::FAILED).dispatch.empty());
  t = ok("b");
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"publish"});
  EXPECT_EQ(json::parse(t.dispatch[0].context_json())["fan"].size(), 2u);
}

TEST_F(Patterns, ParallelAnyCancelsTheRestAndIgnoresTheirLateResults) {
  start(parallel_yaml("any"));
  Transition t = ok("b", {{"v", 2}});
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"publish"});
  EXPECT_EQ(st.steps["a"].status, StepStatus::kCancelled);
  EXPECT_EQ(st.steps["c"].status, StepStatus::kCancelled);
  EXPECT_NE(std::find(t.timers_del.begin(), t.timers_del.end(), timer_member("run-1", TimerKind::kTimeout, "a", 1)),
            t.timers_del.end());
  Transition late = ok("a", {{"v", 1}});
  EXPECT_TRUE(late.dispatch.empty());
  EXPECT_TRUE(has_audit(late, "stale_result"));
  EXPECT_EQ(st.context["fan"], (json{{"b", {{"v", 2}}}}));
}

TEST_F(Patterns, QuorumJoinsAtNAndFailsWhenNCannotBeReached) {
  start(parallel_yaml("quorum(2)"));
  EXPECT_TRUE(result("c", StepResult::FAILED).dispatch.empty());  // one may fail
  EXPECT_TRUE(ok("a").dispatch.empty());
  EXPECT_EQ(dispatched(ok("b")), std::vector<std::string>{"publish"});

  st = RunState();
  start(parallel_yaml("quorum(2)"));
  result("c", StepResult::FAILED);
  Transition t = result("a", StepResult::FAILED);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "join_failed");
}

TEST_F(Patterns, ExplicitFailPolicyFailsEvenAQuorum) {
  start(parallel_yaml("quorum(2)", "fail"));
  Transition t = result("c", StepResult::FAILED);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "step_failed");
}

const char* kLoop = R"(name: proposal
steps:
  - id: propose
    loop: { maker: draft, checker: check, until: "output.approved", max_rounds: 3, on_exhausted: escalate }
    next: send
  - { id: draft, role: writer }
  - { id: check, role: reviewer }
  - { id: send, role: mailer }
  - { id: escalate, role: human }
)";

TEST_F(Patterns, LoopFeedsTheCheckersFeedbackToTheNextRound) {
  Transition t = start(kLoop);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"draft"});
  EXPECT_EQ(dispatched(ok("draft", {{"text", "v1"}})), std::vector<std::string>{"check"});
  t = ok("check", {{"approved", false}, {"feedback", "add pricing"}});
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"draft#2"});
  EXPECT_EQ(json::parse(t.dispatch[0].context_json())["check"]["feedback"], "add pricing");
  EXPECT_EQ(dispatched(ok("draft#2", {{"text", "v2"}})), std::vector<std::string>{"check#2"});
  t = ok("check#2", {{"approved", true}});
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"send"});
  json ctx = json::parse(t.dispatch[0].context_json());
  EXPECT_EQ(ctx["propose"]["rounds"], 2);
  EXPECT_EQ(ctx["propose"]["maker"]["text"], "v2");
  EXPECT_TRUE(has_audit(t, "loop_done"));
}

TEST_F(Patterns, LoopExhaustedGoesToOnExhausted) {
  start(kLoop);
  for (const char* suffix : {"", "#2", "#3"}) {
    ok(std::string("draft") + suffix);
    Transition t = ok(std::string("check") + suffix, {{"approved", false}});
    if (std::string(suffix) == "#3") {
      EXPECT_EQ(dispatched(t), std::vector<std::string>{"escalate"});
      EXPECT_TRUE(has_audit(t, "loop_exhausted"));
    }
  }
  EXPECT_EQ(st.context["propose"]["rounds"], 3);
}

const char* kPlanner = R"(name: research
steps:
  - id: plan
    role: planner
    planner: { allowed: [research, write], max_steps: 3, max_rounds: 4 }
    next: publish
  - { id: research, role: researcher }
  - { id: write, role: writer }
  - { id: other, role: x }
  - { id: publish, role: p }
)";

TEST_F(Patterns, PlannerRunsItsPlanAndSeesTheResults) {
  start(kPlanner, R"({"product":"kite"})");
  json plan = {{"done", false},
               {"steps",
                {{{"id", "market"}, {"step", "research"}, {"input", {{"topic", "market"}}}},
                 {{"id", "rivals"}, {"step", "research"}, {"input", {{"topic", "rivals"}}}}}}};
  Transition t = ok("plan", plan);
  ASSERT_EQ(dispatched(t), (std::vector<std::string>{"research#market", "research#rivals"}));
  EXPECT_EQ(json::parse(t.dispatch[0].input_json())["topic"], "market");
  const AuditRecord* a = audit(t, "plan");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->detail["plan"], plan);
  EXPECT_TRUE(ok("research#market", {{"summary", "big"}}).dispatch.empty());
  t = ok("research#rivals", {{"summary", "few"}});
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"plan#2"});
  json ctx = json::parse(t.dispatch[0].context_json());
  EXPECT_EQ(ctx["market"]["summary"], "big");
  EXPECT_EQ(ctx["rivals"]["summary"], "few");
  EXPECT_EQ(json::parse(t.dispatch[0].input_json())["product"], "kite");
  t = ok("plan#2", {{"done", false}, {"steps", {{{"role", "writer"}}}}});  // by role; default id
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"write#write-3"});
  t = ok("write#write-3", {{"text", "report"}});
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"plan#3"});
  t = ok("plan#3", {{"done", true}, {"result", {{"summary", "report"}}}});
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"publish"});
}

TEST_F(Patterns, InvalidPlansAreExceptionsNotDispatches) {
  for (json steps : {json::array({{{"step", "other"}}}), json::array({{{"step", "research"}, {"id", "Bad Id"}}}),
                     json::array({{{"step", "research"}, {"id", "publish"}}}), json::array(), json("x"),
                     json::array({{{"role", "nobody"}}}), json::array({{{"step", "research"}, {"input", 3}}})}) {
    st = RunState();
    start(kPlanner);
    Transition t = ok("plan", {{"done", false}, {"steps", steps}});
    EXPECT_TRUE(t.dispatch.empty()) << steps;
    EXPECT_EQ(st.reason, "invalid_plan") << steps;
  }
}

TEST_F(Patterns, PlannerBoundedByMaxSteps) {
  start(kPlanner);
  json four = json::array();
  for (int i = 0; i < 4; ++i) four.push_back({{"step", "research"}});
  Transition t = ok("plan", {{"steps", four}});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.reason, "planner_exhausted");
}

TEST_F(Patterns, WindowHoldsARunUntilItOpens) {
  // 1000 ms after the epoch is a Thursday 00:00 UTC: outside 09:00-17:00.
  Transition t = start(R"(name: batch
window: { days: [mon, tue, wed, thu, fri], from: "09:00", to: "17:00", timezone: UTC }
steps:
  - { id: a, role: r }
)");
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.status, RunStatus::kWaiting);
  ASSERT_EQ(t.timers_add.size(), 1u);
  EXPECT_EQ(t.timers_add[0].first, timer_member("run-1", TimerKind::kWindow, "-", 0));
  EXPECT_EQ(t.timers_add[0].second, 9 * 3600 * 1000);
  Transition opened = engine.on_timer(*wf, st, Timer{TimerKind::kWindow, "-", 0, 9 * 3600 * 1000}, 9 * 3600 * 1000);
  EXPECT_EQ(dispatched(opened), std::vector<std::string>{"a"});
  EXPECT_EQ(st.status, RunStatus::kRunning);
  // A second firing changes nothing.
  EXPECT_TRUE(engine.on_timer(*wf, st, Timer{TimerKind::kWindow, "-", 0, 0}, 9 * 3600 * 1000).dispatch.empty());
}

TEST_F(Patterns, InstanceStateRoundTrips) {
  StepState s;
  s.status = StepStatus::kCancelled;
  s.attempt = 2;
  s.parent = "fan";
  s.key = "market";
  s.round = 3;
  s.planned = 4;
  s.input = {{"topic", "x"}};
  StepState back = StepState::from_json(s.to_json());
  EXPECT_EQ(back.status, StepStatus::kCancelled);
  EXPECT_EQ(back.parent, "fan");
  EXPECT_EQ(back.key, "market");
  EXPECT_EQ(back.round, 3u);
  EXPECT_EQ(back.planned, 4u);
  EXPECT_EQ(back.input, s.input);
  EXPECT_EQ(step_of("draft#2"), "draft");
  EXPECT_EQ(step_of("research#market"), "research");
  EXPECT_EQ(step_of("plain"), "plain");
}


TEST_F(Patterns, NeedsReviewOfAnIgnoredBranchOnlyCountsAsNotSucceeded) {
  start(parallel_yaml("quorum(2)"));
  Transition t = result("c", StepResult::NEEDS_REVIEW);
  EXPECT_TRUE(t.ending.empty());
  EXPECT_TRUE(has_audit(t, "branch_failed"));
  ok("a");
  EXPECT_EQ(dispatched(ok("b")), std::vector<std::string>{"publish"});
  // Outside a parallel step it is still an exception with reason needs_review.
  st = RunState();
  start(kRoute);
  t = result("qualify", StepResult::NEEDS_REVIEW);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "needs_review");
}


TEST_F(Patterns, EarlierRoundsOutputsAreKeptInTheHistory) {
  start(kLoop);
  ok("draft", {{"text", "v1"}});
  ok("check", {{"approved", false}});
  Transition t = ok("draft#2", {{"text", "v2"}});
  EXPECT_EQ(st.history["draft"]["text"], "v1");
  EXPECT_EQ(st.context["draft"]["text"], "v2");
  bool written = false;
  for (const auto& [k, v] : t.ctx_fields) written |= k == "hist:draft" && json::parse(v)["text"] == "v1";
  EXPECT_TRUE(written);
  ok("check#2", {{"approved", true}});
  EXPECT_EQ(st.history["check"]["approved"], false);
}

TEST_F(Patterns, TheRunRecordsWhereItEnded) {
  start(parallel_yaml("all"));
  ok("a");
  result("c", StepResult::FAILED);
  EXPECT_EQ(st.ended_at, "c");
  st = RunState();
  start(kRoute);
  ok("qualify", {{"score", 0.5}, {"confidence", 0.9}});  // no route matches
  EXPECT_EQ(st.ended_at, "qualify");
  st = RunState();
  start(parallel_yaml("quorum(2)"));
  result("c", StepResult::FAILED);
  result("a", StepResult::FAILED);
  EXPECT_EQ(st.reason, "join_failed");
  EXPECT_EQ(st.ended_at, "fan");
  st = RunState();
  start(kLoop);
  for (const char* suffix : {"", "#2", "#3"}) {
    ok(std::string("draft") + suffix);
    ok(std::string("check") + suffix, {{"approved", false}});
  }
  ok("escalate");
  EXPECT_EQ(st.status, RunStatus::kCompleted);
  EXPECT_EQ(st.ended_at, "escalate");
}


TEST_F(Patterns, ConditionsReadTheRecordAndTheRun) {
  const std::string yaml = R"(name: x
record: "acct:{{input.id}}"
steps:
  - id: a
    role: r
    route:
      - { when: "record.tier == \"gold\" and run.steps.a.n > 1", to: b }
      - { else: end }
  - { id: b, role: r }
)";
  start(yaml);
  EXPECT_TRUE(Engine::reads_record(*wf));
  json record = {{"tier", "gold"}};
  EXPECT_EQ(dispatched(result("a", StepResult::OK, {{"n", 2}}, 1, &record)), std::vector<std::string>{"b"});
  // Without the record, record.tier is null: the else rule.
  st = RunState();
  start(yaml);
  EXPECT_EQ(result("a", StepResult::OK, {{"n", 2}}).ending, "completed");
  EXPECT_FALSE(Engine::reads_record(*load(kRoute)));
}

baton::v1::OperatorAction action(baton::v1::OperatorAction::Kind kind, const std::string& step = "",
                                 const json& payload = json()) {
  baton::v1::OperatorAction a;
  a.set_kind(kind);
  a.set_step(step);
  a.set_actor("ops@example.com");
  a.set_comment("checked by hand");
  if (kind == baton::v1::OperatorAction::RESOLVE) a.set_output_json(payload.dump());
  if (kind == baton::v1::OperatorAction::RETRY && !payload.is_null()) a.set_input_json(payload.dump());
  return a;
}

TEST_F(Patterns, OperatorResolvesARefusedHandoffAndTheRunGoesOn) {
  start(kHandoff);
  ok("classify", {{"specialist", "sales"}});
  ASSERT_EQ(st.reason, "handoff_not_allowed");
  Transition t = engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RESOLVE, "", {{"specialist", "billing"}}), now);
  EXPECT_EQ(t.ending, "resumed");
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"billing"});
  EXPECT_EQ(st.status, RunStatus::kRunning);
  EXPECT_EQ(st.steps["classify#2"].status, StepStatus::kSucceeded);
  const AuditRecord* a = audit(t, "operator_action");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->actor, "ops@example.com");
  EXPECT_EQ(a->detail["action"], "resolve");
  EXPECT_EQ(a->detail["step"], "classify");
  EXPECT_EQ(ok("billing").ending, "completed");
}

TEST_F(Patterns, OperatorRetriesFromTheTopLevelStepWithANewInput) {
  start(parallel_yaml("all"));
  ok("a");
  result("c", StepResult::FAILED);
  ASSERT_EQ(st.ended_at, "c");
  Transition t = engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RETRY, "", {{"id", "T-2"}}), now);
  // c is a branch: the retry runs its parallel step again, every branch anew.
  EXPECT_EQ(dispatched(t), (std::vector<std::string>{"a#2", "b#2", "c#2"}));
  EXPECT_EQ(json::parse(t.dispatch[0].input_json())["id"], "T-2");
  EXPECT_EQ(audit(t, "operator_action")->detail["input"]["old"]["id"], "T-1");
}

TEST_F(Patterns, OperatorCancelsAndRefusals) {
  start(kRoute);
  ok("qualify", {{"score", 0.5}, {"confidence", 0.9}});  // no_route
  // Refused: a sub-step, an unknown step, a contract breach, a run not in the queue.
  EXPECT_TRUE(has_audit(engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RETRY, "nope"), now),
                        "operator_refused"));
  EXPECT_EQ(st.status, RunStatus::kException);
  Transition t = engine.on_operator(*wf, st, action(baton::v1::OperatorAction::CANCEL), now);
  EXPECT_EQ(t.ending, "cancelled");
  EXPECT_EQ(st.status, RunStatus::kCancelled);
  t = engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RETRY), now);
  EXPECT_TRUE(has_audit(t, "operator_refused"));
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_TRUE(t.ending.empty());

  st = RunState();
  start(kLoop);
  ok("draft");
  result("check", StepResult::FAILED);
  EXPECT_TRUE(has_audit(engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RESOLVE, "check", json::object()), now),
                        "operator_refused"));
  // Default step: the loop that holds the failed checker.
  t = engine.on_operator(*wf, st, action(baton::v1::OperatorAction::RESOLVE, "", {{"rounds", 1}}), now);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"send"});
}

}  // namespace
}  // namespace baton::coordinator
