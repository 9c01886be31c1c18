// The `plan` agent: stage progression over the run context, templating of
// inputs and of the result (types kept for a lone "{{path}}", nested maps and
// lists, the `context.` alias), done with a result, template errors at run
// time, and bad configs refused at construction with a message naming the key.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "baton/agent.h"
#include "common/workflow/parser.h"

namespace baton::agent {
namespace {

using nlohmann::json;

const AgentRegistry& builtins() {
  static const AgentRegistry r = [] {
    AgentRegistry reg;
    register_builtin_agents(reg);
    return reg;
  }();
  return r;
}

AgentPtr make(const json& cfg) {
  auto a = builtins().create("plan", cfg);
  EXPECT_TRUE(a.is_ok()) << a.status().to_string();
  if (!a) return nullptr;
  return std::move(a).value();
}

std::string refusal(const json& cfg) {
  auto a = builtins().create("plan", cfg);
  if (a) return "";
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument) << a.status().to_string();
  return a.status().message();
}

AgentOutput run(Agent& a, json input, json context = json::object(), json record = json::object()) {
  OwnedInput in(v1::Task(), std::move(input), std::move(context), std::move(record), 3);
  return a.execute(in.view());
}

// The brief's example, written with `context.` (the planner protocol's word).
json research_plan() {
  return json::parse(R"({
    "stages": [
      [ {"id": "market", "step": "research", "input": {"topic": "market for {{input.product}}"}},
        {"id": "rivals", "step": "research", "input": {"topic": "competitors of {{input.product}}"}} ],
      [ {"id": "draft", "step": "write",
         "input": {"notes": "{{context.market.summary}} / {{context.rivals.summary}}"}} ]
    ],
    "result": {"summary": "{{context.draft.text}}"}
  })");
}

TEST(PlanAgent, IsABuiltinKind) { EXPECT_TRUE(builtins().contains("plan")); }

TEST(PlanAgent, WalksTheStagesInOrderAndEndsWithTheResult) {
  auto a = make(research_plan());
  ASSERT_TRUE(a);
  json input = {{"product", "kettles"}};

  // Nothing done yet: the whole first stage.
  auto first = run(*a, input);
  ASSERT_EQ(first.status, AgentOutput::kOk) << first.error_message;
  EXPECT_EQ(first.output, json::parse(R"({"done": false, "steps": [
      {"id": "market", "step": "research", "input": {"topic": "market for kettles"}},
      {"id": "rivals", "step": "research", "input": {"topic": "competitors of kettles"}}]})"));

  // Half of the first stage done: only the missing entry is emitted again.
  json ctx = {{"market", {{"summary", "big"}}}};
  auto half = run(*a, input, ctx);
  ASSERT_EQ(half.status, AgentOutput::kOk) << half.error_message;
  EXPECT_EQ(half.output, json::parse(R"({"done": false, "steps": [
      {"id": "rivals", "step": "research", "input": {"topic": "competitors of kettles"}}]})"));

  // A null result counts as missing.
  ctx["rivals"] = nullptr;
  EXPECT_EQ(run(*a, input, ctx).output["steps"][0]["id"], "rivals");

  // First stage complete: the second, rendered from its results.
  ctx["rivals"] = {{"summary", "two rivals"}};
  auto second = run(*a, input, ctx);
  ASSERT_EQ(second.status, AgentOutput::kOk) << second.error_message;
  EXPECT_EQ(second.output, json::parse(R"({"done": false, "steps": [
      {"id": "draft", "step": "write", "input": {"notes": "big / two rivals"}}]})"));

  // Everything done: the result.
  ctx["draft"] = {{"text", "Kettles: a big market, two rivals."}};
  auto done = run(*a, input, ctx);
  ASSERT_EQ(done.status, AgentOutput::kOk) << done.error_message;
  EXPECT_EQ(done.output, json::parse(R"({"done": true, "result": {"summary": "Kettles: a big market, two rivals."}})"));
  EXPECT_TRUE(done.writes.empty());
}

