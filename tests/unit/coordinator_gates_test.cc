// Human gates in the pure engine: approval steps, approve_when on a task's
// result, SLA escalation and timeout, sampled review with corrections, the
// gates index and notifications, and the workflow format for them.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/workflow/parser.h"
#include "coordinator/engine.h"

namespace baton::coordinator {
namespace {

using baton::v1::StepResult;
using nlohmann::json;

bool has_audit(const Transition& t, const std::string& kind) {
  return std::any_of(t.audit.begin(), t.audit.end(), [&](const AuditRecord& a) { return a.kind == kind; });
}

const AuditRecord* audit(const Transition& t, const std::string& kind) {
  for (const auto& a : t.audit)
    if (a.kind == kind) return &a;
  return nullptr;
}

std::vector<std::string> dispatched(const Transition& t) {
  std::vector<std::string> out;
  for (const auto& task : t.dispatch) out.push_back(task.step_id());
  return out;
}

bool has_timer(const std::vector<std::pair<std::string, int64_t>>& v, const std::string& member) {
  return std::any_of(v.begin(), v.end(), [&](const auto& p) { return p.first == member; });
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

class Gates : public ::testing::Test {
 protected:
  Engine engine{EngineOptions{"test", /*notify=*/true}};
  workflow::WorkflowPtr wf;
  RunState st;
  int64_t now = 1000;

  Transition start(const std::string& yaml, const std::string& input = R"({"id":"L-1"})",
                   const std::string& run_id = "run-1") {
    auto parsed = workflow::parse_workflow(yaml, "wf.yaml");
    EXPECT_TRUE(static_cast<bool>(parsed)) << parsed.status().message();
    wf = *parsed;
    st = RunState();
    baton::v1::RunStarted s;
    s.set_workflow(wf->name);
    s.set_input_json(input);
    return engine.start(wf.get(), run_id, 0, s, now, st);
  }
  StepResult result(const std::string& step, const json& output, const json& writes = json(),
                    uint32_t attempt = 1) {
    StepResult r;
    r.set_step_id(step);
    r.set_attempt(attempt);
    r.set_status(StepResult::OK);
    r.set_output_json(output.dump());
    if (!writes.is_null()) r.set_writes_json(writes.dump());
    r.set_record_version_read(3);
    r.set_worker_id("w");
    return r;
  }
  Transition ok(const std::string& step, const json& output, const json& writes = json(),
                const RecordWriteOutcome& write = {}) {
    now += 10;
    return engine.on_result(*wf, st, result(step, output, writes), write, now);
  }
  baton::v1::GateDecision decision(const std::string& step, bool approve, const json& corrected = json()) {
    baton::v1::GateDecision d;
    d.set_step(step);
    d.set_approve(approve);
    d.set_actor("maria");
    d.set_comment("looked at it");
    if (!corrected.is_null()) d.set_output_json(corrected.dump());
    return d;
  }
  Transition decide(const std::string& step, bool approve, const json& corrected = json(),
                    const RecordWriteOutcome& write = {}) {
    now += 10;
    return engine.on_decision(*wf, st, decision(step, approve, corrected), now, write);
  }
  Transition fire(TimerKind kind, const std::string& step, uint32_t n) {
    now += 10;
    return engine.on_timer(*wf, st, Timer{kind, step, n, now}, now);
  }
};

const char* kGateStep = R"(name: spend
steps:
  - id: draft
    role: writer
    next: sign_off
  - id: sign_off
    approval:
      group: finance
      sla: 4h
      on_timeout: { escalate: cfo, sla: 1h }
      on_reject: revise
    next: send
  - id: send
    role: mailer
  - id: revise
    role: writer
)";

TEST_F(Gates, ApprovalStepOpensAGateWithSlaTimersIndexAndNotification) {
  start(kGateStep);
  Transition t = ok("draft", {{"text", "hi"}});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.status, RunStatus::kRunning);
  const StepState& ss = st.steps["sign_off"];
  EXPECT_EQ(ss.status, StepStatus::kAwaitingApproval);
  ASSERT_TRUE(ss.gate.has_value());
  EXPECT_EQ(ss.gate->group, "finance");
  EXPECT_EQ(ss.gate->kind, "approval");
  EXPECT_EQ(ss.gate->due_ms, now + 4 * 3600 * 1000);
  ASSERT_EQ(t.gates_add.size(), 1u);
  EXPECT_EQ(t.gates_add[0].first, "run-1|sign_off");
  EXPECT_TRUE(has_timer(t.timers_add, timer_member("run-1", TimerKind::kSla, "sign_off", 0)));
  EXPECT_TRUE(has_timer(t.timers_add, timer_member("run-1", TimerKind::kSlaNear, "sign_off", 0)));
  ASSERT_EQ(t.notify.size(), 1u);
  json n = json::parse(t.notify[0]);
  EXPECT_EQ(n["event"], "gate_opened");
  EXPECT_EQ(n["group"], "finance");
  EXPECT_EQ(n["step"], "sign_off");
  EXPECT_TRUE(has_audit(t, "gate_opened"));
  // The gate survives a reload from Redis.
  StepState back = StepState::from_json(ss.to_json());
  EXPECT_EQ(back.status, StepStatus::kAwaitingApproval);
  EXPECT_EQ(back.gate->group, "finance");
}

TEST_F(Gates, ApproveContinuesWithTheDecisionAsOutput) {
  start(kGateStep);
  ok("draft", {{"text", "hi"}});
  Transition t = decide("sign_off", true);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"send"});
  EXPECT_EQ(st.context["sign_off"]["approved"], true);
  EXPECT_EQ(st.context["sign_off"]["by"], "maria");
  EXPECT_EQ(t.gates_del, std::vector<std::string>{"run-1|sign_off"});
  EXPECT_TRUE(contains(t.timers_del, timer_member("run-1", TimerKind::kSla, "sign_off", 0)));
  const AuditRecord* a = audit(t, "gate_decided");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->actor, "maria");
  EXPECT_EQ(a->detail["decision"], "approved");
  EXPECT_EQ(a->detail["comment"], "looked at it");
  EXPECT_EQ(a->detail["overturned"], false);
  // A second decision on the closed gate is refused and changes nothing.
  Transition again = decide("sign_off", false);
  EXPECT_TRUE(has_audit(again, "decision_refused"));
  EXPECT_TRUE(again.dispatch.empty());
  EXPECT_EQ(st.steps["sign_off"].status, StepStatus::kSucceeded);
}

