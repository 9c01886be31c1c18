// The worker's pure core: record decoding, the write mapping, `set`, and how
// every failure becomes a StepResult (unknown_agent, bad_agent_config,
// forbidden_write, template_error, bad_input, bad_output, agent_error,
// output_too_large, bad_record).
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "baton/agent.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "workers/executor.h"

namespace baton::worker {
namespace {

using agent::AgentInput;
using agent::AgentOutput;
using agent::FactoryResult;
using nlohmann::json;
using v1::StepResult;

redis::Reply str(std::string s) {
  redis::Reply r;
  r.type = redis::Reply::Type::kString;
  r.str = std::move(s);
  return r;
}

redis::Reply array(std::vector<std::string> items) {
  redis::Reply r;
  r.type = redis::Reply::Type::kArray;
  for (auto& s : items) r.elements.push_back(str(std::move(s)));
  return r;
}

std::shared_ptr<workflow::Registry> registry(const std::vector<std::string>& yamls) {
  auto reg = std::make_shared<workflow::Registry>();
  for (std::size_t i = 0; i < yamls.size(); ++i) {
    auto wf = workflow::parse_workflow(yamls[i], "wf" + std::to_string(i) + ".yaml");
    EXPECT_TRUE(wf.is_ok()) << wf.status().to_string();
    if (wf) {
      EXPECT_TRUE(reg->add(std::move(wf).value()).is_ok());
    }
  }
  return reg;
}

v1::Task task(const std::string& wf, uint32_t version, const std::string& step, json input,
              std::vector<std::string> writes = {}) {
  v1::Task t;
  t.set_run_id("run-1");
  t.set_step_id(step);
  t.set_attempt(1);
  t.mutable_workflow()->set_name(wf);
  t.mutable_workflow()->set_version(version);
  t.set_input_json(input.dump());
  t.set_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  for (auto& w : writes) t.add_writes(w);
  return t;
}

json output_of(const StepResult& r) { return json::parse(r.output_json()); }
json writes_of(const StepResult& r) { return json::parse(r.writes_json()); }

// A test agent that returns what its config says, and counts constructions and calls.
struct Probe {
  std::atomic<int> built{0};
  std::atomic<int> calls{0};
  json last_record;
  int64_t last_version = -1;
  json last_steps;
};

class ScriptedAgent : public agent::Agent {
 public:
  ScriptedAgent(json cfg, Probe* probe) : cfg_(std::move(cfg)), probe_(probe) {}
  AgentOutput execute(const AgentInput& in) override {
    probe_->calls++;
    probe_->last_record = in.record;
    probe_->last_version = in.record_version;
    probe_->last_steps = in.context;
    if (cfg_.value("throw", false)) throw std::runtime_error("kaboom");
    AgentOutput out;
    if (cfg_.contains("status")) {
      std::string s = cfg_["status"];
      out.status = s == "retryable" ? AgentOutput::kRetryable
                   : s == "failed"  ? AgentOutput::kFailed
                                    : AgentOutput::kNeedsReview;
      out.error_code = cfg_.value("code", "");
      out.error_message = "scripted";
    }
    if (cfg_.contains("output")) out.output = cfg_["output"];
    if (cfg_.contains("writes")) out.writes = cfg_["writes"];
    if (cfg_.contains("big")) out.output["big"] = std::string(cfg_["big"].get<std::size_t>(), 'x');
    out.usage.tokens_in = 11;
    out.usage.tokens_out = 22;
    out.usage.cost_micros = 33;
    out.usage.model = "test-model";
    return out;
  }

