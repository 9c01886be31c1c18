#include "common/workflow/workflow.h"

#include <algorithm>
#include <cmath>

#include "common/workflow/expr.h"
#include "common/workflow/schedule.h"

namespace baton::workflow {

bool Workflow::is_sub_step(std::string_view id) const {
  for (const auto& s : steps) {
    for (const auto& b : s.parallel)
      if (b.step == id) return true;
    if (s.loop && (s.loop->maker == id || s.loop->checker == id)) return true;
    if (s.planner && std::find(s.planner->allowed.begin(), s.planner->allowed.end(), id) != s.planner->allowed.end())
      return true;
  }
  return false;
}

std::vector<std::string> Workflow::sensitive_fields() const {
  std::vector<std::string> out;
  for (const auto& f : record_fields)
    if (f.sensitive) out.push_back(f.name);
  return out;
}

std::vector<std::string> Workflow::roles() const {
  std::vector<std::string> out;
  out.reserve(steps.size());
  for (const auto& s : steps)
    if (!s.role.empty()) out.push_back(s.role);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

nlohmann::json Workflow::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  j["name"] = name;
  j["version"] = version;
  j["description"] = description;
  j["record"] = record_template;
  if (!record_fields.empty()) {
    nlohmann::json fields = nlohmann::json::array();
    for (const auto& f : record_fields)
      fields.push_back({{"name", f.name}, {"type", f.type}, {"sensitive", f.sensitive}, {"writers", f.writers}});
    j["record_fields"] = std::move(fields);
  }
  j["trigger"] = {{"topic", trigger_topic}, {"dedupe", dedupe_template}};
  j["max_steps"] = max_steps;
  if (schedule) {
    j["schedule"] = {{"cron", schedule->text()}, {"timezone", schedule->zone()}, {"input", schedule_input}};
  }
  if (window) j["window"] = window_json;
  if (budget) {
    j["budget"] = {{"run_max_cost_micros", budget->run_max_cost_micros},
                   {"run_max_tokens", budget->run_max_tokens},
                   {"run_max_steps", budget->run_max_steps},
                   {"daily_max_cost_micros", budget->daily_max_cost_micros},
                   {"on_exceeded", budget->fallback ? "fallback" : "exception"},
                   {"fallback_models", budget->fallback_models}};
  }
  nlohmann::json steps_json = nlohmann::json::array();
  for (const auto& s : steps) {
    nlohmann::json sj = nlohmann::json::object();
    sj["id"] = s.id;
    sj["role"] = s.role;
    if (s.agent) {
      sj["agent"] = {{"kind", s.agent->kind}, {"config", s.agent->config}};
    } else {
      sj["agent"] = nullptr;
    }
    sj["writes"] = s.writes;
    // The contract keeps its file order (an array), so a reordered contract is a
    // different canonical form; that errs on the side of refusing.
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : s.output)
      out.push_back({{"name", f.name}, {"type", f.type}, {"optional", f.optional}});
    sj["output"] = std::move(out);
    sj["next"] = s.next;
    if (!s.route.empty()) {
      nlohmann::json r = nlohmann::json::array();
      for (const auto& rule : s.route) {
        if (rule.when) {
          r.push_back({{"when", rule.when->text()}, {"to", rule.to}});
        } else {
          r.push_back({{"else", rule.to}});
        }
      }
      sj["route"] = std::move(r);
    }
    if (s.handoff) sj["handoff"] = {{"from_output", s.handoff->from_output}, {"allowed", s.handoff->allowed}};
    if (s.kind == StepKind::kParallel) {
      nlohmann::json b = nlohmann::json::array();
      for (const auto& br : s.parallel)
        b.push_back({{"step", br.step}, {"on_failure", br.ignore_failure ? "ignore" : "fail"}});
      sj["parallel"] = std::move(b);
      const char* mode = s.join.mode == JoinMode::kAll ? "all" : s.join.mode == JoinMode::kAny ? "any" : "quorum";
      sj["join"] = {{"mode", mode}, {"quorum", s.join.quorum}};
    }
    if (s.loop) {
      sj["loop"] = {{"maker", s.loop->maker},
                    {"checker", s.loop->checker},
                    {"until", s.loop->until ? s.loop->until->text() : std::string()},
                    {"max_rounds", s.loop->max_rounds},
                    {"on_exhausted", s.loop->on_exhausted}};
    }
    if (s.planner) {
      sj["planner"] = {{"allowed", s.planner->allowed},
                       {"max_steps", s.planner->max_steps},
                       {"max_rounds", s.planner->max_rounds},
                       {"on_exhausted", s.planner->on_exhausted}};
    }
    if (s.approval) {
      sj["approval"] = {{"group", s.approval->group},
                        {"sla_ms", s.approval->sla_ms},
                        {"escalate_to", s.approval->escalate_to},
                        {"escalate_sla_ms", s.approval->escalate_sla_ms},
                        {"on_reject", s.approval->on_reject},
                        {"when", s.approval->when ? s.approval->when->text() : std::string()}};
    }
    if (s.review) {
      sj["review"] = {{"sample", s.review->sample}, {"group", s.review->group}, {"sla_ms", s.review->sla_ms}};
    }
    if (s.collision_is_exception) sj["on_collision"] = "exception";
    if (s.lock_record) sj["lock"] = "record";
    sj["timeout_ms"] = s.timeout_ms;
    sj["retry"] = {{"max_attempts", s.retry.max_attempts},
                   {"backoff_ms", s.retry.backoff_ms},
                   {"max_backoff_ms", s.retry.max_backoff_ms},
                   {"multiplier", s.retry.multiplier}};
    steps_json.push_back(std::move(sj));
  }
  j["steps"] = std::move(steps_json);
  return j;
}

bool contract_type_ok(const std::string& type, const nlohmann::json& v) {
  if (type == "string") return v.is_string();
  if (type == "number") return v.is_number();
  if (type == "integer")
    return v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  if (type == "boolean") return v.is_boolean();
  if (type == "object") return v.is_object();
  if (type == "array") return v.is_array();
  return true;
}

std::string check_contract(const std::vector<FieldContract>& contract, const nlohmann::json& output) {
  if (contract.empty()) return "";
  if (!output.is_object()) return "output is not a JSON object";
  for (const auto& f : contract) {
    auto it = output.find(f.name);
    if (it == output.end() || it->is_null()) {
      if (f.optional) continue;
      return "missing field '" + f.name + "' (" + f.type + ")";
    }
    if (!contract_type_ok(f.type, *it))
      return "field '" + f.name + "' should be " + f.type + ", got " + it->type_name();
  }
  return "";
}

}  // namespace baton::workflow
