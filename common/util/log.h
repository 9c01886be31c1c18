// Logging setup: spdlog, to stderr. Human format on a terminal, JSON lines
// otherwise (BATON_LOG_FORMAT=json|text overrides). Level from BATON_LOG_LEVEL
// or the --log-level flag (trace, debug, info, warn, error).
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace baton {
// The JSON-lines formatter: one object per line, the message escaped.
std::unique_ptr<spdlog::formatter> make_json_formatter();
// Call once from main. `component` names the process ("coordinator", ...).
void init_logging(const std::string& component, const std::string& level = "");
}  // namespace baton
