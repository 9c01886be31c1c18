// KPIs per workflow and version, computed from what Redis holds (docs/kpis.md):
// the runs index (keys::runs_index), each run's hash (keys::run) and each
// run's audit stream (keys::run_audit). Read-only: nothing here writes Redis.
//
// Two layers:
// - StatsAccumulator: pure aggregation (no I/O) over already-read run hashes
//   and audit entries. Memory grows with the number of (workflow, version)
//   groups, steps and latency samples, never with whole audit streams: each
//   entry is folded in as it is read and dropped.
// - compute_stats(): reads the runs started in a time window, newest first,
//   in pipelined chunks (HGETALL + XRANGE per run), feeds the accumulator and
//   wraps its result with the window and scan counters.
//
// Bad data never fails the call: a run in the index whose hash is gone, a run
// hash without its mandatory fields (wf, ver, status), an audit entry whose
// detail is not JSON or has fields of the wrong type are skipped and counted
// (runs_missing, runs_skipped, entries_skipped).
//
// Threads: a StatsAccumulator is a plain value (one thread at a time);
// compute_stats uses the given client, which must not be used by another
// thread during the call (hiredis clients are not thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/redis/client.h"
#include "common/util/status.h"

namespace baton::coordinator {

struct StatsQuery {
  std::string workflow;        // "" = every workflow
  uint32_t version = 0;        // 0 = every version
  int64_t since_ms = 0;        // runs started at or after (unix ms; 0 = from the beginning)
  int64_t until_ms = 0;        // runs started at or before (unix ms; 0 = now)
  std::size_t max_runs = 20000;  // newest runs read from the index (1..kMaxStatsRuns)
};

// Upper bound for StatsQuery::max_runs (the index ids are held in memory).
inline constexpr std::size_t kMaxStatsRuns = 200000;
// Runs per pipelined round trip, and audit entries per XRANGE page (a longer
// stream is read in further pages with its own round trips).
inline constexpr std::size_t kStatsChunkRuns = 200;
inline constexpr std::size_t kStatsAuditPage = 256;

// One audit stream entry as read from Redis (fields kind, at, actor, detail).
struct StatsAuditEntry {
  std::string kind;
  int64_t at_ms = 0;
  std::string detail;  // JSON text; parsed only for the kinds whose detail is needed
};

// Nearest-rank percentile of `sorted` (ascending, non-empty): the value at
// rank ceil(p/100 * n), 1-based; p in (0, 100].
int64_t nearest_rank(const std::vector<int64_t>& sorted, double p);

class StatsAccumulator {
 public:
  using HashPairs = std::vector<std::pair<std::string, std::string>>;

  // Runs of other workflows (or versions, when `version` != 0) are ignored.
  explicit StatsAccumulator(std::string workflow = "", uint32_t version = 0);

  // Streaming form: begin_run() with the run's hash (HGETALL pairs), then
  // add_entry() for each audit entry in stream order, then end_run().
  // begin_run() returns false, and the run is not counted, when the hash is
  // empty (runs_missing), lacks wf/ver/status (runs_skipped) or does not
  // match the filter; add_entry()/end_run() are then no-ops.
  bool begin_run(const HashPairs& run_hash);
  void add_entry(const StatsAuditEntry& e);
  void end_run();

  // begin_run + add_entry for each + end_run.
  bool add_run(const HashPairs& run_hash, const std::vector<StatsAuditEntry>& audit);

  // Runs counted / skipped so far.
  std::size_t runs_counted() const { return runs_counted_; }
  std::size_t runs_missing() const { return runs_missing_; }
  std::size_t runs_skipped() const { return runs_skipped_; }
  std::size_t runs_filtered() const { return runs_filtered_; }
  std::size_t entries_skipped() const { return entries_skipped_; }

  // The "workflows" array of docs/kpis.md, ordered by workflow then version.
  nlohmann::json to_json() const;

 private:
  struct Gate {
    std::string kind;
    uint64_t opened = 0, decisions = 0, approved = 0, rejected = 0, corrected = 0;
    uint64_t timeouts = 0, escalations = 0, overturned = 0;
  };
  struct Group {
    uint64_t runs = 0, completed = 0, exceptions = 0, running = 0, waiting = 0, cancelled = 0, other = 0;
    std::map<std::string, uint64_t> exceptions_by_reason;
    uint64_t ever_excepted = 0;
    uint64_t step_results = 0, retries = 0;
    uint64_t runs_with_fallback = 0, fallbacks = 0, budget_exceeded = 0;
    uint64_t collisions = 0;
    uint64_t tokens_in = 0, tokens_out = 0;
    uint64_t cost_micros = 0, cost_micros_completed = 0;
    std::vector<int64_t> approval_latency, review_latency, time_to_resolve;
    std::map<std::string, std::vector<int64_t>> step_latency;
    std::map<std::string, Gate> gates;
  };
  // Per-run state while its audit entries are read.
  struct Current {
    Group* group = nullptr;
    bool completed = false;
    std::optional<int64_t> open_exception_at;  // a run_exception not yet followed by an operator action
    bool excepted = false;
    bool fallback = false;
  };

  bool apply_entry(Group& g, const StatsAuditEntry& e);

  std::string workflow_;
  uint32_t version_ = 0;
  std::map<std::pair<std::string, uint32_t>, Group> groups_;
  std::optional<Current> cur_;
  std::size_t runs_counted_ = 0, runs_missing_ = 0, runs_skipped_ = 0, runs_filtered_ = 0;
  std::size_t entries_skipped_ = 0;
};

// Reads the runs started in [since_ms, until_ms] (until 0 = now_ms) from the
// runs index, newest first, at most q.max_runs of them (`truncated` is true
// when the window holds more), and returns the document of docs/kpis.md:
// {since_ms, until_ms, runs_scanned, runs_counted, runs_missing, runs_skipped,
//  entries_skipped, truncated, workflows: [...]}.
// Errors: kInvalidArgument when since > until or max_runs is 0 or above
// kMaxStatsRuns; kUnavailable when Redis cannot be reached or answers an
// error other than WRONGTYPE (a run key of the wrong type is skipped).
Result<nlohmann::json> compute_stats(redis::Client& c, const std::string& ns, const StatsQuery& q, int64_t now_ms);

}  // namespace baton::coordinator
