#include "workers/agents/validate.h"

#include <cmath>
#include <optional>
#include <sstream>

#include "common/util/json.h"
#include "workers/agents/config.h"

namespace baton::agent {
namespace {

// How a refusal is reported: a status with an error code, or (`report`) an OK
// output with valid: false.
struct Refusal {
  AgentOutput::Status status = AgentOutput::kNeedsReview;
  bool report = false;
};

Result<Refusal> parse_refusal(const nlohmann::json& cfg, const char* key, const std::string& default_value) {
  auto name = config::get_string(cfg, "validate", key, default_value);
  if (!name) return name.status();
  Refusal r;
  if (*name == "needs_review") {
    r.status = AgentOutput::kNeedsReview;
  } else if (*name == "failed") {
    r.status = AgentOutput::kFailed;
  } else if (*name == "report") {
    r.status = AgentOutput::kOk;
    r.report = true;
  } else {
    return invalid(std::string("validate: `") + key + "` must be needs_review, failed or report, got " + *name);
  }
  return r;
}

struct Check {
  std::string name;
  enum Kind { kSum, kRatio } kind = kSum;
  std::vector<std::string> operands;
  std::string equals_path;  // empty: equals_value
  double equals_value = 0;
  double tolerance = 0.01;
};

std::string fmt(double d) {
  std::ostringstream os;
  os.precision(12);
  os << d;
  return os.str();
}

class ValidateAgent : public Agent {
 public:
  ValidateAgent(std::vector<std::string> required, std::vector<Check> checks, Refusal on_fail, Refusal on_missing)
      : required_(std::move(required)), checks_(std::move(checks)), on_fail_(on_fail), on_missing_(on_missing) {}

  AgentOutput execute(const AgentInput& in) override {
    nlohmann::json missing = nlohmann::json::array();
    for (const auto& p : required_)
      if (config::is_empty(json_path(in.scope, p))) missing.push_back(p);

    nlohmann::json failed = nlohmann::json::array();
    nlohmann::json checked = nlohmann::json::array();
    for (const auto& c : checks_) {
      checked.push_back(c.name);
      std::string why;
      if (!run(c, in.scope, why)) failed.push_back({{"name", c.name}, {"message", why}});
    }

    if (missing.empty() && failed.empty()) {
      AgentOutput out;
      out.output["valid"] = true;
      out.output["checked"] = std::move(checked);
      return out;
    }
    std::string message;
    if (!missing.empty()) {
      message = "missing required fields: ";
      for (std::size_t i = 0; i < missing.size(); ++i)
        message += (i ? ", " : "") + missing[i].get<std::string>();
    }
    if (!failed.empty()) {
      if (!message.empty()) message += "; ";
      message += "checks failed: ";
      for (std::size_t i = 0; i < failed.size(); ++i)
        message += (i ? "; " : "") + failed[i]["name"].get<std::string>() + " (" +
                   failed[i]["message"].get<std::string>() + ")";
    }
    const char* code = missing.empty() ? errors::kCheckFailed : errors::kMissingField;
    const Refusal how = missing.empty() ? on_fail_ : on_missing_;
    AgentOutput out;
    if (how.report) {
      // An answer, not a refusal: the workflow decides (e.g. `route` on output.valid).
      out.output["error"] = code;
      out.output["message"] = std::move(message);
    } else {
      out = AgentOutput::fail(how.status, code, std::move(message));
    }
    out.output["valid"] = false;
    out.output["missing"] = std::move(missing);
    out.output["failed"] = std::move(failed);
    out.output["checked"] = std::move(checked);
    return out;
  }

 private:
  static std::optional<double> number_at(const nlohmann::json& scope, const std::string& path, std::string& why) {
    const auto* v = json_path(scope, path);
    std::optional<double> n = v ? config::as_number(*v) : std::nullopt;
    if (!n) why = path + " is missing or not a number";
    return n;
  }

