// The engine as a pure function: (state, event, now) -> (state, effects).
#include "coordinator/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace baton::coordinator {
namespace {

using nlohmann::json;
using workflow::Step;
using workflow::Workflow;

Workflow three_steps() {
  Workflow wf;
  wf.name = "lead";
  wf.version = 2;
  wf.record_template = "lead:{{input.id}}";
  Step a;
  a.id = "respond";
  a.role = "responder";
  a.writes = {"first_touch"};
  a.next = "qualify";
  a.timeout_ms = 1000;
  a.retry = {3, 100, 250, 2.0};
  Step b;
  b.id = "qualify";
  b.role = "qualifier";
  b.writes = {"score"};
  b.output = {{"score", "number", false}, {"note", "string", true}};
  b.next = "book";
  b.retry = {2, 100, 1000, 2.0};
  Step c;
  c.id = "book";
  c.role = "booker";
  c.retry = {1, 100, 1000, 2.0};
  wf.steps = {a, b, c};
  return wf;
}

baton::v1::RunStarted started(const std::string& input = R"({"id":"L-1","name":"Ada"})") {
  baton::v1::RunStarted s;
  s.set_workflow("lead");
  s.set_version(2);
  s.set_input_json(input);
  s.set_dedupe_key("L-1");
  return s;
}

baton::v1::StepResult result(const std::string& step, uint32_t attempt, baton::v1::StepResult::Status status,
                             const std::string& output = "{}", const std::string& writes = "") {
  baton::v1::StepResult r;
  r.set_step_id(step);
  r.set_attempt(attempt);
  r.set_status(status);
  r.set_output_json(output);
  r.set_writes_json(writes);
  r.set_worker_id("w-1");
  r.set_started_ms(1010);
  r.set_finished_ms(1020);
  r.set_record_version_read(0);
  return r;
}

bool has_audit(const Transition& t, const std::string& kind) {
  return std::any_of(t.audit.begin(), t.audit.end(), [&](const AuditRecord& a) { return a.kind == kind; });
}

std::string field(const Transition& t, const std::string& name) {
  for (const auto& [k, v] : t.run_fields)
    if (k == name) return v;
  return "<absent>";
}

class EngineTest : public ::testing::Test {
 protected:
  Engine engine{EngineOptions{"test"}};
  Workflow wf = three_steps();
  RunState st;