TEST_F(Gates, RejectFollowsOnReject) {
  start(kGateStep);
  ok("draft", {{"text", "hi"}});
  Transition t = decide("sign_off", false);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"revise"});
  EXPECT_EQ(st.steps["sign_off"].status, StepStatus::kFailed);
  EXPECT_EQ(st.context["sign_off"]["approved"], false);
  EXPECT_EQ(audit(t, "gate_decided")->detail["decision"], "rejected");
}

TEST_F(Gates, RejectWithoutOnRejectIsAnException) {
  start(R"(name: g
steps:
  - id: ok
    approval: { group: ops }
)");
  ASSERT_EQ(st.steps["ok"].status, StepStatus::kAwaitingApproval);
  Transition t = decide("ok", false);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "approval_rejected");
  EXPECT_NE(st.reason_detail.find("rejected by maria"), std::string::npos);
}

TEST_F(Gates, SlaEscalatesOnceThenTimesOut) {
  start(kGateStep);
  ok("draft", {{"text", "hi"}});
  Transition near = fire(TimerKind::kSlaNear, "sign_off", 0);
  ASSERT_EQ(near.notify.size(), 1u);
  EXPECT_EQ(json::parse(near.notify[0])["event"], "gate_sla_near");

  Transition esc = fire(TimerKind::kSla, "sign_off", 0);
  EXPECT_TRUE(has_audit(esc, "gate_escalated"));
  EXPECT_EQ(st.steps["sign_off"].gate->group, "cfo");
  EXPECT_EQ(st.steps["sign_off"].gate->escalations, 1u);
  EXPECT_EQ(st.steps["sign_off"].gate->due_ms, now + 3600 * 1000);
  EXPECT_TRUE(has_timer(esc.timers_add, timer_member("run-1", TimerKind::kSla, "sign_off", 1)));
  EXPECT_EQ(json::parse(esc.notify[0])["group"], "cfo");
  EXPECT_EQ(st.status, RunStatus::kRunning);

  // The first SLA's timer firing again (a replay) is stale.
  Transition stale = fire(TimerKind::kSla, "sign_off", 0);
  EXPECT_FALSE(has_audit(stale, "gate_timeout"));
  EXPECT_EQ(st.status, RunStatus::kRunning);

  Transition out = fire(TimerKind::kSla, "sign_off", 1);
  EXPECT_EQ(out.ending, "exception");
  EXPECT_EQ(st.reason, "approval_timeout");
  EXPECT_EQ(out.gates_del, std::vector<std::string>{"run-1|sign_off"});
  json n = json::parse(out.notify.back());
  EXPECT_EQ(n["event"], "exception");
  EXPECT_EQ(n["reason"], "approval_timeout");
}

TEST_F(Gates, SlaWithoutEscalationTimesOutAtOnce) {
  start(R"(name: g
steps:
  - id: ok
    approval: { group: ops, sla: 30m }
)");
  Transition t = fire(TimerKind::kSla, "ok", 0);
  EXPECT_EQ(st.reason, "approval_timeout");
  // A decision after the timeout is refused.
  EXPECT_TRUE(has_audit(decide("ok", true), "decision_refused"));
}

const char* kApproveWhen = R"(name: leads
record: "lead:{{input.id}}"
steps:
  - id: qualify
    role: qualifier
    writes: [fit, owner]
    output: { fit: string, owner: "string?" }
    approve_when: output.fit == "partial"
    approval: { group: sales, on_reject: end }
    next: book
  - id: book
    role: booker
)";

