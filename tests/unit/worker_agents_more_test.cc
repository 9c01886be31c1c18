// Agent options added for the routing examples: validate's `on_fail: report`
// and `on_missing`, and the rules agent's `confidence` / `default_confidence`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "baton/agent.h"
#include "tests/support/agents.h"

namespace baton::agent {
namespace {

using nlohmann::json;
using namespace baton::testing;  // builtins, make, refusal, run

const json kVat = json::parse(R"({
  "required": ["steps.extract.supplier"],
  "checks": [
    {"name": "vat_sum", "sum": ["steps.extract.net", "steps.extract.vat"], "equals": "steps.extract.total"},
    {"name": "po_amount", "sum": ["steps.extract.total"], "equals": "input.po.amount"}
  ]
})");

TEST(ValidateReport, FailedChecksAreAnOkAnswerWithValidFalse) {
  json cfg = kVat;
  cfg["on_fail"] = "report";
  auto a = make("validate", cfg);
  ASSERT_TRUE(a);
  json steps = {{"extract", {{"supplier", "Acme"}, {"net", 100}, {"vat", 21}, {"total", 121}}}};
  AgentOutput out = run(*a, {{"po", {{"amount", 120}}}}, steps);
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_TRUE(out.error_code.empty());
  EXPECT_EQ(out.output["valid"], false);
  EXPECT_EQ(out.output["error"], "check_failed");
  ASSERT_EQ(out.output["failed"].size(), 1u);
  EXPECT_EQ(out.output["failed"][0]["name"], "po_amount");
  EXPECT_NE(out.output["message"].get<std::string>().find("po_amount"), std::string::npos) << out.output.dump();
  EXPECT_EQ(out.output["checked"], (json{"vat_sum", "po_amount"}));

  // A valid one is unchanged: {valid: true, checked}.
  steps["extract"]["vat"] = 20;
  steps["extract"]["total"] = 120;
  out = run(*a, {{"po", {{"amount", 120}}}}, steps);
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output, (json{{"valid", true}, {"checked", {"vat_sum", "po_amount"}}}));
}

TEST(ValidateReport, OnMissingDefaultsToOnFailAndCanDiffer) {
  json steps = {{"extract", {{"net", 100}, {"vat", 20}, {"total", 120}}}};  // no supplier
  json input = {{"po", {{"amount", 120}}}};

  json cfg = kVat;
  cfg["on_fail"] = "report";
  auto reported = make("validate", cfg);
  ASSERT_TRUE(reported);
  AgentOutput out = run(*reported, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output["valid"], false);
  EXPECT_EQ(out.output["error"], "missing_field");
  EXPECT_EQ(out.output["missing"], json{"steps.extract.supplier"});

  cfg["on_missing"] = "failed";
  auto strict = make("validate", cfg);
  ASSERT_TRUE(strict);
  out = run(*strict, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "missing_field");
  EXPECT_EQ(out.output["valid"], false);
  EXPECT_FALSE(out.output.contains("error"));
  // on_missing does not change how failed checks are reported.
  steps["extract"]["supplier"] = "Acme";
  steps["extract"]["total"] = 119;
  out = run(*strict, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output["error"], "check_failed");

  // Without on_fail / on_missing the default is still needs_review.
  auto plain = make("validate", kVat);
  ASSERT_TRUE(plain);
  out = run(*plain, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.error_code, "check_failed");

  cfg = kVat;
  cfg["on_fail"] = "failed";
  cfg["on_missing"] = "needs_review";
  auto mixed = make("validate", cfg);
  ASSERT_TRUE(mixed);
  out = run(*mixed, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  steps["extract"].erase("supplier");
  out = run(*mixed, input, steps);
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.error_code, "missing_field");
}

TEST(ValidateReport, BadValuesAreRefused) {
  json cfg = kVat;
  cfg["on_fail"] = "ignore";
  EXPECT_EQ(refusal("validate", cfg), "validate: `on_fail` must be needs_review, failed or report, got ignore");
  cfg = kVat;
  cfg["on_missing"] = "maybe";
  EXPECT_EQ(refusal("validate", cfg), "validate: `on_missing` must be needs_review, failed or report, got maybe");
  cfg["on_missing"] = json::array();
  EXPECT_EQ(refusal("validate", cfg), "validate: `on_missing` must be a string, got array");
}

const json kTriage = json::parse(R"({
  "text": "{{input.subject}} {{input.message}}",
  "field": "intent",
  "rules": [
    {"label": "compliance", "all": ["delete", "data"], "confidence": 0.9},
    {"label": "billing", "any": ["refund", "invoice"], "confidence": "0.85"},
    {"label": "billing", "any": ["payment"], "confidence": 0.55},
    {"label": "outage", "regex": "\\bdown\\b"}
  ],
  "default": "general",
  "default_confidence": 0.4
})");

TEST(RulesConfidence, TheMatchedRuleOrTheDefaultGivesTheConfidence) {
  auto a = make("rules", kTriage);
  ASSERT_TRUE(a);
  auto classify = [&](const std::string& message) {
    return run(*a, {{"subject", "Help"}, {"message", message}});
  };
  AgentOutput out = classify("Please delete all my data");
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output["intent"], "compliance");
  EXPECT_DOUBLE_EQ(out.output["confidence"].get<double>(), 0.9);
  out = classify("Where is my refund?");
  EXPECT_EQ(out.output["intent"], "billing");
  EXPECT_DOUBLE_EQ(out.output["confidence"].get<double>(), 0.85);  // numeric string accepted
  out = classify("A payment question");
  EXPECT_EQ(out.output["matched_rule"], 2);
  EXPECT_DOUBLE_EQ(out.output["confidence"].get<double>(), 0.55);
  out = classify("The site is down");
  EXPECT_EQ(out.output["intent"], "outage");
  EXPECT_FALSE(out.output.contains("confidence")) << "a rule without confidence adds none";
  out = classify("Hello there");
  EXPECT_EQ(out.output["intent"], "general");
  EXPECT_DOUBLE_EQ(out.output["confidence"].get<double>(), 0.4);

  json no_default_conf = kTriage;
  no_default_conf.erase("default_confidence");
  auto b = make("rules", no_default_conf);
  ASSERT_TRUE(b);
  out = run(*b, {{"subject", "Hi"}, {"message", "there"}});
  EXPECT_EQ(out.output["intent"], "general");
  EXPECT_FALSE(out.output.contains("confidence"));
}

TEST(RulesConfidence, BadConfidencesAreRefused) {
  json cfg = kTriage;
  cfg["rules"][0]["confidence"] = 1.5;
  EXPECT_EQ(refusal("rules", cfg), "rules: rule 0: `confidence` must be a number from 0 to 1, got 1.5");
  cfg = kTriage;
  cfg["rules"][1]["confidence"] = "high";
  EXPECT_EQ(refusal("rules", cfg), "rules: rule 1: `confidence` must be a number from 0 to 1, got \"high\"");
  cfg = kTriage;
  cfg["default_confidence"] = -0.1;
  EXPECT_EQ(refusal("rules", cfg), "rules: `default_confidence` must be a number from 0 to 1, got -0.1");
  cfg = kTriage;
  cfg.erase("default");
  EXPECT_EQ(refusal("rules", cfg), "rules: `default_confidence` needs a `default` label");
}

}  // namespace
}  // namespace baton::agent
