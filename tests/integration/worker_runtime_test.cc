// The worker runtime against a real redis-server and baton-broker: one task,
// one result; redelivery (twice on the topic, and a restart before commit)
// answered from done: without running the agent again; malformed payloads to
// the DLQ while the worker keeps serving; the record reaching the agent; Redis
// down means no agent runs; the baton-worker binary exits 0 on SIGTERM.
// Plus one measurement (printed, not asserted): tasks/s through one worker.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
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
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"
#include "workers/executor.h"
#include "workers/runtime.h"

namespace baton::worker {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::wait_until;

constexpr const char* kNs = "test";
constexpr const char* kRole = "echoer";

const char* kWorkflow = R"(
name: itest
version: 1
record: "lead:{{input.id}}"
steps:
  - id: work
    role: echoer
    agent: { kind: counting }
    writes: [seen]
    next: echo
  - id: echo
    role: echoer
    agent: { kind: echo }
)";

// Counts executions and remembers what the agent saw.
struct Probe {
  std::atomic<int> calls{0};
  std::mutex mu;
  json last_record;
  int64_t last_version = -1;
};

class CountingAgent : public agent::Agent {
 public:
  explicit CountingAgent(Probe* p) : p_(p) {}
  agent::AgentOutput execute(const agent::AgentInput& in) override {
    p_->calls++;
    {
      std::lock_guard<std::mutex> lock(p_->mu);
      p_->last_record = in.record;
      p_->last_version = in.record_version;
    }
    return agent::AgentOutput::ok({{"seen", true}, {"input", in.input}, {"record", in.record}});
  }

 private:
  Probe* p_;
};

// A consumer whose commits are dropped: a worker that dies before committing.
class NoCommitConsumer : public kafka::Consumer {
 public:
  explicit NoCommitConsumer(std::unique_ptr<kafka::Consumer> real) : real_(std::move(real)) {}
  Status subscribe(const std::vector<std::string>& t) override { return real_->subscribe(t); }
  Status poll_batch(std::vector<kafka::Message>& out, std::size_t max, int timeout_ms) override {
    return real_->poll_batch(out, max, timeout_ms);
  }
  Status commit(const std::vector<kafka::TopicPartition>&, bool) override {
    dropped++;
    return Status::ok();
  }
  void close() override { real_->close(); }
  std::atomic<int> dropped{0};

 private:
  std::unique_ptr<kafka::Consumer> real_;
};

std::string header(const kafka::Message& m, const std::string& name) {
  for (const auto& [k, v] : m.headers)
    if (k == name) return v;
  return "<missing>";
}

// Reads a topic through its own consumer group, accumulating everything.
class Reader {
 public:
  Reader(const kafka::KafkaConfig& cfg, const std::string& topic) {
    auto c = kafka::make_consumer(cfg, "reader-" + random_id());
    EXPECT_TRUE(c.is_ok()) << c.status().to_string();
    if (!c) return;
    consumer_ = std::move(c).value();
    EXPECT_TRUE(consumer_->subscribe({topic}).is_ok());
  }
  // Polls until `pred(messages)` holds (bounded).
  ::testing::AssertionResult until(const std::function<bool(const std::vector<kafka::Message>&)>& pred,
                                   std::chrono::milliseconds timeout = 60s) {
    if (!consumer_) return ::testing::AssertionFailure() << "no consumer";
    return wait_until(
        [&] {
          (void)consumer_->poll_batch(messages, 1000, 50);
          return pred(messages);
        },
        timeout, [&] { return std::to_string(messages.size()) + " messages read"; }, 1ms);
  }
  std::vector<kafka::Message> messages;

 private:
  std::unique_ptr<kafka::Consumer> consumer_;
};

std::vector<v1::RunEvent> events_of(const std::vector<kafka::Message>& ms, const std::string& run_id,
                                    const std::string& step = "", uint32_t attempt = 0) {
  std::vector<v1::RunEvent> out;
  for (const auto& m : ms) {
    v1::RunEvent ev;
    if (!ev.ParseFromString(m.payload) || ev.run_id() != run_id) continue;
    if (!step.empty() && ev.step_result().step_id() != step) continue;
    if (attempt != 0 && ev.step_result().attempt() != attempt) continue;
    out.push_back(std::move(ev));
  }
  return out;
}