TEST_F(Gates, ApproveWhenHoldsOnlyMatchingResultsAndTheirWrites) {
  start(kApproveWhen);
  // A full fit is not held: record_write_for asks for the write now.
  StepResult full = result("qualify", {{"fit", "full"}}, {{"fit", "full"}});
  EXPECT_TRUE(engine.record_write_for(*wf, st, full).has_value());
  EXPECT_EQ(Engine::gate_for_result(*wf->find_step("qualify"), st, {{"fit", "full"}}), nullptr);

  StepResult partial = result("qualify", {{"fit", "partial"}, {"owner", "sam"}}, {{"fit", "partial"}, {"owner", "sam"}});
  EXPECT_FALSE(engine.record_write_for(*wf, st, partial).has_value());
  now += 10;
  Transition t = engine.on_result(*wf, st, partial, {}, now);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_FALSE(has_audit(t, "record_written"));
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kAwaitingApproval);
  EXPECT_EQ(st.steps["qualify"].gate->output["fit"], "partial");
  EXPECT_EQ(st.context.count("qualify"), 0u);  // not in the context until approved

  // Approving releases the held write at the version the agent read.
  auto req = engine.record_write_for_decision(*wf, st, decision("qualify", true));
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->version_read, 3);
  EXPECT_EQ(req->idempotency_key, "run-1:qualify:1");
  ASSERT_EQ(req->fields.size(), 2u);
  RecordWriteOutcome applied;
  applied.kind = RecordWriteOutcome::Kind::kApplied;
  applied.version = 4;
  applied.changes = {{"fit", {"null", "\"partial\""}}, {"owner", {"null", "\"sam\""}}};
  Transition a = decide("qualify", true, json(), applied);
  EXPECT_EQ(dispatched(a), std::vector<std::string>{"book"});
  EXPECT_EQ(audit(a, "record_written")->actor, "maria");
  EXPECT_EQ(st.context["qualify"]["owner"], "sam");
}

TEST_F(Gates, ApprovedResultThatCollidesIsRetried) {
  start(kApproveWhen);
  ok("qualify", {{"fit", "partial"}}, {{"fit", "partial"}});
  RecordWriteOutcome collision;
  collision.kind = RecordWriteOutcome::Kind::kCollision;
  collision.version = 7;
  Transition t = decide("qualify", true, json(), collision);
  EXPECT_TRUE(has_audit(t, "collision"));
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kRetryWait);
  Transition retry = fire(TimerKind::kRetry, "qualify", 1);
  EXPECT_EQ(dispatched(retry), std::vector<std::string>{"qualify"});
  EXPECT_EQ(retry.dispatch[0].attempt(), 2u);
}

TEST_F(Gates, ApproverMayCorrectAHeldResultAndTheCorrectionIsWritten) {
  start(kApproveWhen);
  ok("qualify", {{"fit", "partial"}, {"owner", "sam"}}, {{"fit", "partial"}, {"owner", "sam"}});
  json corrected = {{"fit", "partial"}, {"owner", "kim"}};
  auto req = engine.record_write_for_decision(*wf, st, decision("qualify", true, corrected));
  ASSERT_TRUE(req.has_value());
  auto owner = std::find_if(req->fields.begin(), req->fields.end(), [](const auto& p) { return p.first == "owner"; });
  ASSERT_NE(owner, req->fields.end());
  EXPECT_EQ(owner->second, "\"kim\"");
  // A correction that breaks the contract is refused and writes nothing.
  EXPECT_FALSE(engine.record_write_for_decision(*wf, st, decision("qualify", true, {{"owner", 5}})).has_value());
  EXPECT_TRUE(has_audit(decide("qualify", true, {{"owner", 5}}), "decision_refused"));
  Transition t = decide("qualify", true, corrected);
  const AuditRecord* a = audit(t, "gate_decided");
  EXPECT_EQ(a->detail["decision"], "corrected");
  EXPECT_EQ(a->detail["overturned"], true);
  EXPECT_EQ(a->detail["original"]["owner"], "sam");
  EXPECT_EQ(st.context["qualify"]["owner"], "kim");
}

TEST_F(Gates, RejectedHeldResultFollowsOnRejectAndWritesNothing) {
  start(kApproveWhen);
  ok("qualify", {{"fit", "partial"}}, {{"fit", "partial"}});
  EXPECT_FALSE(engine.record_write_for_decision(*wf, st, decision("qualify", false)).has_value());
  Transition t = decide("qualify", false);
  EXPECT_EQ(t.ending, "completed");  // on_reject: end
  EXPECT_TRUE(audit(t, "gate_decided")->detail["overturned"].get<bool>());
}