 private:
  json cfg_;
  Probe* probe_;
};

agent::AgentRegistry agents_with_probe(Probe& probe) {
  agent::AgentRegistry r;
  agent::register_builtin_agents(r);
  (void)r.add("scripted", [&probe](const json& cfg) -> FactoryResult {
    probe.built++;
    if (cfg.contains("refuse")) return invalid("scripted: refused on purpose");
    return agent::AgentPtr(new ScriptedAgent(cfg, &probe));
  });
  return r;
}

// ---- record decoding ----------------------------------------------------------

TEST(DecodeRecord, VersionJsonValuesRawStringsAndInternalFields) {
  auto rec = decode_record(array({"_v", "12", "name", "\"Ada\"", "size", "120", "tags", "[\"a\",1]", "note",
                                  "not json {", "_w:name", "run-1:respond:1", "_lock", "x"}));
  ASSERT_TRUE(rec.is_ok()) << rec.status().to_string();
  EXPECT_EQ(rec->version, 12);
  EXPECT_EQ(rec->fields, (json{{"name", "Ada"}, {"size", 120}, {"tags", {"a", 1}}, {"note", "not json {"}}));
}

TEST(DecodeRecord, AbsentRecordIsEmptyAndBadRepliesAreRefused) {
  auto empty = decode_record(array({}));
  ASSERT_TRUE(empty.is_ok());
  EXPECT_EQ(empty->version, 0);
  EXPECT_EQ(empty->fields, json::object());
  EXPECT_TRUE(decode_record(redis::Reply{}).is_ok());  // nil

  redis::Reply err;
  err.type = redis::Reply::Type::kError;
  err.str = "WRONGTYPE Operation against a key holding the wrong kind of value";
  auto e = decode_record(err);
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().message(), "record read failed: WRONGTYPE Operation against a key holding the wrong kind of value");
  EXPECT_EQ((decode_record(array({"a"})).status().message()), "record read returned an odd number of elements");
  EXPECT_EQ((decode_record(array({"_v", "x1"})).status().message()), "record version `_v` is not an integer: x1");
  EXPECT_EQ(decode_record(str("x")).status().message(), "record read returned a non-array reply");
}

// ---- write mapping ------------------------------------------------------------

TEST(MapWrites, ExplicitWritesWinAndAllowedOutputFieldsAreAdded) {
  v1::Task t;
  for (const char* f : {"score", "reason", "owner"}) t.add_writes(f);
  json writes = {{"score", 0.9}};
  auto forbidden = map_writes(t.writes(), {{"score", 0.1}, {"reason", "fit"}, {"other", 1}}, writes);
  EXPECT_TRUE(forbidden.empty());
  EXPECT_EQ(writes, (json{{"score", 0.9}, {"reason", "fit"}}));  // owner absent from output: not written
}

TEST(MapWrites, ReportsFieldsOutsideTheAllowedList) {
  v1::Task t;
  t.add_writes("score");
  json writes = {{"owner", "x"}, {"_v", 3}};
  auto forbidden = map_writes(t.writes(), json::object(), writes);
  EXPECT_EQ(forbidden, (std::vector<std::string>{"_v", "owner"}));
}

// ---- executor -----------------------------------------------------------------

const char* kFlow = R"(
name: flow
version: 2
record: "lead:{{input.id}}"
steps:
  - id: enrich
    role: worker
    agent:
      kind: scripted
      output: { n: 3, label: hot }
      set: { owner: "team-{{input.region}}", n_copy: "{{output.n}}", label_text: "label {{output.label}}", fixed: 5 }
    writes: [owner, n, n_copy, label_text, fixed]
    next: sneaky
  - id: sneaky
    role: worker
    agent: { kind: scripted, output: { a: 1 }, writes: { secret: 1 } }
    writes: [a]
    next: review
  - id: review
    role: worker
    agent: { kind: scripted, status: needs_review, code: low_score, output: { score: 0.2 }, writes: { a: 1 } }
    writes: [score, a]
    next: broken
  - id: broken
    role: worker
    agent: { kind: scripted, refuse: true }
    next: nokind
  - id: nokind
    role: worker
    agent: { kind: crystal_ball }
    next: badset
  - id: badset
    role: worker
    agent: { kind: echo, set: { x: "{{nowhere.y}}" } }
    next: missingset
  - id: missingset
    role: worker
    agent: { kind: echo, set: { owner: "team-{{input.region}}" } }
    writes: [owner]
    next: thrower
  - id: thrower
    role: worker
    agent: { kind: scripted, throw: true }
    next: elsewhere
  - id: elsewhere
    role: other
    agent: { kind: echo }
    next: huge
  - id: huge
    role: worker
    agent: { kind: scripted, big: 1100000 }
    next: badout
  - id: badout
    role: worker
    agent: { kind: scripted, output: [1, 2] }
    next: worker_default
  - id: worker_default
    role: worker
)";

