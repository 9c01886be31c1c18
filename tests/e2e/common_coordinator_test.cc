// End-to-end tests of the coordinator as a separate process, with a real
// redis-server, baton-broker and baton-worker processes: bad messages on the
// events and triggers topics go to the DLQ while serving continues; a trigger
// redelivered many times starts one run; a coordinator SIGKILLed mid-flight
// and restarted finishes every run with each record write applied once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "proto/baton/v1/baton.pb.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kNs = "coord";

std::string example_dir() { return source_dir() + "/examples/lead-to-meeting"; }

// Broker + Redis + coordinator + one worker per role of lead-to-meeting, each a process.
class Fleet {
 public:
  explicit Fleet(bool aof = false) : broker_(4, kNs, "responder,qualifier,booker"), redis_(aof) {
    dir_ = make_temp_dir("baton-e2e-coord");
    if (!broker_.ok() || !redis_.ok()) return;
    auto ep = redis::parse_endpoint(redis_.address());
    auto c = redis::Client::connect(*ep);
    if (c) redis_client_ = std::move(c).value();
    kafka::KafkaConfig kc;
    kc.brokers = broker_.bootstrap();
    auto p = kafka::make_producer(kc, true);
    if (p) producer_ = std::move(p).value();
  }
  ~Fleet() {
    for (auto& [_, w] : workers_) w.stop();
    for (auto& c : coordinators_) c.stop();
    remove_tree(dir_);
  }

  // Starts replica `i` (0 or 1) of the coordinator; the API calls go to the
  // replica started last.
  bool start_coordinator(int i = 0) {
    std::string port_file = dir_ + "/http" + std::to_string(i) + ".port";
    std::remove(port_file.c_str());
    Process& coordinator = coordinators_[i];
    if (!coordinator.start({bin_dir() + "/baton-coordinator", "--brokers", broker_.bootstrap(), "--redis",
                            redis_.address(), "--namespace", kNs, "--workflows", example_dir(), "--http",
                            "127.0.0.1:0", "--http-port-file", port_file},
                           dir_ + "/coordinator" + (i ? std::to_string(i) : std::string()) + ".log"))
      return false;
    auto ok = wait_until([&] { return !read_file(port_file).empty() || !coordinator.running(); }, seconds(30));
    if (!ok || !coordinator.running()) return false;
    api_ = "http://127.0.0.1:" + std::to_string(std::stoi(read_file(port_file)));
    return wait_until(
        [&] {
          auto r = http::request("GET", api_ + "/readyz", "", 2000);
          return r && r->status == 200;
        },
        seconds(60));
  }

  bool start_workers() {
    for (const char* role : {"responder", "qualifier", "booker"}) {
      if (!workers_[role].start({bin_dir() + "/baton-worker", "--role", role, "--brokers", broker_.bootstrap(),
                                 "--redis", redis_.address(), "--namespace", kNs, "--workflows", example_dir()},
                                dir_ + "/worker-" + role + ".log"))
        return false;
    }
    return true;
  }

  // Starts a run over HTTP; returns its id ("" on failure).
  std::string start_run(const json& input) {
    auto r = http::request("POST", api_ + "/v1/runs", json{{"workflow", "lead-to-meeting"}, {"input", input}}.dump());
    if (!r || r->status != 202) return "";
    return json::parse(r->body).value("run_id", "");
  }

  json get_run(const std::string& id) {
    auto r = http::request("GET", api_ + "/v1/runs/" + id, "", 5000);
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }

  // The run's status, or "awaiting_approval" for a running run held at a gate
  // (a partial fit waiting for a sales manager).
  static std::string outcome(const json& run) {
    std::string st = run.value("status", "");
    if (st != "running" || !run.contains("steps")) return st;
    for (const auto& s : run["steps"])
      if (s.value("status", "") == "awaiting_approval") return "awaiting_approval";
    return st;
  }

  bool all_ended(const std::vector<std::string>& ids, std::string* last) {
    for (const auto& id : ids) {
      json run = get_run(id);
      if (!run.is_object() || outcome(run) == "running") {
        if (last) *last = id + ": " + (run.is_object() ? run.dump() : "not found");
        return false;
      }
    }
    return true;
  }