TEST_F(Gates, ReviewSampleIsDeterministicAndNearTheShare) {
  int hits = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string id = "run-" + std::to_string(i);
    bool s = Engine::sampled(id, "triage", 0.05);
    EXPECT_EQ(s, Engine::sampled(id, "triage", 0.05));
    hits += s ? 1 : 0;
  }
  EXPECT_GT(hits, 800);  // 5% of 20000 = 1000
  EXPECT_LT(hits, 1200);
  EXPECT_FALSE(Engine::sampled("x", "triage", 0));
  EXPECT_TRUE(Engine::sampled("x", "triage", 1));
}

TEST_F(Gates, SampledReviewHoldsTheResultForReviewers) {
  const char* yaml = R"(name: triage
steps:
  - id: triage
    role: t
    output: { queue: string }
    review_sample: 0.5
    review: { group: qa, sla: 8h }
    next: route
  - id: route
    role: r
)";
  // Find one sampled and one unsampled run id.
  std::string in, out;
  for (int i = 0; i < 100 && (in.empty() || out.empty()); ++i) {
    std::string id = "r" + std::to_string(i);
    (Engine::sampled(id, "triage", 0.5) ? in : out) = id;
  }
  ASSERT_FALSE(in.empty());
  ASSERT_FALSE(out.empty());
  start(yaml, "{}", out);
  EXPECT_EQ(dispatched(ok("triage", {{"queue", "billing"}})), std::vector<std::string>{"route"});

  start(yaml, "{}", in);
  Transition t = ok("triage", {{"queue", "billing"}});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.steps["triage"].gate->kind, "review");
  EXPECT_EQ(st.steps["triage"].gate->group, "qa");
  Transition c = decide("triage", true, {{"queue", "general"}});
  EXPECT_EQ(dispatched(c), std::vector<std::string>{"route"});
  EXPECT_EQ(json::parse(c.dispatch[0].context_json())["triage"]["queue"], "general");
  EXPECT_EQ(audit(c, "gate_decided")->detail["overturned"], true);

  start(yaml, "{}", in);
  ok("triage", {{"queue", "billing"}});
  Transition r = decide("triage", false);
  EXPECT_EQ(st.reason, "review_rejected");
}

TEST_F(Gates, EndingTheRunClosesOtherOpenGates) {
  start(R"(name: par
steps:
  - id: both
    parallel: [a, b]
  - id: a
    role: x
    approval: { group: ops }
  - id: b
    role: y
)");
  ok("a", json::object());
  ASSERT_EQ(st.steps["a"].status, StepStatus::kAwaitingApproval);
  now += 10;
  StepResult r = result("b", json::object());
  r.set_status(StepResult::FAILED);
  Transition t = engine.on_result(*wf, st, r, {}, now);
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(t.gates_del, std::vector<std::string>{"run-1|a"});
  EXPECT_EQ(st.steps["a"].status, StepStatus::kCancelled);
}

TEST_F(Gates, NoNotificationsWithoutANotifier) {
  Engine quiet{EngineOptions{"test", false}};
  auto parsed = workflow::parse_workflow(kGateStep, "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(parsed));
  baton::v1::RunStarted s;
  s.set_input_json("{}");
  RunState rs;
  quiet.start(parsed->get(), "run-9", 0, s, now, rs);
  Transition t = quiet.on_result(**parsed, rs, result("draft", json::object()), {}, now);
  EXPECT_TRUE(t.notify.empty());
  EXPECT_EQ(t.gates_add.size(), 1u);
}

TEST_F(Gates, OperatorReroutesToAnotherStep) {
  start(R"(name: g
steps:
  - id: ok
    approval: { group: ops, sla: 1m }
    next: a
  - id: a
    role: x
  - id: b
    role: y
)");
  fire(TimerKind::kSla, "ok", 0);
  ASSERT_EQ(st.reason, "approval_timeout");
  baton::v1::OperatorAction op;
  op.set_kind(baton::v1::OperatorAction::REROUTE);
  op.set_actor("ops");
  EXPECT_TRUE(has_audit(engine.on_operator(*wf, st, op, now), "operator_refused"));  // reroute needs a step
  op.set_step("b");
  Transition t = engine.on_operator(*wf, st, op, now);
  EXPECT_EQ(t.ending, "resumed");
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"b"});
  EXPECT_EQ(audit(t, "operator_action")->detail["action"], "reroute");
}

// ---- workflow format ----------------------------------------------------------

std::string parse_error(const std::string& yaml) {
  auto r = workflow::parse_workflow(yaml, "wf.yaml");
  return r ? std::string() : r.status().message();
}

