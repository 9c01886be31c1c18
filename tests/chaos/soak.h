// The chaos soak (tests/chaos/README.md): starts the fleet (tests/chaos/cluster.h)
// and the effect sink, starts N runs of the chaos workflows at a steady pace
// over HTTP or the triggers topic, decides the approval gates they open,
// injects the seeded fault schedule (tests/chaos/faults.h), heals the fleet,
// waits (bounded) for every run to end, and checks the invariants
// (tests/chaos/checker.h).
//
// run_soak() blocks for the whole soak and must be called from a thread that
// outlives it (it starts child processes). It never throws; failures to set
// up come back in SoakResult::setup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/util/status.h"
#include "tests/chaos/checker.h"
#include "tests/chaos/cluster.h"

namespace baton::chaos {

struct SoakOptions {
  uint64_t seed = 0;
  int runs = 300;
  int faults = 30;
  int seconds = 60;         // the soak: runs are started and faults injected over this long
  int drain_seconds = 240;  // then at most this long for every run to end
  int fetch_wait_ms = 25;
  std::string ns = "chaos";
  std::string source_dir;  // the repository (workflows, example inputs)
  std::string bin_dir;     // baton-broker, baton-coordinator, baton-worker
  bool keep_dir = false;   // keep the work dir (logs, Redis data) even on success

  // From BATON_CHAOS_SEED (default: random), BATON_CHAOS_RUNS (300),
  // BATON_CHAOS_FAULTS (30), BATON_CHAOS_SECONDS (max(60, runs / 5)),
  // BATON_CHAOS_DRAIN_SECONDS (240), BATON_CHAOS_FETCH_WAIT_MS (25),
  // BATON_CHAOS_KEEP (1: keep the work dir).
  static SoakOptions from_env();
  // "BATON_CHAOS_SEED=… BATON_CHAOS_RUNS=… …": the environment that replays it.
  std::string replay_env() const;
};

struct SoakResult {
  Status setup;         // the fleet could not be started (nothing was checked)
  Report report;        // the checker's report (violations included)
  std::vector<Exit> exits;              // members that exited on their own
  std::vector<std::string> timeline;    // faults as injected, with offsets
  std::size_t not_started = 0;          // runs the driver could not get accepted
  std::size_t decisions = 0;            // gate decisions the driver sent
  std::size_t duplicates = 0;           // messages produced again
  std::string work_dir;                 // kept on failure
  std::string logs;                     // log tails, on failure
  int64_t wall_ms = 0;
  bool ok() const { return setup.is_ok() && report.ok() && exits.empty() && not_started == 0; }
};

SoakResult run_soak(const SoakOptions& o);

}  // namespace baton::chaos
