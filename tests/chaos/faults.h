// The chaos suite's seeded fault schedule (tests/chaos/README.md "Faults").
//
// make_schedule() is a pure function of (seed, options): the same seed and
// sizes give the same faults at the same offsets with the same parameters,
// so a failing schedule replays (the fleet's timing still varies). Targets are
// drawn from Fault::pick at injection time among the members that can take the
// fault then (a killed worker cannot be paused).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace baton::chaos {

enum class FaultKind {
  kKillWorker,         // SIGKILL a worker, restart it after `duration_ms`
  kKillCoordinator,    // SIGKILL a coordinator replica, restart it after `duration_ms`
  kPauseWorker,        // SIGSTOP a worker for `duration_ms`, then SIGCONT
  kPauseCoordinator,   // SIGSTOP a coordinator for `duration_ms` (sometimes past the 10 s session)
  kRedisRestart,       // Redis SIGKILLed (param 1) or SIGTERMed (0), down `duration_ms`
  kBrokerDown,         // a mock broker down for `duration_ms`, then up
  kRequestErrors,      // `param` Kafka errors pushed for one API key
  kRttSpike,           // a mock broker answers `param` ms late for `duration_ms`
  kLeaderMove,         // a partition's leader moves to another broker
  kDuplicateDelivery,  // `param` consumed task/event/trigger messages produced again
  kSinkErrors,         // the effect sink answers 503 to the next `param` requests
  kSinkSlow,           // the effect sink applies the next `param` requests but answers `duration_ms` late
};
inline constexpr int kFaultKinds = 12;

const char* fault_name(FaultKind k);

struct Fault {
  int64_t at_ms = 0;  // from the start of the soak
  FaultKind kind = FaultKind::kKillWorker;
  int64_t duration_ms = 0;
  int64_t param = 0;
  uint64_t pick = 0;  // random bits for the target and the details
  std::string describe() const;
};

struct ScheduleOptions {
  int count = 30;
  int64_t first_ms = 5000;  // no fault before this
  int64_t last_ms = 60000;  // none after this
  int64_t session_timeout_ms = 10000;  // pauses are sometimes longer than this
};

// `count` faults between first_ms and last_ms, sorted by time. When count is
// at least the number of kinds, every kind appears at least once.
std::vector<Fault> make_schedule(uint64_t seed, const ScheduleOptions& o);

// splitmix64: a small, portable generator (the standard distributions are
// not the same across library versions, which would break replays).
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next();
  // Uniform in [lo, hi] (hi >= lo).
  int64_t range(int64_t lo, int64_t hi);
  bool chance(int percent) { return range(0, 99) < percent; }

 private:
  uint64_t s_;
};

}  // namespace baton::chaos
