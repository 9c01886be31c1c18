// AgentRegistry and the list of built-in kinds (one line per kind).
#include <exception>

#include "baton/agent.h"
#include "workers/agents/echo.h"
#include "workers/agents/exec.h"
#include "workers/agents/extract.h"
#include "workers/agents/http.h"
#include "workers/agents/llm.h"
#include "workers/agents/plan.h"
#include "workers/agents/rules.h"
#include "workers/agents/score.h"
#include "workers/agents/template.h"
#include "workers/agents/validate.h"

namespace baton::agent {

const char* status_name(AgentOutput::Status s) {
  switch (s) {
    case AgentOutput::kOk:
      return "ok";
    case AgentOutput::kRetryable:
      return "retryable";
    case AgentOutput::kFailed:
      return "failed";
    case AgentOutput::kNeedsReview:
      return "needs_review";
  }
  return "unknown";
}

Status AgentRegistry::add(std::string kind, AgentFactory factory) {
  if (!factory) return invalid("agent kind " + kind + ": no factory");
  return add_step_aware(std::move(kind), [f = std::move(factory)](const nlohmann::json& config, const StepInfo&) {
    return f(config);
  });
}

Status AgentRegistry::add_step_aware(std::string kind, StepAgentFactory factory) {
  if (kind.empty()) return invalid("agent kind must not be empty");
  if (!factory) return invalid("agent kind " + kind + ": no factory");
  if (factories_.count(kind)) return Status(Code::kAlreadyExists, "agent kind " + kind + " is already registered");
  factories_.emplace(std::move(kind), std::move(factory));
  return Status::ok();
}

bool AgentRegistry::contains(std::string_view kind) const { return factories_.find(kind) != factories_.end(); }

FactoryResult AgentRegistry::create(std::string_view kind, const nlohmann::json& config, const StepInfo& step) const {
  auto it = factories_.find(kind);
  if (it == factories_.end()) return not_found("no agent kind `" + std::string(kind) + "` in this worker");
  try {
    auto r = it->second(config, step);
    if (r && !*r) return internal("agent kind " + std::string(kind) + ": the factory returned no agent");
    return r;
  } catch (const std::exception& e) {
    return invalid(std::string(kind) + ": " + e.what());
  } catch (...) {
    return invalid(std::string(kind) + ": the factory threw");
  }
}

std::vector<std::string> AgentRegistry::kinds() const {
  std::vector<std::string> out;
  for (const auto& [k, f] : factories_) out.push_back(k);
  return out;
}

void register_builtin_agents(AgentRegistry& r) {
  (void)r.add("echo", make_echo_agent);
  (void)r.add("template", make_template_agent);
  (void)r.add("rules", make_rules_agent);
  (void)r.add("score", make_score_agent);
  (void)r.add("extract", make_extract_agent);
  (void)r.add("validate", make_validate_agent);
  (void)r.add("plan", make_plan_agent);
  (void)r.add("exec", make_exec_agent);
  (void)r.add("http", make_http_agent);
  (void)r.add_step_aware("llm", make_llm_agent);
}

}  // namespace baton::agent
