// `validate` agent: required fields and arithmetic checks (e.g. VAT).
// docs/agents.md#validate.
//
// Config (at least one of `required`, `checks`):
//   required: [input.email, input.company]   # missing/null/""/[]/{} -> `missing_field`
//   checks:
//     - { name: vat_sum, sum: [input.net, input.vat], equals: input.total, tolerance: 0.01 }
//     - { name: vat_rate, ratio: [input.vat, input.net], equals_value: 0.2, tolerance: 0.005 }
//       # sum: [paths] adds them; ratio: [a, b] is a / b; compared with `equals`
//       # (a path) or `equals_value` (a number); tolerance default 0.01 (absolute).
//       # A missing or non-numeric operand, or b == 0, fails the check.
//   on_fail: needs_review    # or failed: the status of a refusal (default needs_review)
// Output on success: {valid: true, checked: [check names]}. On refusal the
// status is `on_fail` with error code `missing_field` (named fields; takes
// precedence) or `check_failed` (named checks with the values), and the output
// {valid: false, missing: [...], failed: [{name, message}], checked: [...]}.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_validate_agent(const nlohmann::json& config);
}  // namespace baton::agent