TEST(GateFormat, ApprovalStepModel) {
  auto r = workflow::parse_workflow(kGateStep, "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(r)) << r.status().message();
  const auto* s = (*r)->find_step("sign_off");
  EXPECT_EQ(s->kind, workflow::StepKind::kApproval);
  EXPECT_EQ(s->approval->group, "finance");
  EXPECT_EQ(s->approval->sla_ms, 4 * 3600 * 1000);
  EXPECT_EQ(s->approval->escalate_to, "cfo");
  EXPECT_EQ(s->approval->escalate_sla_ms, 3600 * 1000);
  EXPECT_EQ(s->approval->on_reject, "revise");
  EXPECT_EQ((*r)->to_json()["steps"][1]["approval"]["group"], "finance");
}

TEST(GateFormat, Refusals) {
  auto head = std::string("name: g\nrecord: \"r:{{input.id}}\"\nsteps:\n");
  EXPECT_EQ(parse_error(head + "  - id: a\n    approval: { sla: 1h }\n"),
            "wf.yaml:5:15: `approval` is missing required key `group` (who decides)");
  EXPECT_EQ(parse_error(head + "  - id: a\n    role: x\n    approve_when: output.x\n"),
            "wf.yaml:6:5: `approve_when` needs `role` and `approval: {group: ...}` in the same step (it holds the "
            "task's result for that group)");
  EXPECT_NE(parse_error(head + "  - id: a\n    role: x\n    approval: {group: g}\n    approve_when: record.x > 1\n")
                .find("may read input, output and run, not record"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    role: x\n    approval: {group: g}\n    approve_when: \"output.x ==\"\n")
                .find("invalid condition in `approve_when`"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    approval: {group: g, on_timeout: {escalate: h}}\n")
                .find("needs `sla`"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    approval: {group: g, on_reject: nowhere}\n")
                .find("`approval.on_reject` names unknown step `nowhere`"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    approval: {group: g}\n    writes: [x]\n")
                .find("is not allowed in an approval step"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    role: x\n    review_sample: 1.5\n").find("share from 0 to 1"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    role: x\n    review: {group: qa}\n").find("needs `review_sample`"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: a\n    approval: {group: g, on_timeout: later}\n").find("on_timeout"),
            std::string::npos);
  EXPECT_NE(parse_error(head + "  - id: p\n    parallel: [a, b]\n  - id: a\n    approval: {group: g}\n  - id: b\n    role: y\n")
                .find("must be a plain task step"),
            std::string::npos);
}

// ---- record schema and redaction -------------------------------------------

const char* kSchema = R"(name: leads
record:
  key: "lead:{{input.id}}"
  fields:
    email: { type: string, sensitive: true, writers: [respond] }
    score: number
steps:
  - id: respond
    role: r
    writes: [email]
    next: qualify
  - id: qualify
    role: q
    writes: [score]
)";

TEST(RecordSchema, ModelAndLoadTimeRefusals) {
  auto r = workflow::parse_workflow(kSchema, "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(r)) << r.status().message();
  EXPECT_EQ((*r)->record_template, "lead:{{input.id}}");
  EXPECT_EQ((*r)->sensitive_fields(), std::vector<std::string>{"email"});
  EXPECT_EQ((*r)->find_record_field("score")->type, "number");
  std::string yaml = kSchema;
  // A write outside the schema, and a writer the schema does not allow: refused at load.
  std::string outside = yaml;
  outside.replace(outside.find("writes: [score]"), 15, "writes: [phone]");
  EXPECT_NE(parse_error(outside).find("writes `phone`, which is not a field of the record schema"), std::string::npos)
      << parse_error(outside);
  std::string writer = yaml;
  writer.replace(writer.find("writes: [score]"), 15, "writes: [email]");
  EXPECT_NE(parse_error(writer).find("lets only respond write it"), std::string::npos) << parse_error(writer);
  std::string unknown = yaml;
  unknown.replace(unknown.find("writers: [respond]"), 18, "writers: [nobody]");
  EXPECT_NE(parse_error(unknown).find("names unknown step `nobody`"), std::string::npos) << parse_error(unknown);
  EXPECT_NE(parse_error("name: x\nrecord: { fields: {a: string} }\nsteps: [{id: a, role: r}]\n").find("missing required key `key`"),
            std::string::npos);
  EXPECT_NE(parse_error("name: x\nrecord: { key: k, fields: {a: text} }\nsteps: [{id: a, role: r}]\n").find("type must be one of"),
            std::string::npos);
}

TEST(RecordSchema, RunTimeTypesAndRedaction) {
  auto r = workflow::parse_workflow(kSchema, "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(r));
  const auto& wf = **r;
  EXPECT_EQ(Engine::check_writes(wf, {{"score", 0.7}}), "");
  EXPECT_EQ(Engine::check_writes(wf, {{"score", "high"}}), "record field 'score' should be number, got string");

  Engine engine{EngineOptions{"t"}};
  baton::v1::RunStarted s;
  s.set_input_json(R"({"id":"L-1","email":"a@b.example"})");
  RunState st;
  engine.start(&wf, "run-1", 0, s, 1000, st);
  StepResult bad;
  bad.set_step_id("respond");
  bad.set_attempt(1);
  bad.set_status(StepResult::OK);
  bad.set_output_json("{}");
  bad.set_writes_json(R"({"email": 42})");
  // A write of the wrong type is never sent to Redis and fails the attempt as a contract violation.
  EXPECT_FALSE(engine.record_write_for(wf, st, bad).has_value());
  Transition t = engine.on_result(wf, st, bad, {}, 1010);
  EXPECT_EQ(st.steps["respond"].error_code, "contract_violation");

  // Redaction of audit details, at any depth, and of a record write's old/new.
  Transition a;
  a.audit.push_back({"record_written", "w", 1, {{"fields", {{"email", {{"old", "x@y"}, {"new", "a@b.example"}}}, {"score", {{"old", 1}, {"new", 2}}}}}}});
  a.audit.push_back({"operator_action", "ops", 1, {{"input", {{"new", {{"email", "a@b.example"}, {"id", "L-1"}}}}}}});
  Engine::redact(wf, a);
  std::string dumped = a.audit[0].detail.dump() + a.audit[1].detail.dump();
  EXPECT_EQ(dumped.find("a@b.example"), std::string::npos) << dumped;
  EXPECT_EQ(a.audit[0].detail["fields"]["email"]["new"], kRedacted);
  EXPECT_EQ(a.audit[0].detail["fields"]["score"]["new"], 2);
  EXPECT_EQ(a.audit[1].detail["input"]["new"]["id"], "L-1");
  json view = {{"input", {{"email", "a@b.example"}}}, {"steps", json::array({{{"output", {{"email", "a@b.example"}}}}})}};
  redact_sensitive(view, wf.sensitive_fields());
  EXPECT_EQ(view.dump().find("a@b.example"), std::string::npos);
}

TEST(Collisions, OnCollisionExceptionDoesNotRetry) {
  for (const char* policy : {"retry", "exception"}) {
    auto wf = workflow::parse_workflow(std::string("name: c\nrecord: \"r:1\"\nsteps:\n  - id: a\n    role: x\n"
                                                   "    writes: [n]\n    on_collision: ") + policy + "\n",
                                       "wf.yaml");
    ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
    Engine engine{EngineOptions{"t"}};
    RunState st;
    baton::v1::RunStarted s;
    s.set_input_json("{}");
    engine.start(wf->get(), "r", 0, s, 0, st);
    StepResult r;
    r.set_step_id("a");
    r.set_attempt(1);
    r.set_status(StepResult::OK);
    r.set_output_json("{}");
    r.set_writes_json(R"({"n": 1})");
    RecordWriteOutcome collision;
    collision.kind = RecordWriteOutcome::Kind::kCollision;
    collision.version = 4;
    Transition t = engine.on_result(**wf, st, r, collision, 10);
    if (std::string(policy) == "retry") {
      EXPECT_EQ(st.steps["a"].status, StepStatus::kRetryWait);
    } else {
      EXPECT_EQ(t.ending, "exception");
      EXPECT_EQ(st.reason, "collision");
    }
  }
  EXPECT_NE(parse_error("name: c\nsteps:\n  - id: a\n    role: x\n    on_collision: ignore\n").find("retry or exception"),
            std::string::npos);
}

// ---- lock: record -------------------------------------------------------------

TEST(RecordLock, TheStepWaitsForTheLeaseRunsWithItsTokenAndHandsItBack) {
  auto wf = workflow::parse_workflow("name: l\nrecord: \"acct:{{input.id}}\"\nsteps:\n  - id: a\n    role: x\n"
                                     "    lock: record\n    writes: [n]\n    timeout: 10s\n    next: b\n  - id: b\n    role: y\n",
                                     "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  Engine engine{EngineOptions{"t"}};
  RunState st;
  baton::v1::RunStarted s;
  s.set_input_json(R"({"id":"7"})");
  Transition t = engine.start(wf->get(), "r", 0, s, 0, st);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.steps["a"].status, StepStatus::kWaitingLock);
  ASSERT_EQ(t.locks.size(), 1u);
  EXPECT_EQ(t.locks[0].op, "acquire");
  EXPECT_EQ(t.locks[0].record_key, "acct:7");
  EXPECT_EQ(t.locks[0].holder, "r|a");
  EXPECT_EQ(t.locks[0].lease_ms, 40000);

  // No grant within a lease (a lost event): the step asks again.
  const std::string check = timer_member("r", TimerKind::kLock, "a", 1);
  ASSERT_TRUE(has_timer(t.timers_add, check));
  Transition again = engine.on_timer(**wf, st, Timer{TimerKind::kLock, "a", 1, 40000}, 40000);
  ASSERT_EQ(again.locks.size(), 1u);
  EXPECT_EQ(again.locks[0].op, "acquire");
  EXPECT_TRUE(has_timer(again.timers_add, timer_member("r", TimerKind::kLock, "a", 2)));
  EXPECT_TRUE(engine.on_timer(**wf, st, Timer{TimerKind::kLock, "a", 1, 40001}, 40001).locks.empty());  // stale

  baton::v1::LockGranted g;
  g.set_step("a");
  g.set_token(41);
  t = engine.on_lock_granted(**wf, st, g, 5);
  EXPECT_TRUE(contains(t.timers_del, timer_member("r", TimerKind::kLock, "a", 2)));
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"a"});
  EXPECT_EQ(t.dispatch[0].fence(), 41);
  EXPECT_EQ(t.dispatch[0].attempt(), 1u);
  EXPECT_TRUE(engine.on_lock_granted(**wf, st, g, 6).dispatch.empty());  // a duplicate grant

  // The write carries the token; a fenced write asks for the lock again.
  StepResult r;
  r.set_step_id("a");
  r.set_attempt(1);
  r.set_status(StepResult::OK);
  r.set_output_json("{}");
  r.set_writes_json(R"({"n": 1})");
  auto req = engine.record_write_for(**wf, st, r);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->fence, 41);
  RecordWriteOutcome fenced;
  fenced.kind = RecordWriteOutcome::Kind::kFenced;
  t = engine.on_result(**wf, st, r, fenced, 10);
  EXPECT_TRUE(has_audit(t, "write_fenced"));
  EXPECT_EQ(st.steps["a"].status, StepStatus::kWaitingLock);
  ASSERT_EQ(t.locks.size(), 1u);
  EXPECT_EQ(t.locks[0].op, "acquire");
  g.set_token(43);
  t = engine.on_lock_granted(**wf, st, g, 20);
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"a"});
  EXPECT_EQ(t.dispatch[0].attempt(), 2u);

  // Done: the lease goes back and the run goes on.
  r.set_attempt(2);
  RecordWriteOutcome applied;
  applied.kind = RecordWriteOutcome::Kind::kApplied;
  applied.version = 1;
  t = engine.on_result(**wf, st, r, applied, 30);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"b"});
  ASSERT_EQ(t.locks.size(), 1u);
  EXPECT_EQ(t.locks[0].op, "release");
  EXPECT_EQ(t.locks[0].holder, "r|a");
  EXPECT_EQ(st.steps["a"].lock, 0);

  // A grant for a step that no longer waits is handed back.
  g.set_token(50);
  t = engine.on_lock_granted(**wf, st, g, 40);
  ASSERT_EQ(t.locks.size(), 1u);
  EXPECT_EQ(t.locks[0].op, "release");
  EXPECT_TRUE(t.dispatch.empty());
}

