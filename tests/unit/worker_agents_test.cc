// Built-in agents: configs, outputs, every failure code, and bad configs
// refused at construction with a message naming the key.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "baton/agent.h"
#include "workers/agents/extract.h"
#include "workers/agents/rules.h"
#include "tests/support/agents.h"

namespace baton::agent {
namespace {

using nlohmann::json;
using namespace baton::testing;  // builtins, make, refusal, run

TEST(AgentRegistry, ListsBuiltinsAndRefusesDuplicatesAndUnknownKinds) {
  EXPECT_EQ(builtins().kinds(), (std::vector<std::string>{"echo", "exec", "extract", "http", "llm", "plan", "rules", "score", "template", "validate"}));
  AgentRegistry r;
  register_builtin_agents(r);
  Status dup = r.add("echo", [](const json&) -> FactoryResult { return invalid("x"); });
  EXPECT_EQ(dup.code(), Code::kAlreadyExists);
  EXPECT_EQ((r.add("", [](const json&) -> FactoryResult { return invalid("x"); }).code()), Code::kInvalidArgument);
  EXPECT_EQ(r.add("nofactory", AgentFactory()).code(), Code::kInvalidArgument);
  auto unknown = r.create("crystal_ball", json::object());
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_EQ(unknown.status().code(), Code::kNotFound);
  EXPECT_EQ(unknown.status().message(), "no agent kind `crystal_ball` in this worker");
}

TEST(AgentRegistry, FactoryThatThrowsIsARefusal) {
  AgentRegistry r;
  ASSERT_TRUE(r.add("boom", [](const json& cfg) -> FactoryResult {
    (void)cfg.at("missing");  // throws out_of_range
    return invalid("unreachable");
  }).is_ok());
  auto a = r.create("boom", json::object());
  ASSERT_FALSE(a.is_ok());
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
  EXPECT_NE(a.status().message().find("boom: "), std::string::npos) << a.status().message();
}

// ---- echo -------------------------------------------------------------------

TEST(EchoAgent, EchoesTheInputOrASubset) {
  json input = {{"a", 1}, {"b", "two"}, {"c", {{"d", true}}}};
  auto all = make("echo", json::object());
  auto out = run(*all, input);
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output, input);
  EXPECT_EQ(out.writes, json::object());

