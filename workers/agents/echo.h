// `echo` agent: output = the task's input object, or only the listed top-level
// fields of it. Config: `fields: [a, b]` (optional; fields absent from the input
// are left out). Never fails at run time. docs/agents.md#echo.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_echo_agent(const nlohmann::json& config);
}  // namespace baton::agent
