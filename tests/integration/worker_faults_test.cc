// The worker runtime's guarantees under faults, with a real redis-server and
// in-memory Kafka fakes (envoy-style fault injection at the seam): a failed
// delivery is retried and nothing is committed before it lands; a worker stopped
// while an answer cannot be delivered never commits past it nor caches it;
// duplicates within one batch run once; offsets are committed per partition.
// Runs under TSan too (no librdkafka threads involved).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "baton/agent.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"
#include "workers/executor.h"
#include "workers/runtime.h"

namespace baton::worker {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::wait_until;

constexpr const char* kNs = "fault";
constexpr const char* kRole = "echoer";

// Shared between a fake and the test (the runtime owns the fakes).
struct KafkaState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<kafka::Message> to_consume;
  std::vector<std::vector<kafka::TopicPartition>> commits;
  struct Produced {
    std::string topic, key, payload;
    kafka::Headers headers;
    bool delivered = false;
  };
  std::vector<Produced> produced;
  int fail_next_deliveries = 0;     // delivery reports with an error
  int refuse_next_produces = 0;     // produce() itself returns kUnavailable
  bool closed = false;

  std::map<std::pair<std::string, int32_t>, int64_t> last_commit() {
    std::lock_guard<std::mutex> lock(mu);
    std::map<std::pair<std::string, int32_t>, int64_t> out;
    for (const auto& c : commits)
      for (const auto& tp : c) out[{tp.topic, tp.partition}] = tp.offset;
    return out;
  }
  std::size_t delivered_count(const std::string& topic) {
    std::lock_guard<std::mutex> lock(mu);
    std::size_t n = 0;
    for (const auto& p : produced) n += p.delivered && p.topic == topic;
    return n;
  }
};

class FakeConsumer : public kafka::Consumer {
 public:
  explicit FakeConsumer(std::shared_ptr<KafkaState> s) : s_(std::move(s)) {}
  Status subscribe(const std::vector<std::string>&) override { return Status::ok(); }
  Status poll_batch(std::vector<kafka::Message>& out, std::size_t max, int timeout_ms) override {
    std::unique_lock<std::mutex> lock(s_->mu);
    s_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !s_->to_consume.empty(); });
    while (!s_->to_consume.empty() && out.size() < max) {
      out.push_back(std::move(s_->to_consume.front()));
      s_->to_consume.pop_front();
    }
    return Status::ok();
  }
  Status commit(const std::vector<kafka::TopicPartition>& offsets, bool) override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->commits.push_back(offsets);
    return Status::ok();
  }
  void close() override {
    std::lock_guard<std::mutex> lock(s_->mu);
    s_->closed = true;
  }

 private:
  std::shared_ptr<KafkaState> s_;
};

// Delivery reports come from a thread of the producer's own, like librdkafka's poller.
class FakeProducer : public kafka::Producer {
 public:
  explicit FakeProducer(std::shared_ptr<KafkaState> s) : s_(std::move(s)), poller_([this] { loop(); }) {}
  ~FakeProducer() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    cv_.notify_all();
    poller_.join();
  }
  Status produce(std::string_view topic, std::string_view key, std::string_view payload,
                 kafka::DeliveryCallback cb, const kafka::Headers& headers, int32_t) override {
    bool fail = false;
    std::size_t index = 0;
    {
      std::lock_guard<std::mutex> lock(s_->mu);
      if (s_->refuse_next_produces > 0) {
        s_->refuse_next_produces--;
        return unavailable("fake: local queue full");
      }
      if (s_->fail_next_deliveries > 0) {
        s_->fail_next_deliveries--;
        fail = true;
      }
      s_->produced.push_back({std::string(topic), std::string(key), std::string(payload), headers, false});
      index = s_->produced.size() - 1;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      reports_.push_back({index, fail, std::move(cb)});
    }
    cv_.notify_all();
    return Status::ok();
  }
  void poll(int) override {}
  Status flush(int) override { return Status::ok(); }
  Status warm_up(const std::vector<std::string>&, int) override { return Status::ok(); }
  Result<int32_t> partition_count(std::string_view, int) override { return 4; }

 private:
  struct Report {
    std::size_t index;
    bool fail;
    kafka::DeliveryCallback cb;
  };
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return quit_ || !reports_.empty(); });
      while (!reports_.empty()) {
        Report r = std::move(reports_.front());
        reports_.pop_front();
        lock.unlock();
        if (!r.fail) {
          std::lock_guard<std::mutex> sl(s_->mu);
          s_->produced[r.index].delivered = true;
        }
        if (r.cb) r.cb(r.fail ? unavailable("fake: broker unreachable") : Status::ok());
        lock.lock();
      }
      if (quit_) return;
    }
  }
  std::shared_ptr<KafkaState> s_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Report> reports_;
  bool quit_ = false;
  std::thread poller_;
};