  static bool run(const Check& c, const nlohmann::json& scope, std::string& why) {
    double actual = 0;
    std::string expr;
    if (c.kind == Check::kSum) {
      for (const auto& p : c.operands) {
        auto n = number_at(scope, p, why);
        if (!n) return false;
        actual += *n;
        expr += (expr.empty() ? "" : " + ") + p;
      }
    } else {
      auto a = number_at(scope, c.operands[0], why);
      if (!a) return false;
      auto b = number_at(scope, c.operands[1], why);
      if (!b) return false;
      if (*b == 0) {
        why = c.operands[1] + " is 0";
        return false;
      }
      actual = *a / *b;
      expr = c.operands[0] + " / " + c.operands[1];
    }
    double expected = c.equals_value;
    std::string expected_text = fmt(c.equals_value);
    if (!c.equals_path.empty()) {
      auto e = number_at(scope, c.equals_path, why);
      if (!e) return false;
      expected = *e;
      expected_text = c.equals_path + " = " + fmt(expected);
    }
    // A small epsilon so that e.g. 100 + 20 vs 120.01 with tolerance 0.01 passes.
    if (std::fabs(actual - expected) <= c.tolerance + 1e-9) return true;
    why = expr + " = " + fmt(actual) + ", expected " + expected_text + " (tolerance " + fmt(c.tolerance) + ")";
    return false;
  }

  std::vector<std::string> required_;
  std::vector<Check> checks_;
  Refusal on_fail_;
  Refusal on_missing_;
};

}  // namespace

FactoryResult make_validate_agent(const nlohmann::json& cfg) {
  constexpr std::string_view kind = "validate";
  if (Status s = config::check_object(cfg, kind, {"required", "checks", "on_fail", "on_missing"}); !s) return s;
  auto required = config::get_string_list(cfg, kind, "required", false);
  if (!required) return required.status();
  for (const auto& p : *required) {
    if (Status s = config::check_scope_path(p, "validate: `required`"); !s) return s;
  }
  auto on_fail = parse_refusal(cfg, "on_fail", "needs_review");
  if (!on_fail) return on_fail.status();
  Result<Refusal> on_missing = *on_fail;  // default: like on_fail
  if (cfg.contains("on_missing") && !cfg["on_missing"].is_null()) on_missing = parse_refusal(cfg, "on_missing", "");
  if (!on_missing) return on_missing.status();

  std::vector<Check> checks;
  if (cfg.contains("checks") && !cfg["checks"].is_null()) {
    const auto& list = cfg["checks"];
    if (!list.is_array()) return invalid("validate: `checks` must be a list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const auto& cc = list[i];
      std::string where = "validate: check " + std::to_string(i);
      if (Status s = config::check_object(cc, where, {"name", "sum", "ratio", "equals", "equals_value", "tolerance"});
          !s)
        return s;
      Check c;
      auto name = config::get_string(cc, where, "name");
      if (!name) return name.status();
      c.name = std::move(name).value();
      where = "validate: check " + c.name;
      if (cc.contains("sum") == cc.contains("ratio")) return invalid(where + ": needs exactly one of `sum`, `ratio`");
      c.kind = cc.contains("sum") ? Check::kSum : Check::kRatio;
      const char* key = c.kind == Check::kSum ? "sum" : "ratio";
      auto ops = config::get_string_list(cc, where, key, true);
      if (!ops) return ops.status();
      c.operands = std::move(ops).value();
      if (c.kind == Check::kRatio && c.operands.size() != 2) return invalid(where + ": `ratio` takes two paths [a, b]");
      if (cc.contains("equals") == cc.contains("equals_value")) {
        return invalid(where + ": needs exactly one of `equals` (a path), `equals_value` (a number)");
      }
      if (cc.contains("equals")) {
        auto e = config::get_string(cc, where, "equals");
        if (!e) return e.status();
        c.equals_path = std::move(e).value();
        c.operands.push_back(c.equals_path);  // checked below, removed after
      } else {
        auto v = config::get_number(cc, where, "equals_value");
        if (!v) return v.status();
        c.equals_value = *v;
      }
      for (const auto& p : c.operands) {
        if (Status s = config::check_scope_path(p, where); !s) return s;
      }
      if (!c.equals_path.empty()) c.operands.pop_back();
      auto tol = config::get_number(cc, where, "tolerance", 0.01);
      if (!tol) return tol.status();
      if (*tol < 0) return invalid(where + ": `tolerance` must be >= 0");
      c.tolerance = *tol;
      checks.push_back(std::move(c));
    }
  }
  if (required->empty() && checks.empty()) return invalid("validate: needs `required` or `checks`");
  return AgentPtr(new ValidateAgent(std::move(required).value(), std::move(checks), *on_fail, *on_missing));
}

}  // namespace baton::agent
