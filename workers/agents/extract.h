// `extract` agent: pulls fields out of a text with regexes. docs/agents.md#extract.
//
// Config:
//   from: "{{input.body}}"                         # required template
//   fields:                                         # required, non-empty
//     amount: "total[^0-9]*([0-9.,]+)"              # ECMAScript regex; capture group 1 is the value
//     supplier: "^from: (.+)$"
//   numbers: [amount]      # convert these to numbers ("1,234.50 EUR" -> 1234.5)
//   required: [amount]     # missing -> NEEDS_REVIEW `missing_field` naming them
//   ignore_case: true      # default true
//   max_text_bytes: 4096   # only this prefix of the text is searched (default 4 KiB, max 16 KiB)
// Output: {field: value} for every field found (strings trimmed); with a missing
// required field also `missing: [names]`. A value listed in `numbers` that does
// not read as a number counts as missing. A missing template path -> FAILED
// `template_error`. Regexes are compiled once, at construction.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_extract_agent(const nlohmann::json& config);
// "1,234.50 EUR" -> 1234.5: keeps digits, '.', a leading '-'; drops ',',
// spaces and currency text. nullopt when no number remains.
std::optional<double> read_number(std::string_view text);
}  // namespace baton::agent
