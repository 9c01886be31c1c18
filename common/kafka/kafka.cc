// Kafka adapter: the only file that includes rdkafkacpp.h. librdkafka error
// codes become Status here (to_status) and nowhere else; librdkafka's own log
// lines and error events go to spdlog.
#include "common/kafka/kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <map>
#include <set>
#include <thread>

#include "common/util/keys.h"
#include "common/util/limits.h"

namespace baton::kafka {
namespace {

using Clock = std::chrono::steady_clock;

// Key, headers and protocol framing on top of the largest payload we accept.
constexpr std::size_t kHeadroomBytes = 64 << 10;
constexpr std::size_t kMaxWireMessageBytes = limits::kMaxMessageBytes + kHeadroomBytes;
// How long produce() keeps retrying while the local queue is full.
constexpr auto kQueueFullWait = std::chrono::seconds(1);
// How long a producer's destructor waits for outstanding deliveries.
constexpr int kCloseFlushMs = 5000;
// A DLQ error text is a diagnostic, not a payload: keep it bounded.
constexpr std::size_t kMaxDlqErrorBytes = 4096;

// ---------------------------------------------------------------------------
// Error translation (the one place).

Code code_for(RdKafka::ErrorCode err) {
  switch (err) {
    case RdKafka::ERR_NO_ERROR:
      return Code::kOk;
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__MSG_TIMED_OUT:
    case RdKafka::ERR__TIMED_OUT_QUEUE:
    case RdKafka::ERR_REQUEST_TIMED_OUT:
      return Code::kTimeout;
    case RdKafka::ERR_MSG_SIZE_TOO_LARGE:
    case RdKafka::ERR_RECORD_LIST_TOO_LARGE:
      return Code::kTooLarge;
    case RdKafka::ERR__UNKNOWN_TOPIC:
    case RdKafka::ERR_UNKNOWN_TOPIC_OR_PART:
    case RdKafka::ERR__UNKNOWN_PARTITION:
    case RdKafka::ERR__UNKNOWN_GROUP:
      return Code::kNotFound;
    case RdKafka::ERR_TOPIC_ALREADY_EXISTS:
      return Code::kAlreadyExists;
    case RdKafka::ERR__INVALID_ARG:
    case RdKafka::ERR_INVALID_CONFIG:
    case RdKafka::ERR_INVALID_PARTITIONS:
    case RdKafka::ERR_INVALID_REPLICATION_FACTOR:
    case RdKafka::ERR_TOPIC_EXCEPTION:
    case RdKafka::ERR_INVALID_MSG:
    case RdKafka::ERR_INVALID_REQUEST:
      return Code::kInvalidArgument;
    case RdKafka::ERR_TOPIC_AUTHORIZATION_FAILED:
    case RdKafka::ERR_GROUP_AUTHORIZATION_FAILED:
    case RdKafka::ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RdKafka::ERR__AUTHENTICATION:
    case RdKafka::ERR_SASL_AUTHENTICATION_FAILED:
      return Code::kPermissionDenied;
    // The group moved on without us (a commit for a generation that is over):
    // another member owns the partition now.
    case RdKafka::ERR_ILLEGAL_GENERATION:
    case RdKafka::ERR_UNKNOWN_MEMBER_ID:
    case RdKafka::ERR_FENCED_INSTANCE_ID:
    case RdKafka::ERR__FENCED:
    case RdKafka::ERR_PRODUCER_FENCED:
      return Code::kFenced;
    case RdKafka::ERR__FATAL:
    case RdKafka::ERR__STATE:
    case RdKafka::ERR__CRIT_SYS_RESOURCE:
    case RdKafka::ERR__FAIL:
      return Code::kInternal;
    default:
      break;
  }
  // Everything else is a broker, network or local queue condition that a
  // caller can retry later (transport, leader moves, coordinator loading,
  // purged messages, full queue, ...).
  return Code::kUnavailable;
}

Status to_status(RdKafka::ErrorCode err, const std::string& what) {
  if (err == RdKafka::ERR_NO_ERROR) return Status::ok();
  return Status(code_for(err), what + ": " + RdKafka::err2str(err));
}

Status to_status(rd_kafka_resp_err_t err, const std::string& what) {
  return to_status(static_cast<RdKafka::ErrorCode>(err), what);
}

// Consumer errors after which reading cannot continue by itself.
bool is_fatal_consumer_error(RdKafka::ErrorCode err) {
  switch (err) {
    case RdKafka::ERR__FATAL:
    case RdKafka::ERR__STATE:
    case RdKafka::ERR__INVALID_ARG:
    case RdKafka::ERR_TOPIC_AUTHORIZATION_FAILED:
    case RdKafka::ERR_GROUP_AUTHORIZATION_FAILED:
    case RdKafka::ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RdKafka::ERR__AUTHENTICATION:
    case RdKafka::ERR_SASL_AUTHENTICATION_FAILED:
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------
// Callbacks shared by every handle. They are stateless, live for the whole
// process (so they outlive any handle) and never let an exception escape.

class LogEvents final : public RdKafka::EventCb {
 public:
  void event_cb(RdKafka::Event& event) override {
    try {
      switch (event.type()) {
        case RdKafka::Event::EVENT_LOG:
          spdlog::log(level_for(event.severity()), "librdkafka {}: {}", event.fac(), event.str());
          break;
        case RdKafka::Event::EVENT_ERROR: {
          // Transport errors, brokers down and the like are retried by the
          // client itself (and a connect failure already came as a FAIL log
          // line); a fatal one makes the handle unusable.
          auto level = spdlog::level::warn;
          if (event.fatal()) {
            level = spdlog::level::err;
          } else if (event.err() == RdKafka::ERR__TRANSPORT || event.err() == RdKafka::ERR__RESOLVE) {
            level = spdlog::level::debug;
          }
          spdlog::log(level, "librdkafka error{}: {}: {}", event.fatal() ? " (fatal)" : "",
                      RdKafka::err2str(event.err()), event.str());
          break;
        }
        case RdKafka::Event::EVENT_THROTTLE:
          spdlog::debug("librdkafka throttled {} ms by broker {}", event.throttle_time(), event.broker_name());
          break;
        default:
          break;
      }
    } catch (...) {  // logging must never take the client down
    }
  }

 private:
  static spdlog::level::level_enum level_for(RdKafka::Event::Severity s) {
    switch (s) {
      case RdKafka::Event::EVENT_SEVERITY_EMERG:
      case RdKafka::Event::EVENT_SEVERITY_ALERT:
      case RdKafka::Event::EVENT_SEVERITY_CRITICAL:
        return spdlog::level::critical;
      case RdKafka::Event::EVENT_SEVERITY_ERROR:  // mostly connect failures, which it retries
      case RdKafka::Event::EVENT_SEVERITY_WARNING:
        return spdlog::level::warn;
      case RdKafka::Event::EVENT_SEVERITY_NOTICE:
      case RdKafka::Event::EVENT_SEVERITY_INFO:
        return spdlog::level::info;
      default:
        return spdlog::level::debug;
    }
  }
};

LogEvents& log_events() {
  static LogEvents* cb = new LogEvents();  // never destroyed: handles may log during exit
  return *cb;
}

// Runs the per-message callback carried in msg_opaque and frees it.
class DeliveryReports final : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    std::unique_ptr<DeliveryCallback> cb(static_cast<DeliveryCallback*>(message.msg_opaque()));
    if (!cb) return;
    try {
      (*cb)(to_status(message.err(), "delivery to " + message.topic_name()));
    } catch (const std::exception& e) {
      spdlog::error("kafka: delivery callback threw: {}", e.what());
    } catch (...) {
      spdlog::error("kafka: delivery callback threw a non-standard exception");
    }
  }
};

DeliveryReports& delivery_reports() {
  static DeliveryReports* cb = new DeliveryReports();
  return *cb;
}

// ---------------------------------------------------------------------------
// Configuration.

using Settings = std::vector<std::pair<std::string, std::string>>;

Status set_conf(RdKafka::Conf& conf, const std::string& name, const std::string& value) {
  std::string err;
  if (conf.set(name, value, err) != RdKafka::Conf::CONF_OK) {
    return invalid("kafka config " + name + "=" + value + ": " + err);
  }
  return Status::ok();
}

std::string format_ms(double ms) {
  std::string s = std::to_string(ms);  // "0.500000"
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

// Common settings, then `own` (role specific), then the caller's extras.
Result<std::unique_ptr<RdKafka::Conf>> make_conf(const KafkaConfig& cfg, const Settings& own) {
  if (cfg.brokers.empty()) return invalid("kafka config: brokers (bootstrap.servers) is empty");
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  Settings all = {
      {"bootstrap.servers", cfg.brokers},
      {"client.id", cfg.client_id.empty() ? std::string("baton") : cfg.client_id},
      {"socket.nagle.disable", "true"},
  };
  all.insert(all.end(), own.begin(), own.end());
  all.insert(all.end(), cfg.extra.begin(), cfg.extra.end());
  for (const auto& [name, value] : all) {
    if (Status s = set_conf(*conf, name, value); !s) return s;
  }
  std::string err;
  if (conf->set("event_cb", static_cast<RdKafka::EventCb*>(&log_events()), err) != RdKafka::Conf::CONF_OK) {
    return internal("kafka config event_cb: " + err);
  }
  return conf;
}

// What a list-all metadata request tells (nothing is auto-created by asking).
struct ClusterInfo {
  std::map<std::string, int32_t> topics;  // name -> partition count
  std::set<int32_t> brokers;
};

Result<ClusterInfo> describe_cluster(RdKafka::Handle& handle, int timeout_ms) {
  RdKafka::Metadata* raw = nullptr;
  RdKafka::ErrorCode err = handle.metadata(true, nullptr, &raw, timeout_ms);
  if (err != RdKafka::ERR_NO_ERROR) return to_status(err, "kafka metadata");
  std::unique_ptr<RdKafka::Metadata> md(raw);
  ClusterInfo out;
  for (const RdKafka::BrokerMetadata* b : *md->brokers()) out.brokers.insert(b->id());
  for (const RdKafka::TopicMetadata* t : *md->topics()) {
    if (t->err() != RdKafka::ERR_NO_ERROR) continue;
    out.topics[t->topic()] = static_cast<int32_t>(t->partitions()->size());
  }
  return out;
}

// ---------------------------------------------------------------------------
// Producer.

class KafkaProducer final : public Producer {
 public:
  explicit KafkaProducer(std::unique_ptr<RdKafka::Producer> p) : producer_(std::move(p)) {}

  void start_poller() {
    poller_ = std::thread([this] {
      while (!stop_.load(std::memory_order_acquire)) producer_->poll(100);
    });
  }

  ~KafkaProducer() override {
    RdKafka::ErrorCode err = producer_->flush(kCloseFlushMs);
    if (err != RdKafka::ERR_NO_ERROR) {
      spdlog::warn("kafka: {} message(s) still undelivered at close ({}); failing them",
                   producer_->outq_len(), RdKafka::err2str(err));
      producer_->purge(RdKafka::Producer::PURGE_QUEUE | RdKafka::Producer::PURGE_INFLIGHT);
    }
    stop_.store(true, std::memory_order_release);
    if (poller_.joinable()) poller_.join();
    // Serve the reports of purged messages so each callback runs (with an
    // error) and its heap copy is freed. Bounded: purge completes quickly.
    for (int i = 0; i < 50 && producer_->outq_len() > 0; ++i) producer_->poll(100);
    if (producer_->outq_len() > 0) {
      spdlog::warn("kafka: closing producer with {} unreported message(s)", producer_->outq_len());
    }
  }

  Status produce(std::string_view topic, std::string_view key, std::string_view payload,
                 DeliveryCallback on_delivery, const Headers& headers, int32_t partition) override {
    if (payload.size() > limits::kMaxMessageBytes) {
      return Status(Code::kTooLarge, "produce to " + std::string(topic) + ": payload of " +
                                         std::to_string(payload.size()) + " bytes exceeds " +
                                         std::to_string(limits::kMaxMessageBytes));
    }
    const std::string topic_name(topic);
    std::unique_ptr<DeliveryCallback> cb;
    if (on_delivery) cb = std::make_unique<DeliveryCallback>(std::move(on_delivery));
    // librdkafka takes the headers only when produce() succeeds.
    std::unique_ptr<RdKafka::Headers> hdrs;
    if (!headers.empty()) {
      hdrs.reset(RdKafka::Headers::create());
      for (const auto& [name, value] : headers) hdrs->add(name, value.data(), value.size());
    }
    const auto deadline = Clock::now() + kQueueFullWait;
    while (true) {
      RdKafka::ErrorCode err = producer_->produce(
          topic_name, partition < 0 ? RdKafka::Topic::PARTITION_UA : partition, RdKafka::Producer::RK_MSG_COPY,
          const_cast<char*>(payload.data()), payload.size(), key.empty() ? nullptr : key.data(), key.size(),
          0, hdrs.get(), cb.get());
      if (err == RdKafka::ERR_NO_ERROR) {
        (void)hdrs.release();
        (void)cb.release();  // freed by DeliveryReports
        return Status::ok();
      }
      if (err != RdKafka::ERR__QUEUE_FULL) return to_status(err, "produce to " + topic_name);
      if (Clock::now() >= deadline) {
        return unavailable("produce to " + topic_name + ": local queue still full after 1 s");
      }
      // Let deliveries drain: the poller thread does it when there is one.
      if (poller_.joinable()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      } else {
        producer_->poll(5);
      }
    }
  }

  void poll(int timeout_ms) override { producer_->poll(timeout_ms); }

  Status flush(int timeout_ms) override {
    RdKafka::ErrorCode err = producer_->flush(timeout_ms);
    if (err == RdKafka::ERR__TIMED_OUT) {
      return Status(Code::kTimeout,
                    "flush: " + std::to_string(producer_->outq_len()) + " message(s) still in flight");
    }
    return to_status(err, "flush");
  }

  Status warm_up(const std::vector<std::string>& topics, int timeout_ms) override {
    Status first;
    for (const auto& name : topics) {
      std::string err;
      std::unique_ptr<RdKafka::Topic> t(RdKafka::Topic::create(producer_.get(), name, nullptr, err));
      if (!t) {
        if (first) first = invalid("kafka topic " + name + ": " + err);
        continue;
      }
      RdKafka::Metadata* md = nullptr;
      RdKafka::ErrorCode e = producer_->metadata(false, t.get(), &md, timeout_ms);
      delete md;
      if (e != RdKafka::ERR_NO_ERROR && first) first = to_status(e, "metadata " + name);
      warm_.push_back(std::move(t));  // keep the handle (and its metadata) alive
    }
    return first;
  }

  Result<int32_t> partition_count(std::string_view topic, int timeout_ms) override {
    auto cluster = describe_cluster(*producer_, timeout_ms);
    if (!cluster) return cluster.status();
    auto it = cluster->topics.find(std::string(topic));
    if (it == cluster->topics.end()) return not_found("kafka topic " + std::string(topic) + " does not exist");
    return it->second;
  }

 private:
  std::unique_ptr<RdKafka::Producer> producer_;
  std::atomic<bool> stop_{false};
  std::thread poller_;
  std::vector<std::unique_ptr<RdKafka::Topic>> warm_;  // destroyed before producer_
};

Result<std::unique_ptr<RdKafka::Producer>> make_raw_producer(const KafkaConfig& cfg, const Settings& own) {
  auto conf = make_conf(cfg, own);
  if (!conf) return conf.status();
  std::string err;
  std::unique_ptr<RdKafka::Producer> p(RdKafka::Producer::create(conf->get(), err));
  if (!p) return invalid("kafka producer: " + err);
  return p;
}

// ---------------------------------------------------------------------------
// Consumer.

std::vector<TopicPartition> to_ours(const std::vector<RdKafka::TopicPartition*>& parts) {
  std::vector<TopicPartition> out;
  out.reserve(parts.size());
  for (const RdKafka::TopicPartition* p : parts) out.push_back({p->topic(), p->partition(), -1});
  return out;
}

class KafkaConsumerImpl final : public Consumer, private RdKafka::RebalanceCb, private RdKafka::OffsetCommitCb {
 public:
  explicit KafkaConsumerImpl(RebalanceListener listener) : listener_(std::move(listener)) {}

  ~KafkaConsumerImpl() override { close(); }

  Status init(const KafkaConfig& cfg, const std::string& group_id) {
    if (group_id.empty()) return invalid("kafka consumer: empty group id");
    const int session = std::max(cfg.session_timeout_ms, 1);
    // Kafka's rule of thumb: heartbeat at a third of the session timeout, so a
    // member notices a rebalance quickly (capped at the client default).
    const int heartbeat = std::clamp(session / 3, 1, 3000);
    const std::string max_fetch = std::to_string(kMaxWireMessageBytes);
    Settings own = {
        {"group.id", group_id},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", "earliest"},
        {"fetch.wait.max.ms", std::to_string(std::max(cfg.fetch_wait_max_ms, 0))},
        {"fetch.error.backoff.ms", "10"},
        {"session.timeout.ms", std::to_string(session)},
        {"heartbeat.interval.ms", std::to_string(heartbeat)},
        {"partition.assignment.strategy", "range,roundrobin"},
        {"fetch.message.max.bytes", max_fetch},
        {"max.partition.fetch.bytes", max_fetch},
    };
    auto conf = make_conf(cfg, own);
    if (!conf) return conf.status();
    std::string err;
    if ((*conf)->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(this), err) != RdKafka::Conf::CONF_OK ||
        (*conf)->set("offset_commit_cb", static_cast<RdKafka::OffsetCommitCb*>(this), err) !=
            RdKafka::Conf::CONF_OK) {
      return internal("kafka consumer callbacks: " + err);
    }
    consumer_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
    if (!consumer_) return invalid("kafka consumer: " + err);
    return Status::ok();
  }

  Status subscribe(const std::vector<std::string>& topics) override {
    if (closed_) return invalid("kafka consumer: subscribe after close");
    if (topics.empty()) return invalid("kafka consumer: subscribe to no topics");
    return to_status(consumer_->subscribe(topics), "subscribe");
  }

  Status poll_batch(std::vector<Message>& out, std::size_t max, int timeout_ms) override {
    if (closed_) return invalid("kafka consumer: poll after close");
    if (max == 0) return Status::ok();
    const auto deadline = Clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
    std::size_t got = 0;
    while (got < max) {
      // Wait (what is left of the timeout) only while nothing has arrived;
      // afterwards take just what is already queued locally.
      int wait_ms = 0;
      if (got == 0) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
        wait_ms = static_cast<int>(std::max<int64_t>(left, 0));
      }
      std::unique_ptr<RdKafka::Message> msg(consumer_->consume(wait_ms));
      if (!msg) break;
      const RdKafka::ErrorCode err = msg->err();
      if (err == RdKafka::ERR_NO_ERROR) {
        out.push_back(copy(*msg));
        ++got;
        continue;
      }
      if (err == RdKafka::ERR__TIMED_OUT) break;  // queue empty
      if (err == RdKafka::ERR__PARTITION_EOF) continue;
      if (is_fatal_consumer_error(err)) {
        return to_status(err, "consume" + where(*msg) + ": " + msg->errstr());
      }
      log_transient(err, msg->errstr() + where(*msg));
      if (got == 0 && Clock::now() >= deadline) break;
    }
    return Status::ok();
  }

