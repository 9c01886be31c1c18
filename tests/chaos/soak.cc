#include "tests/chaos/soak.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "proto/baton/v1/baton.pb.h"
#include "tests/chaos/faults.h"
#include "tests/chaos/sink.h"
#include "tests/support/process.h"

namespace baton::chaos {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

int env_int(const char* name, int def) {
  const char* v = std::getenv(name);
  if (!v || !*v) return def;
  try {
    return std::stoi(v);
  } catch (...) {
    return def;
  }
}

int64_t mono_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void sleep_ms(int64_t ms) {
  if (ms > 0) std::this_thread::sleep_for(milliseconds(ms));
}

// One workflow of the mix: its inputs (the example's) and the field that
// names the business object (its dedupe key).
struct Flavor {
  std::string workflow;
  std::string id_field;
  std::string prefix;
  int weight = 1;
  std::vector<json> inputs;
};

struct Planned {
  std::size_t flavor = 0;
  std::string id;  // dedupe key
  std::string run_id;
  json input;
  int64_t at_ms = 0;  // from the start of the soak
  bool http = true;   // HTTP first, else the triggers topic
};

// Reads the consumed messages of the fleet's topics (its own group) and
// produces some of them again on request: duplicate deliveries.
class Tap {
 public:
  Tap(const std::string& brokers, const std::string& ns, std::vector<std::string> topics, uint64_t seed)
      : topics_(std::move(topics)) {
    kafka::KafkaConfig kc;
    kc.brokers = brokers;
    kc.client_id = "chaos-tap";
    kc.fetch_wait_max_ms = 50;
    auto c = kafka::make_consumer(kc, "chaos-tap-" + ns + "-" + std::to_string(seed) + "-" + random_id());
    if (c) consumer_ = std::move(c).value();
    auto p = kafka::make_producer(kc, true);
    if (p) producer_ = std::move(p).value();
  }
  bool ok() const { return consumer_ && producer_; }
  void start() {
    thread_ = std::thread([this] { loop(); });
  }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (consumer_) consumer_->close();
    if (producer_) (void)producer_->flush(5000);
  }
  ~Tap() { stop(); }

  // Produces `n` of the recent messages again (same topic, partition, key,
  // payload, headers). Returns how many were enqueued.
  int duplicate(int n, Rng& rng) {
    std::vector<kafka::Message> picked;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (ring_.empty()) return 0;
      for (int i = 0; i < n; ++i) picked.push_back(ring_[static_cast<std::size_t>(rng.range(0, ring_.size() - 1))]);
    }
    int sent = 0;
    for (const auto& m : picked) {
      Status s = producer_->produce(m.topic, m.key, m.payload, [this](const Status& st) {
        if (st) ++delivered_;
      }, m.headers, m.partition);
      if (s) ++sent;
    }
    return sent;
  }
  std::size_t delivered() const { return delivered_.load(); }

 private:
  void loop() {
    if (!consumer_->subscribe(topics_)) return;
    std::vector<kafka::Message> batch;
    while (!stop_) {
      batch.clear();
      (void)consumer_->poll_batch(batch, 256, 100);
      if (batch.empty()) continue;
      std::lock_guard<std::mutex> lk(mu_);
      for (auto& m : batch) {
        if (ring_.size() < kRing) {
          ring_.push_back(std::move(m));
        } else {
          ring_[next_++ % kRing] = std::move(m);
        }
      }
    }
  }
  static constexpr std::size_t kRing = 2048;
  std::vector<std::string> topics_;
  std::unique_ptr<kafka::Consumer> consumer_;
  std::unique_ptr<kafka::Producer> producer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<kafka::Message> ring_;
  std::size_t next_ = 0;
  std::atomic<std::size_t> delivered_{0};
};

std::unique_ptr<redis::Client> redis_client(const std::string& address) {
  auto ep = redis::parse_endpoint(address);
  if (!ep) return nullptr;
  ep->command_timeout_ms = 3000;
  auto c = redis::Client::connect(*ep);
  return c ? std::move(c).value() : nullptr;
}

// Request errors worth injecting per Kafka API key: the retriable ones a
// client must ride out (a non-retriable one would be a test of the error
// path rather than of recovery).
struct ApiErrors {
  int api_key;
  std::vector<int> codes;
};
const std::vector<ApiErrors>& api_errors() {
  static const std::vector<ApiErrors> k = {
      {0, {6, 7, 19, 20}},   // Produce: NOT_LEADER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND)
      {1, {6, 7}},           // Fetch
      {8, {7, 15, 16, 27}},  // OffsetCommit: TIMED_OUT, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR, REBALANCE
      {12, {15, 16, 27}},    // Heartbeat
      {10, {7, 15}},         // FindCoordinator
  };
  return k;
}

}  // namespace

