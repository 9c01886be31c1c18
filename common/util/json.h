// JSON helpers: bounded parsing (size and depth capped before/while parsing).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/limits.h"
#include "common/util/status.h"

namespace baton {

// Parses `text` as JSON. Refuses (kTooLarge) input over `max_bytes` without
// reading it and nesting deeper than `max_depth`; kInvalidArgument with the byte
// position on a syntax error. Never throws.
Result<nlohmann::json> parse_json(std::string_view text,
                                  std::size_t max_bytes = limits::kMaxJsonBodyBytes,
                                  int max_depth = limits::kMaxJsonDepth);

// Like parse_json but also requires an object.
Result<nlohmann::json> parse_json_object(std::string_view text,
                                         std::size_t max_bytes = limits::kMaxJsonBodyBytes,
                                         int max_depth = limits::kMaxJsonDepth);

// Parses JSON lines: one object per non-blank line. Errors name the line:
// "<name>:<line>: <reason>" (kInvalidArgument or kTooLarge). Each line is
// capped like a JSON body.
struct JsonLine {
  std::size_t line = 0;  // 1-based
  nlohmann::json value;
};
Result<std::vector<JsonLine>> parse_jsonl(std::string_view text, std::string_view name);

// `s` with every byte that is not part of a well-formed UTF-8 sequence
// replaced by U+FFFD. For text copied from outside data into places that
// must be UTF-8: protobuf `string` fields (a message carrying invalid UTF-8
// does not parse at the receiver) and JSON (nlohmann's dump() throws on it).
std::string valid_utf8(std::string_view s);

// Follows a dotted path with optional [i] indexes ("a.b[2].c") inside `root`.
// Returns nullptr when any part is missing; never throws.
const nlohmann::json* json_path(const nlohmann::json& root, std::string_view path);

}  // namespace baton
