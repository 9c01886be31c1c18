// The executor and workflow versions: steps run by instance id
// ("<step>#<suffix>"), workflows learned after start (applied over the control
// plane), and the once-per-second rate limit of reloads for a missing version.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "baton/agent.h"
#include "common/workflow/parser.h"
#include "workers/executor.h"

namespace baton::worker {
namespace {

using nlohmann::json;
using v1::StepResult;

// One step `draft` (role writer, echo agent) that tags its output with `tag`.
std::string yaml(int version, const std::string& tag, const std::string& extra_step = "") {
  return "name: memo\nversion: " + std::to_string(version) +
         "\nsteps:\n  - id: draft\n    role: writer\n    agent: { kind: echo, set: { tag: \"" + tag + "\" } }\n" +
         extra_step;
}

workflow::WorkflowPtr parse(const std::string& text) {
  auto wf = workflow::parse_workflow(text, "<applied>");
  EXPECT_TRUE(wf.is_ok()) << wf.status().to_string();
  return wf ? std::move(wf).value() : nullptr;
}

agent::AgentRegistry builtins() {
  agent::AgentRegistry r;
  agent::register_builtin_agents(r);
  return r;
}

v1::Task task(uint32_t version, const std::string& step_id, uint32_t attempt = 1) {
  v1::Task t;
  t.set_run_id("run-1");
  t.set_step_id(step_id);
  t.set_attempt(attempt);
  t.set_role("writer");
  t.mutable_workflow()->set_name("memo");
  t.mutable_workflow()->set_version(version);
  t.set_input_json(R"({"text":"hi"})");
  return t;
}

std::shared_ptr<workflow::Registry> with_v1() {
  auto reg = std::make_shared<workflow::Registry>();
  EXPECT_TRUE(reg->add(parse(yaml(1, "v1"))).is_ok());
  return reg;
}

TEST(BaseStepId, IsThePartBeforeTheFirstHash) {
  EXPECT_EQ(base_step_id("draft"), "draft");
  EXPECT_EQ(base_step_id("draft#2"), "draft");
  EXPECT_EQ(base_step_id("draft#round-3#x"), "draft");
  EXPECT_EQ(base_step_id("#1"), "");
  EXPECT_EQ(base_step_id(""), "");
}

TEST(InstanceIds, AStepInstanceRunsItsDefinitionAndKeepsItsOwnId) {
  Executor ex(with_v1(), builtins(), "writer", "w1");
  for (const std::string id : {"draft", "draft#1", "draft#round-2"}) {
    StepResult r = ex.execute(task(1, id), RecordView{});
    EXPECT_EQ(r.status(), StepResult::OK) << id << ": " << r.error().message();
    EXPECT_EQ(r.step_id(), id);  // the result names the instance, not the definition
    EXPECT_EQ(json::parse(r.output_json()), (json{{"text", "hi"}, {"tag", "v1"}})) << id;
  }
  StepResult unknown = ex.execute(task(1, "review#2"), RecordView{});
  EXPECT_EQ(unknown.status(), StepResult::FAILED);
  EXPECT_EQ(unknown.step_id(), "review#2");
  EXPECT_EQ(unknown.error().code(), "unknown_agent");
  EXPECT_EQ(unknown.error().message(), "workflow memo@1 has no step review");
}

TEST(LearnedWorkflows, ANewVersionRunsAfterLearnAndTheOldOneKeepsItsBehaviour) {
  Executor ex(with_v1(), builtins(), "writer", "w1");
  EXPECT_TRUE(ex.knows("memo", 1));
  EXPECT_FALSE(ex.knows("memo", 2));
  StepResult before = ex.execute(task(2, "draft#1"), RecordView{});
  EXPECT_EQ(before.status(), StepResult::FAILED);
  EXPECT_EQ(before.error().message(), "workflow memo@2 is not loaded by this worker");

  // v2 adds a step of another role: only this role's steps get agents.
  ASSERT_TRUE(ex.learn(parse(yaml(2, "v2", "  - id: check\n    role: checker\n"))).is_ok());
  EXPECT_TRUE(ex.knows("memo", 2));
  EXPECT_TRUE(ex.knows("memo", 0));
  EXPECT_EQ(ex.ready_steps(), 2u);  // memo@1 draft, memo@2 draft
  StepResult v2 = ex.execute(task(2, "draft#1"), RecordView{});
  ASSERT_EQ(v2.status(), StepResult::OK) << v2.error().message();
  EXPECT_EQ(json::parse(v2.output_json())["tag"], "v2");
  StepResult v1 = ex.execute(task(1, "draft"), RecordView{});
  EXPECT_EQ(json::parse(v1.output_json())["tag"], "v1");  // pinned runs keep their version
  StepResult latest = ex.execute(task(0, "draft"), RecordView{});
  EXPECT_EQ(json::parse(latest.output_json())["tag"], "v2");  // version 0: the highest known
  StepResult other_role = ex.execute(task(2, "check"), RecordView{});
  EXPECT_EQ(other_role.status(), StepResult::FAILED);
  EXPECT_EQ(other_role.error().message(), "step check of memo@2 is for role checker, not writer");

  // Idempotent for equal content; a different content for a known version is refused.
  EXPECT_TRUE(ex.learn(parse(yaml(2, "v2", "  - id: check\n    role: checker\n"))).is_ok());
  EXPECT_EQ(ex.learn(parse(yaml(2, "other"))).code(), Code::kAlreadyExists);
  EXPECT_EQ(ex.learn(parse(yaml(1, "other"))).code(), Code::kAlreadyExists);
  EXPECT_TRUE(ex.learn(parse(yaml(1, "v1"))).is_ok());
  EXPECT_EQ(ex.ready_steps(), 2u);
  EXPECT_EQ(json::parse(ex.execute(task(2, "draft"), RecordView{}).output_json())["tag"], "v2");
}

TEST(LearnedWorkflows, TasksRunOnOtherThreadsWhileVersionsAreLearned) {
  Executor ex(with_v1(), builtins(), "writer", "w1");
  constexpr int kVersions = 30;
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> runners;
  for (int t = 0; t < 2; ++t) {
    runners.emplace_back([&] {
      for (int i = 0; i < 1'000'000 && !done.load(); ++i) {
        StepResult r = ex.execute(task(1, "draft#" + std::to_string(i)), RecordView{});
        if (r.status() != StepResult::OK || json::parse(r.output_json())["tag"] != "v1") ++bad;
      }
    });
  }
  for (int v = 2; v <= kVersions; ++v) {
    if (!ex.learn(parse(yaml(v, "v" + std::to_string(v)))).is_ok()) ++bad;
  }
  done.store(true);
  for (auto& t : runners) t.join();
  EXPECT_EQ(bad.load(), 0);
  for (int v = 1; v <= kVersions; ++v) {
    StepResult r = ex.execute(task(v, "draft"), RecordView{});
    ASSERT_EQ(r.status(), StepResult::OK) << v;
    EXPECT_EQ(json::parse(r.output_json())["tag"], "v" + std::to_string(v));
  }
}

TEST(LearnedWorkflows, ReloadOfAMissingVersionIsClaimedAtMostOncePerInterval) {
  Executor ex(with_v1(), builtins(), "writer", "w1");
  EXPECT_TRUE(ex.claim_reload("memo", 7, 10'000));
  EXPECT_FALSE(ex.claim_reload("memo", 7, 10'000));
  EXPECT_FALSE(ex.claim_reload("memo", 7, 10'999));
  EXPECT_TRUE(ex.claim_reload("memo", 8, 10'500));  // per name@version
  EXPECT_TRUE(ex.claim_reload("other", 7, 10'500));
  EXPECT_TRUE(ex.claim_reload("memo", 7, 11'000));  // a second later
  EXPECT_FALSE(ex.claim_reload("memo", 7, 11'001));
  EXPECT_TRUE(ex.claim_reload("memo", 7, 11'100, /*interval_ms=*/100));
}

}  // namespace
}  // namespace baton::worker
