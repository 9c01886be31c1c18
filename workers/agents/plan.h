// `plan` agent: a deterministic planner for `planner:` steps (examples and
// tests; LLM planners come later). docs/agents.md#plan.
//
// Config:
//   stages:                                  # required: a non-empty list of non-empty lists
//     - - { id: market, step: research, input: { topic: "market for {{input.product}}" } }
//       - { id: rivals, step: research, input: { topic: "competitors of {{input.product}}" } }
//     - - { id: draft, step: write, input: { notes: "{{steps.market.summary}}" } }
//   result: { summary: "{{steps.draft.text}}" }   # optional
//
// Each run of the agent looks at the task's context (the run's results, keyed
// by step id and by planned id): the first stage with an id that has no result
// (absent or null) is emitted, only its missing entries:
//   {"done": false, "steps": [{"id": "market", "step": "research", "input": {...}}, ...]}
// When every id has a result: {"done": true, "result": <rendered result>}
// (without `result:`, the result is {"<id>": <its result>, ...} for every id).
//
// String values inside `input` and `result` (nested maps and lists too) are
// templates over the same scope as every agent (`input.`, `record.`, `steps.`;
// `context.` is accepted as another name for `steps.`). A string that is
// exactly one "{{path}}" keeps the JSON type of the value; other values are
// used as they are. A missing or null path -> FAILED `template_error` naming
// the entry and the path.
//
// `for_each: <path of a list>` on an entry makes it one planned step per
// element: `id` is then a template that must use `item` (e.g.
// "rival-{{item.slug}}"), and `input` may use `item.` paths too. The list is
// read when the agent runs (missing, null or not a list -> FAILED
// `template_error`); an empty list plans nothing for that entry. Rendered ids
// are not checked here: the coordinator refuses a malformed or repeated id as
// `invalid_plan`, and `max_steps` bounds how many the plan may add.
//
// Refused at construction (kInvalidArgument, naming the key): unknown keys, no
// stages, an empty stage, an entry without `id` or `step`, an id that is not
// [a-z0-9][a-z0-9_-]* or is used twice, an `input` that is not a map, a
// `result` that is not a map, a bad template or a path outside the scope.
// execute() is const, thread-safe and does not throw.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_plan_agent(const nlohmann::json& config);
}  // namespace baton::agent
