#include "tests/chaos/faults.h"

#include <algorithm>

namespace baton::chaos {

const char* fault_name(FaultKind k) {
  switch (k) {
    case FaultKind::kKillWorker: return "kill_worker";
    case FaultKind::kKillCoordinator: return "kill_coordinator";
    case FaultKind::kPauseWorker: return "pause_worker";
    case FaultKind::kPauseCoordinator: return "pause_coordinator";
    case FaultKind::kRedisRestart: return "redis_restart";
    case FaultKind::kBrokerDown: return "broker_down";
    case FaultKind::kRequestErrors: return "request_errors";
    case FaultKind::kRttSpike: return "rtt_spike";
    case FaultKind::kLeaderMove: return "leader_move";
    case FaultKind::kDuplicateDelivery: return "duplicate_delivery";
    case FaultKind::kSinkErrors: return "sink_errors";
    case FaultKind::kSinkSlow: return "sink_slow";
  }
  return "?";
}

uint64_t Rng::next() {
  uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int64_t Rng::range(int64_t lo, int64_t hi) {
  if (hi <= lo) return lo;
  uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
  return lo + static_cast<int64_t>(next() % span);
}

std::string Fault::describe() const {
  std::string s = "t+" + std::to_string(at_ms) + "ms " + fault_name(kind);
  switch (kind) {
    case FaultKind::kKillWorker:
    case FaultKind::kKillCoordinator: return s + " (down " + std::to_string(duration_ms) + " ms)";
    case FaultKind::kPauseWorker:
    case FaultKind::kPauseCoordinator: return s + " (" + std::to_string(duration_ms) + " ms)";
    case FaultKind::kRedisRestart:
      return s + (param ? " (SIGKILL" : " (SIGTERM") + std::string(", down ") + std::to_string(duration_ms) + " ms)";
    case FaultKind::kBrokerDown: return s + " (" + std::to_string(duration_ms) + " ms)";
    case FaultKind::kRequestErrors: return s + " (" + std::to_string(param) + " errors)";
    case FaultKind::kRttSpike:
      return s + " (" + std::to_string(param) + " ms for " + std::to_string(duration_ms) + " ms)";
    case FaultKind::kLeaderMove: return s;
    case FaultKind::kDuplicateDelivery: return s + " (" + std::to_string(param) + " messages)";
    case FaultKind::kSinkErrors: return s + " (" + std::to_string(param) + " requests)";
    case FaultKind::kSinkSlow:
      return s + " (" + std::to_string(param) + " requests, " + std::to_string(duration_ms) + " ms late)";
  }
  return s;
}

std::vector<Fault> make_schedule(uint64_t seed, const ScheduleOptions& o) {
  Rng rng(seed ^ 0x5eed5eed5eed5eedull);
  // Relative weights of the kinds after the first round of one each.
  static const int kWeights[kFaultKinds] = {3, 2, 2, 2, 2, 2, 2, 2, 1, 3, 1, 1};
  int total = 0;
  for (int w : kWeights) total += w;
  std::vector<FaultKind> kinds;
  if (o.count >= kFaultKinds) {
    for (int k = 0; k < kFaultKinds; ++k) kinds.push_back(static_cast<FaultKind>(k));
    for (int i = kFaultKinds - 1; i > 0; --i) std::swap(kinds[i], kinds[rng.range(0, i)]);
  }
  while (static_cast<int>(kinds.size()) < o.count) {
    int64_t x = rng.range(0, total - 1);
    int k = 0;
    while (x >= kWeights[k]) x -= kWeights[k++];
    kinds.push_back(static_cast<FaultKind>(k));
  }
  std::vector<Fault> out;
  for (int i = 0; i < o.count; ++i) {
    Fault f;
    f.kind = kinds[i];
    f.at_ms = rng.range(o.first_ms, std::max(o.first_ms, o.last_ms));
    f.pick = rng.next();
    switch (f.kind) {
      case FaultKind::kKillWorker:
      case FaultKind::kKillCoordinator: f.duration_ms = rng.range(0, 3000); break;
      case FaultKind::kPauseWorker:
      case FaultKind::kPauseCoordinator:
        // One pause in four outlasts the group session: the group moves on
        // and the paused member wakes up as a zombie.
        f.duration_ms = rng.chance(25) ? rng.range(o.session_timeout_ms + 1000, o.session_timeout_ms + 4000)
                                       : rng.range(500, 4000);
        break;
      case FaultKind::kRedisRestart:
        f.param = rng.chance(50) ? 1 : 0;
        f.duration_ms = rng.range(200, 3000);
        break;
      case FaultKind::kBrokerDown: f.duration_ms = rng.range(500, 4000); break;
      case FaultKind::kRequestErrors: f.param = rng.range(1, 10); break;
      case FaultKind::kRttSpike:
        f.param = rng.range(100, 1500);
        f.duration_ms = rng.range(1000, 5000);
        break;
      case FaultKind::kLeaderMove: break;
      case FaultKind::kDuplicateDelivery: f.param = rng.range(1, 20); break;
      case FaultKind::kSinkErrors: f.param = rng.range(1, 6); break;
      case FaultKind::kSinkSlow:
        // Past the http agent's 3 s timeout_ms: it calls again with the same key.
        f.param = rng.range(1, 4);
        f.duration_ms = rng.range(3200, 5000);
        break;
    }
    out.push_back(f);
  }
  std::stable_sort(out.begin(), out.end(), [](const Fault& a, const Fault& b) { return a.at_ms < b.at_ms; });
  return out;
}

}  // namespace baton::chaos
