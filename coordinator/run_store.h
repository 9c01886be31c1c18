// The coordinator's view of Redis: run state, records, timers, partitions.
// Turns engine Transitions into baton_apply calls (one per transition,
// pipelined per batch) and record writes into baton_record_write calls.
// Not thread-safe: one RunStore per thread (it owns one connection).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "common/util/status.h"
#include "coordinator/engine.h"

namespace baton::coordinator {

enum class ApplyReply { kOk, kDup, kExists, kMissing, kFenced, kError };

struct LoadedRun {
  RunState state;
  std::vector<std::pair<std::string, std::string>> outbox;  // field -> serialized Task
};

class RunStore {
 public:
  RunStore(std::unique_ptr<redis::Client> client, std::string ns)
      : client_(std::move(client)), ns_(std::move(ns)) {}

  redis::Client& client() { return *client_; }
  const std::string& ns() const { return ns_; }

  // Takes ownership of a partition: INCR epoch:<p>. Returns the new epoch.
  Result<int64_t> bump_epoch(int32_t partition);
  // Last applied events offset on a partition (-1: none).
  Result<int64_t> applied_offset(int32_t partition);
  // Run ids still in flight on a partition.
  Result<std::vector<std::string>> active_runs(int32_t partition);
  // Loads runs (run hash, ctx, outbox) in one pipeline; missing runs are skipped.
  Result<std::vector<LoadedRun>> load_runs(const std::vector<std::string>& run_ids);
  // Due timers (member strings) on the given partitions, at most `limit` each.
  Result<std::vector<std::pair<int32_t, std::string>>> due_timers(const std::vector<int32_t>& partitions,
                                                                   int64_t now_ms, int limit);

  // Pipelined batch calls. Append, then exec_*; replies come back in order.
  void append_record_write(const RecordWriteRequest& req);
  Result<std::vector<RecordWriteOutcome>> exec_record_writes(const std::vector<RecordWriteRequest>& reqs);

  // Runs lock operations (baton_lock), pipelined. Each reply: the holder the
  // lock was granted to now ("" when none) and its token.
  struct LockGrant {
    std::string holder;  // "<run>|<instance>"
    int64_t token = 0;
  };
  Result<std::vector<LockGrant>> run_locks(const std::vector<LockOp>& ops, int64_t now_ms);
  // Expires the held record locks whose lease passed (at most `limit`);
  // returns the grants to waiting runs that follow.
  Result<std::vector<LockGrant>> expire_locks(int64_t now_ms, int limit);

  // Queues one baton_apply for `t` on run `state` (its partition).
  void append_apply(const RunState& state, const Transition& t, int64_t epoch, int64_t offset, int64_t now_ms);
  Result<std::vector<ApplyReply>> exec_applies();

  // Removes delivered tasks from outboxes: (run_id, outbox field) pairs.
  Status ack_outbox(const std::vector<std::pair<std::string, std::string>>& acks);
  // Removes timer members that belong to no cached run.
  Status drop_timers(int32_t partition, const std::vector<std::string>& members);

 private:
  std::unique_ptr<redis::Client> client_;
  std::string ns_;
  std::vector<std::string> args_;  // reused argument storage
};

}  // namespace baton::coordinator