  void start_run() {
    Transition t = engine.start(&wf, "run-1", 3, started(), 1000, st);
    ASSERT_EQ(t.dispatch.size(), 1u);
  }
  // Completes `step` attempt `attempt` OK and returns the transition.
  Transition ok(const std::string& step, uint32_t attempt, const std::string& output = "{}") {
    return engine.on_result(wf, st, result(step, attempt, baton::v1::StepResult::OK, output), {}, 2000);
  }
};

TEST_F(EngineTest, StartDispatchesTheEntryStepWithTimeoutAndAudit) {
  Transition t = engine.start(&wf, "run-1", 3, started(), 1000, st);
  EXPECT_TRUE(t.is_new);
  EXPECT_TRUE(t.changed);
  EXPECT_EQ(st.status, RunStatus::kRunning);
  EXPECT_EQ(st.record_key, "lead:L-1");
  EXPECT_EQ(st.partition, 3);
  EXPECT_EQ(st.steps_executed, 1u);
  ASSERT_EQ(t.dispatch.size(), 1u);
  const auto& task = t.dispatch[0];
  EXPECT_EQ(task.run_id(), "run-1");
  EXPECT_EQ(task.step_id(), "respond");
  EXPECT_EQ(task.role(), "responder");
  EXPECT_EQ(task.attempt(), 1u);
  EXPECT_EQ(task.namespace_(), "test");
  EXPECT_EQ(task.workflow().name(), "lead");
  EXPECT_EQ(task.workflow().version(), 2u);
  EXPECT_EQ(task.record().key(), "lead:L-1");
  EXPECT_EQ(task.idempotency_key(), "run-1:respond:1");
  EXPECT_EQ(task.deadline_unix_ms(), 2000);
  ASSERT_EQ(task.writes_size(), 1);
  EXPECT_EQ(task.writes(0), "first_touch");
  EXPECT_EQ(json::parse(task.input_json())["name"], "Ada");
  ASSERT_EQ(t.dispatch_bytes.size(), 1u);  // serialized once, for the outbox and Kafka
  EXPECT_EQ(t.dispatch_bytes[0], task.SerializeAsString());
  ASSERT_EQ(t.timers_add.size(), 1u);
  EXPECT_EQ(t.timers_add[0].first, "run-1|timeout|respond|1");
  EXPECT_EQ(t.timers_add[0].second, 2000);
  EXPECT_TRUE(has_audit(t, "run_started"));
  EXPECT_TRUE(has_audit(t, "task_dispatched"));
  EXPECT_EQ(field(t, "status"), "running");
  EXPECT_EQ(field(t, "wf"), "lead");
  EXPECT_EQ(json::parse(field(t, "step:respond"))["s"], "running");
  ASSERT_EQ(t.ctx_fields.size(), 1u);
  EXPECT_EQ(t.ctx_fields[0].first, "input");
  EXPECT_TRUE(t.ending.empty());
}

TEST_F(EngineTest, UnknownWorkflowEndsInExceptionSoTheRequestIsNotLost) {
  Transition t = engine.start(nullptr, "run-1", 0, started(), 1000, st);
  EXPECT_EQ(st.status, RunStatus::kException);
  EXPECT_EQ(st.reason, "unknown_workflow");
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(t.exception_reason, "unknown_workflow");
  EXPECT_TRUE(t.dispatch.empty());
}

TEST_F(EngineTest, MissingRecordKeyFieldIsAnException) {
  Transition t = engine.start(&wf, "run-1", 0, started(R"({"name":"no id"})"), 1000, st);
  EXPECT_EQ(st.reason, "bad_record_key");
  EXPECT_EQ(t.ending, "exception");
  EXPECT_TRUE(t.dispatch.empty());
}

TEST_F(EngineTest, SuccessfulResultDispatchesNextStepWithContext) {
  start_run();
  Transition t = ok("respond", 1, R"({"first_touch":"hi"})");
  EXPECT_EQ(st.steps["respond"].status, StepStatus::kSucceeded);
  EXPECT_EQ(st.steps["respond"].worker_id, "w-1");
  EXPECT_EQ(st.steps["respond"].started_ms, 1010);
  ASSERT_EQ(t.dispatch.size(), 1u);
  EXPECT_EQ(t.dispatch[0].step_id(), "qualify");
  EXPECT_EQ(json::parse(t.dispatch[0].context_json())["respond"]["first_touch"], "hi");
  EXPECT_EQ(t.timers_del, std::vector<std::string>{"run-1|timeout|respond|1"});
  EXPECT_EQ(t.outbox_dels, std::vector<std::string>{"respond:1"});
  ASSERT_EQ(t.ctx_fields.size(), 1u);
  EXPECT_EQ(t.ctx_fields[0].first, "out:respond");
  EXPECT_TRUE(has_audit(t, "step_result"));
  EXPECT_EQ(st.steps_executed, 2u);
}

TEST_F(EngineTest, LastStepCompletesTheRun) {
  start_run();
  ok("respond", 1);
  ok("qualify", 1, R"({"score":0.9})");
  Transition t = ok("book", 1);
  EXPECT_EQ(st.status, RunStatus::kCompleted);
  EXPECT_EQ(t.ending, "completed");
  EXPECT_EQ(st.ended_ms, 2000);
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_TRUE(has_audit(t, "run_completed"));
  EXPECT_EQ(field(t, "status"), "completed");
}

TEST_F(EngineTest, ContractViolationRetriesThenRetryTimerDispatchesNextAttempt) {
  start_run();
  ok("respond", 1);
  Transition t = ok("qualify", 1, R"({"score":"high"})");
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kRetryWait);
  EXPECT_EQ(st.steps["qualify"].error_code, "contract_violation");
  EXPECT_NE(st.steps["qualify"].error_message.find("should be number"), std::string::npos);
  ASSERT_EQ(t.timers_add.size(), 1u);
  EXPECT_EQ(t.timers_add[0].first, "run-1|retry|qualify|1");
  EXPECT_EQ(t.timers_add[0].second, 2000 + 100);
  EXPECT_TRUE(t.dispatch.empty());