  Status commit(const std::vector<TopicPartition>& offsets, bool async) override {
    if (closed_) return invalid("kafka consumer: commit after close");
    if (offsets.empty()) return Status::ok();
    std::vector<RdKafka::TopicPartition*> parts;
    parts.reserve(offsets.size());
    for (const TopicPartition& o : offsets) {
      if (o.offset < 0) {
        RdKafka::TopicPartition::destroy(parts);
        return invalid("commit: negative offset for " + o.topic + "[" + std::to_string(o.partition) + "]");
      }
      parts.push_back(RdKafka::TopicPartition::create(o.topic, o.partition, o.offset));
    }
    RdKafka::ErrorCode err = async ? consumer_->commitAsync(parts) : consumer_->commitSync(parts);
    Status st = to_status(err, "commit");
    if (st && !async) {
      for (const RdKafka::TopicPartition* p : parts) {
        if (p->err() != RdKafka::ERR_NO_ERROR) {
          st = to_status(p->err(), "commit " + p->topic() + "[" + std::to_string(p->partition()) + "]");
          break;
        }
      }
    }
    RdKafka::TopicPartition::destroy(parts);
    return st;
  }

  void close() override {
    if (closed_ || !consumer_) return;
    closed_ = true;
    // Leaves the group; the revoke reaches the listener from in here.
    RdKafka::ErrorCode err = consumer_->close();
    if (err != RdKafka::ERR_NO_ERROR) spdlog::warn("kafka: consumer close: {}", RdKafka::err2str(err));
  }

