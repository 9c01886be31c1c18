// Helpers shared by the built-in agents: reading a config object strictly
// (unknown keys refused, types checked, YAML-ish scalars accepted) and reading
// values out of a task's scope. Pure functions; thread-safe; never throw.
//
// Config values arrive from the workflow YAML through the parser, which may keep
// scalars as strings: numbers and booleans are therefore also accepted as
// strings ("0.3", "true").
#pragma once

#include <initializer_list>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/util/status.h"
#include "common/workflow/template.h"

namespace baton::agent::config {

// kInvalidArgument unless `cfg` is an object whose keys are all in `allowed`.
// Messages name the agent kind and the key: "score: unknown key `foo` (allowed: a, b)".
Status check_object(const nlohmann::json& cfg, std::string_view kind,
                    std::initializer_list<std::string_view> allowed);

// A number, or a string holding one. nullopt otherwise.
std::optional<double> as_number(const nlohmann::json& v);
// A boolean, or "true"/"false"/"yes"/"no" (any case). nullopt otherwise.
std::optional<bool> as_bool(const nlohmann::json& v);
// Text of a scalar: strings as is, numbers/booleans as JSON; nullopt for null,
// objects and arrays.
std::optional<std::string> as_text(const nlohmann::json& v);

// Typed getters: `what` is "<kind>: `key`" for messages. Missing optional keys
// return the default.
Result<std::string> get_string(const nlohmann::json& cfg, std::string_view kind, const char* key,
                               std::optional<std::string> default_value = std::nullopt);
Result<double> get_number(const nlohmann::json& cfg, std::string_view kind, const char* key,
                          std::optional<double> default_value = std::nullopt);
Result<bool> get_bool(const nlohmann::json& cfg, std::string_view kind, const char* key, bool default_value);
// A list of strings (a single string is accepted as a one-element list).
Result<std::vector<std::string>> get_string_list(const nlohmann::json& cfg, std::string_view kind,
                                                 const char* key, bool required);
Result<workflow::Template> get_template(const nlohmann::json& cfg, std::string_view kind, const char* key);
// Parses a template string; every path must pass check_scope_path.
Result<workflow::Template> parse_template(const nlohmann::json& v, const std::string& what,
                                          bool allow_output = false);

// A path must start with input., record. or steps. (the scope's roots), or
// output. when `allow_output` (the runtime's `set`, rendered after the agent).
Status check_scope_path(std::string_view path, const std::string& what, bool allow_output = false);

// Deployment settings in agent configs (URLs, models, paths, secret names)
// may name environment variables of the worker: `${NAME}` and
// `${NAME:-default}` (the default when NAME is unset or empty); `$$` is a
// literal `$`. Expanded once, when the agent is built at worker start; never
// applied to task data. kInvalidArgument names `what` and the variable when it
// is unset without a default, or for an unterminated `${`.
Result<std::string> expand_env(std::string_view text, const std::string& what);
// Reads a secret: `<key>_env: NAME` (the variable's value) or `<key>_file: PATH`
// (the file's content, trailing newlines removed), e.g. api_key_env /
// api_key_file. Returns "" when neither key is present; kInvalidArgument when
// both are, when the variable is unset or empty, or the file cannot be read.
// The secret's value never appears in a message.
Result<std::string> get_secret(const nlohmann::json& cfg, std::string_view kind, const std::string& key);

// Lower-cases ASCII.
std::string lower(std::string_view s);
// Equality used by rules/score: numbers (or numeric strings) numerically,
// strings case-insensitively, booleans (or "true"/"false"), else JSON equality.
bool loose_equal(const nlohmann::json& a, const nlohmann::json& b);
// Missing, null, "" (after trimming spaces), [] and {} are empty.
bool is_empty(const nlohmann::json* v);
// Rounds to `digits` decimals.
double round_to(double v, int digits);

// std::regex (libstdc++) matches by recursion, about 0.5-1 KiB of stack per
// character of text, and backtracks in quadratic time on failing searches: a
// long text can overflow a thread's stack or stall a batch. Every regex an
// agent applies to task data therefore sees at most `max_bytes` of the text
// (default kRegexTextBytes, configurable up to kMaxRegexTextBytes), and the
// worker runs agents on threads with large stacks (runtime: 64 MiB).
inline constexpr std::size_t kRegexTextBytes = 4096;
inline constexpr std::size_t kMaxRegexTextBytes = 16384;
// Searches the first `max_bytes` of `text` (cut back to a UTF-8 boundary). A
// regex_error at match time (complexity limit) is "no match".
bool regex_search(std::string_view text, const std::regex& re, std::cmatch* m,
                  std::size_t max_bytes = kRegexTextBytes);
// Reads `max_text_bytes` (default kRegexTextBytes, within 1..kMaxRegexTextBytes).
Result<std::size_t> get_text_limit(const nlohmann::json& cfg, std::string_view kind);

}  // namespace baton::agent::config