  Transition r = engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 2100}, 2100);
  ASSERT_EQ(r.dispatch.size(), 1u);
  EXPECT_EQ(r.dispatch[0].attempt(), 2u);
  EXPECT_EQ(r.dispatch[0].idempotency_key(), "run-1:qualify:2");
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kRunning);
  EXPECT_EQ(r.timers_del, std::vector<std::string>{"run-1|retry|qualify|1"});
}

TEST_F(EngineTest, RetriesExhaustedGoesToExceptionQueue) {
  start_run();
  ok("respond", 1);
  engine.on_result(wf, st, result("qualify", 1, baton::v1::StepResult::RETRYABLE), {}, 2000);
  engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 2100}, 2100);
  auto r = result("qualify", 2, baton::v1::StepResult::RETRYABLE);
  r.mutable_error()->set_code("upstream_503");
  Transition t = engine.on_result(wf, st, r, {}, 2200);
  EXPECT_EQ(st.status, RunStatus::kException);
  EXPECT_EQ(st.reason, "retries_exhausted");
  EXPECT_NE(st.reason_detail.find("upstream_503"), std::string::npos);
  EXPECT_EQ(t.exception_reason, "retries_exhausted");
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kFailed);
}

TEST_F(EngineTest, PermanentFailureAndNeedsReviewAreExceptions) {
  start_run();
  auto f = result("respond", 1, baton::v1::StepResult::FAILED);
  f.mutable_error()->set_code("bad_input");
  Transition t = engine.on_result(wf, st, f, {}, 2000);
  EXPECT_EQ(st.reason, "step_failed");
  EXPECT_EQ(t.ending, "exception");

  RunState st2;
  engine.start(&wf, "run-2", 0, started(), 1000, st2);
  auto n = result("respond", 1, baton::v1::StepResult::NEEDS_REVIEW, R"({"missing":["email"]})");
  n.mutable_error()->set_code("missing_field");
  Transition t2 = engine.on_result(wf, st2, n, {}, 2000);
  EXPECT_EQ(st2.reason, "needs_review");
  EXPECT_EQ(st2.steps["respond"].error_code, "missing_field");
  EXPECT_EQ(st2.context["respond"]["missing"][0], "email");  // kept for the operator
  EXPECT_EQ(t2.exception_reason, "needs_review");
}

TEST_F(EngineTest, TimeoutRetriesAndFinallyEndsAsTimeout) {
  start_run();
  ok("respond", 1);
  Transition t = engine.on_timer(wf, st, Timer{TimerKind::kTimeout, "qualify", 1, 0}, 40000);
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kRetryWait);
  EXPECT_EQ(st.steps["qualify"].error_code, "timeout");
  EXPECT_TRUE(has_audit(t, "step_timeout"));
  EXPECT_EQ(t.outbox_dels, std::vector<std::string>{"qualify:1"});
  engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 0}, 40100);
  Transition last = engine.on_timer(wf, st, Timer{TimerKind::kTimeout, "qualify", 2, 0}, 80000);
  EXPECT_EQ(st.status, RunStatus::kException);
  EXPECT_EQ(st.reason, "timeout");
  EXPECT_EQ(last.ending, "exception");
}

TEST_F(EngineTest, LateResultOfAnOldAttemptIsRecordedAndIgnored) {
  start_run();
  engine.on_timer(wf, st, Timer{TimerKind::kTimeout, "respond", 1, 0}, 5000);
  engine.on_timer(wf, st, Timer{TimerKind::kRetry, "respond", 1, 0}, 5100);
  ASSERT_EQ(st.steps["respond"].attempt, 2u);
  RunState before = st;
  Transition t = ok("respond", 1);
  EXPECT_TRUE(has_audit(t, "stale_result"));
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_TRUE(t.run_fields.empty());
  EXPECT_EQ(st.steps["respond"].status, StepStatus::kRunning);
  EXPECT_EQ(st.steps["respond"].attempt, 2u);
  EXPECT_EQ(st.steps_executed, before.steps_executed);
  // A duplicate of an already applied result is stale too.
  ok("respond", 2);
  Transition dup = ok("respond", 2);
  EXPECT_TRUE(has_audit(dup, "stale_result"));
  EXPECT_TRUE(dup.dispatch.empty());
}

TEST_F(EngineTest, StaleTimerOnlyRemovesItself) {
  start_run();
  ok("respond", 1);
  Transition t = engine.on_timer(wf, st, Timer{TimerKind::kTimeout, "respond", 1, 0}, 9000);
  EXPECT_EQ(t.timers_del, std::vector<std::string>{"run-1|timeout|respond|1"});
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_TRUE(t.run_fields.empty());
  EXPECT_EQ(st.steps["qualify"].status, StepStatus::kRunning);
}

