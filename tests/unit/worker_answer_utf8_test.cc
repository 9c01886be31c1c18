// An answer must always decode at the coordinator: error texts quote outside
// data, and a proto3 string with invalid UTF-8 makes the RunEvent undecodable
// (it went to the DLQ). Found by fuzz/fuzz_worker_task (corpus file
// regression-answer-invalid-utf8).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "baton/agent.h"
#include "common/util/json.h"
#include "common/workflow/parser.h"
#include "workers/executor.h"

namespace baton::worker {
namespace {

using agent::AgentInput;
using agent::AgentOutput;
using v1::StepResult;

class BadBytesAgent : public agent::Agent {
 public:
  AgentOutput execute(const AgentInput&) override {
    AgentOutput out = AgentOutput::fail(AgentOutput::kFailed, "code\xFF", "message cut inside a sequence: \xDE");
    out.usage.model = "model\xC0";
    return out;
  }
};

class AnswerUtf8Test : public ::testing::Test {
 protected:
  AnswerUtf8Test() {
    auto reg = std::make_shared<workflow::Registry>();
    auto wf = workflow::parse_workflow(
        "name: flow\nversion: 1\nsteps:\n"
        "  - { id: a, role: r, agent: { kind: bad_bytes } }\n"
        "  - { id: b, role: r, agent: { kind: echo } }\n",
        "flow.yaml");
    EXPECT_TRUE(wf.is_ok()) << wf.status().to_string();
    if (wf) {
      EXPECT_TRUE(reg->add(std::move(wf).value()).is_ok());
    }
    agent::AgentRegistry agents;
    agent::register_builtin_agents(agents);
    EXPECT_TRUE(agents.add("bad_bytes", [](const nlohmann::json&) -> agent::FactoryResult {
      return std::unique_ptr<agent::Agent>(new BadBytesAgent());
    }).is_ok());
    exec_ = std::make_unique<Executor>(reg, agents, "", "w-1");
  }

  v1::Task task(const std::string& step, const std::string& input_json) {
    v1::Task t;
    t.set_run_id("run-1");
    t.set_step_id(step);
    t.set_attempt(1);
    t.mutable_workflow()->set_name("flow");
    t.mutable_workflow()->set_version(1);
    t.set_input_json(input_json);
    return t;
  }

  std::unique_ptr<Executor> exec_;
};

TEST_F(AnswerUtf8Test, AnAgentsInvalidUtf8ErrorStillDecodes) {
  Answer a = exec_->answer(task("a", "{}"), {});
  v1::RunEvent ev;
  ASSERT_TRUE(ev.ParseFromString(a.bytes));
  EXPECT_EQ(ev.step_result().status(), StepResult::FAILED);
  EXPECT_EQ(ev.step_result().error().code(), "code\xEF\xBF\xBD");
  EXPECT_EQ(ev.step_result().error().message(), "message cut inside a sequence: \xEF\xBF\xBD");
  EXPECT_EQ(ev.step_result().usage().model(), "model\xEF\xBF\xBD");
}

// The fuzzer's case: broken input JSON whose parse error quoted half of a
// two-byte sequence.
TEST_F(AnswerUtf8Test, ABadInputWhoseParseErrorQuotesHalfASequenceStillDecodes) {
  Answer a = exec_->answer(task("b", "{\"budget_usd\":18000,\xDE\x93ompany\":\"x\"}"), {});
  v1::RunEvent ev;
  ASSERT_TRUE(ev.ParseFromString(a.bytes));
  EXPECT_EQ(ev.step_result().status(), StepResult::FAILED);
  EXPECT_EQ(ev.step_result().error().code(), "bad_input");
  EXPECT_EQ(valid_utf8(ev.step_result().error().message()), ev.step_result().error().message());
}

}  // namespace
}  // namespace baton::worker