  auto some = make("echo", {{"fields", {"a", "c", "absent"}}});
  EXPECT_EQ(run(*some, input).output, (json{{"a", 1}, {"c", {{"d", true}}}}));
}

TEST(EchoAgent, RefusesBadConfig) {
  EXPECT_EQ((refusal("echo", {{"field", {"a"}}})), "echo: unknown key `field` (allowed: fields)");
  EXPECT_EQ((refusal("echo", {{"fields", {{"a", 1}}}})), "echo: `fields` must be a list of strings, got object");
  EXPECT_EQ(refusal("echo", json::array()), "echo: config must be a map, got array");
}

// ---- template ---------------------------------------------------------------

TEST(TemplateAgent, RendersFieldsFromInputRecordAndSteps) {
  auto a = make("template", {{"fields",
                              {{"greeting", "Hi {{input.name}}, owner {{record.owner}}"},
                               {"score", "{{steps.qualify.score}}"},
                               {"plain", "no placeholders"}}}});
  auto out = run(*a, {{"name", "Ada"}}, {{"qualify", {{"score", 0.75}}}}, {{"owner", "sales-emea"}});
  EXPECT_EQ(out.status, AgentOutput::kOk);
  EXPECT_EQ(out.output,
            (json{{"greeting", "Hi Ada, owner sales-emea"}, {"score", "0.75"}, {"plain", "no placeholders"}}));
}

TEST(TemplateAgent, MissingPathFailsWithTemplateError) {
  auto a = make("template", {{"fields", {{"greeting", "Hi {{input.name}}"}}}});
  auto out = run(*a, {{"other", 1}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "template_error");
  EXPECT_NE(out.error_message.find("input.name"), std::string::npos) << out.error_message;
  EXPECT_EQ(out.error_message.rfind("field greeting: ", 0), 0u) << out.error_message;
}

TEST(TemplateAgent, RefusesBadConfig) {
  EXPECT_EQ(refusal("template", json::object()),
            "template: `fields` is required: a map of output field -> template");
  std::string unclosed = refusal("template", {{"fields", {{"x", "{{input.a"}}}});
  EXPECT_EQ(unclosed.rfind("template: `fields.x`: ", 0), 0u) << unclosed;
  EXPECT_EQ((refusal("template", {{"fields", {{"x", "{{secret.a}}"}}}})),
            "template: `fields.x`: path `secret.a` must start with input., record. or steps.");
  EXPECT_EQ((refusal("template", {{"fields", {{"x", {1, 2}}}}})),
            "template: `fields.x` must be a template string, got array");
}

// ---- rules ------------------------------------------------------------------

json support_rules() {
  return {{"text", "{{input.subject}} {{input.message}}"},
          {"rules",
           {{{"label", "billing"}, {"any", {"refund", "Invoice"}}},
            {{"label", "legal"}, {"all", {"contract", "terminate"}}},
            {{"label", "outage"}, {"regex", R"(\b(down|outage|5\d\d)\b)"}}}},
          {"default", "general"},
          {"field", "intent"}};
}

TEST(RulesAgent, FirstMatchingRuleWinsCaseInsensitive) {
  auto a = make("rules", support_rules());
  auto billing = run(*a, {{"subject", "Wrong INVOICE"}, {"message", "please send a refund"}});
  EXPECT_EQ(billing.status, AgentOutput::kOk);
  EXPECT_EQ(billing.output, (json{{"intent", "billing"}, {"matched_rule", 0}, {"matched", "refund"}}));

  auto legal = run(*a, {{"subject", "Contract"}, {"message", "we want to TERMINATE it"}});
  EXPECT_EQ(legal.output["intent"], "legal");
  EXPECT_EQ(legal.output["matched_rule"], 1);
  EXPECT_EQ(legal.output["matched"], "contract+terminate");

  auto half = run(*a, {{"subject", "contract"}, {"message", "renewal question"}});
  EXPECT_EQ(half.output["intent"], "general");  // `all` needs every keyword

  auto outage = run(*a, {{"subject", "Site DOWN"}, {"message", "HTTP 503 everywhere"}});
  EXPECT_EQ(outage.output["intent"], "outage");
  EXPECT_EQ(outage.output["matched"], "DOWN");

  auto other = run(*a, {{"subject", "hello"}, {"message", "a question"}});
  EXPECT_EQ(other.output, (json{{"intent", "general"}, {"matched_rule", nullptr}, {"matched", nullptr}}));
}

TEST(RulesAgent, DefaultFieldIsLabelAndNoDefaultMeansNeedsReview) {
  auto a = make("rules", {{"text", "{{input.m}}"}, {"rules", {{{"label", "x"}, {"any", {"xyz"}}}}}});
  auto hit = run(*a, {{"m", "XYZ!"}});
  EXPECT_EQ(hit.output["label"], "x");
  auto miss = run(*a, {{"m", "nothing"}});
  EXPECT_EQ(miss.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(miss.error_code, "no_match");
  EXPECT_TRUE(miss.output["label"].is_null());
}

TEST(RulesAgent, MissingTextPathFails) {
  auto a = make("rules", support_rules());
  auto out = run(*a, {{"subject", "no message"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "template_error");
}

TEST(RulesAgent, OnlyTheConfiguredPrefixIsSearched) {
  json cfg = {{"text", "{{input.m}}"}, {"rules", {{{"label", "late"}, {"any", {"needle"}}}}}, {"default", "none"},
              {"max_text_bytes", 100}};
  auto a = make("rules", cfg);
  EXPECT_EQ(run(*a, {{"m", std::string(200, 'a') + " needle"}}).output["label"], "none");
  EXPECT_EQ(run(*a, {{"m", "needle " + std::string(200, 'a')}}).output["label"], "late");
  // The default prefix is 4 KiB.
  cfg.erase("max_text_bytes");
  auto d = make("rules", cfg);
  EXPECT_EQ(run(*d, {{"m", std::string(4090, 'a') + " needle"}}).output["label"], "none");
  EXPECT_EQ(run(*d, {{"m", std::string(4080, 'a') + " needle"}}).output["label"], "late");
}

TEST(RulesAgent, RegexOverALongTextDoesNotCrash) {
  // libstdc++'s std::regex recurses per character: 100k characters would
  // overflow the stack; the agent searches only the first 4 KiB.
  auto a = make("rules", {{"text", "{{input.m}}"},
                          {"rules", {{{"label", "x"}, {"regex", "^(a|b)*c"}}}},
                          {"default", "none"}});
  EXPECT_EQ(run(*a, {{"m", std::string(100000, 'a')}}).output["label"], "none");
  EXPECT_EQ(run(*a, {{"m", "ab" + std::string(100, 'a') + "c"}}).output["label"], "x");
}

TEST(RulesAgent, RefusesBadConfig) {
  json ok = support_rules();
  auto with = [&](const char* key, json v) {
    json c = ok;
    c[key] = std::move(v);
    return c;
  };
  EXPECT_EQ(refusal("rules", with("rules", json::array())),
            ("rules: `rules` is required: a non-empty list of {label, any|all|regex}"));
  EXPECT_EQ((refusal("rules", with("rules", {{{"label", "x"}}}))),
            "rules: rule 0: needs exactly one of `any`, `all`, `regex`");
  EXPECT_EQ((refusal("rules", with("rules", {{{"label", "x"}, {"any", {"a"}}, {"regex", "a"}}}))),
            "rules: rule 0: needs exactly one of `any`, `all`, `regex`");
  EXPECT_EQ((refusal("rules", with("rules", {{{"any", {"a"}}}}))), "rules: rule 0: `label` is required");
  EXPECT_EQ((refusal("rules", with("rules", {{{"label", "x"}, {"any", json::array()}}}))),
            "rules: rule 0: `any` must not be empty");
  EXPECT_EQ((refusal("rules", with("rules", {{{"label", "x"}, {"any", {"a"}}, {"when", 1}}}))),
            "rules: rule 0: unknown key `when` (allowed: label, any, all, regex, confidence)");
  EXPECT_EQ((refusal("rules", with("rules", {{{"label", "x"}, {"regex", "(unclosed"}}})).rfind(
                "rules: rule 0: bad regex `(unclosed`: ", 0)),
            0u);
  json no_text = ok;
  no_text.erase("text");
  EXPECT_EQ(refusal("rules", no_text), "rules: `text` is required");
  EXPECT_EQ(refusal("rules", with("max_text_bytes", 0)), "rules: `max_text_bytes` must be an integer within 1..16384");
  EXPECT_EQ(refusal("rules", with("max_text_bytes", 1 << 20)),
            "rules: `max_text_bytes` must be an integer within 1..16384");
  EXPECT_EQ(refusal("rules", with("colour", "red")),
            "rules: unknown key `colour` (allowed: text, rules, default, field, max_text_bytes, default_confidence)");
}

// ---- score ------------------------------------------------------------------

json lead_criteria() {
  return {{"criteria",
           {{{"path", "input.company_size"}, {"op", "gte"}, {"value", 50}, {"weight", 0.3}, {"reason", "50+ staff"}},
            {{"path", "input.budget"}, {"op", "gt"}, {"value", 10000}, {"weight", 0.3}, {"reason", "budget"}},
            {{"path", "input.timeline"},
             {"op", "in"},
             {"value", {"now", "this_quarter"}},
             {"weight", 0.2},
             {"reason", "buying soon"}},
            {{"path", "input.industry"}, {"op", "eq"}, {"value", "SaaS"}, {"weight", 0.2}, {"name", "saas"}}}},
          {"needs_review_below", 0.5}};
}

TEST(ScoreAgent, WeightsMatchedCriteria) {
  auto a = make("score", lead_criteria());
  auto all = run(*a, {{"company_size", 120}, {"budget", 25000}, {"timeline", "NOW"}, {"industry", "saas"}});
  EXPECT_EQ(all.status, AgentOutput::kOk);
  EXPECT_EQ(all.output["score"], 1.0);
  EXPECT_EQ(all.output["reason"], "50+ staff; budget; buying soon");
  EXPECT_EQ(all.output["matched"], (json{"input.company_size gte", "input.budget gt", "input.timeline in", "saas"}));

  auto some = run(*a, {{"company_size", "80"}, {"budget", 10000}, {"timeline", "this_quarter"}});
  EXPECT_EQ(some.status, AgentOutput::kOk);
  EXPECT_DOUBLE_EQ(some.output["score"].get<double>(), 0.5);  // 50 from a string counts; budget not > 10000
  EXPECT_EQ(some.output["reason"], "50+ staff; buying soon");
}

TEST(ScoreAgent, BelowThresholdsNeedsReviewOrFails) {
  auto a = make("score", lead_criteria());
  auto low = run(*a, {{"company_size", 10}, {"budget", 50000}, {"industry", "retail"}});
  EXPECT_EQ(low.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(low.error_code, "low_score");
  EXPECT_EQ(low.error_message, "score 0.3 is below needs_review_below 0.5");
  EXPECT_DOUBLE_EQ(low.output["score"].get<double>(), 0.3);

  json cfg = lead_criteria();
  cfg["fail_below"] = 0.2;
  auto b = make("score", cfg);
  auto none = run(*b, json::object());
  EXPECT_EQ(none.status, AgentOutput::kFailed);
  EXPECT_EQ(none.error_code, "low_score");
  EXPECT_EQ(none.output["score"], 0.0);
  EXPECT_EQ(none.output["reason"], "no criteria matched");
  EXPECT_EQ(none.output["matched"], json::array());
}

TEST(ScoreAgent, EveryOperator) {
  auto one = [](json criterion, json input) {
    criterion["weight"] = 1;
    auto a = make("score", {{"criteria", {criterion}}, {"field", "s"}});
    return run(*a, std::move(input)).output["s"].get<double>();
  };
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "gte"}, {"value", 3}}, {{"x", 3}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "gt"}, {"value", 3}}, {{"x", 3}})), 0);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "lte"}, {"value", 3}}, {{"x", 2.5}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "lt"}, {"value", 3}}, {{"x", 3}})), 0);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "lt"}, {"value", 3}}, {{"x", "not a number"}})), 0);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "eq"}, {"value", "EMEA"}}, {{"x", "emea"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "eq"}, {"value", 5}}, {{"x", "5.0"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "eq"}, {"value", true}}, {{"x", "true"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "ne"}, {"value", "a"}}, {{"x", "b"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "ne"}, {"value", "a"}}, json::object())), 0);  // missing never matches
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "in"}, {"value", {"a", "b"}}}, {{"x", "B"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "in"}, {"value", {"a", "b"}}}, {{"x", {"c", "a"}}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "in"}, {"value", {"a", "b"}}}, {{"x", {"c"}}})), 0);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "exists"}}, {{"x", "v"}})), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "exists"}}, {{"x", ""}})), 0);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "exists"}, {"value", false}}, json::object())), 1);
  EXPECT_EQ((one({{"path", "input.x"}, {"op", "regex"}, {"value", "@acme\\.(com|io)$"}}, {{"x", "jo@ACME.io"}})), 1);
  EXPECT_EQ((one({{"path", "record.tier"}, {"op", "eq"}, {"value", "gold"}}, json::object())), 0);
}