TEST(PlanAgent, AStageWhoseIdsAllHaveResultsIsSkippedEvenOutOfOrder) {
  auto a = make(research_plan());
  ASSERT_TRUE(a);
  // The second stage is done but the first is not: the first is emitted (only its missing id).
  json ctx = {{"draft", {{"text", "t"}}}, {"rivals", {{"summary", "r"}}}};
  auto out = run(*a, {{"product", "p"}}, ctx);
  ASSERT_EQ(out.status, AgentOutput::kOk);
  ASSERT_EQ(out.output["steps"].size(), 1u);
  EXPECT_EQ(out.output["steps"][0]["id"], "market");
  // Workflow steps in the context that are not planned ids do not matter.
  ctx = {{"market", {{"summary", "m"}}}, {"rivals", {{"summary", "r"}}}, {"intake", {{"x", 1}}}};
  out = run(*a, {{"product", "p"}}, ctx);
  EXPECT_EQ(out.output["steps"][0]["id"], "draft");
}

TEST(PlanAgent, TemplatesUseTheAgentScopeKeepTypesAndRecurse) {
  auto a = make(json::parse(R"({
    "stages": [[ {"id": "q1", "step": "research", "input": {
        "count": "{{input.n}}",
        "tags": ["{{input.tags}}", "fixed", "{{record.owner}}-team", 7],
        "nested": {"who": "{{record.owner}}", "prev": "{{steps.intake.lead}}", "flag": true},
        "label": "n={{input.n}}",
        "plain": "no templates"}} ]],
    "result": {"answer": "{{steps.q1}}", "n": "{{input.n}}", "text": "got {{steps.q1.value}}"}
  })"));
  ASSERT_TRUE(a);
  json input = {{"n", 3}, {"tags", {"a", "b"}}};
  json record = {{"owner", "ana"}};
  json ctx = {{"intake", {{"lead", "L-1"}}}};
  auto out = run(*a, input, ctx, record);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["steps"][0]["input"], json::parse(R"({
      "count": 3, "tags": [["a", "b"], "fixed", "ana-team", 7],
      "nested": {"who": "ana", "prev": "L-1", "flag": true},
      "label": "n=3", "plain": "no templates"})"));

  ctx["q1"] = {{"value", 42}};
  auto done = run(*a, input, ctx, record);
  ASSERT_EQ(done.status, AgentOutput::kOk) << done.error_message;
  EXPECT_EQ(done.output, json::parse(R"({"done": true, "result": {"answer": {"value": 42}, "n": 3, "text": "got 42"}})"));
}

TEST(PlanAgent, WithoutResultTheResultIsEveryPlannedResultById) {
  auto a = make(json::parse(R"({"stages": [[{"id": "a", "step": "s"}], [{"id": "b-2", "step": "s", "input": null}]]})"));
  ASSERT_TRUE(a);
  auto first = run(*a, json::object());
  EXPECT_EQ(first.output, json::parse(R"({"done": false, "steps": [{"id": "a", "step": "s", "input": {}}]})"));
  auto done = run(*a, json::object(), {{"a", {{"x", 1}}}, {"b-2", {{"y", 2}}}, {"other", 0}});
  EXPECT_EQ(done.output, json::parse(R"({"done": true, "result": {"a": {"x": 1}, "b-2": {"y": 2}}})"));
}

TEST(PlanAgent, AMissingPathFailsTheTaskNamingEntryAndPath) {
  auto a = make(research_plan());
  ASSERT_TRUE(a);
  auto out = run(*a, json::object());  // no input.product
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("market.input.topic"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.find("input.product"), std::string::npos) << out.error_message;

  // A result path that is missing (or null) at the end fails too.
  json ctx = {{"market", {{"summary", "m"}}}, {"rivals", {{"summary", "r"}}}, {"draft", {{"body", "no text"}}}};
  auto end = run(*a, {{"product", "p"}}, ctx);
  EXPECT_EQ(end.status, AgentOutput::kFailed);
  EXPECT_EQ(end.error_code, errors::kTemplateError);
  EXPECT_NE(end.error_message.find("result.summary"), std::string::npos) << end.error_message;
  EXPECT_NE(end.error_message.find("context.draft.text"), std::string::npos) << end.error_message;
}