 private:
  static Message copy(RdKafka::Message& m) {
    Message out;
    out.topic = m.topic_name();
    out.partition = m.partition();
    out.offset = m.offset();
    if (m.key_pointer() != nullptr) {
      out.key.assign(static_cast<const char*>(m.key_pointer()), m.key_len());
    }
    if (m.payload() != nullptr) out.payload.assign(static_cast<const char*>(m.payload()), m.len());
    const RdKafka::MessageTimestamp ts = m.timestamp();
    out.timestamp_ms = ts.type == RdKafka::MessageTimestamp::MSG_TIMESTAMP_NOT_AVAILABLE ? 0 : ts.timestamp;
    if (RdKafka::Headers* h = m.headers(); h != nullptr) {  // owned by the message
      for (const RdKafka::Headers::Header& hd : h->get_all()) {
        std::string value;
        if (hd.value() != nullptr) value.assign(static_cast<const char*>(hd.value()), hd.value_size());
        out.headers.emplace_back(hd.key(), std::move(value));
      }
    }
    return out;
  }

  static std::string where(RdKafka::Message& m) {
    if (m.topic_name().empty()) return "";
    return " (" + m.topic_name() + "[" + std::to_string(m.partition()) + "])";
  }

  // The same transient error repeats on every fetch while it lasts: log it
  // once a second at most.
  void log_transient(RdKafka::ErrorCode err, const std::string& detail) {
    const auto now = Clock::now();
    if (err == last_logged_err_ && now - last_logged_at_ < std::chrono::seconds(1)) return;
    last_logged_err_ = err;
    last_logged_at_ = now;
    spdlog::warn("kafka: consume: {}: {}", RdKafka::err2str(err), detail);
  }

