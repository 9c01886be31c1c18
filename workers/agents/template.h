// `template` agent: renders text from the input, the record and earlier steps.
// Config: `fields: {name: "text {{input.x}} {{record.y}}", ...}` (required,
// non-empty). Output: {name: rendered text, ...}. A referenced path that is
// missing or null -> FAILED `template_error` naming it. docs/agents.md#template.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_template_agent(const nlohmann::json& config);
}  // namespace baton::agent