TEST(ScoreAgent, ReadsRecordAndStepsAndRoundsToFourDecimals) {
  auto a = make("score", {{"criteria",
                           {{{"path", "record.tier"}, {"op", "eq"}, {"value", "gold"}, {"weight", 1}},
                            {{"path", "steps.classify.intent"}, {"op", "eq"}, {"value", "sales"}, {"weight", 1}},
                            {{"path", "input.never"}, {"op", "exists"}, {"weight", 1}}}}});
  auto out = run(*a, json::object(), {{"classify", {{"intent", "sales"}}}}, {{"tier", "gold"}});
  EXPECT_EQ(out.output["score"], 0.6667);
}

TEST(ScoreAgent, RefusesBadConfig) {
  auto crit = [](json c) { return json{{"criteria", {std::move(c)}}}; };
  EXPECT_EQ(refusal("score", json::object()),
            ("score: `criteria` is required: a non-empty list of {path, op, value, weight}"));
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "approx"}, {"value", 1}}))),
            "score: criterion 0: unknown op `approx` (allowed: gte, lte, gt, lt, eq, ne, in, exists, regex)");
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "gte"}, {"value", "lots"}}))),
            "score: criterion 0: `value` must be a number, got \"lots\"");
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "in"}, {"value", "a"}}))),
            "score: criterion 0: `value` must be a non-empty list for op in");
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "eq"}}))),
            "score: criterion 0: `value` must be a scalar for op eq");
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "eq"}, {"value", 1}, {"weight", 0}}))),
            "score: criterion 0: `weight` must be > 0");
  EXPECT_EQ((refusal("score", crit({{"path", "x"}, {"op", "exists"}}))),
            "score: criterion 0: path `x` must start with input., record. or steps.");
  EXPECT_EQ((refusal("score", crit({{"op", "exists"}}))), "score: criterion 0: `path` is required");
  EXPECT_EQ((refusal("score", crit({{"path", "input.x"}, {"op", "regex"}, {"value", "[a-"}})).rfind(
                "score: criterion 0: bad regex `[a-`: ", 0)),
            0u);
  json c = crit({{"path", "input.x"}, {"op", "exists"}});
  c["needs_review_below"] = "half";
  EXPECT_EQ(refusal("score", c), "score: `needs_review_below` must be a number, got \"half\"");
  c.erase("needs_review_below");
  c["field"] = "reason";
  EXPECT_EQ(refusal("score", c), "score: `field` must not be empty, `reason` or `matched`");
}

