// Identifiers: run ids (random, or derived from a dedupe key so a redelivered
// trigger maps to the same run) and event ids. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace baton {

// 32 lowercase hex chars from a thread-local random generator.
std::string random_id();
// 32 lowercase hex chars, a stable 128-bit hash of (workflow, dedupe_key).
std::string run_id_for_dedupe(std::string_view workflow, std::string_view dedupe_key);
// Milliseconds since the Unix epoch (system clock).
int64_t now_unix_ms();
// Kafka's murmur2 partitioner (Java client's, as librdkafka murmur2_random):
// partition of a non-empty key among `partitions`.
int32_t murmur2_partition(std::string_view key, int32_t partitions);

}  // namespace baton