class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest() : agents_(agents_with_probe(probe_)), exec_(registry({kFlow}), agents_, "worker", "w-1") {}
  Probe probe_;
  agent::AgentRegistry agents_;
  Executor exec_;
};

TEST_F(ExecutorTest, BuildsEachStepOnceForItsRole) {
  // enrich, sneaky, review, broken, thrower, huge, badout: 7 scripted steps of role `worker`.
  EXPECT_EQ(probe_.built.load(), 7);
  EXPECT_EQ(exec_.ready_steps(), 7u);  // 6 scripted (not `broken`) + missingset (echo)
  auto broken = exec_.broken_steps();
  ASSERT_EQ(broken.size(), 4u);
  EXPECT_EQ(broken[0], "flow@2 step badset: set.x: path `nowhere.y` must start with input., record., steps. or output.");
  EXPECT_EQ(broken[1], "flow@2 step broken: scripted: refused on purpose");
  EXPECT_EQ(broken[2], "flow@2 step nokind: no agent kind `crystal_ball` in this worker");
  EXPECT_EQ(broken[3],
            "flow@2 step worker_default: the step has no `agent:` and no agent kind named like its role `worker` is "
            "registered");
  for (int i = 0; i < 5; ++i) (void)exec_.execute(task("flow", 2, "enrich", {{"region", "emea"}}), {});
  EXPECT_EQ(probe_.built.load(), 7);  // not rebuilt per task
  EXPECT_EQ(probe_.calls.load(), 5);
}

TEST_F(ExecutorTest, SetAddsRenderedFieldsAndWritesFollowTheStepsWrites) {
  auto r = exec_.execute(task("flow", 2, "enrich", {{"region", "emea"}}, {"owner", "n", "n_copy", "label_text", "fixed"}),
                         {});
  ASSERT_EQ(r.status(), StepResult::OK) << r.error().message();
  json expected = {{"n", 3}, {"label", "hot"}, {"owner", "team-emea"}, {"n_copy", 3}, {"label_text", "label hot"},
                   {"fixed", 5}};
  EXPECT_EQ(output_of(r), expected);
  // `label` is in the output but not in task.writes(): not written.
  EXPECT_EQ(writes_of(r), (json{{"n", 3}, {"owner", "team-emea"}, {"n_copy", 3}, {"label_text", "label hot"},
                                {"fixed", 5}}));
  EXPECT_EQ(r.step_id(), "enrich");
  EXPECT_EQ(r.attempt(), 1u);
  EXPECT_EQ(r.worker_id(), "w-1");
  EXPECT_EQ(r.usage().tokens_in(), 11u);
  EXPECT_EQ(r.usage().tokens_out(), 22u);
  EXPECT_EQ(r.usage().cost_micros(), 33u);
  EXPECT_EQ(r.usage().model(), "test-model");
  EXPECT_GT(r.started_ms(), 0);
  EXPECT_GE(r.finished_ms(), r.started_ms());
  EXPECT_FALSE(r.has_error());
}

TEST_F(ExecutorTest, WritesOnlyWhatTheTaskAllows) {
  // The task, not the YAML, carries the permission: the same step with fewer writes.
  auto r = exec_.execute(task("flow", 2, "enrich", {{"region", "emea"}}, {"owner"}), {});
  ASSERT_EQ(r.status(), StepResult::OK);
  EXPECT_EQ(writes_of(r), (json{{"owner", "team-emea"}}));
}

TEST_F(ExecutorTest, ExplicitWriteOutsideWritesIsForbidden) {
  auto r = exec_.execute(task("flow", 2, "sneaky", json::object(), {"a"}), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "forbidden_write");
  EXPECT_EQ(r.error().message(), "the step may write only [a]; it wrote secret");
  EXPECT_EQ(r.writes_json(), ("{}"));
}

