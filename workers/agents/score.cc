#include "workers/agents/score.h"

#include <optional>
#include <regex>
#include <sstream>

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

struct Criterion {
  std::string path;
  Op op = Op::kEq;
  nlohmann::json value;
  double number = 0;  // gte/lte/gt/lt
  bool exists = true;
  std::optional<std::regex> regex;
  double weight = 1;
  std::string reason;
  std::string name;
};

bool matches(const Criterion& c, const nlohmann::json* v) {
  if (c.op == Op::kExists) return config::is_empty(v) != c.exists;
  if (v == nullptr || v->is_null()) return false;
  switch (c.op) {
    case Op::kGte:
    case Op::kLte:
    case Op::kGt:
    case Op::kLt: {
      auto n = config::as_number(*v);
      if (!n) return false;
      if (c.op == Op::kGte) return *n >= c.number;
      if (c.op == Op::kLte) return *n <= c.number;
      if (c.op == Op::kGt) return *n > c.number;
      return *n < c.number;
    }
    case Op::kEq:
      return config::loose_equal(*v, c.value);
    case Op::kNe:
      return !config::loose_equal(*v, c.value);
    case Op::kIn: {
      auto in_list = [&](const nlohmann::json& x) {
        for (const auto& e : c.value)
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
    for (const auto& c : criteria_) total_ += c.weight;
  }

  AgentOutput execute(const AgentInput& in) override {
    double sum = 0;
    std::string reason;
    nlohmann::json matched = nlohmann::json::array();
    for (const auto& c : criteria_) {
      if (!matches(c, json_path(in.scope, c.path))) continue;
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
};

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
    if (Status s = config::check_object(cc, where, {"path", "op", "value", "weight", "reason", "name"}); !s)
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
    criteria.push_back(std::move(c));
  }
  return AgentPtr(new ScoreAgent(std::move(criteria), std::move(field).value(), *review, *fail));
}

}  // namespace baton::agent
