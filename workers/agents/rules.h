// `rules` agent: keyword / regex classification of a text, first matching rule
// wins, case-insensitive. docs/agents.md#rules.
//
// Config:
//   text: "{{input.subject}} {{input.message}}"   # required template
//   rules:                                       # required, non-empty, in order
//     - { label: billing, any: [refund, invoice] }    # any keyword (substring)
//     - { label: legal, all: [contract, terminate] }  # every keyword
//     - { label: urgent, regex: "\\burgent\\b" }      # ECMAScript regex, compiled once
//   default: general     # label when nothing matches; without it -> NEEDS_REVIEW `no_match`
//   field: intent        # output field for the label (default `label`)
//   max_text_bytes: 4096   # only this prefix of the text is searched (default 4 KiB, max 16 KiB)
//   default_confidence: 0.4  # optional, 0..1: `confidence` of the default label
// A rule may also carry `confidence: 0.9` (0..1), how much its match is worth.
// Output: {<field>: label, matched_rule: <index> | null, matched: "<keyword or regex match>" | null},
// plus `confidence` when the matched rule (or, for the default label,
// `default_confidence`) sets one, so that a `route` can gate on it.
// A missing template path -> FAILED `template_error`.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
inline constexpr const char* kNoMatch = "no_match";
FactoryResult make_rules_agent(const nlohmann::json& config);
}  // namespace baton::agent
