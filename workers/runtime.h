// The worker runtime: consume a role's tasks, answer each once, commit.
// docs/ARCHITECTURE.md §3-5 and docs/agents.md "How a worker runs a task".
//
// One loop thread owns the consumer and the Redis client; agents run on a pool
// of `concurrency` threads. Per batch (a barrier: at most `max_batch` messages):
//   1. poll_batch from baton.<ns>.tasks.<role> (group baton-worker.<ns>.<role>);
//   2. a message over limits::kMaxMessageBytes, that does not parse as a Task,
//      or lacks run_id/step_id/attempt -> baton.<ns>.dlq with the error;
//   3. one Redis pipeline: GET done:<run>:<step>:<attempt> for every task, and
//      HGETALL of the record when the task names one. Redis unavailable (or an
//      error reply to a done GET) -> retried with backoff until it works or
//      stop() is called; no agent runs without its done-check;
//   4. a done hit -> the cached RunEvent bytes are produced again unchanged;
//      the same task twice in one batch runs once and is answered twice;
//      a task of a workflow@version the executor does not know -> HGET of
//      that version from baton:<ns>:workflows (applied over the control
//      plane), at most once per second per name@version, learned by the
//      executor; still unknown -> the task fails as unknown_agent;
//   5. misses run on the pool (Executor::answer);
//   6. every answer is produced to baton.<ns>.events keyed by run_id; the loop
//      waits for the delivery reports; failed deliveries are retried with
//      backoff (after stop(): for at most `shutdown_grace_ms`);
//   7. one pipeline SET done-key <bytes> EX done_ttl_seconds for the delivered
//      answers that were computed here;
//   8. commit, per partition, the offset after the last message whose answer
//      (or DLQ copy) is delivered — never past one that is not.
// stop() (thread-safe, idempotent, callable from any thread): the loop finishes
// the batch in flight, commits synchronously, closes the consumer and run()
// returns.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/status.h"
#include "workers/executor.h"

namespace baton::worker {

struct RuntimeOptions {
  std::string ns = "dev";
  std::string role;
  int concurrency = 8;            // agent threads
  std::size_t max_batch = 256;    // messages per poll_batch
  int poll_timeout_ms = 100;      // idle wait for the first message of a batch
  int done_ttl_seconds = 86400;   // lifetime of done:<run>:<step>:<attempt>
  int shutdown_grace_ms = 10000;  // after stop(): how long to keep retrying deliveries
  int max_backoff_ms = 2000;      // Redis / delivery retry backoff cap
  // Poison tasks: before running an agent the worker counts the start in
  // running:<run>:<step>:<attempt> (same pipeline as the done: check, EX
  // done_ttl_seconds) and deletes the counter once the answer is delivered. A
  // task started more than `poison_after` times without an answer (its agent
  // killed the worker each time) is answered FAILED poison_task without
  // running. 0 turns this off.
  int poison_after = 3;
};

// Counters, readable from any thread while the runtime runs.
struct RuntimeStats {
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> messages{0};      // consumed
  std::atomic<uint64_t> executed{0};      // agent runs (cache misses)
  std::atomic<uint64_t> poisoned{0};      // tasks failed as poison_task
  std::atomic<uint64_t> cached{0};        // answered from done: or from the same batch
  std::atomic<uint64_t> dead_lettered{0}; // sent to the DLQ
  std::atomic<uint64_t> delivered{0};     // answers delivered to events
  std::atomic<uint64_t> not_ok{0};        // answers whose status is not OK
  std::atomic<uint64_t> redis_retries{0};
  std::atomic<uint64_t> delivery_retries{0};
  std::atomic<uint64_t> commits{0};
  std::atomic<uint64_t> workflow_reloads{0};  // HGETs of unknown workflow versions
  // Time spent per phase, microseconds, summed over batches.
  std::atomic<uint64_t> poll_us{0};     // waiting in poll_batch (idle included)
  std::atomic<uint64_t> check_us{0};    // done/record pipeline (retries included)
  std::atomic<uint64_t> run_us{0};      // agents
  std::atomic<uint64_t> deliver_us{0};  // produce + delivery reports
  std::atomic<uint64_t> cache_us{0};    // SET done pipeline
};

class Runtime {
 public:
  Runtime(RuntimeOptions options, std::shared_ptr<const Executor> executor,
          std::unique_ptr<kafka::Consumer> consumer, std::unique_ptr<kafka::Producer> producer,
          std::unique_ptr<redis::Client> redis);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Subscribes and serves until stop(). Returns ok after a clean stop, or the
  // consumer's fatal error. Call once.
  Status run();
  void stop();
  // Call from the consumer's RebalanceListener::on_revoked (it runs on the loop
  // thread, inside poll_batch): commits what was finished on those partitions,
  // synchronously, and forgets them.
  void on_revoked(const std::vector<kafka::TopicPartition>& partitions);
  bool stopping() const { return stop_.load(); }
  const RuntimeStats& stats() const { return stats_; }

 private:
  struct Item;
  struct Batch;
  // false when the batch could not be finished (only while stopping).
  bool process(std::vector<kafka::Message>& messages);
  bool check_cache(Batch& b);
  // Step 4's reload of unknown workflow versions; false only when stopping.
  bool load_missing_workflows(Batch& b);
  void execute(Batch& b);
  bool deliver(Batch& b);
  void remember(Batch& b);
  void commit(Batch& b, bool sync);
  // Sleeps `ms` unless stop() is called first; returns !stopping().
  bool backoff(int& ms);

  RuntimeOptions opts_;
  std::shared_ptr<const Executor> executor_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<redis::Client> redis_;
  std::string events_topic_;
  std::atomic<bool> stop_{false};
  RuntimeStats stats_;
  struct Pool;
  std::unique_ptr<Pool> pool_;
  std::vector<kafka::TopicPartition> last_commit_;
};

}  // namespace baton::worker
