// Small agent capabilities the pattern examples need (examples/client-intake,
// examples/market-brief, examples/weekly-report):
// - `template`: a field may be a list of alternatives, the first that renders wins;
// - `score`: `value_from` (compare with another path), `feedback` and `fix`
//   (rendered for the criteria that did not match: a checker's advice to a maker);
// - `plan`: `for_each` entries (one planned step per element of a list).
// Each with its config refusals, and the old behaviour unchanged.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "baton/agent.h"
#include "tests/support/agents.h"

namespace baton::agent {
namespace {

using nlohmann::json;
using namespace baton::testing;  // builtins, make, refusal, run

// ---------------------------------------------------------------------------
// template: alternatives

TEST(TemplateAlternatives, FirstAlternativeThatRendersWins) {
  auto a = make("template", json::parse(R"({"fields": {
      "price": ["{{steps.review.fixes.price}}", "{{steps.draft.price}}", "{{input.quote}}"],
      "note": ["{{steps.figures.finance.line}}", "finance figures not available"],
      "plain": "for {{input.client}}"}})"));
  ASSERT_NE(a, nullptr);

  // Round 1: no review, no earlier draft: the quote.
  AgentOutput out = run(*a, {{"quote", 12000}, {"client", "Acme"}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, (json{{"price", "12000"}, {"note", "finance figures not available"}, {"plain", "for Acme"}}));

  // Round 2: the checker's fix wins over the earlier draft.
  json ctx = {{"review", {{"fixes", {{"price", 9500}}}}}, {"draft", {{"price", "12000"}}}};
  out = run(*a, {{"quote", 12000}, {"client", "Acme"}}, ctx);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["price"], "9500");

  // No fix for the price this time: keep the earlier draft's.
  ctx = {{"review", {{"fixes", json::object()}}}, {"draft", {{"price", "9500"}}},
         {"figures", {{"finance", {{"line", "cash 1"}}}}}};
  out = run(*a, {{"quote", 12000}, {"client", "Acme"}}, ctx);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["price"], "9500");
  EXPECT_EQ(out.output["note"], "cash 1");
}

TEST(TemplateAlternatives, NoAlternativeRenderingIsATemplateErrorNamingTheLastPath) {
  auto a = make("template", json::parse(R"({"fields": {"price": ["{{steps.x.p}}", "{{input.quote}}"]}})"));
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, json::object());
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("field price (no alternative rendered)"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.find("{{input.quote}}"), std::string::npos) << out.error_message;

  // A single template still fails as before.
  auto b = make("template", json::parse(R"({"fields": {"x": "{{input.missing}}"}})"));
  out = run(*b, json::object());
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_message.rfind("field x: ", 0), 0u) << out.error_message;
}

TEST(TemplateAlternatives, BadListsAreRefused) {
  // Only a non-empty list of strings is a list of alternatives; other lists are
  // refused as before.
  EXPECT_EQ(refusal("template", json::parse(R"({"fields": {"a": []}})")),
            "template: `fields.a` must be a template string, got array");
  EXPECT_EQ(refusal("template", json::parse(R"({"fields": {"a": ["ok", {"x": 1}]}})")),
            "template: `fields.a` must be a template string, got array");
  EXPECT_EQ(refusal("template", json::parse(R"({"fields": {"a": [1, 2]}})")),
            "template: `fields.a` must be a template string, got array");
  EXPECT_NE(refusal("template", json::parse(R"({"fields": {"a": ["ok", "{{nope.x}}"]}})")).find("must start with"),
            std::string::npos);
  EXPECT_NE(refusal("template", json::parse(R"({"fields": {"a": ["{{input.x"]}})")).find("`fields.a`[0]"),
            std::string::npos);
}

// ---------------------------------------------------------------------------
// score: value_from, feedback, fix

json checker_config() {
  return json::parse(R"({"criteria": [
    {"name": "scope", "path": "steps.draft.scope", "op": "exists",
     "feedback": "add a scope section", "fix": {"scope": "{{input.service}} for {{input.company}}"}},
    {"name": "within_budget", "path": "steps.draft.price", "op": "lte", "value_from": "input.budget",
     "feedback": "price {{steps.draft.price}} is over the budget of {{input.budget}}",
     "fix": {"price": "{{input.budget}}"}},
    {"name": "min_fee", "path": "steps.draft.price", "op": "gte", "value": 5000,
     "feedback": "price {{steps.draft.price}} is under the minimum fee", "fix": {"price": 5000}}
  ]})");
}

