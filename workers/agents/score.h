// `score` agent: weighted scoring against criteria. docs/agents.md#score.
//
// Config:
//   criteria:                         # required, non-empty
//     - { path: input.company_size, op: gte, value: 50, weight: 0.3, reason: "50+ employees" }
//       # op: gte lte gt lt (numbers) | eq ne (scalars) | in (value: list) |
//       #     exists (value: true/false, default true) | regex (value: pattern)
//       # weight > 0 (default 1); name: optional label (default "<path> <op>")
//   field: score                      # output field for the score (default `score`)
//   needs_review_below: 0.4           # score below -> NEEDS_REVIEW `low_score`
//   fail_below: 0.1                   # score below -> FAILED `low_score` (checked first)
// Score = sum of the weights of matched criteria / sum of all weights, in
// [0, 1], rounded to 4 decimals. Comparisons: numbers also from numeric
// strings; strings case-insensitive; a missing or null path matches nothing
// (except `exists: false`); `in` on a list value matches when any element is in;
// `regex` searches the first 4 KiB of the value.
// Output: {<field>: score, reason: "<reasons of matched criteria joined by '; '>",
//          matched: [names of matched criteria]}, also on NEEDS_REVIEW/FAILED.
//
// Checker extensions (maker-checker loops):
//   value_from: steps.draft.budget   # instead of `value`: compare with the value at this
//                                    # path (ops gte lte gt lt eq ne in); missing or null
//                                    # (or not a number / scalar / list as the op needs)
//                                    # matches nothing
//   feedback: "price {{steps.draft.price}} is over the budget"   # template, rendered
//                                    # only when the criterion does NOT match
//   fix: { price: "{{input.budget}}" }   # map field -> template, rendered only when the
//                                    # criterion does NOT match; exactly "{{path}}"
//                                    # keeps the value's JSON type
// When any criterion has `feedback`, the output has `feedback`: [texts of the
// unmatched criteria, in order]; when any has `fix`, `fixes`: {field: value}
// (later criteria overwrite earlier ones). A missing path in either ->
// FAILED `template_error`. `field` must then not be `feedback` / `fixes`.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_score_agent(const nlohmann::json& config);
}  // namespace baton::agent