// ---- extract ----------------------------------------------------------------

json invoice_extract() {
  return {{"from", "{{input.body}}"},
          {"fields",
           {{"supplier", "^from:\\s*(.+)$"},
            {"amount", "total[^0-9]*([0-9][0-9.,]*)"},
            {"vat", "vat[^0-9]*([0-9][0-9.,]*)"},
            {"due", "due(?: date)?:\\s*([0-9]{4}-[0-9]{2}-[0-9]{2})"}}},
          {"numbers", {"amount", "vat"}},
          {"required", {"supplier", "amount"}}};
}

TEST(ExtractAgent, ExtractsFieldsAndNumbers) {
  auto a = make("extract", invoice_extract());
  std::string body = "From: Acme Supplies Ltd\nInvoice 991\nVAT 20%: 205.75\nTOTAL: 1,234.50 EUR\nDue date: 2026-07-31\n";
  auto out = run(*a, {{"body", body}});
  EXPECT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["supplier"], "Acme Supplies Ltd");
  EXPECT_DOUBLE_EQ(out.output["amount"].get<double>(), 1234.5);
  EXPECT_DOUBLE_EQ(out.output["vat"].get<double>(), 20);  // first number after "vat": the rate
  EXPECT_EQ(out.output["due"], "2026-07-31");
  EXPECT_FALSE(out.output.contains("missing"));
}