struct Counter {
  std::atomic<int> calls{0};
};

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.ok());
    auto ep = redis::parse_endpoint(redis_.address());
    ASSERT_TRUE(ep.is_ok());
    auto c = redis::Client::connect(*ep);
    ASSERT_TRUE(c.is_ok());
    redis_cli_ = std::move(c).value();
    auto wf = workflow::parse_workflow(
        "name: faults\nsteps:\n  - id: work\n    role: echoer\n    agent: { kind: counting }\n", "faults.yaml");
    ASSERT_TRUE(wf.is_ok()) << wf.status().to_string();
    auto reg = std::make_shared<workflow::Registry>();
    ASSERT_TRUE(reg->add(std::move(wf).value()).is_ok());
    agent::AgentRegistry agents;
    ASSERT_TRUE(agents.add("counting", [this](const json&) -> agent::FactoryResult {
      class A : public agent::Agent {
       public:
        explicit A(Counter* c) : c_(c) {}
        agent::AgentOutput execute(const agent::AgentInput& in) override {
          c_->calls++;
          return agent::AgentOutput::ok({{"echo", in.input}});
        }
        Counter* c_;
      };
      return agent::AgentPtr(new A(&counter_));
    }).is_ok());
    executor_ = std::make_shared<Executor>(reg, agents, kRole, "fault-worker");
  }

  void TearDown() override { stop(); }

  void start(int grace_ms = 10000) {
    auto ep = redis::parse_endpoint(redis_.address());
    auto c = redis::Client::connect(*ep);
    ASSERT_TRUE(c.is_ok());
    RuntimeOptions o;
    o.ns = kNs;
    o.role = kRole;
    o.concurrency = 3;
    o.poll_timeout_ms = 20;
    o.max_backoff_ms = 100;
    o.shutdown_grace_ms = grace_ms;
    runtime_ = std::make_unique<Runtime>(o, executor_, std::make_unique<FakeConsumer>(kafka_),
                                         std::make_unique<FakeProducer>(kafka_), std::move(c).value());
    thread_ = std::thread([this] { status_ = runtime_->run(); });
  }
  void stop() {
    if (!runtime_) return;
    runtime_->stop();
    thread_.join();
    EXPECT_TRUE(status_.is_ok()) << status_.to_string();
    runtime_.reset();
  }

  static kafka::Message task_message(const std::string& run, int32_t partition, int64_t offset,
                                     uint32_t attempt = 1) {
    v1::Task t;
    t.set_run_id(run);
    t.set_step_id("work");
    t.set_attempt(attempt);
    t.mutable_workflow()->set_name("faults");
    t.mutable_workflow()->set_version(1);
    t.set_input_json(json{{"run", run}}.dump());
    kafka::Message m;
    m.topic = keys::tasks_topic(kNs, kRole);
    m.partition = partition;
    m.offset = offset;
    m.key = run;
    m.payload = t.SerializeAsString();
    return m;
  }
  // Enqueues messages to be returned by one poll_batch.
  void feed(std::vector<kafka::Message> ms) {
    {
      std::lock_guard<std::mutex> lock(kafka_->mu);
      for (auto& m : ms) kafka_->to_consume.push_back(std::move(m));
    }
    kafka_->cv.notify_all();
  }
  bool cached(const std::string& run) {
    auto r = redis_cli_->command({"GET", keys::done(kNs, run, "work", 1)});
    return r.is_ok() && r->is_string();
  }

  testing::RedisServer redis_;
  std::unique_ptr<redis::Client> redis_cli_;
  std::shared_ptr<KafkaState> kafka_ = std::make_shared<KafkaState>();
  Counter counter_;
  std::shared_ptr<Executor> executor_;
  std::unique_ptr<Runtime> runtime_;
  std::thread thread_;
  Status status_;
};

const std::string kEvents = keys::events_topic(kNs);
const std::string kTasks = keys::tasks_topic(kNs, kRole);

TEST_F(FaultTest, FailedDeliveriesAreRetriedAndCommittedOnlyAfterwards) {
  {
    std::lock_guard<std::mutex> lock(kafka_->mu);
    kafka_->fail_next_deliveries = 3;
    kafka_->refuse_next_produces = 1;
  }
  start();
  feed({task_message("r1", 0, 10), task_message("r2", 0, 11), task_message("r3", 1, 5)});
  ASSERT_TRUE(wait_until([&] { return kafka_->delivered_count(kEvents) == 3; }, 20s,
                         [&] { return std::to_string(kafka_->delivered_count(kEvents)) + " delivered"; }));
  ASSERT_TRUE(wait_until([&] { return kafka_->last_commit().size() == 2; }, 20s));
  auto commits = kafka_->last_commit();
  EXPECT_EQ((commits[{kTasks, 0}]), 12);
  EXPECT_EQ((commits[{kTasks, 1}]), 6);
  EXPECT_EQ(counter_.calls.load(), 3);  // retried deliveries reuse the answer: no rerun
  EXPECT_TRUE(cached("r1"));
  EXPECT_TRUE(cached("r2"));
  EXPECT_TRUE(cached("r3"));
  EXPECT_GE(runtime_->stats().delivery_retries.load(), 1u);
  // Every attempt of one task carried the same bytes.
  std::lock_guard<std::mutex> lock(kafka_->mu);
  std::map<std::string, std::string> first;
  for (const auto& p : kafka_->produced) {
    auto [it, inserted] = first.emplace(p.key, p.payload);
    if (!inserted) {
      EXPECT_EQ(it->second, p.payload) << p.key;
    }
  }
}