  std::string coordinator_log() {
    return read_file(dir_ + "/coordinator.log") + read_file(dir_ + "/coordinator1.log");
  }
  std::string replica_log(int i) { return read_file(dir_ + "/coordinator" + (i ? std::to_string(i) : std::string()) + ".log"); }
  void use_api_of(const std::string& api) { api_ = api; }
  const std::string& api() const { return api_; }
  RedisServer& redis_server() { return redis_; }
  // A fresh client (the old one's connection is gone after a Redis restart).
  bool reconnect_redis() {
    auto c = redis::Client::connect(*redis::parse_endpoint(redis_.address()));
    if (!c) return false;
    redis_client_ = std::move(c).value();
    return true;
  }

  Broker& broker() { return broker_; }
  redis::Client& redis() { return *redis_client_; }
  kafka::Producer& producer() { return *producer_; }
  Process& coordinator(int i = 0) { return coordinators_[i]; }
  bool ok() const { return broker_.ok() && redis_.ok() && redis_client_ && producer_; }

 private:
  Broker broker_;
  RedisServer redis_;
  std::string dir_;
  std::string api_;
  Process coordinators_[2];
  std::map<std::string, Process> workers_;
  std::unique_ptr<redis::Client> redis_client_;
  std::unique_ptr<kafka::Producer> producer_;
};

// Reads up to `want` messages from the DLQ (its own consumer group).
std::vector<kafka::Message> read_dlq(const std::string& brokers, std::size_t want) {
  kafka::KafkaConfig kc;
  kc.brokers = brokers;
  auto c = kafka::make_consumer(kc, "dlq-reader-" + random_id());
  std::vector<kafka::Message> out;
  if (!c) return out;
  if (!(*c)->subscribe({keys::dlq_topic(kNs)})) return out;
  auto deadline = std::chrono::steady_clock::now() + seconds(30);
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) (void)(*c)->poll_batch(out, 100, 200);
  (*c)->close();
  return out;
}

std::string header(const kafka::Message& m, const std::string& name) {
  for (const auto& [k, v] : m.headers)
    if (k == name) return v;
  return "";
}

std::map<std::string, std::string> hgetall(redis::Client& c, const std::string& key) {
  std::map<std::string, std::string> out;
  auto r = c.command({"HGETALL", key});
  if (r && r->is_array())
    for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) out[r->elements[i].str] = r->elements[i + 1].str;
  return out;
}