  void notify(const std::function<void(const std::vector<TopicPartition>&)>& fn,
              const std::vector<TopicPartition>& parts, const char* what) {
    if (!fn) return;
    try {
      fn(parts);
    } catch (const std::exception& e) {
      spdlog::error("kafka: rebalance listener {} threw: {}", what, e.what());
    } catch (...) {
      spdlog::error("kafka: rebalance listener {} threw a non-standard exception", what);
    }
  }

  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& parts) override {
    // Eager by default; cooperative only when a caller chose it via `extra`.
    const bool cooperative = consumer->rebalance_protocol() == "COOPERATIVE";
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      notify(listener_.on_assigned, to_ours(parts), "on_assigned");
      if (cooperative) {
        if (RdKafka::Error* e = consumer->incremental_assign(parts)) {
          spdlog::error("kafka: incremental_assign: {}", e->str());
          delete e;
        }
      } else if (RdKafka::ErrorCode e = consumer->assign(parts); e != RdKafka::ERR_NO_ERROR) {
        spdlog::error("kafka: assign: {}", RdKafka::err2str(e));
      }
    } else if (err == RdKafka::ERR__REVOKE_PARTITIONS) {
      notify(listener_.on_revoked, to_ours(parts), "on_revoked");
      if (cooperative) {
        if (RdKafka::Error* e = consumer->incremental_unassign(parts)) {
          spdlog::error("kafka: incremental_unassign: {}", e->str());
          delete e;
        }
      } else if (RdKafka::ErrorCode e = consumer->unassign(); e != RdKafka::ERR_NO_ERROR) {
        spdlog::error("kafka: unassign: {}", RdKafka::err2str(e));
      }
    } else {
      // A failed rebalance: drop whatever we hold and let the group retry.
      spdlog::error("kafka: rebalance failed: {}", RdKafka::err2str(err));
      std::vector<RdKafka::TopicPartition*> held;
      if (consumer->assignment(held) == RdKafka::ERR_NO_ERROR && !held.empty()) {
        notify(listener_.on_revoked, to_ours(held), "on_revoked");
      }
      RdKafka::TopicPartition::destroy(held);
      (void)consumer->unassign();
    }
  }

  void offset_commit_cb(RdKafka::ErrorCode err, std::vector<RdKafka::TopicPartition*>& offsets) override {
    if (err == RdKafka::ERR_NO_ERROR || err == RdKafka::ERR__NO_OFFSET) {
      for (const RdKafka::TopicPartition* p : offsets) {
        if (p->err() != RdKafka::ERR_NO_ERROR) {
          spdlog::warn("kafka: commit {}[{}]@{} failed: {}", p->topic(), p->partition(), p->offset(),
                       RdKafka::err2str(p->err()));
        }
      }
      return;
    }
    spdlog::warn("kafka: commit of {} partition(s) failed: {}", offsets.size(), RdKafka::err2str(err));
  }

  RebalanceListener listener_;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  bool closed_ = false;
  RdKafka::ErrorCode last_logged_err_ = RdKafka::ERR_NO_ERROR;
  Clock::time_point last_logged_at_{};
};