TEST_F(ExecutorTest, NotOkResultsCarryOutputAndErrorButNoWrites) {
  auto r = exec_.execute(task("flow", 2, "review", json::object(), {"score", "a"}), {});
  EXPECT_EQ(r.status(), StepResult::NEEDS_REVIEW);
  EXPECT_EQ(r.error().code(), "low_score");
  EXPECT_EQ(r.error().message(), "scripted");
  EXPECT_EQ(output_of(r), (json{{"score", 0.2}}));
  EXPECT_EQ(writes_of(r), json::object());
}

TEST_F(ExecutorTest, UnknownWorkflowStepOrRoleIsUnknownAgent) {
  auto r = exec_.execute(task("nope", 1, "enrich", json::object()), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "unknown_agent");
  EXPECT_EQ(r.error().message(), "workflow nope@1 is not loaded by this worker");
  r = exec_.execute(task("flow", 1, "enrich", json::object()), {});
  EXPECT_EQ(r.error().message(), "workflow flow@1 is not loaded by this worker");
  r = exec_.execute(task("flow", 2, "ghost", json::object()), {});
  EXPECT_EQ(r.error().code(), "unknown_agent");
  EXPECT_EQ(r.error().message(), "workflow flow@2 has no step ghost");
  r = exec_.execute(task("flow", 2, "elsewhere", json::object()), {});
  EXPECT_EQ(r.error().code(), "unknown_agent");
  EXPECT_EQ(r.error().message(), "step elsewhere of flow@2 is for role other, not worker");
  r = exec_.execute(task("flow", 2, "nokind", json::object()), {});
  EXPECT_EQ(r.error().code(), "unknown_agent");
  r = exec_.execute(task("flow", 2, "worker_default", json::object()), {});
  EXPECT_EQ(r.error().code(), "unknown_agent");
}

TEST_F(ExecutorTest, VersionZeroMeansTheLatestLoaded) {
  auto r = exec_.execute(task("flow", 0, "enrich", {{"region", "apac"}}, {"owner"}), {});
  EXPECT_EQ(r.status(), StepResult::OK) << r.error().message();
  EXPECT_EQ(writes_of(r), (json{{"owner", "team-apac"}}));
}

TEST_F(ExecutorTest, BadConfigIsReportedPerTask) {
  auto r = exec_.execute(task("flow", 2, "broken", json::object()), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "bad_agent_config");
  EXPECT_EQ(r.error().message(), "flow@2 step broken: scripted: refused on purpose");
  r = exec_.execute(task("flow", 2, "badset", json::object()), {});
  EXPECT_EQ(r.error().code(), "bad_agent_config");
}

TEST_F(ExecutorTest, MissingSetPathIsTemplateError) {
  auto r = exec_.execute(task("flow", 2, "missingset", {{"name", "no region"}}, {"owner"}), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "template_error");
  EXPECT_NE(r.error().message().find("input.region"), std::string::npos) << r.error().message();
  EXPECT_EQ(r.error().message().rfind("set.owner: ", 0), 0u) << r.error().message();
}

TEST_F(ExecutorTest, AgentThatThrowsIsAgentError) {
  auto r = exec_.execute(task("flow", 2, "thrower", json::object()), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "agent_error");
  EXPECT_EQ(r.error().message(), "agent scripted threw: kaboom");
}