SoakOptions SoakOptions::from_env() {
  SoakOptions o;
  if (const char* s = std::getenv("BATON_CHAOS_SEED"); s && *s) {
    try {
      o.seed = std::stoull(s, nullptr, 0);
    } catch (...) {
      o.seed = 0;
    }
  } else {
    o.seed = std::random_device{}() ^ (static_cast<uint64_t>(std::random_device{}()) << 32);
    o.seed %= 1000000000000ull;  // short enough to type
  }
  o.runs = std::max(1, env_int("BATON_CHAOS_RUNS", 300));
  o.faults = std::max(0, env_int("BATON_CHAOS_FAULTS", 30));
  o.seconds = std::max(10, env_int("BATON_CHAOS_SECONDS", std::max(60, o.runs / 5)));
  o.drain_seconds = std::max(10, env_int("BATON_CHAOS_DRAIN_SECONDS", 240));
  o.fetch_wait_ms = std::clamp(env_int("BATON_CHAOS_FETCH_WAIT_MS", 25), 1, 500);
  o.keep_dir = env_int("BATON_CHAOS_KEEP", 0) != 0;
  o.source_dir = testing::source_dir();
  o.bin_dir = testing::bin_dir();
  return o;
}

std::string SoakOptions::replay_env() const {
  return "BATON_CHAOS_SEED=" + std::to_string(seed) + " BATON_CHAOS_RUNS=" + std::to_string(runs) +
         " BATON_CHAOS_FAULTS=" + std::to_string(faults) + " BATON_CHAOS_SECONDS=" + std::to_string(seconds);
}