class WorkerTest : public ::testing::Test {
 protected:
  WorkerTest() : broker_(4, kNs, kRole) {}

  void SetUp() override {
    ASSERT_TRUE(redis_.ok());
    ASSERT_TRUE(broker_.ok());
    cfg_.brokers = broker_.bootstrap();
    cfg_.session_timeout_ms = 3000;  // short mock-group rebalance delays
    auto p = kafka::make_producer(cfg_);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    producer_ = std::move(p).value();
    auto ep = redis::parse_endpoint(redis_.address());
    ASSERT_TRUE(ep.is_ok());
    auto c = redis::Client::connect(*ep);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    redis_cli_ = std::move(c).value();

    auto wf = workflow::parse_workflow(kWorkflow, "itest.yaml");
    ASSERT_TRUE(wf.is_ok()) << wf.status().to_string();
    workflows_ = std::make_shared<workflow::Registry>();
    ASSERT_TRUE(workflows_->add(std::move(wf).value()).is_ok());
    agent::register_builtin_agents(agents_);
    ASSERT_TRUE(agents_.add("counting", [this](const json&) -> agent::FactoryResult {
                  return agent::AgentPtr(new CountingAgent(&probe_));
                }).is_ok());
    executor_ = std::make_shared<Executor>(workflows_, agents_, kRole, "itest-worker");
  }

  void TearDown() override { stop_worker(); }

  // Starts an in-process runtime with real adapters; `no_commit` drops commits.
  // `tuned`: 4 agent threads and batches of 64 (the tests); else the defaults.
  void start_worker(bool no_commit = false, std::string redis_address = "", bool tuned = true) {
    auto consumer = kafka::make_consumer(cfg_, keys::worker_group(kNs, kRole));
    ASSERT_TRUE(consumer.is_ok()) << consumer.status().to_string();
    std::unique_ptr<kafka::Consumer> c = std::move(consumer).value();
    if (no_commit) {
      auto wrapped = std::make_unique<NoCommitConsumer>(std::move(c));
      no_commit_ = wrapped.get();
      c = std::move(wrapped);
    }
    auto producer = kafka::make_producer(cfg_);
    ASSERT_TRUE(producer.is_ok());
    auto ep = redis::parse_endpoint(redis_address.empty() ? redis_.address() : redis_address);
    ASSERT_TRUE(ep.is_ok());
    auto rc = redis::Client::connect(*ep);
    ASSERT_TRUE(rc.is_ok()) << rc.status().to_string();
    RuntimeOptions o;
    o.ns = kNs;
    o.role = kRole;
    if (tuned) {
      o.concurrency = 4;
      o.max_batch = 64;
    }
    runtime_ = std::make_unique<Runtime>(o, executor_, std::move(c), std::move(producer).value(),
                                         std::move(rc).value());
    thread_ = std::thread([this] { run_status_ = runtime_->run(); });
  }

  void stop_worker() {
    if (!runtime_) return;
    runtime_->stop();
    thread_.join();
    EXPECT_TRUE(run_status_.is_ok()) << run_status_.to_string();
    runtime_.reset();
    no_commit_ = nullptr;
  }

  v1::Task task(const std::string& run_id, json input, uint32_t attempt = 1, const std::string& step = "work",
                const std::string& record_key = "") {
    v1::Task t;
    t.set_run_id(run_id);
    t.set_step_id(step);
    t.set_attempt(attempt);
    t.set_role(kRole);
    t.set_namespace_(kNs);
    t.mutable_workflow()->set_name("itest");
    t.mutable_workflow()->set_version(1);
    t.set_input_json(input.dump());
    t.set_idempotency_key(run_id + ":" + step + ":" + std::to_string(attempt));
    if (!record_key.empty()) t.mutable_record()->set_key(record_key);
    if (step == "work") t.add_writes("seen");
    return t;
  }