// ---------------------------------------------------------------------------
// Admin.

// For clusters where the admin API cannot work (baton-broker, i.e.
// librdkafka's mock cluster: it names no live controller and has no
// CreateTopics): such brokers create a topic when a producer asks for its
// metadata, with the broker's default partition count.
Status auto_create_topics(RdKafka::Producer& p, const std::vector<std::string>& missing, int partitions,
                          int timeout_ms) {
  for (const std::string& name : missing) {
    std::string err;
    std::unique_ptr<RdKafka::Topic> topic(RdKafka::Topic::create(&p, name, nullptr, err));
    if (!topic) return invalid("create topic " + name + ": " + err);
    RdKafka::Metadata* raw = nullptr;
    RdKafka::ErrorCode e = p.metadata(false, topic.get(), &raw, timeout_ms);
    if (e != RdKafka::ERR_NO_ERROR) return to_status(e, "create topic " + name);
    std::unique_ptr<RdKafka::Metadata> md(raw);
    for (const RdKafka::TopicMetadata* t : *md->topics()) {
      if (t->topic() != name) continue;
      if (t->err() != RdKafka::ERR_NO_ERROR) return to_status(t->err(), "create topic " + name);
      if (static_cast<int>(t->partitions()->size()) != partitions) {
        spdlog::warn("kafka: broker cannot create topics; {} was auto-created with {} partition(s), not {}", name,
                     t->partitions()->size(), partitions);
      }
    }
  }
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<Producer>> make_producer(const KafkaConfig& cfg, bool with_poller) {
  Settings own = {
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"partitioner", "murmur2_random"},
      {"linger.ms", format_ms(std::max(cfg.linger_ms, 0.0))},
      {"message.max.bytes", std::to_string(kMaxWireMessageBytes)},
  };
  auto conf = make_conf(cfg, own);
  if (!conf) return conf.status();
  std::string err;
  if ((*conf)->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(&delivery_reports()), err) !=
      RdKafka::Conf::CONF_OK) {
    return internal("kafka config dr_cb: " + err);
  }
  std::unique_ptr<RdKafka::Producer> p(RdKafka::Producer::create(conf->get(), err));
  if (!p) return invalid("kafka producer: " + err);
  auto producer = std::make_unique<KafkaProducer>(std::move(p));
  if (with_poller) producer->start_poller();
  return std::unique_ptr<Producer>(std::move(producer));
}