TEST_F(ExecutorTest, NonObjectOutputIsBadOutput) {
  auto r = exec_.execute(task("flow", 2, "badout", json::object()), {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "bad_output");
  EXPECT_EQ(r.error().message(), "agent output is array, not an object");
}

TEST_F(ExecutorTest, BadInputJsonIsBadInput) {
  auto t = task("flow", 2, "enrich", json::object());
  t.set_input_json("{not json");
  auto r = exec_.execute(t, {});
  EXPECT_EQ(r.status(), StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "bad_input");
  t.set_input_json("[1]");
  EXPECT_EQ((exec_.execute(t, {}).error().code()), "bad_input");
  t.set_input_json("{}");
  t.set_context_json("nope");
  EXPECT_EQ((exec_.execute(t, {}).error().code()), "bad_input");
  EXPECT_EQ(probe_.calls.load(), 0);
}

TEST_F(ExecutorTest, RecordAndContextReachTheAgent) {
  auto t = task("flow", 2, "enrich", {{"region", "emea"}});
  t.set_context_json(R"({"respond":{"first_touch":"hi"}})");
  RecordView rec;
  rec.fields = {{"score", 0.8}, {"owner", "sales-emea"}};
  rec.version = 4;
  auto r = exec_.execute(t, rec);
  EXPECT_EQ(r.record_version_read(), 4);
  EXPECT_EQ(probe_.last_version, 4);
  EXPECT_EQ(probe_.last_record, rec.fields);
  EXPECT_EQ(probe_.last_steps, (json{{"respond", {{"first_touch", "hi"}}}}));
}

TEST_F(ExecutorTest, AnswerIsARunEventForTheTask) {
  auto t = task("flow", 2, "enrich", {{"region", "emea"}}, {"owner"});
  auto a = exec_.answer(t, {});
  v1::RunEvent ev;
  ASSERT_TRUE(ev.ParseFromString(a.bytes));
  EXPECT_EQ(ev.run_id(), "run-1");
  EXPECT_EQ(ev.event_id().size(), 32u);
  EXPECT_EQ(ev.traceparent(), t.traceparent());
  EXPECT_GT(ev.produced_unix_ms(), 0);
  ASSERT_TRUE(ev.has_step_result());
  EXPECT_EQ(ev.step_result().status(), StepResult::OK);
  EXPECT_EQ(a.status, StepResult::OK);
  EXPECT_NE((exec_.answer(t, {}).bytes), a.bytes);  // a fresh event id each time
}

TEST_F(ExecutorTest, OversizedResultBecomesOutputTooLarge) {
  auto a = exec_.answer(task("flow", 2, "huge", json::object()), {});
  EXPECT_LE(a.bytes.size(), limits::kMaxMessageBytes);
  v1::RunEvent ev;
  ASSERT_TRUE(ev.ParseFromString(a.bytes));
  EXPECT_EQ(ev.step_result().status(), StepResult::FAILED);
  EXPECT_EQ(ev.step_result().error().code(), "output_too_large");
  EXPECT_EQ(a.error_code, "output_too_large");
}

TEST_F(ExecutorTest, RejectAnswersWithoutRunningTheAgent) {
  auto a = exec_.reject(task("flow", 2, "enrich", json::object()), "bad_record", "record lead:1: broken");
  v1::RunEvent ev;
  ASSERT_TRUE(ev.ParseFromString(a.bytes));
  EXPECT_EQ(ev.step_result().status(), StepResult::FAILED);
  EXPECT_EQ(ev.step_result().error().code(), "bad_record");
  EXPECT_EQ(ev.step_result().step_id(), "enrich");
  EXPECT_EQ(probe_.calls.load(), 0);
}

TEST(ExecutorRole, AStepWithoutAgentUsesTheKindNamedLikeItsRole) {
  Probe probe;
  auto agents = agents_with_probe(probe);
  (void)agents.add("greeter", [](const json&) -> FactoryResult {
    class Greeter : public agent::Agent {
     public:
      AgentOutput execute(const AgentInput& in) override {
        return AgentOutput::ok({{"greeting", "hello " + in.input.value("name", std::string("there"))}});
      }
    };
    return agent::AgentPtr(new Greeter());
  });
  Executor exec(registry({"name: hello\nsteps:\n  - id: greet\n    role: greeter\n"}), agents, "greeter", "w");
  auto r = exec.execute(task("hello", 1, "greet", {{"name", "Ada"}}), {});
  ASSERT_EQ(r.status(), StepResult::OK) << r.error().message();
  EXPECT_EQ(output_of(r), (json{{"greeting", "hello Ada"}}));
}

TEST(DumpJson, InvalidUtf8IsReplacedNotThrown) {
  json j = {{"text", std::string("ok \xff\xfe end")}};
  std::string s = dump_json(j);
  EXPECT_NE(s.find("ok "), std::string::npos);
  EXPECT_TRUE(json::accept(s));
}

}  // namespace
}  // namespace baton::worker