TEST_F(EngineTest, RecordWriteRequestOnlyForCurrentValidResults) {
  start_run();
  auto r = result("respond", 1, baton::v1::StepResult::OK, R"({"first_touch":"hi"})", R"({"first_touch":"hi"})");
  r.set_record_version_read(4);
  auto req = engine.record_write_for(wf, st, r);
  ASSERT_TRUE(req.has_value());
  EXPECT_EQ(req->record_key, "lead:L-1");
  EXPECT_EQ(req->idempotency_key, "run-1:respond:1");
  EXPECT_EQ(req->writer, "run-1:respond");
  EXPECT_EQ(req->version_read, 4);
  EXPECT_EQ(req->allowed, std::vector<std::string>{"first_touch"});
  ASSERT_EQ(req->fields.size(), 1u);
  EXPECT_EQ(req->fields[0].first, "first_touch");
  EXPECT_EQ(req->fields[0].second, "\"hi\"");
  // Not for an old attempt, a failure, or empty writes.
  auto old = r;
  old.set_attempt(7);
  EXPECT_FALSE(engine.record_write_for(wf, st, old).has_value());
  auto failed = r;
  failed.set_status(baton::v1::StepResult::RETRYABLE);
  EXPECT_FALSE(engine.record_write_for(wf, st, failed).has_value());
  auto empty = r;
  empty.set_writes_json("{}");
  EXPECT_FALSE(engine.record_write_for(wf, st, empty).has_value());
  // Not when the output breaks the contract (nothing is written for a failed attempt).
  ok("respond", 1);
  auto bad = result("qualify", 1, baton::v1::StepResult::OK, R"({"score":"x"})", R"({"score":"x"})");
  EXPECT_FALSE(engine.record_write_for(wf, st, bad).has_value());
}

TEST_F(EngineTest, AppliedWriteIsAuditedOldToNew) {
  start_run();
  RecordWriteOutcome w;
  w.kind = RecordWriteOutcome::Kind::kApplied;
  w.version = 5;
  w.changes = {{"first_touch", {"null", "\"hi\""}}};
  Transition t = engine.on_result(wf, st, result("respond", 1, baton::v1::StepResult::OK), w, 2000);
  auto it = std::find_if(t.audit.begin(), t.audit.end(), [](const AuditRecord& a) { return a.kind == "record_written"; });
  ASSERT_NE(it, t.audit.end());
  EXPECT_EQ(it->detail["version"], 5);
  EXPECT_TRUE(it->detail["fields"]["first_touch"]["old"].is_null());
  EXPECT_EQ(it->detail["fields"]["first_touch"]["new"], "hi");
  EXPECT_EQ(st.steps["respond"].status, StepStatus::kSucceeded);
}

TEST_F(EngineTest, CollisionFailsTheAttemptAndRetriesNeverOverwrites) {
  start_run();
  RecordWriteOutcome w;
  w.kind = RecordWriteOutcome::Kind::kCollision;
  w.version = 9;
  Transition t = engine.on_result(wf, st, result("respond", 1, baton::v1::StepResult::OK), w, 2000);
  EXPECT_TRUE(has_audit(t, "collision"));
  EXPECT_EQ(st.steps["respond"].status, StepStatus::kRetryWait);
  EXPECT_EQ(st.steps["respond"].error_code, "collision");
  EXPECT_TRUE(t.dispatch.empty());
  EXPECT_TRUE(t.ctx_fields.empty());  // the output of a collided attempt is not kept
}

TEST_F(EngineTest, ForbiddenWriteIsAPermanentFailure) {
  start_run();
  RecordWriteOutcome w;
  w.kind = RecordWriteOutcome::Kind::kForbidden;
  w.field = "owner";
  Transition t = engine.on_result(wf, st, result("respond", 1, baton::v1::StepResult::OK), w, 2000);
  EXPECT_EQ(st.status, RunStatus::kException);
  EXPECT_EQ(st.steps["respond"].error_code, "forbidden_write");
  EXPECT_EQ(t.ending, "exception");
  EXPECT_EQ(st.reason, "forbidden_write");
}