  void produce_raw(const std::string& key, const std::string& payload) {
    std::atomic<int> done{0};
    Status delivered;
    ASSERT_TRUE(producer_
                    ->produce(keys::tasks_topic(kNs, kRole), key, payload,
                              [&](const Status& s) {
                                delivered = s;
                                done++;
                              })
                    .is_ok());
    ASSERT_TRUE(producer_->flush(10000).is_ok());
    ASSERT_EQ(done.load(), 1);
    ASSERT_TRUE(delivered.is_ok()) << delivered.to_string();
  }
  void produce(const v1::Task& t) { produce_raw(t.run_id(), t.SerializeAsString()); }

  testing::RedisServer redis_;
  testing::Broker broker_;
  kafka::KafkaConfig cfg_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<redis::Client> redis_cli_;
  std::shared_ptr<workflow::Registry> workflows_;
  agent::AgentRegistry agents_;
  Probe probe_;
  std::shared_ptr<Executor> executor_;
  std::unique_ptr<Runtime> runtime_;
  NoCommitConsumer* no_commit_ = nullptr;
  std::thread thread_;
  Status run_status_;
};

TEST_F(WorkerTest, ATaskGetsExactlyOneResultWithTheAgentsOutput) {
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  auto t = task("run-one", {{"id", "L-1"}, {"name", "Ada"}});
  produce(t);
  // A sentinel on the same run (same partition, after the task): once its result
  // is in, the task's result would be too if there were two.
  produce(task("run-one", {{"id", "L-1"}}, 1, "echo"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-one", "echo").empty(); }));

  auto results = events_of(events.messages, "run-one", "work");
  ASSERT_EQ(results.size(), 1u);
  const auto& ev = results[0];
  EXPECT_EQ(ev.event_id().size(), 32u);
  EXPECT_GT(ev.produced_unix_ms(), 0);
  const auto& r = ev.step_result();
  EXPECT_EQ(r.status(), v1::StepResult::OK) << r.error().code() << ": " << r.error().message();
  EXPECT_EQ(r.attempt(), 1u);
  EXPECT_EQ(r.worker_id(), "itest-worker");
  EXPECT_EQ(json::parse(r.output_json()),
            (json{{"seen", true}, {"input", {{"id", "L-1"}, {"name", "Ada"}}}, {"record", json::object()}}));
  EXPECT_EQ(json::parse(r.writes_json()), (json{{"seen", true}}));
  EXPECT_EQ(probe_.calls.load(), 1);
  // The result is keyed by run_id and cached under done:.
  for (const auto& m : events.messages) EXPECT_EQ(m.key, "run-one");
  auto cached = redis_cli_->command({"GET", keys::done(kNs, "run-one", "work", 1)});
  ASSERT_TRUE(cached.is_ok());
  ASSERT_TRUE(cached->is_string());
  v1::RunEvent from_cache;
  ASSERT_TRUE(from_cache.ParseFromString(cached->str));
  EXPECT_EQ(from_cache.event_id(), ev.event_id());
  auto ttl = redis_cli_->command({"TTL", keys::done(kNs, "run-one", "work", 1)});
  ASSERT_TRUE(ttl.is_ok());
  EXPECT_GT(ttl->integer, 86000);
  EXPECT_LE(ttl->integer, 86400);
  EXPECT_GE(runtime_->stats().commits.load(), 1u);
}

// Poison tasks, in process: a task already started 3 times without an answer
// (the worker died each time) is answered FAILED poison_task and its agent is
// not run; one started twice runs normally. Either way the counter is gone
// once the answer is delivered.
TEST_F(WorkerTest, ATaskStartedPoisonAfterTimesWithoutAnAnswerIsFailedNotRun) {
  ASSERT_TRUE(redis_cli_->command({"SET", keys::running(kNs, "run-poison", "work", 1), "3"}).is_ok());
  ASSERT_TRUE(redis_cli_->command({"SET", keys::running(kNs, "run-twice", "work", 1), "2"}).is_ok());
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  produce(task("run-poison", {{"id", "L-1"}}));
  produce(task("run-twice", {{"id", "L-2"}}));
  ASSERT_TRUE(events.until([](const auto& ms) {
    return !events_of(ms, "run-poison", "work").empty() && !events_of(ms, "run-twice", "work").empty();
  }));
  const auto poison = events_of(events.messages, "run-poison", "work")[0].step_result();
  EXPECT_EQ(poison.status(), v1::StepResult::FAILED);
  EXPECT_EQ(poison.error().code(), "poison_task");
  EXPECT_NE(poison.error().message().find("started 3 times"), std::string::npos) << poison.error().message();
  const auto twice = events_of(events.messages, "run-twice", "work")[0].step_result();
  EXPECT_EQ(twice.status(), v1::StepResult::OK) << twice.error().message();
  EXPECT_EQ(probe_.calls.load(), 1) << "only run-twice ran its agent";
  EXPECT_EQ(runtime_->stats().poisoned.load(), 1u);
  for (const char* run : {"run-poison", "run-twice"}) {
    std::string key = keys::running(kNs, run, "work", 1);
    EXPECT_TRUE(wait_until([&] {
      auto r = redis_cli_->command({"EXISTS", key});
      return r && r->integer == 0;
    }, 10s)) << key;
  }
}

// Poison tasks, for real: an exec agent that SIGKILLs its own worker. The test
// restarts the worker after each death (bounded); after --poison-after 2
// deaths the next worker answers FAILED poison_task instead of dying.
TEST_F(WorkerTest, AnAgentThatKillsItsWorkerEndsAsAPoisonTask) {
  std::string dir = testing::make_temp_dir("baton-worker-poison");
  {
    std::ofstream f(dir + "/deadly.yaml");
    f << "name: deadly\nsteps:\n  - id: crash\n    role: echoer\n    agent:\n      kind: exec\n"
         "      command: [/bin/sh, -c, \"kill -9 $PPID; sleep 5\"]\n";
  }
  Reader events(cfg_, keys::events_topic(kNs));
  v1::Task t = task("run-deadly", {{"x", 1}}, 1, "crash");
  t.mutable_workflow()->set_name("deadly");
  t.clear_writes();
  produce(t);
  int deaths = 0;
  bool answered = false;
  std::string logs;
  for (int start = 0; start < 5 && !answered; ++start) {
    testing::Process worker;
    std::string log = dir + "/worker-" + std::to_string(start) + ".log";
    ASSERT_TRUE(worker.start({testing::bin_dir() + "/baton-worker", "--role", kRole, "--brokers",
                              broker_.bootstrap(), "--redis", redis_.address(), "--namespace", kNs, "--workflows", dir,
                              "--poison-after", "2", "--worker-id", "poison-" + std::to_string(start)},
                             log));
    // Either the worker dies (its agent killed it) or the answer comes.
    auto has_answer = [](const std::vector<kafka::Message>& ms) { return !events_of(ms, "run-deadly").empty(); };
    ASSERT_TRUE(wait_until(
        [&] {
          (void)events.until(has_answer, 100ms);
          return !worker.running() || has_answer(events.messages);
        },
        60s))
        << testing::read_file(log);
    answered = !events_of(events.messages, "run-deadly").empty();
    if (!answered) ++deaths;
    logs += testing::read_file(log);
    worker.stop();
  }
  ASSERT_TRUE(answered) << logs;
  EXPECT_EQ(deaths, 2) << logs;
  auto results = events_of(events.messages, "run-deadly");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].step_result().status(), v1::StepResult::FAILED);
  EXPECT_EQ(results[0].step_result().error().code(), "poison_task");
  testing::remove_tree(dir);
}