Result<std::unique_ptr<Consumer>> make_consumer(const KafkaConfig& cfg, const std::string& group_id,
                                                RebalanceListener listener) {
  auto consumer = std::make_unique<KafkaConsumerImpl>(std::move(listener));
  if (Status s = consumer->init(cfg, group_id); !s) return s;
  return std::unique_ptr<Consumer>(std::move(consumer));
}

Status create_topics(const KafkaConfig& cfg, const std::vector<std::string>& topics, int partitions,
                     int timeout_ms) {
  if (topics.empty()) return Status::ok();
  if (partitions < 1) return invalid("create_topics: partitions must be >= 1");
  auto made = make_raw_producer(cfg, {});
  if (!made) return made.status();
  RdKafka::Producer& p = **made;

  // Only ask for what is missing: cheap on restart, and works on brokers
  // without the admin API when everything is there already.
  auto cluster = describe_cluster(p, timeout_ms);
  if (!cluster) return cluster.status();
  std::vector<std::string> missing;
  for (const std::string& t : topics) {
    if (!cluster->topics.count(t) && std::find(missing.begin(), missing.end(), t) == missing.end()) {
      missing.push_back(t);
    }
  }
  if (missing.empty()) return Status::ok();

  rd_kafka_t* rk = p.c_ptr();
  // Admin requests go to the controller; without one they would only time out.
  const int32_t controller = rd_kafka_controllerid(rk, timeout_ms);
  if (controller < 0 || !cluster->brokers.count(controller)) {
    spdlog::info("kafka: cluster names no live controller (id {}); creating topics by auto-creation", controller);
    return auto_create_topics(p, missing, partitions, timeout_ms);
  }
  char errstr[512];
  std::vector<rd_kafka_NewTopic_t*> news;
  auto cleanup_news = [&] { rd_kafka_NewTopic_destroy_array(news.data(), news.size()); };
  for (const std::string& t : missing) {
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(t.c_str(), partitions, -1, errstr, sizeof errstr);
    if (nt == nullptr) {
      cleanup_news();
      return invalid("create topic " + t + ": " + errstr);
    }
    news.push_back(nt);
  }
  rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  (void)rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof errstr);
  (void)rd_kafka_AdminOptions_set_operation_timeout(opts, timeout_ms, errstr, sizeof errstr);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, news.data(), news.size(), opts, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, timeout_ms + 1000);

  Status st;
  bool unsupported = false;
  if (ev == nullptr) {
    st = Status(Code::kTimeout, "create topics: no answer within " + std::to_string(timeout_ms) + " ms");
  } else if (rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
    unsupported = true;
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    st = to_status(rd_kafka_event_error(ev), std::string("create topics: ") + rd_kafka_event_error_string(ev));
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (size_t i = 0; i < n && st; ++i) {
      rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) continue;
      const char* msg = rd_kafka_topic_result_error_string(results[i]);
      st = to_status(e, std::string("create topic ") + rd_kafka_topic_result_name(results[i]) +
                            (msg != nullptr ? std::string(" (") + msg + ")" : std::string()));
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(opts);
  cleanup_news();

  if (unsupported) return auto_create_topics(p, missing, partitions, timeout_ms);
  return st;
}

