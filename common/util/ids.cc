#include "common/util/ids.h"

#include <chrono>
#include <random>

namespace baton {
namespace {

uint64_t fnv1a64(std::string_view s, uint64_t h) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

void hex64(uint64_t v, std::string& out) {
  static const char* kHex = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) out.push_back(kHex[(v >> (i * 4)) & 0xf]);
}

}  // namespace

std::string random_id() {
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count())};
  std::string out;
  out.reserve(32);
  hex64(rng(), out);
  hex64(rng(), out);
  return out;
}

std::string run_id_for_dedupe(std::string_view workflow, std::string_view dedupe_key) {
  uint64_t a = fnv1a64(workflow, 0xcbf29ce484222325ULL);
  a = fnv1a64(std::string_view("\0", 1), a);
  a = fnv1a64(dedupe_key, a);
  uint64_t b = fnv1a64(dedupe_key, 0x84222325cbf29ce4ULL);
  b = fnv1a64(std::string_view("\x1f", 1), b);
  b = fnv1a64(workflow, b);
  std::string out;
  out.reserve(32);
  hex64(mix64(a), out);
  hex64(mix64(b ^ a), out);
  return out;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int32_t murmur2_partition(std::string_view key, int32_t partitions) {
  // Kafka's murmur2 (seed 0x9747b28c), then toPositive & modulo.
  const uint32_t m = 0x5bd1e995;
  const int r = 24;
  uint32_t len = static_cast<uint32_t>(key.size());
  uint32_t h = 0x9747b28c ^ len;
  const unsigned char* data = reinterpret_cast<const unsigned char*>(key.data());
  while (len >= 4) {
    uint32_t k = static_cast<uint32_t>(data[0]) | static_cast<uint32_t>(data[1]) << 8 |
                 static_cast<uint32_t>(data[2]) << 16 | static_cast<uint32_t>(data[3]) << 24;
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
    data += 4;
    len -= 4;
  }
  switch (len) {
    case 3: h ^= static_cast<uint32_t>(data[2]) << 16; [[fallthrough]];
    case 2: h ^= static_cast<uint32_t>(data[1]) << 8; [[fallthrough]];
    case 1: h ^= data[0]; h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>((h & 0x7fffffff) % static_cast<uint32_t>(partitions));
}

}  // namespace baton