SoakResult run_soak(const SoakOptions& o) {
  SoakResult res;
  const int64_t wall0 = mono_ms();
  res.work_dir = testing::make_temp_dir("baton-chaos");

  // ---- the workload: example inputs, one unique business id per run ----
  std::vector<Flavor> flavors = {
      {"lead-to-meeting", "lead_id", "L", 4, {}},
      {"invoice-processing", "invoice_id", "INV", 3, {}},
      {"content-review", "post_id", "C", 3, {}},
  };
  const std::map<std::string, std::string> input_files = {
      {"lead-to-meeting", "examples/lead-to-meeting/leads.jsonl"},
      {"invoice-processing", "examples/invoice-processing/inputs.jsonl"},
      {"content-review", "examples/content-review/inputs.jsonl"},
  };
  for (auto& f : flavors) {
    std::string path = o.source_dir + "/" + input_files.at(f.workflow);
    auto lines = parse_jsonl(testing::read_file(path), path);
    if (!lines || lines->empty()) {
      res.setup = invalid("cannot read the inputs " + path + (lines ? "" : ": " + lines.status().message()));
      return res;
    }
    for (auto& l : *lines) f.inputs.push_back(std::move(l.value));
  }
  Rng plan_rng(o.seed);
  int total_weight = 0;
  for (const auto& f : flavors) total_weight += f.weight;
  std::vector<Planned> plan(static_cast<std::size_t>(o.runs));
  const int64_t soak_ms = static_cast<int64_t>(o.seconds) * 1000;
  char seed_tag[32];
  std::snprintf(seed_tag, sizeof seed_tag, "%llx", static_cast<unsigned long long>(o.seed));
  for (std::size_t i = 0; i < plan.size(); ++i) {
    Planned& p = plan[i];
    int64_t x = plan_rng.range(0, total_weight - 1);
    while (x >= flavors[p.flavor].weight) x -= flavors[p.flavor++].weight;
    const Flavor& f = flavors[p.flavor];
    p.input = f.inputs[static_cast<std::size_t>(plan_rng.range(0, static_cast<int64_t>(f.inputs.size()) - 1))];
    p.id = f.prefix + "-" + seed_tag + "-" + std::to_string(i);
    p.input[f.id_field] = p.id;
    p.run_id = run_id_for_dedupe(f.workflow, p.id);
    p.at_ms = soak_ms * static_cast<int64_t>(i) / static_cast<int64_t>(plan.size());
    p.http = plan_rng.chance(60);
  }
  ScheduleOptions so;
  so.count = o.faults;
  so.first_ms = std::min<int64_t>(3000, soak_ms / 4);
  so.last_ms = soak_ms;
  std::vector<Fault> schedule = make_schedule(o.seed, so);

  // ---- the fleet ----
  EffectSink sink;
  if (Status s = sink.start(4); !s) {
    res.setup = s;
    return res;
  }
  const std::vector<std::string> roles = {"responder", "qualifier", "booker", "extractor",
                                          "validator", "accounting", "reviewer", "publisher"};
  ClusterOptions co;
  co.ns = o.ns;
  co.workflows_dir = o.source_dir + "/tests/chaos/workflows";
  co.roles = roles;
  co.fetch_wait_ms = o.fetch_wait_ms;
  co.sink_url = sink.url();
  co.bin_dir = o.bin_dir;
  co.dir = res.work_dir;
  Cluster cluster(co);
  if (Status s = cluster.start(seconds(120)); !s) {
    res.setup = s;
    res.logs = cluster.log_tails(3000);
    return res;
  }
  std::vector<std::string> topics = {keys::events_topic(o.ns), keys::triggers_topic(o.ns)};
  for (const auto& r : roles) topics.push_back(keys::tasks_topic(o.ns, r));
  Tap tap(cluster.bootstrap(), o.ns, topics, o.seed);
  kafka::KafkaConfig kc;
  kc.brokers = cluster.bootstrap();
  kc.client_id = "chaos-driver";
  auto producer = kafka::make_producer(kc, true);
  if (!tap.ok() || !producer) {
    res.setup = unavailable("cannot create the driver's Kafka clients");
    return res;
  }
  tap.start();

  std::set<std::string> warm;  // warm-up runs: not part of the soak's checks
  // ---- warm-up: one run per workflow must end before the soak starts, so
  // that every consumer group has settled (a new group's first rebalance
  // waits for the session timeout) and latency measures the soak ----
  {
    auto apis = cluster.live_apis();
    auto wrc = redis_client(cluster.redis_address());
    for (const auto& f : flavors) {
      json input = f.inputs.front();
      std::string id = "warm-" + f.prefix + "-" + std::to_string(o.seed);
      input[f.id_field] = id;
      json body = {{"workflow", f.workflow}, {"input", input}, {"dedupe_key", id}};
      for (int i = 0; i < 20; ++i) {
        auto r = http::request("POST", apis.at(0) + "/v1/runs", body.dump(), 3000, {{"X-Baton-User", "chaos-driver"}});
        if (r && r->status == 202) break;
        sleep_ms(500);
      }
      warm.insert(run_id_for_dedupe(f.workflow, id));
    }
    const int64_t warm_deadline = mono_ms() + 90000;
    bool ended = false;
    while (!ended && mono_ms() < warm_deadline && wrc) {
      ended = true;
      for (const auto& id : warm) {
        auto r = wrc->command({"HGET", keys::run(o.ns, id), "status"});
        if (!r || r->is_nil() || r->str == "running" || r->str == "waiting") ended = false;
      }
      if (!ended) sleep_ms(200);
    }
    if (!ended) {
      res.setup = unavailable("the warm-up runs did not end within 90 s");
      res.logs = cluster.log_tails(3000);
      return res;
    }
  }

  // ---- starters: each run at its time, over HTTP (falling back to the
  // triggers topic) or over the triggers topic ----
  const int64_t t0 = mono_ms();
  std::mutex started_mu;
  std::vector<StartedRun> started;
  std::atomic<std::size_t> not_started{0};
  std::atomic<bool> stop_helpers{false};
  auto produce_trigger = [&](const Planned& p) {
    baton::v1::Trigger t;
    t.set_workflow(flavors[p.flavor].workflow);
    t.set_dedupe_key(p.id);
    t.set_input_json(p.input.dump());
    t.set_source("chaos");
    auto done = std::make_shared<std::promise<Status>>();
    auto fut = done->get_future();
    Status s = (*producer)->produce(keys::triggers_topic(o.ns), p.id, t.SerializeAsString(),
                                    [done](const Status& st) { done->set_value(st); });
    if (!s) return false;
    if (fut.wait_for(seconds(30)) != std::future_status::ready) return false;
    return fut.get().is_ok();
  };
  auto start_one = [&](const Planned& p, std::size_t i) {
    const int64_t requested = now_unix_ms();
    const int64_t give_up = mono_ms() + 120000;
    bool accepted = false;
    int http_tries = p.http ? 2 : 0;
    for (int attempt = 0; !accepted && mono_ms() < give_up && !stop_helpers; ++attempt) {
      if (http_tries > 0) {
        --http_tries;
        auto apis = cluster.live_apis();
        if (!apis.empty()) {
          const std::string& api = apis[(i + static_cast<std::size_t>(attempt)) % apis.size()];
          json body = {{"workflow", flavors[p.flavor].workflow}, {"input", p.input}, {"dedupe_key", p.id}};
          auto r = http::request("POST", api + "/v1/runs", body.dump(), 3000, {{"X-Baton-User", "chaos-driver"}});
          if (r && r->status == 202) {
            accepted = true;
            break;
          }
        }
        continue;
      }
      accepted = produce_trigger(p);
      if (!accepted) sleep_ms(200);
    }
    if (!accepted) {
      ++not_started;
      return;
    }
    std::lock_guard<std::mutex> lk(started_mu);
    started.push_back({p.run_id, flavors[p.flavor].workflow, requested});
  };
  constexpr std::size_t kStarters = 4;
  std::vector<std::thread> starters;
  for (std::size_t k = 0; k < kStarters; ++k) {
    starters.emplace_back([&, k] {
      for (std::size_t i = k; i < plan.size() && !stop_helpers; i += kStarters) {
        sleep_ms(t0 + plan[i].at_ms - mono_ms());
        start_one(plan[i], i);
      }
    });
  }

  // ---- the approver: decides every open gate (4 in 5 approved) ----
  std::atomic<std::size_t> decisions{0};
  std::thread approver([&] {
    auto rc = redis_client(cluster.redis_address());
    std::map<std::string, int64_t> asked;  // gate -> when last decided
    while (!stop_helpers) {
      sleep_ms(500);
      if (!rc) {
        rc = redis_client(cluster.redis_address());
        continue;
      }
      auto r = rc->command({"ZRANGE", keys::approvals(o.ns), "0", "-1"});
      if (!r || !r->is_array()) continue;
      for (const auto& m : r->elements) {
        if (stop_helpers) break;
        const std::string& member = m.str;
        auto bar = member.find('|');
        if (bar == std::string::npos) continue;
        int64_t now = mono_ms();
        if (asked.count(member) && now - asked[member] < 3000) continue;
        auto apis = cluster.live_apis();
        if (apis.empty()) break;
        std::string run = member.substr(0, bar), step = member.substr(bar + 1);
        std::string step_url;
        for (char c : step) step_url += c == '#' ? std::string("%23") : std::string(1, c);
        bool approve = (std::hash<std::string>{}(run) ^ o.seed) % 5 != 0;
        json body = {{"decision", approve ? "approve" : "reject"}, {"comment", "chaos approver"}};
        auto resp = http::request("POST", apis[decisions % apis.size()] + "/v1/approvals/" + run + "/" + step_url,
                                  body.dump(), 3000, {{"X-Baton-User", "chaos-approver"}});
        asked[member] = now;
        if (resp && resp->status < 300) ++decisions;
      }
    }
  });

  // ---- the fault loop (this thread: it starts the child processes) ----
  std::multimap<int64_t, std::function<void()>> pending;  // undo actions by time from t0
  std::set<int> brokers_down;
  std::map<std::string, int> injected;
  Rng fault_rng(o.seed ^ 0xfa017fa017ull);
  auto log = [&](int64_t at, const std::string& what) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "t+%6.1fs ", static_cast<double>(at) / 1000.0);
    res.timeline.push_back(buf + what);
  };
  auto pick_member = [&](const std::vector<std::string>& all, uint64_t pick) -> std::string {
    std::vector<std::string> up;
    for (const auto& m : all)
      if (cluster.is_up(m)) up.push_back(m);
    if (up.empty()) return "";
    return up[pick % up.size()];
  };
  auto inject = [&](const Fault& f) {
    const int64_t now = mono_ms() - t0;
    const std::string kind = fault_name(f.kind);
    auto done = [&](const std::string& what) {
      ++injected[kind];
      log(now, kind + " " + what);
    };
    auto skip = [&](const std::string& why) { log(now, kind + " skipped: " + why); };
    switch (f.kind) {
      case FaultKind::kKillWorker:
      case FaultKind::kKillCoordinator: {
        std::string m = pick_member(f.kind == FaultKind::kKillWorker ? cluster.workers() : cluster.coordinators(),
                                    f.pick);
        if (m.empty() || !cluster.kill(m)) return skip("no member up");
        done(m + " (restart in " + std::to_string(f.duration_ms) + " ms)");
        pending.emplace(now + f.duration_ms, [&, m] {
          cluster.restart(m);
          log(mono_ms() - t0, "restarted " + m);
        });
        return;
      }
      case FaultKind::kPauseWorker:
      case FaultKind::kPauseCoordinator: {
        std::string m = pick_member(f.kind == FaultKind::kPauseWorker ? cluster.workers() : cluster.coordinators(),
                                    f.pick);
        if (m.empty() || !cluster.pause(m)) return skip("no member up");
        done(m + " for " + std::to_string(f.duration_ms) + " ms");
        pending.emplace(now + f.duration_ms, [&, m] {
          if (cluster.resume(m)) log(mono_ms() - t0, "resumed " + m);
        });
        return;
      }
      case FaultKind::kRedisRestart: {
        if (!cluster.redis_down(f.param != 0)) return skip("redis is already down");
        done(std::string(f.param ? "SIGKILL" : "SIGTERM") + ", down " + std::to_string(f.duration_ms) + " ms");
        pending.emplace(now + f.duration_ms, [&] {
          bool up = cluster.redis_up();
          log(mono_ms() - t0, up ? "redis up" : "redis did not come back");
        });
        return;
      }
      case FaultKind::kBrokerDown: {
        int b = 1 + static_cast<int>(f.pick % static_cast<uint64_t>(cluster.brokers()));
        if (brokers_down.count(b)) return skip("broker " + std::to_string(b) + " is already down");
        auto r = cluster.broker_control("/v1/broker/down", {{"broker", b}});
        if (!r) return skip(r.status().message());
        brokers_down.insert(b);
        done("broker " + std::to_string(b) + " for " + std::to_string(f.duration_ms) + " ms");
        pending.emplace(now + f.duration_ms, [&, b] {
          auto u = cluster.broker_control("/v1/broker/up", {{"broker", b}});
          brokers_down.erase(b);
          log(mono_ms() - t0, "broker " + std::to_string(b) + (u ? " up" : " up failed: " + u.status().message()));
        });
        return;
      }
      case FaultKind::kRequestErrors: {
        const auto& all = api_errors();
        const ApiErrors& ae = all[f.pick % all.size()];
        json codes = json::array();
        Rng r(f.pick);
        for (int i = 0; i < f.param; ++i)
          codes.push_back(ae.codes[static_cast<std::size_t>(r.range(0, static_cast<int64_t>(ae.codes.size()) - 1))]);
        auto resp = cluster.broker_control("/v1/errors", {{"api_key", ae.api_key}, {"errors", codes}});
        if (!resp) return skip(resp.status().message());
        return done("api key " + std::to_string(ae.api_key) + " errors " + codes.dump());
      }
      case FaultKind::kRttSpike: {
        int b = 1 + static_cast<int>(f.pick % static_cast<uint64_t>(cluster.brokers()));
        auto r = cluster.broker_control("/v1/broker/rtt", {{"broker", b}, {"rtt_ms", f.param}});
        if (!r) return skip(r.status().message());
        done("broker " + std::to_string(b) + " " + std::to_string(f.param) + " ms for " +
             std::to_string(f.duration_ms) + " ms");
        pending.emplace(now + f.duration_ms, [&, b] {
          (void)cluster.broker_control("/v1/broker/rtt", {{"broker", b}, {"rtt_ms", 0}});
          log(mono_ms() - t0, "broker " + std::to_string(b) + " rtt 0");
        });
        return;
      }
      case FaultKind::kLeaderMove: {
        const std::string& topic = topics[f.pick % topics.size()];
        int part = static_cast<int>((f.pick >> 16) % static_cast<uint64_t>(cluster.partitions()));
        int b = 1 + static_cast<int>((f.pick >> 32) % static_cast<uint64_t>(cluster.brokers()));
        auto r = cluster.broker_control("/v1/partition/leader", {{"topic", topic}, {"partition", part}, {"broker", b}});
        if (!r) return skip(r.status().message());
        return done(topic + " [" + std::to_string(part) + "] -> broker " + std::to_string(b));
      }
      case FaultKind::kDuplicateDelivery: {
        Rng r(f.pick);
        int n = tap.duplicate(static_cast<int>(f.param), r);
        if (n == 0) return skip("nothing consumed yet");
        return done(std::to_string(n) + " message(s) produced again");
      }
      case FaultKind::kSinkErrors:
        sink.fail_next(static_cast<int>(f.param));
        return done("next " + std::to_string(f.param) + " sink requests answer 503");
      case FaultKind::kSinkSlow:
        sink.slow_next(static_cast<int>(f.param), static_cast<int>(f.duration_ms));
        return done("next " + std::to_string(f.param) + " sink requests answered " + std::to_string(f.duration_ms) +
                    " ms late");
    }
  };
  (void)fault_rng;
  std::size_t next_fault = 0;
  int64_t next_supervise = 0;
  while (true) {
    const int64_t now = mono_ms() - t0;
    bool starters_done = now >= soak_ms;
    if (next_fault >= schedule.size() && pending.empty() && starters_done) break;
    while (next_fault < schedule.size() && schedule[next_fault].at_ms <= now) inject(schedule[next_fault++]);
    while (!pending.empty() && pending.begin()->first <= now) {
      auto fn = std::move(pending.begin()->second);
      pending.erase(pending.begin());
      fn();
    }
    if (now >= next_supervise) {
      for (const auto& e : cluster.supervise()) log(now, e.member + " exited on its own (" + e.how + "); restarted");
      next_supervise = now + 500;
    }
    sleep_ms(20);
  }
  for (auto& t : starters) t.join();
  cluster.heal();
  const int64_t soak_end = mono_ms();
  log(soak_end - t0, "soak over: fleet healed, draining");

  // ---- drain: bounded wait until every started run has ended ----
  std::vector<StartedRun> runs;
  {
    std::lock_guard<std::mutex> lk(started_mu);
    runs = started;
  }
  auto rc = redis_client(cluster.redis_address());
  auto all_ended = [&](std::size_t* open) {
    if (!rc) rc = redis_client(cluster.redis_address());
    if (!rc) return false;
    std::vector<std::string> ks;
    ks.reserve(runs.size());
    for (const auto& r : runs) ks.push_back(keys::run(o.ns, r.run_id));
    for (const auto& k : ks) rc->append({"HGET", k, "status"});
    auto replies = rc->exec();
    if (!replies) return false;
    *open = 0;
    for (const auto& r : *replies)
      if (r.is_nil() || r.str == "running" || r.str == "waiting") ++*open;
    return *open == 0;
  };
  std::size_t open = runs.size();
  const int64_t drain_deadline = mono_ms() + static_cast<int64_t>(o.drain_seconds) * 1000;
  int64_t next_check = 0;
  while (mono_ms() < drain_deadline) {
    if (mono_ms() >= next_check) {
      if (all_ended(&open)) break;
      next_check = mono_ms() + 1000;
    }
    for (const auto& e : cluster.supervise())
      log(mono_ms() - t0, e.member + " exited on its own (" + e.how + "); restarted");
    sleep_ms(100);
  }
  sleep_ms(2000);  // late outbox acks and duplicate deliveries settle
  const int64_t drain_end = mono_ms();
  log(drain_end - t0, "drain over: " + std::to_string(open) + " run(s) not ended");
  stop_helpers = true;
  approver.join();
  tap.stop();

  // ---- check ----
  CheckInput in;
  in.ns = o.ns;
  in.runs = runs;
  for (auto& r : sink.requests())
    if (!warm.count(r.run_id)) in.sink.push_back(std::move(r));
  in.effect_steps = {{"book", "booking_id"}, {"post", "entry_id"}, {"hold", "hold_id"}, {"publish", "post_id"}};
  in.faults = injected;
  in.seed = o.seed;
  in.sizes = o.replay_env();
  in.soak_ms = soak_end - t0;
  in.drain_ms = drain_end - soak_end;
  Result<Report> rep = unavailable("not checked");
  for (int i = 0; i < 20; ++i) {
    if (!rc) rc = redis_client(cluster.redis_address());
    if (rc) rep = check(*rc, in);
    if (rep) break;
    sleep_ms(500);
  }
  if (!rep) {
    res.setup = rep.status();
  } else {
    res.report = std::move(rep).value();
  }
  res.exits = cluster.exits();
  res.not_started = not_started;
  res.decisions = decisions;
  res.duplicates = tap.delivered();
  res.wall_ms = mono_ms() - wall0;
  {
    std::ofstream tl(res.work_dir + "/timeline.txt");
    for (const auto& l : res.timeline) tl << l << "\n";
  }
  if (!res.ok()) res.logs = cluster.log_tails(4000);
  cluster.stop_all();
  sink.stop();
  if (res.ok() && !o.keep_dir) testing::remove_tree(res.work_dir);
  return res;
}

}  // namespace baton::chaos
