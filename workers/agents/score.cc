#include "workers/agents/score.h"

#include <optional>
#include <regex>
#include <sstream>
#include <utility>
#include <vector>

#include "common/util/json.h"
#include "workers/agents/config.h"

namespace baton::agent {
namespace {

enum class Op { kGte, kLte, kGt, kLt, kEq, kNe, kIn, kExists, kRegex };

std::optional<Op> parse_op(const std::string& s) {
  if (s == "gte") return Op::kGte;
  if (s == "lte") return Op::kLte;
  if (s == "gt") return Op::kGt;
  if (s == "lt") return Op::kLt;
  if (s == "eq") return Op::kEq;
  if (s == "ne") return Op::kNe;
  if (s == "in") return Op::kIn;
  if (s == "exists") return Op::kExists;
  if (s == "regex") return Op::kRegex;
  return std::nullopt;
}

// A `fix` entry: an output field and the template of its value.
struct FixField {
  std::string field;
  workflow::Template tmpl;
  std::string whole_path;  // the template is exactly "{{path}}": keep the value's JSON type
};

struct Criterion {
  std::string path;
  Op op = Op::kEq;
  nlohmann::json value;
  std::string value_from;  // compare with the value at this path instead of `value`
  std::optional<workflow::Template> feedback;  // rendered when the criterion does not match
  std::vector<FixField> fix;                   // rendered when the criterion does not match
  double number = 0;  // gte/lte/gt/lt
  bool exists = true;
  std::optional<std::regex> regex;
  double weight = 1;
  std::string reason;
  std::string name;
};

bool matches(const Criterion& c, const nlohmann::json* v, const nlohmann::json& scope) {
  if (c.op == Op::kExists) return config::is_empty(v) != c.exists;
  if (v == nullptr || v->is_null()) return false;
  // `value_from`: the other operand comes from the scope; missing or null matches nothing.
  const nlohmann::json* other = &c.value;
  if (!c.value_from.empty()) {
    other = json_path(scope, c.value_from);
    if (other == nullptr || other->is_null()) return false;
  }
  switch (c.op) {
    case Op::kGte:
    case Op::kLte:
    case Op::kGt:
    case Op::kLt: {
      auto n = config::as_number(*v);
      if (!n) return false;
      double bound = c.number;
      if (!c.value_from.empty()) {
        auto b = config::as_number(*other);
        if (!b) return false;
        bound = *b;
      }
      if (c.op == Op::kGte) return *n >= bound;
      if (c.op == Op::kLte) return *n <= bound;
      if (c.op == Op::kGt) return *n > bound;
      return *n < bound;
    }
    case Op::kEq:
      if (other->is_object() || other->is_array()) return false;
      return config::loose_equal(*v, *other);
    case Op::kNe:
      if (other->is_object() || other->is_array()) return false;
      return !config::loose_equal(*v, *other);
    case Op::kIn: {
      if (!other->is_array()) return false;
      auto in_list = [&](const nlohmann::json& x) {
        for (const auto& e : *other)
          if (config::loose_equal(x, e)) return true;
        return false;
      };
      if (v->is_array()) {
        for (const auto& x : *v)
          if (in_list(x)) return true;
        return false;
      }
      return in_list(*v);
    }
    case Op::kRegex: {
      auto text = config::as_text(*v);
      return text && config::regex_search(*text, *c.regex, nullptr);
    }
    case Op::kExists:
      break;
  }
  return false;
}

class ScoreAgent : public Agent {
 public:
  ScoreAgent(std::vector<Criterion> criteria, std::string field, std::optional<double> review_below,
             std::optional<double> fail_below)
      : criteria_(std::move(criteria)),
        field_(std::move(field)),
        review_below_(review_below),
        fail_below_(fail_below) {
    for (const auto& c : criteria_) {
      total_ += c.weight;
      if (c.feedback) has_feedback_ = true;
      if (!c.fix.empty()) has_fixes_ = true;
    }
  }

