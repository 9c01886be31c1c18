// The coordinator process: wires the engine to Kafka, Redis and HTTP.
//
// Threads: the main loop (run()) owns the consumer, the partition state and
// the run store; the producer's poller thread runs delivery callbacks (they
// only enqueue outbox acks); the HTTP server's threads serve the API.
// One owner per run: only the replica that owns an events partition changes
// the runs on it, fenced by that partition's epoch in Redis.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/workflow/parser.h"
#include "coordinator/api.h"
#include "coordinator/engine.h"
#include "coordinator/notifier.h"
#include "coordinator/run_store.h"

namespace baton::coordinator {

struct Options {
  std::string brokers;
  std::string redis = "127.0.0.1:6379";
  std::string ns = "dev";
  std::string workflows_dir;
  std::string http = "127.0.0.1:8080";
  std::string http_port_file;
  int fetch_wait_ms = 1;
  double linger_ms = 0;
  std::size_t max_batch = 2048;
  int timer_scan_ms = 50;
  std::string auth_tokens;  // token file (docs/security.md); empty: auth off
  std::string notify;       // webhooks file (docs/notifications.md); empty: no notifications
};

class Application {
 public:
  explicit Application(Options opts);
  ~Application();

  // Loads workflows, connects, loads the Redis library, starts HTTP.
  Status init();
  // Serves until stop() (called from a signal handler thread or test).
  Status run();
  void stop() { stop_.store(true); }
  int http_port() const;

 private:
  struct Partition {
    int64_t epoch = 0;
    int64_t applied = -1;
    std::unordered_map<std::string, RunState> runs;  // in-flight runs of this partition
  };

  // Rebalance (called inside poll_batch on the main thread).
  void on_assigned(const std::vector<kafka::TopicPartition>& parts);
  void on_revoked(const std::vector<kafka::TopicPartition>& parts);
  Status take_partition(int32_t p);

  void process_batch(std::vector<kafka::Message>& msgs);
  // Applies the events of one batch; false when Redis failed (caller retries).
  bool apply_events(std::vector<kafka::Message*>& events);
  void handle_triggers(std::vector<kafka::Message*>& triggers);
  // Starts the runs of `schedule:` workflows whose fire time has come (once per
  // second). Every replica may do it: a fire time maps to one run id.
  void scan_schedules();
  void scan_timers();
  // `lock: record`: runs lock operations of stored transitions and sends a
  // LockGranted event to each run the lock went to.
  void run_locks(const std::vector<LockOp>& ops);
  void send_grants(const std::vector<RunStore::LockGrant>& grants);
  // Expired record leases pass on to the next waiting run (once a second).
  void expire_locks();
  void drain_acks();
  void maybe_commit(bool force);

  // Publishes a task (`bytes` is `task` serialized); its delivery acks the outbox.
  void publish(const baton::v1::Task& task, const std::string& bytes);
  void publish_all(const Transition& t);
  // Copies a stored transition's audit entries to baton.<ns>.audit: one JSON
  // message {run_id, entries: [{kind, actor, at_ms, detail}]} per transition,
  // key run id. Best effort: the run's Redis stream is the record.
  void export_audit(const std::string& run_id, const Transition& t);
  void republish_outbox(const std::vector<std::pair<std::string, std::string>>& outbox);
  // Reloads one run from Redis into its partition cache (and republishes its
  // outbox); erases it when it is gone or finished.
  void reload_run(int32_t partition, const std::string& run_id);
  void to_dlq(const kafka::Message& m, const std::string& error);

  Options opts_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  workflow::Registry registry_;
  int64_t next_schedule_scan_ms_ = 0;
  Engine engine_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Producer> audit_producer_;  // batched: the audit export
  std::unique_ptr<kafka::Consumer> consumer_;
  std::unique_ptr<RunStore> store_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<Notifier> notifier_;
  std::unique_ptr<http::Server> http_;
  std::string events_topic_;
  std::string triggers_topic_;
  std::string audit_topic_;

  std::unordered_map<int32_t, Partition> partitions_;
  // Next offsets to commit per (topic, partition).
  std::unordered_map<std::string, std::unordered_map<int32_t, int64_t>> to_commit_;
  int64_t last_commit_ms_ = 0;
  int64_t next_timer_scan_ms_ = 0;

  // Daily budgets: today's spend per workflow (micro-USD), read before each
  // batch of events for workflows with a daily budget; added to after it.
  std::unordered_map<std::string, uint64_t> daily_spend_;
  // Reads today's spend of the workflows of `names`; false on a Redis error.
  bool load_daily_spend(const std::vector<std::string>& names);
  void add_daily_spend(const std::unordered_map<std::string, uint64_t>& spent);

  std::mutex acks_mu_;
  std::vector<std::pair<std::string, std::string>> acks_;  // (run_id, outbox field)
};

}  // namespace baton::coordinator