TEST(ExtractAgent, MissingRequiredFieldNeedsReview) {
  auto a = make("extract", invoice_extract());
  auto out = run(*a, {{"body", "From: Acme\nno amounts here"}});
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.error_code, "missing_field");
  EXPECT_EQ(out.error_message, "missing required fields: amount");
  EXPECT_EQ(out.output["supplier"], "Acme");
  EXPECT_EQ(out.output["missing"], (json({"amount"})));
  EXPECT_FALSE(out.output.contains("vat"));  // optional and absent: left out
}

TEST(ExtractAgent, UnreadableNumberCountsAsMissing) {
  auto a = make("extract", {{"from", "{{input.t}}"}, {"fields", {{"n", "n=(\\S+)"}}}, {"numbers", {"n"}},
                            {"required", {"n"}}});
  auto out = run(*a, {{"t", "n=abc"}});
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.output["missing"], (json({"n"})));
  EXPECT_EQ((run(*a, {{"t", "n=-12.5kg"}}).output["n"]), -12.5);
}

TEST(ExtractAgent, CaseSensitivityIsConfigurable) {
  auto a = make("extract", {{"from", "{{input.t}}"}, {"fields", {{"code", "CODE-([0-9]+)"}}}, {"ignore_case", false}});
  EXPECT_FALSE(run(*a, {{"t", "code-12"}}).output.contains("code"));
  EXPECT_EQ((run(*a, {{"t", "CODE-12"}}).output["code"]), "12");
}