TEST_F(FaultTest, NothingIsCommittedBeforeTheDeliveryReports) {
  start();
  // The first delivery of r5 fails once; offsets 20..22 on partition 2.
  std::vector<kafka::Message> ms = {task_message("r4", 2, 20), task_message("r5", 2, 21), task_message("r6", 2, 22)};
  {
    std::lock_guard<std::mutex> lock(kafka_->mu);
    kafka_->fail_next_deliveries = 2;  // r4 and r5 fail at first
  }
  feed(ms);
  ASSERT_TRUE(wait_until([&] { return !kafka_->last_commit().empty(); }, 20s));
  // The first commit covers all three: it came after every delivery succeeded.
  std::lock_guard<std::mutex> lock(kafka_->mu);
  ASSERT_FALSE(kafka_->commits.empty());
  ASSERT_EQ(kafka_->commits[0].size(), 1u);
  EXPECT_EQ(kafka_->commits[0][0].offset, 23);
  std::size_t delivered = 0;
  for (const auto& p : kafka_->produced) delivered += p.delivered;
  EXPECT_EQ(delivered, 3u);
}

TEST_F(FaultTest, StoppedWhileAnAnswerCannotBeDeliveredCommitsOnlyBeforeIt) {
  start(/*grace_ms=*/300);
  feed({task_message("r7", 3, 40)});  // delivered and committed

  ASSERT_TRUE(wait_until([&] { return !kafka_->last_commit().empty(); }, 20s));
  {
    std::lock_guard<std::mutex> lock(kafka_->mu);
    kafka_->fail_next_deliveries = 1000000;  // the broker is gone from here on
  }
  feed({task_message("r8", 3, 41), task_message("r9", 3, 42)});
  ASSERT_TRUE(wait_until([&] { return runtime_->stats().delivery_retries.load() >= 2; }, 20s));
  stop();  // gives up after the grace period
  auto commits = kafka_->last_commit();
  EXPECT_EQ((commits[{kTasks, 3}]), 41);  // after r7, not past r8
  EXPECT_FALSE(cached("r8"));             // an undelivered answer is not cached
  EXPECT_FALSE(cached("r9"));
  EXPECT_TRUE(cached("r7"));
  std::lock_guard<std::mutex> lock(kafka_->mu);
  EXPECT_TRUE(kafka_->closed);
}

TEST_F(FaultTest, DuplicatesInOneBatchRunOnceAndAreAnsweredTwice) {
  start();
  feed({task_message("r10", 0, 1), task_message("r10", 0, 2), task_message("r10", 0, 3, /*attempt=*/2)});
  ASSERT_TRUE(wait_until([&] { return kafka_->delivered_count(kEvents) == 3; }, 20s));
  EXPECT_EQ(counter_.calls.load(), 2);  // attempt 1 once, attempt 2 once
  std::lock_guard<std::mutex> lock(kafka_->mu);
  std::vector<std::string> answers;
  for (const auto& p : kafka_->produced)
    if (p.topic == kEvents) answers.push_back(p.payload);
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0], answers[1]);
  EXPECT_NE(answers[0], answers[2]);
}

TEST_F(FaultTest, UndecodableMessagesAreDeadLetteredWithTheirOrigin) {
  start();
  kafka::Message bad;
  bad.topic = kTasks;
  bad.partition = 1;
  bad.offset = 7;
  bad.key = "k";
  bad.payload = std::string(100, '\xff');
  kafka::Message huge = bad;
  huge.offset = 8;
  huge.payload = std::string(limits::kMaxMessageBytes + 10, 'x');
  feed({bad, huge, task_message("r11", 1, 9)});
  ASSERT_TRUE(wait_until([&] { return !kafka_->last_commit().empty(); }, 20s));
  EXPECT_EQ((kafka_->last_commit()[{kTasks, 1}]), 10);
  std::lock_guard<std::mutex> lock(kafka_->mu);
  std::vector<const KafkaState::Produced*> dlq;
  for (const auto& p : kafka_->produced)
    if (p.topic == keys::dlq_topic(kNs)) dlq.push_back(&p);
  ASSERT_EQ(dlq.size(), 2u);
  auto header = [](const KafkaState::Produced& p, const char* name) {
    for (const auto& [k, v] : p.headers)
      if (k == name) return v;
    return std::string("<missing>");
  };
  EXPECT_EQ(header(*dlq[0], kafka::kDlqError), "payload is not a baton.v1.Task");
  EXPECT_EQ(header(*dlq[0], kafka::kDlqOriginOffset), "7");
  EXPECT_EQ(dlq[0]->payload, bad.payload);
  EXPECT_EQ(header(*dlq[1], kafka::kDlqError),
            "task of 1048586 bytes exceeds the limit of 1048576 (payload truncated to 65536 bytes)");
  EXPECT_EQ(dlq[1]->payload.size(), 65536u);
}

}  // namespace
}  // namespace baton::worker