  AgentOutput execute(const AgentInput& in) override {
    double sum = 0;
    std::string reason;
    nlohmann::json matched = nlohmann::json::array();
    nlohmann::json feedback = nlohmann::json::array();
    nlohmann::json fixes = nlohmann::json::object();
    for (const auto& c : criteria_) {
      if (!matches(c, json_path(in.scope, c.path), in.scope)) {
        // What the checker tells the maker: rendered only for criteria that failed.
        if (c.feedback) {
          auto text = c.feedback->render(in.scope);
          if (!text) {
            return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                     "score: " + c.name + ": feedback: " + text.status().message());
          }
          feedback.push_back(std::move(text).value());
        }
        for (const auto& f : c.fix) {
          if (!f.whole_path.empty()) {
            const auto* found = json_path(in.scope, f.whole_path);
            if (found != nullptr && !found->is_null()) {
              fixes[f.field] = *found;
              continue;
            }
          }
          auto text = f.tmpl.render(in.scope);
          if (!text) {
            return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                     "score: " + c.name + ": fix." + f.field + ": " + text.status().message());
          }
          fixes[f.field] = std::move(text).value();
        }
        continue;
      }
      sum += c.weight;
      matched.push_back(c.name);
      if (!c.reason.empty()) {
        if (!reason.empty()) reason += "; ";
        reason += c.reason;
      }
    }
    double score = config::round_to(total_ > 0 ? sum / total_ : 0, 4);
    if (reason.empty()) reason = "no criteria matched";

    AgentOutput out;
    if (fail_below_ && score < *fail_below_) {
      out = AgentOutput::fail(AgentOutput::kFailed, errors::kLowScore,
                              "score " + fmt(score) + " is below fail_below " + fmt(*fail_below_));
    } else if (review_below_ && score < *review_below_) {
      out = AgentOutput::fail(AgentOutput::kNeedsReview, errors::kLowScore,
                              "score " + fmt(score) + " is below needs_review_below " + fmt(*review_below_));
    }
    out.output[field_] = score;
    out.output["reason"] = std::move(reason);
    out.output["matched"] = std::move(matched);
    if (has_feedback_) out.output["feedback"] = std::move(feedback);
    if (has_fixes_) out.output["fixes"] = std::move(fixes);
    return out;
  }

 private:
  static std::string fmt(double d) {
    std::ostringstream os;
    os << d;
    return os.str();
  }

  std::vector<Criterion> criteria_;
  std::string field_;
  std::optional<double> review_below_;
  std::optional<double> fail_below_;
  double total_ = 0;
  bool has_feedback_ = false;
  bool has_fixes_ = false;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The path of a template that is exactly one "{{path}}", else "".
std::string whole_path(const workflow::Template& t) {
  auto paths = t.paths();
  std::string_view src = trim(t.source());
  if (paths.size() == 1 && src.size() > 4 && src.substr(0, 2) == "{{" && src.substr(src.size() - 2) == "}}" &&
      src.find("{{", 2) == std::string_view::npos) {
    return paths.front();
  }
  return std::string();
}

Result<std::optional<double>> optional_number(const nlohmann::json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return std::optional<double>();
  auto n = config::get_number(cfg, "score", key);
  if (!n) return n.status();
  return std::optional<double>(*n);
}

}  // namespace