TEST(Coordinator, BadEventsAndTriggersGoToTheDlqAndServingContinues) {
  Fleet f;
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f.start_coordinator()) << f.coordinator_log();
  ASSERT_TRUE(f.start_workers());

  auto sync_produce = [&](const std::string& topic, const std::string& key, const std::string& payload) {
    auto done = std::make_shared<std::promise<Status>>();
    auto fut = done->get_future();
    Status s = f.producer().produce(topic, key, payload, [done](const Status& st) { done->set_value(st); });
    return s && fut.wait_for(seconds(10)) == std::future_status::ready && fut.get().is_ok();
  };
  // Not a protobuf, an oversized message (capped before parsing), a RunEvent
  // without a body, and a trigger that is not a Trigger.
  ASSERT_TRUE(sync_produce(keys::events_topic(kNs), "k1", std::string("\xff\xff\xff garbage", 12)));
  {
    // Our own producer refuses oversized messages, so a foreign one sends it.
    std::string big = make_temp_dir("baton-big") ;
    std::ofstream(big + "/msg", std::ios::binary) << std::string(limits::kMaxMessageBytes + 1, 'x');
    Process kcat;
    ASSERT_TRUE(kcat.start({"kcat", "-P", "-b", f.broker().bootstrap(), "-t", keys::events_topic(kNs), "-k", "k2",
                            "-X", "message.max.bytes=4000000", big + "/msg"}));
    int st = 0;
    ASSERT_TRUE(kcat.wait_exit(seconds(30), &st));
    ASSERT_EQ(st, 0);
    remove_tree(big);
  }
  baton::v1::RunEvent empty;
  empty.set_run_id("r-empty");
  ASSERT_TRUE(sync_produce(keys::events_topic(kNs), "r-empty", empty.SerializeAsString()));
  ASSERT_TRUE(sync_produce(keys::triggers_topic(kNs), "t1", std::string("\x0a\xff\xff", 3)));
  baton::v1::Trigger unknown;
  unknown.set_workflow("no-such-workflow");
  ASSERT_TRUE(sync_produce(keys::triggers_topic(kNs), "t2", unknown.SerializeAsString()));

  auto dlq = read_dlq(f.broker().bootstrap(), 5);
  ASSERT_EQ(dlq.size(), 5u) << f.coordinator_log();
  std::set<std::string> keys_seen;
  for (const auto& m : dlq) {
    keys_seen.insert(m.key);
    EXPECT_FALSE(header(m, kafka::kDlqError).empty()) << m.key;
    EXPECT_FALSE(header(m, kafka::kDlqOriginTopic).empty()) << m.key;
  }
  EXPECT_EQ(keys_seen, (std::set<std::string>{"k1", "k2", "r-empty", "t1", "t2"}));
  for (const auto& m : dlq) {
    if (m.key == "k2") {
      EXPECT_NE(header(m, kafka::kDlqError).find("exceeds"), std::string::npos);
      EXPECT_EQ(m.payload.size(), limits::kMaxMessageBytes);  // cut to the cap, original size said
      EXPECT_EQ(header(m, kafka::kDlqTruncatedFrom), std::to_string(limits::kMaxMessageBytes + 1));
    }
    if (m.key == "t2") {
      EXPECT_NE(header(m, kafka::kDlqError).find("unknown workflow"), std::string::npos);
    }
  }

  // The coordinator keeps serving: a good run completes.
  auto leads = read_jsonl(example_dir() + "/leads.jsonl");
  std::string id = f.start_run(leads.at(0));
  ASSERT_FALSE(id.empty());
  std::string last;
  ASSERT_TRUE(wait_until([&] { return f.all_ended({id}, &last); }, seconds(60), [&] { return last; }));
  EXPECT_EQ(f.get_run(id)["status"], "completed");
  EXPECT_TRUE(f.coordinator().running());
}

TEST(Coordinator, ATriggerRedeliveredManyTimesStartsOneRun) {
  Fleet f;
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f.start_coordinator()) << f.coordinator_log();
  ASSERT_TRUE(f.start_workers());
  auto leads = read_jsonl(example_dir() + "/leads.jsonl");
  baton::v1::Trigger t;
  t.set_workflow("lead-to-meeting");
  t.set_input_json(leads.at(0).dump());
  t.set_source("crm");
  // No dedupe_key on the message: the workflow's trigger.dedupe template gives it.
  std::string key = leads.at(0)["lead_id"];
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(f.producer().produce(keys::triggers_topic(kNs), key, t.SerializeAsString()));
  ASSERT_TRUE(f.producer().flush(10000));
  std::string run_id = run_id_for_dedupe("lead-to-meeting", key);
  std::string last;
  ASSERT_TRUE(wait_until([&] { return f.all_ended({run_id}, &last); }, seconds(60), [&] { return last; }));
  // Redeliver after the run ended, too.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(f.producer().produce(keys::triggers_topic(kNs), key, t.SerializeAsString()));
  ASSERT_TRUE(f.producer().flush(10000));

  // Exactly one run_started in the run's audit trail, once the coordinator has
  // consumed everything (its committed trigger offsets reach 8 messages).
  auto count_started = [&] {
    auto r = f.redis().command({"XRANGE", keys::run_audit(kNs, run_id), "-", "+"});
    int n = 0;
    if (r && r->is_array())
      for (const auto& e : r->elements)
        if (e.elements.size() == 2 && e.elements[1].elements.size() >= 2 && e.elements[1].elements[1].str == "run_started")
          ++n;
    return n;
  };
  json run = f.get_run(run_id);
  EXPECT_EQ(run["status"], "completed");
  EXPECT_EQ(run["dedupe_key"], key);
  // Give the late duplicates time to be consumed: a second run would show up
  // as a second run_started or a changed created_ms.
  int64_t created = run["created_ms"];
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = f.redis().command({"GET", keys::applied(kNs, murmur2_partition(run_id, 4))});
        return r && r->is_string() && !r->str.empty();
      },
      seconds(20)));
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(count_started(), 1);
  EXPECT_EQ(f.get_run(run_id)["created_ms"], created);
  auto rec = hgetall(f.redis(), keys::record(kNs, "lead:" + key));
  EXPECT_EQ(rec["_v"], "3");  // three writing steps, each applied once
}

