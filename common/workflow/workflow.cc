#include "common/workflow/workflow.h"

#include <algorithm>

namespace baton::workflow {

std::vector<std::string> Workflow::roles() const {
  std::vector<std::string> out;
  out.reserve(steps.size());
  for (const auto& s : steps) out.push_back(s.role);
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
  j["trigger"] = {{"topic", trigger_topic}, {"dedupe", dedupe_template}};
  j["max_steps"] = max_steps;
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

}  // namespace baton::workflow