FactoryResult make_score_agent(const nlohmann::json& cfg) {
  constexpr std::string_view kind = "score";
  if (Status s = config::check_object(cfg, kind, {"criteria", "field", "needs_review_below", "fail_below"}); !s)
    return s;
  auto field = config::get_string(cfg, kind, "field", std::string("score"));
  if (!field) return field.status();
  if (*field == "reason" || *field == "matched" || field->empty()) {
    return invalid("score: `field` must not be empty, `reason` or `matched`");
  }
  auto review = optional_number(cfg, "needs_review_below");
  if (!review) return review.status();
  auto fail = optional_number(cfg, "fail_below");
  if (!fail) return fail.status();

  auto cit = cfg.find("criteria");
  if (cit == cfg.end() || !cit->is_array() || cit->empty()) {
    return invalid("score: `criteria` is required: a non-empty list of {path, op, value, weight}");
  }
  std::vector<Criterion> criteria;
  for (std::size_t i = 0; i < cit->size(); ++i) {
    const auto& cc = (*cit)[i];
    std::string where = "score: criterion " + std::to_string(i);
    if (Status s = config::check_object(
            cc, where, {"path", "op", "value", "value_from", "weight", "reason", "name", "feedback", "fix"});
        !s)
      return s;
    Criterion c;
    auto path = config::get_string(cc, where, "path");
    if (!path) return path.status();
    if (Status s = config::check_scope_path(*path, where); !s) return s;
    c.path = std::move(path).value();
    auto op_name = config::get_string(cc, where, "op");
    if (!op_name) return op_name.status();
    auto op = parse_op(*op_name);
    if (!op) {
      return invalid(where + ": unknown op `" + *op_name + "` (allowed: gte, lte, gt, lt, eq, ne, in, exists, regex)");
    }
    c.op = *op;
    bool has_value = cc.contains("value") && !cc["value"].is_null();
    if (cc.contains("value_from") && !cc["value_from"].is_null()) {
      if (has_value) return invalid(where + ": give only one of `value` and `value_from`");
      if (c.op == Op::kExists || c.op == Op::kRegex) {
        return invalid(where + ": `value_from` applies to gte, lte, gt, lt, eq, ne and in, not to " + *op_name);
      }
      auto from = config::get_string(cc, where, "value_from");
      if (!from) return from.status();
      if (Status s = config::check_scope_path(*from, where + ": `value_from`"); !s) return s;
      c.value_from = std::move(from).value();
    }
    // With `value_from` the other operand is read from the scope when the agent runs.
    if (c.value_from.empty()) {
      switch (c.op) {
        case Op::kGte:
        case Op::kLte:
        case Op::kGt:
        case Op::kLt: {
          auto n = config::get_number(cc, where, "value");
          if (!n) return n.status();
          c.number = *n;
          break;
        }
        case Op::kEq:
        case Op::kNe:
          if (!has_value || cc["value"].is_object() || cc["value"].is_array()) {
            return invalid(where + ": `value` must be a scalar for op " + *op_name);
          }
          c.value = cc["value"];
          break;
        case Op::kIn:
          if (!has_value || !cc["value"].is_array() || cc["value"].empty()) {
            return invalid(where + ": `value` must be a non-empty list for op in");
          }
          c.value = cc["value"];
          break;
        case Op::kExists: {
          auto b = config::get_bool(cc, where, "value", true);
          if (!b) return b.status();
          c.exists = *b;
          break;
        }
        case Op::kRegex: {
          auto pattern = config::get_string(cc, where, "value");
          if (!pattern) return pattern.status();
          try {
            c.regex.emplace(*pattern, std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
          } catch (const std::regex_error& e) {
            return invalid(where + ": bad regex `" + *pattern + "`: " + e.what());
          }
          break;
        }
      }
    }
    auto weight = config::get_number(cc, where, "weight", 1.0);
    if (!weight) return weight.status();
    if (!(*weight > 0)) return invalid(where + ": `weight` must be > 0");
    c.weight = *weight;
    auto reason = config::get_string(cc, where, "reason", std::string());
    if (!reason) return reason.status();
    c.reason = std::move(reason).value();
    auto name = config::get_string(cc, where, "name", c.path + " " + *op_name);
    if (!name) return name.status();
    c.name = std::move(name).value();
    if (cc.contains("feedback") && !cc["feedback"].is_null()) {
      auto t = config::parse_template(cc["feedback"], where + ": `feedback`");
      if (!t) return t.status();
      c.feedback = std::move(t).value();
    }
    if (cc.contains("fix") && !cc["fix"].is_null()) {
      const auto& fx = cc["fix"];
      if (!fx.is_object() || fx.empty()) return invalid(where + ": `fix` must be a non-empty map of field -> template");
      for (auto f = fx.begin(); f != fx.end(); ++f) {
        auto t = config::parse_template(f.value(), where + ": `fix." + f.key() + "`");
        if (!t) return t.status();
        std::string wp = whole_path(*t);
        c.fix.push_back({f.key(), std::move(t).value(), std::move(wp)});
      }
    }
    criteria.push_back(std::move(c));
  }
  bool uses_feedback = false, uses_fixes = false;
  for (const auto& c : criteria) {
    uses_feedback = uses_feedback || c.feedback.has_value();
    uses_fixes = uses_fixes || !c.fix.empty();
  }
  if ((uses_feedback && *field == "feedback") || (uses_fixes && *field == "fixes")) {
    return invalid("score: `field` must not be `" + *field + "` when criteria give `" +
                   (*field == "feedback" ? "feedback" : "fix") + "`");
  }
  return AgentPtr(new ScoreAgent(std::move(criteria), std::move(field).value(), *review, *fail));
}

}  // namespace baton::agent
