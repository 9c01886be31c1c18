#include "workers/agents/rules.h"

#include <optional>
#include <regex>

#include "workers/agents/config.h"

namespace baton::agent {
namespace {

struct Rule {
  std::string label;
  enum Kind { kAny, kAll, kRegex } kind = kAny;
  std::vector<std::string> keywords;  // lower-cased
  std::optional<std::regex> regex;
  std::string pattern;
  std::optional<double> confidence;
};

// A confidence: a number (or numeric string) within 0..1.
Result<std::optional<double>> get_confidence(const nlohmann::json& cfg, const std::string& where, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::optional<double>();
  auto n = config::as_number(cfg[key]);
  if (!n || *n < 0 || *n > 1) {
    return invalid(where + ": `" + key + "` must be a number from 0 to 1, got " + cfg[key].dump());
  }
  return std::optional<double>(*n);
}

class RulesAgent : public Agent {
 public:
  RulesAgent(workflow::Template text, std::vector<Rule> rules, std::optional<std::string> fallback,
             std::optional<double> default_confidence, std::string field, std::size_t max_text)
      : text_(std::move(text)),
        rules_(std::move(rules)),
        default_(std::move(fallback)),
        default_confidence_(default_confidence),
        field_(std::move(field)),
        max_text_(max_text) {}

  AgentOutput execute(const AgentInput& in) override {
    auto rendered = text_.render(in.scope);
    if (!rendered) {
      return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                               "text: " + rendered.status().message());
    }
    std::string text = std::move(rendered).value();
    if (text.size() > max_text_) text.resize(max_text_);  // keywords and regexes see the same prefix
    const std::string low = config::lower(text);

    for (std::size_t i = 0; i < rules_.size(); ++i) {
      std::string matched;
      if (match(rules_[i], text, low, matched)) {
        AgentOutput out;
        out.output[field_] = rules_[i].label;
        out.output["matched_rule"] = i;
        out.output["matched"] = std::move(matched);
        if (rules_[i].confidence) out.output["confidence"] = *rules_[i].confidence;
        return out;
      }
    }
    if (!default_) {
      AgentOutput out = AgentOutput::fail(AgentOutput::kNeedsReview, kNoMatch, "no rule matched the text");
      out.output[field_] = nullptr;
      return out;
    }
    AgentOutput out;
    out.output[field_] = *default_;
    out.output["matched_rule"] = nullptr;
    out.output["matched"] = nullptr;
    if (default_confidence_) out.output["confidence"] = *default_confidence_;
    return out;
  }

 private:
  static bool match(const Rule& r, const std::string& text, const std::string& low, std::string& matched) {
    switch (r.kind) {
      case Rule::kAny:
        for (const auto& k : r.keywords) {
          if (low.find(k) != std::string::npos) {
            matched = k;
            return true;
          }
        }
        return false;
      case Rule::kAll:
        for (const auto& k : r.keywords)
          if (low.find(k) == std::string::npos) return false;
        matched = r.keywords.front();
        for (std::size_t i = 1; i < r.keywords.size(); ++i) matched += "+" + r.keywords[i];
        return true;
      case Rule::kRegex: {
        std::cmatch m;
        if (!config::regex_search(text, *r.regex, &m, text.size())) return false;
        matched = m.str(0);
        return true;
      }
    }
    return false;
  }

  workflow::Template text_;
  std::vector<Rule> rules_;
  std::optional<std::string> default_;
  std::optional<double> default_confidence_;
  std::string field_;
  std::size_t max_text_;
};

}  // namespace

FactoryResult make_rules_agent(const nlohmann::json& cfg) {
  constexpr std::string_view kind = "rules";
  if (Status s = config::check_object(
          cfg, kind, {"text", "rules", "default", "field", "max_text_bytes", "default_confidence"});
      !s)
    return s;
  auto text = config::get_template(cfg, kind, "text");
  if (!text) return text.status();
  auto field = config::get_string(cfg, kind, "field", std::string("label"));
  if (!field) return field.status();
  if (field->empty()) return invalid("rules: `field` must not be empty");
  auto max_text = config::get_text_limit(cfg, kind);
  if (!max_text) return max_text.status();
  std::optional<std::string> fallback;
  if (cfg.contains("default") && !cfg["default"].is_null()) {
    auto d = config::get_string(cfg, kind, "default");
    if (!d) return d.status();
    fallback = std::move(d).value();
  }
  auto default_confidence = get_confidence(cfg, "rules", "default_confidence");
  if (!default_confidence) return default_confidence.status();
  if (*default_confidence && !fallback) return invalid("rules: `default_confidence` needs a `default` label");

  auto rit = cfg.find("rules");
  if (rit == cfg.end() || !rit->is_array() || rit->empty()) {
    return invalid("rules: `rules` is required: a non-empty list of {label, any|all|regex}");
  }
  std::vector<Rule> rules;
  for (std::size_t i = 0; i < rit->size(); ++i) {
    const auto& rc = (*rit)[i];
    std::string where = "rules: rule " + std::to_string(i);
    if (Status s = config::check_object(rc, where, {"label", "any", "all", "regex", "confidence"}); !s) return s;
    Rule r;
    auto label = config::get_string(rc, where, "label");
    if (!label) return label.status();
    r.label = std::move(label).value();
    auto confidence = get_confidence(rc, where, "confidence");
    if (!confidence) return confidence.status();
    r.confidence = *confidence;
    int kinds = rc.contains("any") + rc.contains("all") + rc.contains("regex");
    if (kinds != 1) return invalid(where + ": needs exactly one of `any`, `all`, `regex`");
    if (rc.contains("regex")) {
      auto pattern = config::get_string(rc, where, "regex");
      if (!pattern) return pattern.status();
      r.kind = Rule::kRegex;
      r.pattern = std::move(pattern).value();
      try {
        r.regex.emplace(r.pattern, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
      } catch (const std::regex_error& e) {
        return invalid(where + ": bad regex `" + r.pattern + "`: " + e.what());
      }
    } else {
      const char* key = rc.contains("any") ? "any" : "all";
      r.kind = rc.contains("any") ? Rule::kAny : Rule::kAll;
      auto words = config::get_string_list(rc, where, key, true);
      if (!words) return words.status();
      for (auto& w : *words) {
        if (w.empty()) return invalid(where + ": empty keyword in `" + key + "`");
        r.keywords.push_back(config::lower(w));
      }
    }
    rules.push_back(std::move(r));
  }
  return AgentPtr(new RulesAgent(std::move(text).value(), std::move(rules), std::move(fallback),
                                 *default_confidence, std::move(field).value(), *max_text));
}

}  // namespace baton::agent