TEST(ScoreChecker, AllMatchedGivesEmptyFeedbackAndFixes) {
  auto a = make("score", checker_config());
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, {{"budget", 10000}, {"service", "audit"}, {"company", "Acme"}},
                        {{"draft", {{"scope", "audit"}, {"price", "8000"}}}});
  ASSERT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output["score"], 1.0);
  EXPECT_EQ(out.output["feedback"], json::array());
  EXPECT_EQ(out.output["fixes"], json::object());
}

TEST(ScoreChecker, UnmatchedCriteriaGiveFeedbackAndTypedFixes) {
  auto a = make("score", checker_config());
  ASSERT_NE(a, nullptr);
  AgentOutput out =
      run(*a, {{"budget", 9500}, {"service", "audit"}, {"company", "Acme"}}, {{"draft", {{"price", "12000"}}}});
  ASSERT_EQ(out.status, AgentOutput::kOk);
  EXPECT_NEAR(out.output["score"].get<double>(), 1.0 / 3, 1e-4);
  EXPECT_EQ(out.output["feedback"],
            (json{"add a scope section", "price 12000 is over the budget of 9500"}));
  // "{{input.budget}}" keeps the number; a template with text renders text.
  EXPECT_EQ(out.output["fixes"], (json{{"scope", "audit for Acme"}, {"price", 9500}}));
}

TEST(ScoreChecker, LaterFixesOverwriteEarlierOnes) {
  auto a = make("score", checker_config());
  ASSERT_NE(a, nullptr);
  // Budget 3000 under the minimum fee; a draft at the budget fails min_fee only.
  AgentOutput out = run(*a, {{"budget", 3000}, {"service", "s"}, {"company", "c"}},
                        {{"draft", {{"scope", "s"}, {"price", "3000"}}}});
  EXPECT_EQ(out.output["fixes"], (json{{"price", "5000"}})) << out.output.dump();
  // Over the budget and under the fee (only possible with a budget under the fee): both fixes, the later wins.
  out = run(*a, {{"budget", 3000}, {"service", "s"}, {"company", "c"}}, {{"draft", {{"scope", "s"}, {"price", "4000"}}}});
  EXPECT_EQ(out.output["matched"], json::array({"scope"}));
  EXPECT_EQ(out.output["fixes"]["price"], "5000");  // min_fee comes after within_budget
}

TEST(ScoreChecker, ValueFromComparesWithAnotherPath) {
  auto a = make("score", json::parse(R"({"criteria": [
    {"name": "le", "path": "input.a", "op": "lte", "value_from": "input.b"},
    {"name": "eq", "path": "input.tier", "op": "eq", "value_from": "record.tier"},
    {"name": "ne", "path": "input.tier", "op": "ne", "value_from": "record.old_tier"},
    {"name": "in", "path": "input.region", "op": "in", "value_from": "record.regions"}
  ]})"));
  ASSERT_NE(a, nullptr);
  json rec = {{"tier", "GOLD"}, {"old_tier", "silver"}, {"regions", {"emea", "apac"}}};
  AgentOutput out = run(*a, {{"a", "5"}, {"b", 5}, {"tier", "gold"}, {"region", "apac"}}, json::object(), rec);
  EXPECT_EQ(out.output["matched"], (json{"le", "eq", "ne", "in"}));
  EXPECT_EQ(out.output.contains("feedback"), false);  // no criterion has feedback: output as before
  EXPECT_EQ(out.output.contains("fixes"), false);

  // Missing, null or unusable other operands match nothing (ne included).
  out = run(*a, {{"a", 5}, {"b", "x"}, {"tier", "gold"}, {"region", "apac"}}, json::object(),
            {{"tier", nullptr}, {"regions", "apac"}});
  EXPECT_EQ(out.output["matched"], json::array());
  EXPECT_EQ(out.output["score"], 0.0);
}

