// baton-worker's wiring: flags -> real adapters -> Runtime. Exceptions stay
// here (CLI parsing); everything below returns Status.
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "baton/worker.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/keys.h"
#include "common/util/log.h"
#include "common/workflow/parser.h"
#include "workers/executor.h"
#include "workers/runtime.h"

#ifndef BATON_VERSION
#define BATON_VERSION "0.0.0"
#endif

namespace baton::worker {
namespace {

std::string default_worker_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == 0) std::snprintf(host, sizeof(host), "worker");
  return std::string(host) + "-" + std::to_string(getpid());
}

// Waits for SIGTERM/SIGINT on its own thread and calls on_signal once.
class SignalWaiter {
 public:
  explicit SignalWaiter(std::function<void()> on_signal) : on_signal_(std::move(on_signal)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~SignalWaiter() {
    done_.store(true);
    thread_.join();
  }
  bool signalled() const { return signalled_.load(); }

 private:
  void loop() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    timespec tick{0, 100 * 1000 * 1000};
    while (!done_.load()) {
      int sig = sigtimedwait(&set, nullptr, &tick);
      if (sig == SIGTERM || sig == SIGINT) {
        spdlog::info("signal {} received: finishing the batch in flight", sig);
        signalled_.store(true);
        on_signal_();
      }
    }
  }
  std::function<void()> on_signal_;
  std::atomic<bool> done_{false};
  std::atomic<bool> signalled_{false};
  std::thread thread_;
};

}  // namespace

int run_worker(WorkerOptions o, agent::AgentRegistry agents) {
  // Before any thread starts, so that every thread inherits the mask and only
  // the SignalWaiter sees the signals.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  if (o.worker_id.empty()) o.worker_id = default_worker_id();
  if (o.role.empty()) {
    spdlog::error("--role is required");
    return 2;
  }

  auto workflows = std::make_shared<workflow::Registry>();
  if (!o.workflows.empty()) {
    if (Status s = workflows->load_dir(o.workflows); !s) {
      spdlog::error("role={} cannot load workflows from {}: {}", o.role, o.workflows, s.message());
      return 2;
    }
  }
  auto executor = std::make_shared<const Executor>(workflows, agents, o.role, o.worker_id);
  spdlog::info("role={} worker {}: {} workflows, {} steps ready, {} broken; agent kinds: {}", o.role, o.worker_id,
               workflows->all().size(), executor->ready_steps(), executor->broken_steps().size(),
               fmt::join(agents.kinds(), ","));

  std::mutex mu;
  Runtime* runtime = nullptr;
  std::atomic<bool> stop{false};
  SignalWaiter signals([&] {
    std::lock_guard<std::mutex> lock(mu);
    stop.store(true);
    if (runtime) runtime->stop();
  });

  auto endpoint = redis::parse_endpoint(o.redis);
  if (!endpoint) {
    spdlog::error("role={} bad --redis {}: {}", o.role, o.redis, endpoint.status().message());
    return 2;
  }
  std::unique_ptr<redis::Client> redis;
  for (int delay = 50; !stop.load(); delay = std::min(delay * 2, 2000)) {
    auto c = redis::Client::connect(*endpoint);
    if (c) {
      redis = std::move(c).value();
      break;
    }
    spdlog::warn("role={} Redis {} unavailable ({}); retrying in {} ms", o.role, o.redis, c.status().message(),
                 delay);
    for (int waited = 0; waited < delay && !stop.load(); waited += 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!redis) return 0;  // stopped before Redis answered

  kafka::KafkaConfig kc;
  kc.brokers = o.brokers;
  kc.client_id = "baton-worker-" + o.worker_id;
  kc.fetch_wait_max_ms = o.fetch_wait_ms;
  auto producer = kafka::make_producer(kc, /*with_poller=*/true);
  if (!producer) {
    spdlog::error("role={} Kafka producer: {}", o.role, producer.status().to_string());
    return 1;
  }
  // Runtime::run() warms the producer up for the events and DLQ topics.
  // The consumer needs its listener before the runtime exists: relay through a slot.
  auto revoked = std::make_shared<std::function<void(const std::vector<kafka::TopicPartition>&)>>();
  kafka::RebalanceListener listener;
  listener.on_revoked = [revoked](const std::vector<kafka::TopicPartition>& parts) {
    if (*revoked) (*revoked)(parts);
  };
  listener.on_assigned = [role = o.role](const std::vector<kafka::TopicPartition>& parts) {
    spdlog::info("role={} assigned {} partitions", role, parts.size());
  };
  auto consumer = kafka::make_consumer(kc, keys::worker_group(o.ns, o.role), listener);
  if (!consumer) {
    spdlog::error("role={} Kafka consumer: {}", o.role, consumer.status().to_string());
    return 1;
  }

  RuntimeOptions ro;
  ro.ns = o.ns;
  ro.role = o.role;
  ro.concurrency = std::max(1, o.concurrency);
  ro.max_batch = static_cast<std::size_t>(std::max(1, o.max_batch));
  ro.poison_after = std::max(0, o.poison_after);
  Runtime rt(ro, executor, std::move(consumer).value(), std::move(producer).value(), std::move(redis));
  *revoked = [&rt](const std::vector<kafka::TopicPartition>& parts) { rt.on_revoked(parts); };
  {
    std::lock_guard<std::mutex> lock(mu);
    runtime = &rt;
    if (stop.load()) rt.stop();
  }
  Status s = rt.run();
  {
    std::lock_guard<std::mutex> lock(mu);
    runtime = nullptr;
  }
  *revoked = nullptr;
  if (!s) {
    spdlog::error("role={} worker stopped on error: {}", o.role, s.to_string());
    return 1;
  }
  return 0;
}

int worker_main(int argc, char** argv, agent::AgentRegistry agents) {
  WorkerOptions o;
  CLI::App app{"baton-worker: runs one agent role's tasks (docs/agents.md)", "baton-worker"};
  app.set_version_flag("--version", std::string("baton-worker ") + BATON_VERSION);
  app.add_option("--role", o.role, "agent role: consumes baton.<ns>.tasks.<role>")->required();
  app.add_option("--brokers", o.brokers, "Kafka bootstrap servers HOST:PORT")->capture_default_str();
  app.add_option("--redis", o.redis, "Redis HOST:PORT")->capture_default_str();
  app.add_option("--namespace", o.ns, "namespace of topics and keys")->capture_default_str();
  app.add_option("--workflows", o.workflows, "directory of workflow YAML files (the coordinator's)");
  app.add_option("--concurrency", o.concurrency, "agent threads")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--worker-id", o.worker_id, "worker id in results (default <hostname>-<pid>)");
  app.add_option("--fetch-wait-ms", o.fetch_wait_ms, "Kafka fetch.wait.max.ms")
      ->capture_default_str()
      ->check(CLI::Range(0, 10000));
  app.add_option("--max-batch", o.max_batch, "tasks per batch")->capture_default_str()->check(CLI::Range(1, 10000));
  app.add_option("--poison-after", o.poison_after,
                 "fail a task (poison_task) whose agent was started this many times without an answer, i.e. "
                 "killed its worker; 0: never")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn, error");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  init_logging("worker", o.log_level);
  return run_worker(std::move(o), std::move(agents));
}

}  // namespace baton::worker