TEST(ExtractAgent, MissingFromPathFails) {
  auto a = make("extract", invoice_extract());
  auto out = run(*a, json::object());
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "template_error");
}

TEST(ExtractAgent, ReadNumber) {
  EXPECT_EQ(read_number("1,234.50 EUR"), 1234.5);
  EXPECT_EQ(read_number("EUR 99"), 99);
  EXPECT_EQ(read_number("-3"), -3);
  EXPECT_EQ(read_number("1 000 000"), 1000000);
  EXPECT_FALSE(read_number("n/a").has_value());
  EXPECT_FALSE(read_number("1.2.3").has_value());
}

TEST(ExtractAgent, RefusesBadConfig) {
  json ok = invoice_extract();
  auto with = [&](const char* key, json v) {
    json c = ok;
    c[key] = std::move(v);
    return c;
  };
  EXPECT_EQ((refusal("extract", with("fields", {{"a", "no group"}}))),
            "extract: `fields.a`: the regex needs a capture group ( ... )");
  EXPECT_EQ((refusal("extract", with("fields", {{"a", "(?:non capturing)"}}))),
            "extract: `fields.a`: the regex needs a capture group ( ... )");
  EXPECT_EQ((refusal("extract", with("fields", {{"a", "(bad"}})).rfind("extract: `fields.a`: bad regex `(bad`: ", 0)),
            0u);
  EXPECT_EQ(refusal("extract", with("fields", json::object())),
            "extract: `fields` is required: a map of field -> regex with one capture group");
  EXPECT_EQ((refusal("extract", with("numbers", {"total"}))), "extract: `numbers` names `total`, which is not in `fields`");
  EXPECT_EQ((refusal("extract", with("required", {"total"}))),
            "extract: `required` names `total`, which is not in `fields`");
  EXPECT_EQ(refusal("extract", with("ignore_case", "maybe")), "extract: `ignore_case` must be true or false, got \"maybe\"");
  json no_from = ok;
  no_from.erase("from");
  EXPECT_EQ(refusal("extract", no_from), "extract: `from` is required");
}

// ---- validate ---------------------------------------------------------------

json invoice_validate() {
  return {{"required", {"input.supplier", "input.total"}},
          {"checks",
           {{{"name", "vat_sum"}, {"sum", {"input.net", "input.vat"}}, {"equals", "input.total"}, {"tolerance", 0.01}},
            {{"name", "vat_rate"},
             {"ratio", {"input.vat", "input.net"}},
             {"equals_value", 0.2},
             {"tolerance", 0.005}}}}};
}

TEST(ValidateAgent, PassesValidInput) {
  auto a = make("validate", invoice_validate());
  auto out = run(*a, {{"supplier", "Acme"}, {"net", 100}, {"vat", 20}, {"total", 120.005}});
  EXPECT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, (json{{"valid", true}, {"checked", {"vat_sum", "vat_rate"}}}));
}