// The 50 leads of the example, started over the fleet's API.
struct LeadRuns {
  std::vector<std::string> ids;
  std::map<std::string, std::string> lead_of;  // run id -> lead id
  std::map<std::string, json> want;            // lead id -> expected.jsonl line
};

void start_leads(Fleet& f, LeadRuns& runs) {
  for (const auto& e : read_jsonl(example_dir() + "/expected.jsonl")) runs.want[e["lead_id"]] = e;
  for (const auto& l : read_jsonl(example_dir() + "/leads.jsonl")) {
    std::string id = f.start_run(l);
    ASSERT_FALSE(id.empty());
    runs.ids.push_back(id);
    runs.lead_of[id] = l.value("lead_id", "");
  }
  ASSERT_EQ(runs.ids.size(), runs.want.size());
}

// Every run ends as expected.jsonl says, and each writing step wrote its
// record once: _v == the number of succeeded steps (each writes).
void expect_each_run_once(Fleet& f, const LeadRuns& runs) {
  std::string last;
  ASSERT_TRUE(wait_until([&] { return f.all_ended(runs.ids, &last); }, seconds(120), [&] { return last; }))
      << f.coordinator_log();
  for (const auto& id : runs.ids) {
    json run = f.get_run(id);
    const std::string& lead = runs.lead_of.at(id);
    EXPECT_EQ(Fleet::outcome(run), runs.want.at(lead)["outcome"]) << lead;
    auto rec = hgetall(f.redis(), keys::record(kNs, "lead:" + lead));
    int writers = 0;
    for (const auto& s : run["steps"]) writers += s["status"] == "succeeded";
    EXPECT_EQ(rec.count("_v") ? std::stoi(rec["_v"]) : 0, writers) << lead;
  }
}

TEST(Coordinator, KilledMidFlightAndRestartedFinishesEveryRunOnce) {
  Fleet f;
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f.start_coordinator()) << f.coordinator_log();
  ASSERT_TRUE(f.start_workers());
  LeadRuns runs;
  ASSERT_NO_FATAL_FAILURE(start_leads(f, runs));
  // Kill it while runs are in flight (most runs are a few ms each, so some
  // are mid-way; the rest are still unapplied starts on the events topic).
  f.coordinator().kill();
  ASSERT_TRUE(f.start_coordinator()) << f.coordinator_log();
  ASSERT_NO_FATAL_FAILURE(expect_each_run_once(f, runs));
  // The restarted owner took the partitions over with a higher epoch.
  int max_epoch = 0;
  for (int p = 0; p < 4; ++p) {
    auto r = f.redis().command({"GET", keys::epoch(kNs, p)});
    if (r && r->is_string()) max_epoch = std::max(max_epoch, std::stoi(r->str));
  }
  EXPECT_GE(max_epoch, 2);
}

// Replica 1, then replica 0 (whose API the runs are started through), then
// the workers; `survivor` is replica 1's API.
void start_two_replicas(Fleet& f, std::string& survivor) {
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f.start_coordinator(1)) << f.coordinator_log();
  survivor = f.api();
  ASSERT_TRUE(f.start_coordinator(0)) << f.coordinator_log();
  ASSERT_TRUE(f.start_workers());
}