TEST(RecordLock, ARunEndingWhileQueuedLeavesTheQueue) {
  auto wf = workflow::parse_workflow("name: l\nrecord: \"acct:1\"\nmax_steps: 1\nsteps:\n  - id: p\n    parallel: [a, b]\n"
                                     "  - id: a\n    role: x\n    lock: record\n  - id: b\n    role: y\n",
                                     "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  Engine engine{EngineOptions{"t"}};
  RunState st;
  baton::v1::RunStarted s;
  s.set_input_json("{}");
  engine.start(wf->get(), "r", 0, s, 0, st);
  ASSERT_EQ(st.steps["a"].status, StepStatus::kWaitingLock);
  StepResult r;
  r.set_step_id("b");
  r.set_attempt(1);
  r.set_status(StepResult::FAILED);
  Transition t = engine.on_result(**wf, st, r, {}, 10);
  EXPECT_EQ(t.ending, "exception");
  ASSERT_EQ(t.locks.size(), 1u);
  EXPECT_EQ(t.locks[0].op, "release");  // leaves the waiting list
  EXPECT_NE(parse_error("name: l\nsteps:\n  - id: a\n    role: x\n    lock: record\n").find("needs a top-level `record`"),
            std::string::npos);
  EXPECT_NE(parse_error("name: l\nrecord: r\nsteps:\n  - id: a\n    role: x\n    lock: step\n").find("must be record"),
            std::string::npos);
}

TEST(AuditDetail, TaskDispatchedNamesTheAgentAndADigestOfWhatItWasGiven) {
  auto wf = workflow::parse_workflow("name: d\nsteps:\n  - id: a\n    role: x\n    agent: { kind: echo }\n", "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf));
  Engine engine{EngineOptions{"t"}};
  auto digest = [&](const std::string& input) {
    RunState st;
    baton::v1::RunStarted s;
    s.set_input_json(input);
    Transition t = engine.start(wf->get(), "r", 0, s, 0, st);
    const AuditRecord* a = audit(t, "task_dispatched");
    EXPECT_NE(a, nullptr);
    EXPECT_EQ(a ? a->detail.value("agent", "") : "", "echo");
    return a ? a->detail.value("input_digest", "") : "";
  };
  EXPECT_EQ(digest(R"({"x":1})").size(), 16u);
  EXPECT_EQ(digest(R"({"x":1})"), digest(R"({"x":1})"));
  EXPECT_NE(digest(R"({"x":1})"), digest(R"({"x":2})"));
}

// ---- budgets -------------------------------------------------------------------

std::string budget_yaml(const std::string& budget) {
  return "name: b\nbudget: " + budget + "\nsteps:\n  - id: a\n    role: x\n    next: b\n  - id: b\n    role: y\n"
         "    next: c\n  - id: c\n    role: z\n";
}

StepResult paid(const std::string& step, uint64_t cost_micros, uint64_t tokens) {
  StepResult r;
  r.set_step_id(step);
  r.set_attempt(1);
  r.set_status(StepResult::OK);
  r.set_output_json("{}");
  r.mutable_usage()->set_tokens_in(tokens);
  r.mutable_usage()->set_cost_micros(cost_micros);
  r.mutable_usage()->set_model("big-model");
  return r;
}

TEST(Budgets, RunCostOverTheBudgetIsAnExceptionBeforeTheNextDispatch) {
  auto wf = workflow::parse_workflow(budget_yaml("{ run: { max_cost: 0.10 } }"), "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  EXPECT_EQ((*wf)->budget->run_max_cost_micros, 100000u);
  Engine engine{EngineOptions{"t"}};
  RunState st;
  baton::v1::RunStarted s;
  s.set_input_json("{}");
  engine.start(wf->get(), "r", 0, s, 0, st);
  Transition t = engine.on_result(**wf, st, paid("a", 60000, 100), {}, 10);
  EXPECT_EQ(dispatched(t), std::vector<std::string>{"b"});
  EXPECT_EQ(st.cost_micros, 60000u);
  EXPECT_EQ(t.spent_micros, 60000u);
  t = engine.on_result(**wf, st, paid("b", 50000, 100), {}, 20);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.reason, "budget_exceeded");
  EXPECT_EQ(audit(t, "budget_exceeded")->detail["limit"], "run_cost");
  // The totals are stored with the run and read back.
  bool has_cost = false;
  for (const auto& [k, v] : t.run_fields) has_cost |= k == "cost" && v == "110000";
  EXPECT_TRUE(has_cost);
}

TEST(Budgets, FallbackSwitchesTheRemainingStepsToTheCheaperModelsThenStops) {
  auto wf = workflow::parse_workflow(
      budget_yaml("{ run: { max_tokens: 1000 }, on_exceeded: fallback, fallback_models: [small, local] }"), "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  Engine engine{EngineOptions{"t"}};
  RunState st;
  baton::v1::RunStarted s;
  s.set_input_json("{}");
  Transition t0 = engine.start(wf->get(), "r", 0, s, 0, st);
  EXPECT_EQ(t0.dispatch[0].models_size(), 0);
  Transition t = engine.on_result(**wf, st, paid("a", 0, 1200), {}, 10);
  ASSERT_EQ(dispatched(t), std::vector<std::string>{"b"});
  ASSERT_EQ(t.dispatch[0].models_size(), 2);
  EXPECT_EQ(t.dispatch[0].models(0), "small");
  EXPECT_TRUE(st.fallback);
  EXPECT_TRUE(has_audit(t, "budget_fallback"));
  // A second budget of the same size on the fallback; past it, the exception.
  t = engine.on_result(**wf, st, paid("b", 0, 900), {}, 20);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.reason, "budget_exceeded");
}

TEST(Budgets, DailyBudgetAndStepBudget) {
  auto wf = workflow::parse_workflow(budget_yaml("{ daily: { max_cost: 5 }, run: { max_steps: 2 } }"), "wf.yaml");
  ASSERT_TRUE(static_cast<bool>(wf)) << wf.status().message();
  Engine engine{EngineOptions{"t"}};
  baton::v1::RunStarted s;
  s.set_input_json("{}");
  RunState st;
  st.daily_spent_micros = 5000000;  // today's spend already at the limit: the first dispatch is refused
  Transition t = engine.start(wf->get(), "r", 0, s, 0, st);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_EQ(st.reason, "budget_exceeded");
  RunState st2;
  engine.start(wf->get(), "r2", 0, s, 0, st2);
  engine.on_result(**wf, st2, paid("a", 0, 0), {}, 10);
  t = engine.on_result(**wf, st2, paid("b", 0, 0), {}, 20);
  EXPECT_EQ(st2.reason, "budget_exceeded");
  EXPECT_EQ(audit(t, "budget_exceeded")->detail["limit"], "run_steps");
}

TEST(Budgets, FormatRefusals) {
  EXPECT_NE(parse_error(budget_yaml("{ run: { max_cost: -1 } }")).find("positive amount in USD"), std::string::npos);
  EXPECT_NE(parse_error(budget_yaml("{ on_exceeded: fallback }")).find("needs `fallback_models`"), std::string::npos);
  EXPECT_NE(parse_error(budget_yaml("{ on_exceeded: maybe }")).find("exception or fallback"), std::string::npos);
  EXPECT_NE(parse_error(budget_yaml("{ daily: { max_tokens: 5 } }")).find("unknown key `max_tokens`"), std::string::npos);
}

}  // namespace
}  // namespace baton::coordinator