TEST_F(WorkerTest, TheSameTaskTwiceRunsTheAgentOnceAndAnswersTwiceIdentically) {
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  auto t = task("run-twice", {{"id", "L-2"}});
  produce(t);
  produce(t);
  produce(task("run-twice", {{"id", "L-2"}}, 1, "echo"));  // sentinel
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-twice", "echo").empty(); }));
  // And the same task again, later, in another batch: from done:.
  produce(t);
  produce(task("run-twice", {{"id", "L-2"}}, 2, "echo"));  // second sentinel
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-twice", "echo", 2).empty(); }));

  std::vector<std::string> answers;
  for (const auto& m : events.messages) {
    v1::RunEvent ev;
    if (ev.ParseFromString(m.payload) && ev.step_result().step_id() == "work") answers.push_back(m.payload);
  }
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0], answers[1]);
  EXPECT_EQ(answers[0], answers[2]);
  EXPECT_EQ(probe_.calls.load(), 1);
  EXPECT_EQ(runtime_->stats().executed.load(), 3u);  // work once + two sentinels
  EXPECT_EQ(runtime_->stats().cached.load(), 2u);
}

TEST_F(WorkerTest, AWorkerRestartedBeforeCommitAnswersFromDone) {
  Reader events(cfg_, keys::events_topic(kNs));
  auto t = task("run-restart", {{"id", "L-3"}});
  start_worker(/*no_commit=*/true);
  produce(t);
  ASSERT_TRUE(events.until([](const auto& ms) { return events_of(ms, "run-restart").size() == 1; }));
  ASSERT_NE(no_commit_, nullptr);
  // The commit follows the answer's delivery and its done: cache write: wait for it.
  EXPECT_TRUE(baton::testing::wait_until([&] { return no_commit_->dropped.load() >= 1; }, std::chrono::seconds(10),
                                         [&] { return "dropped commits: " + std::to_string(no_commit_->dropped.load()); }));
  stop_worker();  // died before its commit reached the broker

  start_worker();  // same group: the task is delivered again
  ASSERT_TRUE(events.until([](const auto& ms) { return events_of(ms, "run-restart").size() == 2; }));
  EXPECT_EQ(probe_.calls.load(), 1);
  std::vector<std::string> answers;
  for (const auto& m : events.messages)
    if (m.key == "run-restart") answers.push_back(m.payload);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0], answers[1]);
  EXPECT_EQ(runtime_->stats().cached.load(), 1u);

  // This worker committed: a third one starts after the task.
  stop_worker();
  start_worker();
  produce(task("run-restart", {{"id", "L-3"}}, 1, "echo"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-restart", "echo").empty(); }));
  EXPECT_EQ(events_of(events.messages, "run-restart", "work").size(), 2u);
  EXPECT_EQ(runtime_->stats().messages.load(), 1u);
}

TEST_F(WorkerTest, MalformedPayloadsGoToTheDlqAndTheWorkerKeepsServing) {
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  Reader dlq(cfg_, keys::dlq_topic(kNs));
  produce_raw("bad-key", "this is not a protobuf Task \xff\xfe");
  v1::Task no_run = task("", {{"id", "x"}});
  produce_raw("no-run", no_run.SerializeAsString());
  auto good = task("run-after-bad", {{"id", "L-4"}});
  produce(good);

  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-after-bad").empty(); }));
  ASSERT_TRUE(dlq.until([](const auto& ms) { return ms.size() >= 2; }));
  ASSERT_EQ(dlq.messages.size(), 2u);
  std::map<std::string, const kafka::Message*> by_key;
  for (const auto& m : dlq.messages) by_key[m.key] = &m;
  ASSERT_TRUE(by_key.count("bad-key"));
  ASSERT_TRUE(by_key.count("no-run"));
  const auto& bad = *by_key["bad-key"];
  EXPECT_EQ(bad.payload, "this is not a protobuf Task \xff\xfe");
  EXPECT_EQ(header(bad, kafka::kDlqError), "payload is not a baton.v1.Task");
  EXPECT_EQ(header(bad, kafka::kDlqOriginTopic), keys::tasks_topic(kNs, kRole));
  EXPECT_NE(header(bad, kafka::kDlqOriginOffset), "<missing>");
  EXPECT_EQ(header(*by_key["no-run"], kafka::kDlqError), "task lacks run_id, step_id or attempt");
  EXPECT_EQ(probe_.calls.load(), 1);
  EXPECT_EQ(runtime_->stats().dead_lettered.load(), 2u);

  // Nothing of the bad ones was answered, and the next good task is served too.
  produce(task("run-after-bad-2", {{"id", "L-5"}}));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-after-bad-2").empty(); }));
  EXPECT_EQ(events.messages.size(), 2u);
}

TEST_F(WorkerTest, ANonTaskJustUnderTheCapIsDeadLetteredWhole) {
  start_worker();
  Reader dlq(cfg_, keys::dlq_topic(kNs));
  std::string big(limits::kMaxMessageBytes - 1024, '\xff');  // an unterminated varint: not protobuf
  produce_raw("big", big);
  ASSERT_TRUE(dlq.until([](const auto& ms) { return !ms.empty(); }));
  EXPECT_EQ(dlq.messages[0].payload, big);
  EXPECT_EQ(header(dlq.messages[0], kafka::kDlqError), "payload is not a baton.v1.Task");
}

TEST_F(WorkerTest, RecordFieldsAndVersionReachTheAgent) {
  std::string key = keys::record(kNs, "lead:L-9");
  auto r = redis_cli_->command({"HSET", key, "_v", "3", "name", "\"Ada\"", "size", "120", "note", "plain text",
                                "_w:name", "run-0:respond:1"});
  ASSERT_TRUE(r.is_ok());
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  produce(task("run-record", {{"id", "L-9"}}, 1, "work", "lead:L-9"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-record").empty(); }));
  auto ev = events_of(events.messages, "run-record")[0];
  EXPECT_EQ(ev.step_result().record_version_read(), 3);
  json expected_record = {{"name", "Ada"}, {"size", 120}, {"note", "plain text"}};
  EXPECT_EQ(json::parse(ev.step_result().output_json())["record"], expected_record);
  std::lock_guard<std::mutex> lock(probe_.mu);
  EXPECT_EQ(probe_.last_version, 3);
  EXPECT_EQ(probe_.last_record, expected_record);
}

TEST_F(WorkerTest, UnknownStepIsAnsweredFailedUnknownAgent) {
  start_worker();
  Reader events(cfg_, keys::events_topic(kNs));
  produce(task("run-unknown", {{"id", "L-6"}}, 1, "ghost"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-unknown").empty(); }));
  const v1::StepResult r = events_of(events.messages, "run-unknown")[0].step_result();
  EXPECT_EQ(r.status(), v1::StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "unknown_agent");
  EXPECT_EQ(r.error().message(), "workflow itest@1 has no step ghost");
}

// A redis-server of our own that the test can stop and start on one port.
class OwnRedis {
 public:
  OwnRedis() : port_(testing::free_port()), dir_(testing::make_temp_dir("baton-redis-own")) {}
  ~OwnRedis() {
    proc_.stop();
    testing::remove_tree(dir_);
  }
  bool start() {
    std::vector<std::string> argv = {"redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                     "--dir", dir_, "--save", "", "--appendonly", "no", "--logfile",
                                     dir_ + "/redis.log"};
    if (!proc_.start(argv)) return false;
    return wait_until([&] { return testing::port_open(port_); }, 10s);
  }
  void stop() { proc_.stop(); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_;
  std::string dir_;
  testing::Process proc_;
};

TEST_F(WorkerTest, NoAgentRunsWhileRedisIsDownAndTheTaskIsServedWhenItReturns) {
  OwnRedis own;
  ASSERT_TRUE(own.start());
  start_worker(false, own.address());
  Reader events(cfg_, keys::events_topic(kNs));
  // Wait until the worker has its partitions (a first task answered).
  produce(task("run-warmup", {{"id", "L-7"}}, 1, "echo"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-warmup").empty(); }));

  own.stop();
  produce(task("run-redis-down", {{"id", "L-8"}}));
  ASSERT_TRUE(wait_until([&] { return runtime_->stats().redis_retries.load() >= 2; }, 30s,
                         [&] { return std::to_string(runtime_->stats().redis_retries.load()) + " retries"; }));
  EXPECT_EQ(probe_.calls.load(), 0);  // the done-check could not be made: nothing ran
  EXPECT_TRUE(events_of(events.messages, "run-redis-down").empty());

  ASSERT_TRUE(own.start());
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-redis-down").empty(); }));
  EXPECT_EQ(probe_.calls.load(), 1);
  EXPECT_EQ(events_of(events.messages, "run-redis-down")[0].step_result().status(), v1::StepResult::OK);
}

TEST_F(WorkerTest, StopWhileRedisIsDownLeavesTheTaskUncommitted) {
  OwnRedis own;
  ASSERT_TRUE(own.start());
  start_worker(false, own.address());
  Reader events(cfg_, keys::events_topic(kNs));
  produce(task("run-warm", {{"id", "L-10"}}, 1, "echo"));
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-warm").empty(); }));
  own.stop();
  produce(task("run-pending", {{"id", "L-11"}}));
  ASSERT_TRUE(wait_until([&] { return runtime_->stats().redis_retries.load() >= 1; }, 30s));
  stop_worker();  // returns although Redis never came back
  EXPECT_EQ(probe_.calls.load(), 0);

  // The next worker (Redis back) gets the task: it was not committed.
  ASSERT_TRUE(own.start());
  start_worker(false, own.address());
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-pending").empty(); }));
  EXPECT_EQ(probe_.calls.load(), 1);
}

TEST_F(WorkerTest, BinaryServesATaskAndExitsZeroOnSigterm) {
  std::string dir = testing::make_temp_dir("baton-worker-wf");
  {
    std::ofstream f(dir + "/echo.yaml");
    f << "name: bin-echo\nsteps:\n  - id: say\n    role: echoer\n    agent: { kind: template, fields: { "
         "greeting: \"hello {{input.name}}\" } }\n";
  }
  testing::Process worker;
  std::string log = dir + "/worker.log";
  ASSERT_TRUE(worker.start({testing::bin_dir() + "/baton-worker", "--role", kRole, "--brokers", broker_.bootstrap(),
                            "--redis", redis_.address(), "--namespace", kNs, "--workflows", dir, "--concurrency",
                            "2", "--worker-id", "bin-1", "--log-level", "debug"},
                           log, {{"BATON_LOG_FORMAT", "text"}}));
  Reader events(cfg_, keys::events_topic(kNs));
  v1::Task t = task("run-bin", {{"name", "Ada"}}, 1, "say");
  t.mutable_workflow()->set_name("bin-echo");
  t.clear_writes();
  produce(t);
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-bin").empty(); }))
      << testing::read_file(log);
  const v1::StepResult r = events_of(events.messages, "run-bin")[0].step_result();
  EXPECT_EQ(r.status(), v1::StepResult::OK) << r.error().message();
  EXPECT_EQ(json::parse(r.output_json()), (json{{"greeting", "hello Ada"}}));
  EXPECT_EQ(r.worker_id(), "bin-1");

  worker.signal(SIGTERM);
  int status = -1;
  ASSERT_TRUE(worker.wait_exit(20s, &status)) << testing::read_file(log);
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << testing::read_file(log);
  std::string text = testing::read_file(log);
  EXPECT_NE(text.find("run_id=run-bin step=say role=echoer"), std::string::npos) << text;
  testing::remove_tree(dir);
}

// SIGTERM while an agent is mid-task: the worker lets it finish, delivers its
// answer, commits and exits 0 (the drain), instead of dropping the work.
TEST_F(WorkerTest, BinaryDrainsATaskInFlightOnSigterm) {
  std::string dir = testing::make_temp_dir("baton-worker-drain");
  const std::string mark = dir + "/started";
  {
    std::ofstream f(dir + "/slow.yaml");
    f << "name: slow\nsteps:\n  - id: think\n    role: echoer\n    timeout: 30s\n    agent:\n      kind: exec\n"
         "      command: [/bin/sh, -c, \"touch " << mark << "; sleep 2; echo '{\\\"thought\\\": true}'\"]\n";
  }
  testing::Process worker;
  std::string log = dir + "/worker.log";
  ASSERT_TRUE(worker.start({testing::bin_dir() + "/baton-worker", "--role", kRole, "--brokers", broker_.bootstrap(),
                            "--redis", redis_.address(), "--namespace", kNs, "--workflows", dir, "--worker-id",
                            "drain-1"},
                           log));
  Reader events(cfg_, keys::events_topic(kNs));
  v1::Task t = task("run-drain", {{"x", 1}}, 1, "think");
  t.mutable_workflow()->set_name("slow");
  t.clear_writes();
  produce(t);
  ASSERT_TRUE(wait_until([&] { return std::ifstream(mark).good(); }, 30s)) << testing::read_file(log);
  worker.signal(SIGTERM);  // the agent is sleeping inside the task
  int status = -1;
  ASSERT_TRUE(worker.wait_exit(30s, &status)) << testing::read_file(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << testing::read_file(log);
  ASSERT_TRUE(events.until([](const auto& ms) { return !events_of(ms, "run-drain").empty(); }))
      << testing::read_file(log);
  auto results = events_of(events.messages, "run-drain");
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].step_result().status(), v1::StepResult::OK) << results[0].step_result().error().message();
  EXPECT_EQ(json::parse(results[0].step_result().output_json()), (json{{"thought", true}}));
  testing::remove_tree(dir);
}

TEST_F(WorkerTest, BinaryRefusesABadWorkflowDirectory) {
  std::string dir = testing::make_temp_dir("baton-worker-badwf");
  {
    std::ofstream f(dir + "/bad.yaml");
    f << "name: bad\nsteps: 3\n";
  }
  testing::Process worker;
  ASSERT_TRUE(worker.start({testing::bin_dir() + "/baton-worker", "--role", kRole, "--brokers", broker_.bootstrap(),
                            "--redis", redis_.address(), "--workflows", dir},
                           dir + "/worker.log"));
  int status = -1;
  ASSERT_TRUE(worker.wait_exit(20s, &status));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  EXPECT_NE(testing::read_file(dir + "/worker.log").find("bad.yaml:2:"), std::string::npos)
      << testing::read_file(dir + "/worker.log");
  testing::remove_tree(dir);
}

// Measurement, not an assertion on speed: N echo tasks queued on the role's
// topic, then one in-process worker (default options: 8 agent threads,
// batches of up to 256) drains them; timed from its first result to its last.
TEST_F(WorkerTest, MeasureThroughput) {
  constexpr int kTasks = 20000;
  std::atomic<int> delivered{0};
  for (int i = 0; i < kTasks; ++i) {
    v1::Task t = task("run-tp-" + std::to_string(i), {{"id", i}, {"name", "lead " + std::to_string(i)}}, 1, "echo");
    std::string bytes = t.SerializeAsString();
    ASSERT_TRUE(producer_->produce(keys::tasks_topic(kNs, kRole), t.run_id(), bytes, [&](const Status& s) {
                           if (s.is_ok()) delivered++;
                         }).is_ok());
  }
  ASSERT_TRUE(producer_->flush(30000).is_ok());
  ASSERT_EQ(delivered.load(), kTasks);

  Reader events(cfg_, keys::events_topic(kNs));
  start_worker(false, "", /*tuned=*/false);
  ASSERT_TRUE(events.until([&](const auto& ms) { return !ms.empty(); }));
  auto first = std::chrono::steady_clock::now();
  std::size_t at_first = events.messages.size();
  ASSERT_TRUE(events.until([&](const auto& ms) { return ms.size() >= static_cast<std::size_t>(kTasks); }, 120s));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - first).count();
  const auto& st = runtime_->stats();
  std::printf("[measure] one worker drained %zu queued echo tasks in %.2f s: %.0f tasks/s (%llu batches, %.1f tasks/batch)\n",
              kTasks - at_first, secs, (kTasks - at_first) / secs, static_cast<unsigned long long>(st.batches.load()),
              static_cast<double>(st.messages.load()) / static_cast<double>(std::max<uint64_t>(1, st.batches.load())));
  std::printf("[measure] worker time per phase (ms): poll %.0f, done-check %.0f, agents %.0f, deliver %.0f, cache %.0f\n",
              st.poll_us.load() / 1e3, st.check_us.load() / 1e3, st.run_us.load() / 1e3, st.deliver_us.load() / 1e3,
              st.cache_us.load() / 1e3);
  EXPECT_EQ(st.executed.load(), static_cast<uint64_t>(kTasks));
}

}  // namespace
}  // namespace baton::worker
