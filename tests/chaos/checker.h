// The chaos suite's invariant checker (tests/chaos/README.md "Invariants").
//
// After a soak has drained, check() reads what Redis holds about every run the
// driver started (run hash, ctx hash, audit stream, outbox, the exceptions
// zset, the shared records) and what the effect sink received, and proves:
//
//   lost       every started run exists in Redis;
//   ended      every run is completed, or is an exception with a reason and in
//              the exceptions zset (and a completed run is not in that zset);
//              a run still running or waiting is *stuck* (the caller drains
//              with a bounded wait before calling check); a running run is in
//              active:<p> and each running step has its timeout timer (else
//              no takeover or timeout would ever move it), an ended run is not
//              in active:<p> and has no task left in its outbox;
//   audit      one run_started, one ending entry that matches the run's status;
//              each (step, attempt) dispatched once, attempts 1..n without
//              gaps, each dispatched attempt's result applied at most once
//              (step_result) and never without its dispatch; one decision per
//              gate, one timeout per attempt: no event applied twice;
//   records    each record equals the replay of its record_written entries
//              (all runs' entries for that record, by version): versions
//              1..n without gaps or repeats, each entry's old values equal the
//              replay so far, the final fields and _v equal the hash;
//   effects    per (run, step): the sink applied only attempts that were
//              dispatched; a succeeded effect step's accepted attempt has its
//              effect applied, and the effect id in the step's output is that
//              effect's id; a key is applied at most once and always with the
//              same body.
//
// Nothing here throws: Redis errors come back as a Status. Not thread-safe
// (one redis::Client); call from one thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "common/util/status.h"
#include "tests/chaos/sink.h"

namespace baton::chaos {

// A run the driver asked for and saw accepted (HTTP 202 or a delivered trigger).
struct StartedRun {
  std::string run_id;
  std::string workflow;
  int64_t requested_ms = 0;  // first attempt to start it (latency is measured from here)
};

struct CheckInput {
  std::string ns;
  std::vector<StartedRun> runs;
  std::vector<SinkRequest> sink;
  // Effect steps: step id -> the output field that carries the sink's effect id.
  std::map<std::string, std::string> effect_steps;
  std::map<std::string, int> faults;  // injected faults by kind (for the table)
  uint64_t seed = 0;
  std::string sizes;  // e.g. "BATON_CHAOS_RUNS=300 BATON_CHAOS_FAULTS=30" (for the replay line)
  int64_t soak_ms = 0;
  int64_t drain_ms = 0;
};

struct Violation {
  std::string invariant;  // lost, stuck, ended, audit, record, effect
  std::string run_id;     // or record key
  std::string detail;
};

struct Report {
  std::size_t runs = 0, completed = 0, exceptions = 0, other_ended = 0;
  std::map<std::string, std::size_t> exception_reasons;
  std::size_t lost = 0, stuck = 0;
  std::size_t duplicated_effects = 0;     // keys applied twice, undispatched attempts applied, two ids for one result
  std::size_t missing_effects = 0;        // a succeeded effect step whose accepted attempt has no applied effect
  std::size_t superseded_effects = 0;     // applied effects of attempts that were not the accepted one
  std::size_t duplicate_deliveries = 0;   // requests after the first of a key (the sink deduplicated them)
  std::size_t effects_applied = 0, sink_requests = 0, sink_refused = 0;
  std::size_t events_applied_twice = 0;   // audit: a step result, dispatch or decision applied twice
  std::size_t stale_results = 0;          // late or duplicate results recorded and ignored
  std::size_t records = 0, record_mismatches = 0;
  std::size_t retried_attempts = 0;       // dispatches beyond each step's first
  std::size_t timers_left = 0;            // timers of ended runs still in timers:<p> (they fire into nothing)
  int64_t p50_ms = -1, p99_ms = -1, max_ms = -1;
  std::map<std::string, int> faults;
  uint64_t seed = 0;
  std::string sizes;
  int64_t soak_ms = 0, drain_ms = 0;
  std::vector<Violation> violations;

  bool ok() const { return violations.empty(); }
  // The one table: runs, outcomes, faults by kind, the invariants' counts,
  // latency and the seed (with the line that replays it).
  std::string table() const;
  // The first `max` violations, one per line.
  std::string violations_text(std::size_t max = 50) const;
};

// Reads Redis through `rc` and checks `in`. kUnavailable when Redis cannot be
// read (retry after it is back); violations are in the report, not the status.
Result<Report> check(redis::Client& rc, const CheckInput& in);

// Percentile (0..100) of `v` by nearest rank; -1 when empty. Sorts `v`.
int64_t percentile(std::vector<int64_t>& v, double p);

}  // namespace baton::chaos