TEST_F(EngineTest, ExhaustedContractViolationsAndCollisionsKeepTheirType) {
  // qualify: 2 attempts; its contract needs a number `score`.
  start_run();
  ok("respond", 1);
  engine.on_result(wf, st, result("qualify", 1, baton::v1::StepResult::OK, R"({"score":"high"})"), {}, 2000);
  engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 2100}, 2100);
  Transition t = engine.on_result(wf, st, result("qualify", 2, baton::v1::StepResult::OK, "{}"), {}, 2200);
  EXPECT_EQ(t.exception_reason, "contract_violation");
  EXPECT_NE(st.reason_detail.find("missing field 'score'"), std::string::npos) << st.reason_detail;

  st = RunState();
  start_run();
  ok("respond", 1);
  RecordWriteOutcome collided;
  collided.kind = RecordWriteOutcome::Kind::kCollision;
  collided.version = 9;
  engine.on_result(wf, st, result("qualify", 1, baton::v1::StepResult::OK, R"({"score":1})"), collided, 2000);
  engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 2100}, 2100);
  t = engine.on_result(wf, st, result("qualify", 2, baton::v1::StepResult::OK, R"({"score":1})"), collided, 2200);
  EXPECT_EQ(t.exception_reason, "collision");
}

TEST_F(EngineTest, MaxStepsBoundsTheRun) {
  wf.max_steps = 2;
  start_run();
  ok("respond", 1);
  Transition t = ok("qualify", 1, R"({"score":1})");
  EXPECT_EQ(st.status, RunStatus::kException);
  EXPECT_EQ(st.reason, "max_steps");
  EXPECT_TRUE(t.dispatch.empty());
}

TEST(EngineStatic, BackoffIsExponentialAndCapped) {
  workflow::RetryPolicy p{5, 100, 350, 2.0};
  EXPECT_EQ(Engine::backoff_ms(p, 2), 100);
  EXPECT_EQ(Engine::backoff_ms(p, 3), 200);
  EXPECT_EQ(Engine::backoff_ms(p, 4), 350);
  EXPECT_EQ(Engine::backoff_ms(p, 5), 350);
}

TEST(EngineStatic, ContractTypes) {
  Step s;
  s.output = {{"a", "string", false}, {"b", "integer", false}, {"c", "boolean", true}, {"d", "any", false}};
  EXPECT_EQ(Engine::check_contract(s, json{{"a", "x"}, {"b", 3}, {"d", {1, 2}}}), "");
  EXPECT_EQ(Engine::check_contract(s, json{{"a", "x"}, {"b", 3.0}, {"d", 1}}), "");
  EXPECT_EQ(Engine::check_contract(s, json{{"a", "x"}, {"b", 3.5}, {"d", 1}}),
            "field 'b' should be integer, got number");
  EXPECT_EQ(Engine::check_contract(s, json{{"b", 3}, {"d", 1}}), "missing field 'a' (string)");
  EXPECT_EQ(Engine::check_contract(s, json{{"a", "x"}, {"b", 1}, {"c", "yes"}, {"d", 1}}),
            "field 'c' should be boolean, got string");
  EXPECT_EQ(Engine::check_contract(s, json::array()), "output is not a JSON object");
  Step none;
  EXPECT_EQ(Engine::check_contract(none, json::array()), "");
}

TEST(EngineStatic, TimerMembersRoundTrip) {
  std::string run, step;
  TimerKind kind;
  uint32_t attempt = 0;
  ASSERT_TRUE(parse_timer_member(timer_member("r1", TimerKind::kRetry, "book", 3), run, kind, step, attempt));
  EXPECT_EQ(run, "r1");
  EXPECT_EQ(kind, TimerKind::kRetry);
  EXPECT_EQ(step, "book");
  EXPECT_EQ(attempt, 3u);
  EXPECT_FALSE(parse_timer_member("r1|later|book|3", run, kind, step, attempt));
  EXPECT_FALSE(parse_timer_member("r1|retry|book|x", run, kind, step, attempt));
  EXPECT_FALSE(parse_timer_member("garbage", run, kind, step, attempt));
  EXPECT_FALSE(parse_timer_member("|retry||1", run, kind, step, attempt));
}

