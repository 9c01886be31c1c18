// Size caps applied before anything is parsed. One place, so tests and docs agree.
#pragma once
#include <cstddef>

namespace baton::limits {
inline constexpr std::size_t kMaxMessageBytes = 1 << 20;      // one Kafka message (Task, RunEvent, Trigger)
inline constexpr std::size_t kMaxWorkflowFileBytes = 256 << 10;  // one workflow YAML file
inline constexpr int kMaxYamlDepth = 32;                     // nesting of a workflow YAML document
inline constexpr std::size_t kMaxJsonBodyBytes = 256 << 10;  // one HTTP request body
inline constexpr int kMaxJsonDepth = 64;                     // nesting of any JSON we parse
}  // namespace baton::limits