// Two replicas in one consumer group; the one that took the runs gets SIGTERM
// mid-flight: it finishes its transition, commits, leaves the group and exits
// 0; the other takes its partitions over (new epochs) and ends every run once.
TEST(Coordinator, TwoReplicasOneStoppedGracefullyMidFlightFinishEveryRunOnce) {
  Fleet f;
  std::string survivor;
  ASSERT_NO_FATAL_FAILURE(start_two_replicas(f, survivor));
  LeadRuns runs;
  ASSERT_NO_FATAL_FAILURE(start_leads(f, runs));
  f.coordinator(0).signal(SIGTERM);
  int status = -1;
  ASSERT_TRUE(f.coordinator(0).wait_exit(seconds(60), &status)) << f.coordinator_log();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << exit_text(status) << "\n" << f.coordinator_log();
  f.use_api_of(survivor);
  ASSERT_NO_FATAL_FAILURE(expect_each_run_once(f, runs));
  EXPECT_TRUE(f.coordinator(1).running());
}

// A zombie: the replica that took the runs is paused (SIGSTOP) past the group
// session timeout, so the other takes every partition over with a higher epoch
// and ends the runs; when the zombie wakes up it lets the partitions go (the
// rebalance revokes them, or Redis refuses its old epoch: fenced). Every run
// ends once, before and after it woke up.
TEST(Coordinator, APausedReplicaLetsItsPartitionsGoAndAppliesNothingTwice) {
  Fleet f;
  std::string survivor;
  ASSERT_NO_FATAL_FAILURE(start_two_replicas(f, survivor));
  auto epochs = [&] {
    int sum = 0;
    for (int p = 0; p < 4; ++p) {
      auto r = f.redis().command({"GET", keys::epoch(kNs, p)});
      if (r && r->is_string()) sum += std::stoi(r->str);
    }
    return sum;
  };
  // Both replicas own partitions (two assignments of four partitions at least).
  ASSERT_TRUE(wait_until([&] { return epochs() >= 4; }, seconds(60))) << f.coordinator_log();
  LeadRuns runs;
  ASSERT_NO_FATAL_FAILURE(start_leads(f, runs));
  f.coordinator(0).signal(SIGSTOP);
  const int before = epochs();
  // The session (10 s) expires; the survivor bumps the zombie's partitions.
  bool taken = wait_until([&] { return epochs() > before; }, seconds(60));
  f.use_api_of(survivor);
  if (!taken) f.coordinator(0).signal(SIGCONT);
  ASSERT_TRUE(taken) << f.coordinator_log();
  ASSERT_NO_FATAL_FAILURE(expect_each_run_once(f, runs));
  // Awake again, the zombie lets its old partitions go: through the
  // rebalance ("released") or because Redis refused its epoch ("fenced").
  auto let_go = [&] {
    std::string log = f.replica_log(0);
    std::size_t n = 0;
    for (const char* what : {"released events partition", "fenced by a newer owner"})
      for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  };
  const std::size_t asleep = let_go();
  f.coordinator(0).signal(SIGCONT);
  ASSERT_TRUE(wait_until([&] { return let_go() > asleep; }, seconds(30))) << f.replica_log(0);
  // Whatever it still held in memory did not apply twice.
  ASSERT_NO_FATAL_FAILURE(expect_each_run_once(f, runs));
}

// Redis (AOF, appendfsync always) goes away for 2 s while 50 runs are in
// flight. Coordinator and workers reconnect, nothing acknowledged to Kafka was
// missing from Redis, and every run ends once.
TEST(Coordinator, RedisRestartMidFlightLosesNoRunAndAppliesNothingTwice) {
  Fleet f(/*aof=*/true);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(f.start_coordinator()) << f.coordinator_log();
  ASSERT_TRUE(f.start_workers());
  LeadRuns runs;
  ASSERT_NO_FATAL_FAILURE(start_leads(f, runs));
  ASSERT_TRUE(f.redis_server().restart(milliseconds(2000)));
  ASSERT_TRUE(f.reconnect_redis());
  ASSERT_NO_FATAL_FAILURE(expect_each_run_once(f, runs));
  EXPECT_TRUE(f.coordinator().running()) << f.coordinator_log();
  // The outage hit work in flight: the coordinator retried applying with backoff.
  EXPECT_NE(f.coordinator_log().find("unavailable: redis"), std::string::npos) << f.coordinator_log();
}

}  // namespace
}  // namespace baton::testing