Status send_to_dlq(Producer& producer, std::string_view ns, const Message& m, std::string_view error,
                   DeliveryCallback on_delivery) {
  Headers headers;
  headers.reserve(m.headers.size() + 4);
  // Keep the message's own headers, except origin headers from an earlier
  // trip to a DLQ: the newest origin wins.
  for (const auto& h : m.headers) {
    if (h.first == kDlqOriginTopic || h.first == kDlqOriginPartition || h.first == kDlqOriginOffset ||
        h.first == kDlqError || h.first == kDlqTruncatedFrom) {
      continue;
    }
    headers.push_back(h);
  }
  headers.emplace_back(kDlqOriginTopic, m.topic);
  headers.emplace_back(kDlqOriginPartition, std::to_string(m.partition));
  headers.emplace_back(kDlqOriginOffset, std::to_string(m.offset));
  headers.emplace_back(kDlqError, std::string(error.substr(0, kMaxDlqErrorBytes)));
  // A message over the size cap cannot be forwarded whole (our producer refuses
  // it too): keep its first kMaxMessageBytes and say how big it was.
  std::string_view payload = m.payload;
  if (payload.size() > limits::kMaxMessageBytes) {
    headers.emplace_back(kDlqTruncatedFrom, std::to_string(payload.size()));
    payload = payload.substr(0, limits::kMaxMessageBytes);
  }
  return producer.produce(keys::dlq_topic(ns), m.key, payload, std::move(on_delivery), headers);
}

}  // namespace baton::kafka
