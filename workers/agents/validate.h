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
//   on_fail: needs_review    # or failed, or report: how a refusal is reported (default needs_review)
//   on_missing: failed       # the same for missing required fields only (default: on_fail)
// Output on success: {valid: true, checked: [check names]}. On refusal the
// status is `on_missing` (missing required fields; error code `missing_field`,
// takes precedence) or `on_fail` (error code `check_failed`, named checks with
// the values), and the output {valid: false, missing: [...], failed: [{name,
// message}], checked: [...]}. `report` is not a refusal: the status is OK and
// the output also carries {error: <code>, message: <text>}, so that the
// workflow decides (e.g. `route: [{when: "not output.valid", to: exception}]`).
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_validate_agent(const nlohmann::json& config);
}  // namespace baton::agent