TEST(ValidateAgent, MissingFieldsNeedReviewByDefault) {
  auto a = make("validate", {{"required", {"input.email", "input.company", "input.tags", "input.ok"}}});
  auto out = run(*a, {{"email", "  "}, {"tags", json::array()}, {"ok", false}});
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.error_code, "missing_field");
  EXPECT_EQ(out.error_message, "missing required fields: input.email, input.company, input.tags");
  EXPECT_EQ(out.output["valid"], false);
  EXPECT_EQ(out.output["missing"], (json({"input.email", "input.company", "input.tags"})));
}

TEST(ValidateAgent, FailedChecksNameTheValues) {
  auto a = make("validate", invoice_validate());
  auto out = run(*a, {{"supplier", "Acme"}, {"net", 100}, {"vat", 21}, {"total", 120}});
  EXPECT_EQ(out.status, AgentOutput::kNeedsReview);
  EXPECT_EQ(out.error_code, "check_failed");
  EXPECT_EQ(out.error_message,
            "checks failed: vat_sum (input.net + input.vat = 121, expected input.total = 120 (tolerance 0.01)); "
            "vat_rate (input.vat / input.net = 0.21, expected 0.2 (tolerance 0.005))");
  EXPECT_EQ(out.output["failed"].size(), 2u);
}

TEST(ValidateAgent, NonNumericOrZeroOperandsFailTheCheckAndMissingTakesPrecedence) {
  json cfg = invoice_validate();
  cfg["on_fail"] = "failed";
  auto a = make("validate", cfg);
  auto out = run(*a, {{"supplier", "Acme"}, {"net", 0}, {"vat", "n/a"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "missing_field");
  EXPECT_EQ(out.error_message,
            "missing required fields: input.total; checks failed: vat_sum (input.vat is missing or not a number); "
            "vat_rate (input.vat is missing or not a number)");
  auto zero = run(*a, {{"supplier", "Acme"}, {"net", 0}, {"vat", 0}, {"total", 0}});
  EXPECT_EQ(zero.error_code, "check_failed");
  EXPECT_EQ(zero.error_message, "checks failed: vat_rate (input.net is 0)");
}

TEST(ValidateAgent, RefusesBadConfig) {
  EXPECT_EQ(refusal("validate", json::object()), "validate: needs `required` or `checks`");
  EXPECT_EQ((refusal("validate", {{"required", {"email"}}})),
            "validate: `required`: path `email` must start with input., record. or steps.");
  EXPECT_EQ((refusal("validate", {{"required", {"input.a"}}, {"on_fail", "explode"}})),
            "validate: `on_fail` must be needs_review, failed or report, got explode");
  auto check = [](json c) { return json{{"checks", {std::move(c)}}}; };
  EXPECT_EQ((refusal("validate", check({{"sum", {"input.a"}}, {"equals_value", 1}}))), "validate: check 0: `name` is required");
  EXPECT_EQ((refusal("validate", check({{"name", "c"}, {"equals_value", 1}}))),
            "validate: check c: needs exactly one of `sum`, `ratio`");
  EXPECT_EQ((refusal("validate", check({{"name", "c"}, {"ratio", {"input.a"}}, {"equals_value", 1}}))),
            "validate: check c: `ratio` takes two paths [a, b]");
  EXPECT_EQ((refusal("validate", check({{"name", "c"}, {"sum", {"input.a"}}}))),
            "validate: check c: needs exactly one of `equals` (a path), `equals_value` (a number)");
  EXPECT_EQ((refusal("validate", check({{"name", "c"}, {"sum", {"input.a"}}, {"equals", "total"}}))),
            "validate: check c: path `total` must start with input., record. or steps.");
  EXPECT_EQ((refusal("validate", check({{"name", "c"}, {"sum", {"input.a"}}, {"equals_value", 1}, {"tolerance", -1}}))),
            "validate: check c: `tolerance` must be >= 0");
}

}  // namespace
}  // namespace baton::agent
