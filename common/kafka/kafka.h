// Kafka producer and consumer behind small interfaces. Only kafka.cc includes
// rdkafkacpp.h. librdkafka error codes are translated to Status there.
//
// Configuration defaults are tuned for low per-hop latency (see
// docs/ARCHITECTURE.md "Latency"): fetch.wait.max.ms and linger.ms come from
// KafkaConfig; the producer is idempotent (enable.idempotence=true, acks=all)
// and uses the murmur2_random partitioner.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/util/status.h"

namespace baton::kafka {

struct KafkaConfig {
  std::string brokers;              // bootstrap.servers
  std::string client_id = "baton";
  int fetch_wait_max_ms = 1;        // per-hop latency floor against baton-broker
  double linger_ms = 0;             // producer batching delay (0: send at once; batches form while a request is in flight)
  int session_timeout_ms = 10000;
  // Extra librdkafka properties (name -> value), applied last.
  std::vector<std::pair<std::string, std::string>> extra;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// Called once per produced message, from the thread that calls Producer::poll()
// (or the producer's internal poller thread when started with one). Must not block.
// flush(), and produce() on a full queue without a poller, may also run callbacks
// on the calling thread. Exceptions thrown by a callback are caught and logged.
// Every accepted message is reported exactly once, at the latest when the
// producer is destroyed (then with an error if it could not be delivered).
using DeliveryCallback = std::function<void(const Status&)>;

class Producer {
 public:
  virtual ~Producer() = default;
  Producer() = default;
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;

  // Thread-safe. Copies key and payload; enqueues for delivery (partition from
  // the key with murmur2_random, or `partition` when >= 0). kUnavailable when
  // the local queue is full after a short wait; the callback is not called then.
  // An empty key means no key (random partition). kTooLarge when the payload
  // exceeds limits::kMaxMessageBytes. On any error the callback is not called.
  virtual Status produce(std::string_view topic, std::string_view key, std::string_view payload,
                         DeliveryCallback on_delivery = {}, const Headers& headers = {},
                         int32_t partition = -1) = 0;
  // Serves delivery callbacks. Not needed when created with a poller thread.
  virtual void poll(int timeout_ms) = 0;
  // Waits until everything enqueued is delivered or failed (callbacks run).
  virtual Status flush(int timeout_ms) = 0;
  // Creates the producer's handles for `topics` and fetches their metadata, so
  // the first message to each is not held back waiting for it. Best effort:
  // returns the first error but warms what it can.
  virtual Status warm_up(const std::vector<std::string>& topics, int timeout_ms) = 0;
  // Number of partitions of `topic` (metadata request), for callers that need it.
  // kNotFound when the topic does not exist (asking never creates it).
  virtual Result<int32_t> partition_count(std::string_view topic, int timeout_ms) = 0;
};

// `with_poller`: a background thread calls poll() so delivery callbacks run there.
// The destructor flushes for up to 5 s, then fails what is left (callbacks run
// with an error) and stops the poller. kInvalidArgument for a bad config.
Result<std::unique_ptr<Producer>> make_producer(const KafkaConfig& cfg, bool with_poller = true);

// One consumed message, owning its bytes.
struct Message {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string payload;
  int64_t timestamp_ms = 0;
  Headers headers;
};

struct TopicPartition {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = -1;  // for commits: the next offset to read (last processed + 1)
};

// Rebalance notifications, called from inside Consumer::poll_batch() on the
// consumer's thread, before the assignment changes take effect for reads.
// close() reports the final revocation. Offsets in the lists are -1 (unknown).
// Exceptions thrown by a listener are caught and logged.
struct RebalanceListener {
  std::function<void(const std::vector<TopicPartition>&)> on_assigned;
  std::function<void(const std::vector<TopicPartition>&)> on_revoked;
};

// A consumer group member. Not thread-safe: one thread owns it.
// Auto-commit is off: callers commit what they have finished.
class Consumer {
 public:
  virtual ~Consumer() = default;
  Consumer() = default;
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;

  virtual Status subscribe(const std::vector<std::string>& topics) = 0;
  // Appends up to `max` messages to `out`, waiting up to `timeout_ms` for the
  // first one and returning as soon as the local queue is empty afterwards.
  // Errors that are not fatal (partition EOF, transient broker errors) are
  // logged and skipped; a fatal error is returned (messages appended before it
  // stay in `out`). kInvalidArgument after close().
  virtual Status poll_batch(std::vector<Message>& out, std::size_t max, int timeout_ms) = 0;
  // Commits the given offsets (next offset to read). async: fire and forget
  // (failures are logged). kFenced when the group has moved on (the partition
  // was reassigned); kInvalidArgument for a negative offset. Empty: no-op.
  virtual Status commit(const std::vector<TopicPartition>& offsets, bool async) = 0;
  // Leaves the group (commits nothing). Idempotent.
  virtual void close() = 0;
};

Result<std::unique_ptr<Consumer>> make_consumer(const KafkaConfig& cfg, const std::string& group_id,
                                                RebalanceListener listener = {});

// Creates topics with `partitions` partitions (admin API); existing topics are fine.
// On a cluster without a live controller (baton-broker) missing topics are
// auto-created instead, with the broker's default partition count (4 there),
// and a warning is logged.
Status create_topics(const KafkaConfig& cfg, const std::vector<std::string>& topics, int partitions,
                     int timeout_ms = 10000);

// Header names on DLQ messages.
inline constexpr const char* kDlqOriginTopic = "baton-origin-topic";
inline constexpr const char* kDlqOriginPartition = "baton-origin-partition";
inline constexpr const char* kDlqOriginOffset = "baton-origin-offset";
inline constexpr const char* kDlqError = "baton-error";
// Set when the payload was cut to limits::kMaxMessageBytes: the original size.
inline constexpr const char* kDlqTruncatedFrom = "baton-truncated-from";

// Sends a message that could not be handled to baton.<ns>.dlq with headers naming
// its origin and the error. Keeps the original key, payload and headers (origin
// headers from an earlier trip to a DLQ are replaced; the error is capped at 4 KiB).
Status send_to_dlq(Producer& producer, std::string_view ns, const Message& m, std::string_view error,
                   DeliveryCallback on_delivery = {});

}  // namespace baton::kafka