TEST(ScoreChecker, FeedbackWithAMissingPathIsATemplateError) {
  auto a = make("score", json::parse(R"({"criteria": [
    {"path": "input.x", "op": "exists", "feedback": "x missing for {{input.client}}"}]})"));
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, json::object());
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("feedback"), std::string::npos) << out.error_message;
  // Matched: the feedback is not rendered, so its missing path does not matter.
  out = run(*a, {{"x", 1}});
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output["feedback"], json::array());
}

TEST(ScoreChecker, BadCheckerConfigsAreRefused) {
  auto crit = [](const char* extra) {
    return json::parse(std::string(R"({"criteria": [{"path": "input.a", "op": "lte")") + extra + "}]}");
  };
  EXPECT_EQ(refusal("score", crit(R"(, "value": 1, "value_from": "input.b")")),
            "score: criterion 0: give only one of `value` and `value_from`");
  EXPECT_NE(refusal("score", crit(R"(, "value_from": "nope.b")")).find("must start with"), std::string::npos);
  EXPECT_NE(refusal("score", crit(R"(, "value": 1, "fix": {})")).find("`fix` must be a non-empty map"),
            std::string::npos);
  EXPECT_NE(refusal("score", crit(R"(, "value": 1, "feedback": "{{input.x")")).find("`feedback`"), std::string::npos);
  EXPECT_NE(refusal("score", crit(R"(, "value": 1, "fix": {"p": "{{bad.root}}"})")).find("`fix.p`"),
            std::string::npos);
  EXPECT_NE(refusal("score", json::parse(R"({"criteria": [{"path": "input.a", "op": "exists",
                                         "value_from": "input.b"}]})"))
                .find("`value_from` applies to"),
            std::string::npos);
  EXPECT_NE(refusal("score", json::parse(R"({"field": "feedback", "criteria": [{"path": "input.a", "op": "exists",
                                         "feedback": "x"}]})"))
                .find("must not be `feedback`"),
            std::string::npos);
  // `value` is still required without `value_from`.
  EXPECT_NE(refusal("score", crit("")).find("value"), std::string::npos);
}

// ---------------------------------------------------------------------------
// plan: for_each

json market_plan() {
  return json::parse(R"({
    "stages": [
      [ {"id": "market", "step": "research", "input": {"topic": "market for {{input.product}}"}},
        {"id": "rival-{{item.slug}}", "step": "research", "for_each": "input.competitors",
         "input": {"topic": "{{item.name}} vs {{input.product}}", "item": "{{item}}"}} ],
      [ {"id": "draft", "step": "write", "input": {"notes": "{{steps.market.summary}}"}} ]
    ],
    "result": {"brief": "{{steps.draft.text}}"}
  })");
}

json ids(const AgentOutput& out) {
  json r = json::array();
  for (const auto& s : out.output["steps"]) r.push_back(s["id"]);
  return r;
}