TEST(PlanAgent, IsDeterministicAcrossThreads) {
  auto a = make(research_plan());
  ASSERT_TRUE(a);
  json want = run(*a, {{"product", "p"}}, {{"market", {{"summary", "m"}}}}).output;
  std::vector<std::thread> threads;
  std::vector<json> got(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) got[t] = run(*a, {{"product", "p"}}, {{"market", {{"summary", "m"}}}}).output;
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, want);
}

TEST(PlanAgent, BadConfigsAreRefusedNamingTheKey) {
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                               : ::testing::AssertionFailure() << "`" << msg << "` lacks `" << part << "`";
  };
  EXPECT_TRUE(has(refusal(json::object()), "`stages` is required"));
  EXPECT_TRUE(has(refusal({{"stages", json::array()}}), "`stages` must be a non-empty list"));
  EXPECT_TRUE(has(refusal({{"stages", "x"}}), "`stages` must be a non-empty list"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[]]})")), "`stages[0]` must be a non-empty list"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [{"id": "a", "step": "s"}]})")), "`stages[0]` must be"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [["a"]]})")), "`stages[0][0]` must be a map"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"step": "s"}]]})")), "`stages[0][0]`: `id` is required"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a"}]]})")), "`step` is required"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": ""}]]})")), "`step` is required"));
  for (const char* bad : {"Market", "_a", "-a", "a.b", "a b", "é", ""}) {
    json cfg = {{"stages", {{{{"id", bad}, {"step", "s"}}}}}};
    EXPECT_TRUE(has(refusal(cfg), "must match [a-z0-9][a-z0-9_-]*")) << bad;
  }
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s"}], [{"id": "a", "step": "t"}]]})")),
                  "`stages[1][0]`: id `a` is used twice"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s", "role": "x"}]]})")),
                  "unknown key `role`"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s", "input": "x"}]]})")),
                  "`input` must be a map"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s", "input": {"t": "{{input.x"}}]]})")),
                  "stages[0][0]`.input.t: column"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s", "input": {"t": ["{{run.x}}"]}}]]})")),
                  "input.t[0]: path `run.x` must start with input., record., steps. or context."));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s"}]], "result": "x"})")),
                  "`result` must be a map"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s"}]], "result": {"r": "{{output.x}}"}})")),
                  "`result`.r: path `output.x`"));
  EXPECT_TRUE(has(refusal(json::parse(R"({"stages": [[{"id": "a", "step": "s"}]], "allowed": ["s"]})")),
                  "plan: unknown key `allowed`"));
  // Well-formed ids of every shape are accepted.
  EXPECT_EQ(refusal(json::parse(R"({"stages": [[{"id": "0", "step": "s"}, {"id": "a_b-9", "step": "s"}]]})")), "");
}

// The config as the workflow parser hands it over (YAML flow maps and lists).
TEST(PlanAgent, AcceptsTheConfigFromAWorkflowFile) {
  const char* yaml = R"(name: plan-demo
version: 1
steps:
  - id: plan
    role: planner
    agent:
      kind: plan
      stages:
        - - { id: market, step: research, input: { topic: "market for {{input.product}}" } }
          - { id: rivals, step: research, input: { topic: "competitors of {{input.product}}" } }
        - - { id: draft, step: write, input: { notes: "{{context.market.summary}} / {{context.rivals.summary}}" } }
      result: { summary: "{{context.draft.text}}" }
)";
  auto wf = workflow::parse_workflow(yaml, "plan-demo.yaml");
  ASSERT_TRUE(wf.is_ok()) << wf.status().to_string();
  const auto* step = (*wf)->find_step("plan");
  ASSERT_NE(step, nullptr);
  ASSERT_TRUE(step->agent.has_value());
  EXPECT_EQ(step->agent->kind, "plan");
  json cfg = step->agent->config;
  auto a = builtins().create("plan", cfg);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string() << "\n" << cfg.dump();
  auto out = run(**a, {{"product", "kettles"}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["steps"].size(), 2u);
  EXPECT_EQ(out.output["steps"][1]["input"]["topic"], "competitors of kettles");
}

}  // namespace
}  // namespace baton::agent