TEST_F(EngineTest, StateRoundTripsThroughTheRedisHashes) {
  start_run();
  ok("respond", 1, R"({"first_touch":"hi"})");
  std::vector<std::pair<std::string, std::string>> run_hash = st.header_fields();
  for (const auto& [id, ss] : st.steps) run_hash.emplace_back(RunState::step_field(id), ss.to_json().dump());
  std::vector<std::pair<std::string, std::string>> ctx = {{"input", st.input.dump()},
                                                          {"out:respond", st.context["respond"].dump()}};
  RunState back;
  ASSERT_TRUE(RunState::from_hashes("run-1", run_hash, ctx, back));
  EXPECT_EQ(back.workflow, st.workflow);
  EXPECT_EQ(back.version, st.version);
  EXPECT_EQ(back.status, st.status);
  EXPECT_EQ(back.record_key, st.record_key);
  EXPECT_EQ(back.partition, st.partition);
  EXPECT_EQ(back.steps_executed, st.steps_executed);
  EXPECT_EQ(back.created_ms, st.created_ms);
  EXPECT_EQ(back.input, st.input);
  EXPECT_EQ(back.context, st.context);
  ASSERT_EQ(back.steps.size(), st.steps.size());
  EXPECT_EQ(back.steps["qualify"].status, StepStatus::kRunning);
  EXPECT_EQ(back.steps["respond"].worker_id, "w-1");
  // The engine continues from the reloaded state exactly as from the original.
  Transition t = engine.on_result(wf, back, result("qualify", 1, baton::v1::StepResult::OK, R"({"score":1})"), {}, 3000);
  ASSERT_EQ(t.dispatch.size(), 1u);
  EXPECT_EQ(t.dispatch[0].step_id(), "book");
  RunState empty;
  EXPECT_FALSE(RunState::from_hashes("x", {}, {}, empty));
}

// Transitions write only what changed; replaying their fields into hashes (as
// HSET does) must rebuild exactly the engine's state at every point.
TEST_F(EngineTest, TransitionDeltasReplayedIntoHashesRebuildTheState) {
  std::map<std::string, std::string> run_hash, ctx_hash;
  auto apply = [&](const Transition& t) {
    for (const auto& [k, v] : t.run_fields) run_hash[k] = v;
    for (const auto& [k, v] : t.ctx_fields) ctx_hash[k] = v;
  };
  auto check = [&](const char* when) {
    RunState back;
    ASSERT_TRUE(RunState::from_hashes("run-1", {run_hash.begin(), run_hash.end()}, {ctx_hash.begin(), ctx_hash.end()},
                                      back))
        << when;
    EXPECT_EQ(back.status, st.status) << when;
    EXPECT_EQ(back.reason, st.reason) << when;
    EXPECT_EQ(back.ended_ms, st.ended_ms) << when;
    EXPECT_EQ(back.updated_ms, st.updated_ms) << when;
    EXPECT_EQ(back.steps_executed, st.steps_executed) << when;
    EXPECT_EQ(back.record_key, st.record_key) << when;
    EXPECT_EQ(back.context, st.context) << when;
    for (const auto& [id, ss] : st.steps) {
      EXPECT_EQ(back.steps[id].status, ss.status) << when << " " << id;
      EXPECT_EQ(back.steps[id].attempt, ss.attempt) << when << " " << id;
      EXPECT_EQ(back.steps[id].error_code, ss.error_code) << when << " " << id;
    }
  };
  apply(engine.start(&wf, "run-1", 3, started(), 1000, st));
  check("start");
  apply(ok("respond", 1, R"({"first_touch":"hi"})"));
  check("respond");
  apply(engine.on_timer(wf, st, Timer{TimerKind::kTimeout, "qualify", 1, 0}, 3000));
  check("timeout");
  apply(engine.on_timer(wf, st, Timer{TimerKind::kRetry, "qualify", 1, 0}, 3100));
  check("retry");
  apply(engine.on_result(wf, st, result("qualify", 2, baton::v1::StepResult::OK, R"({"score":1})"), {}, 3200));
  check("qualify");
  auto f = result("book", 1, baton::v1::StepResult::FAILED);
  f.mutable_error()->set_code("calendar_down");
  apply(engine.on_result(wf, st, f, {}, 3300));
  check("exception");
  EXPECT_EQ(run_hash["status"], "exception");
  EXPECT_EQ(run_hash["reason"], "step_failed");
}

}  // namespace
}  // namespace baton::coordinator
