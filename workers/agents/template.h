// `template` agent: renders text from the input, the record and earlier steps.
// Config: `fields: {name: "text {{input.x}} {{record.y}}", ...}` (required,
// non-empty). Output: {name: rendered text, ...}. A referenced path that is
// missing or null -> FAILED `template_error` naming it. docs/agents.md#template.
//
// A field may also be a non-empty list of templates, alternatives tried in
// order: the first whose paths are all present is used, e.g.
//   price: ["{{steps.review.fixes.price}}", "{{steps.draft.price}}", "{{input.quote_usd}}"]
//   note:  ["{{steps.figures.finance.line}}", "finance figures not available"]
// (a plain string as the last alternative makes the field always render).
// Only when no alternative renders is the step FAILED `template_error`, naming
// the last alternative's missing path. Refused at construction: an empty list
// or one with an entry that is not a string ("must be a template string, got
// array", as any non-scalar field), a bad template. execute() is thread-safe.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_template_agent(const nlohmann::json& config);
}  // namespace baton::agent