TEST(PlanForEach, OneStepPerElementThenTheNextStage) {
  auto a = make("plan", market_plan());
  ASSERT_NE(a, nullptr);
  json in = {{"product", "kite"},
             {"competitors", {{{"slug", "skyline"}, {"name", "Skyline"}}, {{"slug", "aero"}, {"name", "Aero"}}}}};
  AgentOutput out = run(*a, in);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["done"], false);
  EXPECT_EQ(ids(out), (json{"market", "rival-skyline", "rival-aero"}));
  EXPECT_EQ(out.output["steps"][1]["step"], "research");
  EXPECT_EQ(out.output["steps"][1]["input"]["topic"], "Skyline vs kite");
  EXPECT_EQ(out.output["steps"][2]["input"]["item"], (json{{"slug", "aero"}, {"name", "Aero"}}));  // type kept

  // Only what is missing is re-emitted.
  out = run(*a, in, {{"market", {{"summary", "m"}}}, {"rival-aero", {{"summary", "a"}}}});
  EXPECT_EQ(ids(out), (json{"rival-skyline"}));
  out = run(*a, in, {{"market", {{"summary", "m"}}}, {"rival-aero", {{"summary", "a"}}}, {"rival-skyline", json::object()}});
  EXPECT_EQ(ids(out), (json{"draft"}));
  EXPECT_EQ(out.output["steps"][0]["input"]["notes"], "m");
  out = run(*a, in,
            {{"market", {{"summary", "m"}}}, {"rival-aero", json::object()}, {"rival-skyline", json::object()},
             {"draft", {{"text", "the brief"}}}});
  EXPECT_EQ(out.output, (json{{"done", true}, {"result", {{"brief", "the brief"}}}}));
}

TEST(PlanForEach, EmptyListPlansNothingAndDefaultResultListsExpandedIds) {
  auto cfg = json::parse(R"({"stages": [[{"id": "r-{{item}}", "step": "research", "for_each": "input.names"}]]})");
  auto a = make("plan", cfg);
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, {{"names", json::array()}});
  EXPECT_EQ(out.output, (json{{"done", true}, {"result", json::object()}}));
  out = run(*a, {{"names", {"a", "b"}}}, {{"r-a", {{"v", 1}}}, {"r-b", {{"v", 2}}}});
  EXPECT_EQ(out.output, (json{{"done", true}, {"result", {{"r-a", {{"v", 1}}}, {"r-b", {{"v", 2}}}}}}));
}

TEST(PlanForEach, RenderedIdsAreLeftForTheCoordinatorToCheck) {
  auto a = make("plan", market_plan());
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, {{"product", "kite"}, {"competitors", {{{"slug", "Blue Yonder"}, {"name", "Blue"}}}}});
  ASSERT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(ids(out), (json{"market", "rival-Blue Yonder"}));
}

TEST(PlanForEach, MissingOrNonListIsATemplateError) {
  auto a = make("plan", market_plan());
  ASSERT_NE(a, nullptr);
  AgentOutput out = run(*a, {{"product", "kite"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("input.competitors"), std::string::npos) << out.error_message;
  out = run(*a, {{"product", "kite"}, {"competitors", "skyline"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_NE(out.error_message.find("not a list"), std::string::npos) << out.error_message;
  // An element without the id's path.
  out = run(*a, {{"product", "kite"}, {"competitors", {{{"name", "x"}}}}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_NE(out.error_message.find("item.slug"), std::string::npos) << out.error_message;
}

TEST(PlanForEach, BadForEachConfigsAreRefused) {
  auto entry = [](const char* e) { return json::parse(std::string(R"({"stages": [[)") + e + "]]}"); };
  EXPECT_NE(refusal("plan", entry(R"({"id": "r", "step": "s", "for_each": "input.l"})")).find("must use {{item}}"),
            std::string::npos);
  EXPECT_NE(refusal("plan", entry(R"({"id": "r-{{item}}", "step": "s", "for_each": 3})")).find("`for_each` must be"),
            std::string::npos);
  EXPECT_NE(refusal("plan", entry(R"({"id": "r-{{item}}", "step": "s", "for_each": "nope.l"})")).find("must start with"),
            std::string::npos);
  EXPECT_NE(refusal("plan", entry(R"({"id": "r-{{item}}", "step": "s", "for_each": "a b"})")).find("invalid path"),
            std::string::npos);
  // `item.` only inside a for_each entry.
  EXPECT_NE(refusal("plan", entry(R"({"id": "r", "step": "s", "input": {"x": "{{item.a}}"}})")).find("must start with"),
            std::string::npos);
  EXPECT_EQ(refusal("plan", entry(R"({"id": "r-{{item}}", "step": "s", "for_each": "input.l",
                                      "input": {"x": "{{item.a}}"}})")),
            "");
}

}  // namespace
}  // namespace baton::agent
