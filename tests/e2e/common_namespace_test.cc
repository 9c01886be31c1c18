// Namespaces keep environments apart on shared infrastructure: one
// baton-broker and one redis-server serve two fleets (coordinator + one worker
// per role of examples/lead-to-meeting), one started with `--namespace staging`,
// the other with `--namespace prod`, each on its own HTTP port.
//
// Checked: runs started in a namespace complete through that namespace's
// workers only (worker ids on the steps and the `step_result` audit actors);
// the other namespace's API answers 404 for them; the same dedupe key in both
// namespaces gives two independent runs (same derived run id, each with its
// own input, workers and outcome); every Redis key is under `baton:staging:`
// or `baton:prod:` and no prod key (name or content) mentions a staging-only
// run or lead, and the reverse; the broker holds `baton.staging.*` and
// `baton.prod.*` topics and no other `baton.` topic, and each namespace's task
// and events topics carry only that namespace's runs.
#include <gtest/gtest.h>

#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "proto/baton/v1/baton.pb.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;

const std::vector<std::string> kRoles = {"responder", "qualifier", "booker"};

std::string example_dir() { return source_dir() + "/examples/lead-to-meeting"; }

// A lead of examples/lead-to-meeting/leads.jsonl by id (the sample file is the
// input the example documents; L-007 misses a field and ends in the
// exception queue).
json lead(const std::string& id) {
  for (const auto& line : [] {
         std::vector<json> out;
         std::string text = read_file(example_dir() + "/leads.jsonl");
         std::size_t start = 0;
         while (start < text.size()) {
           std::size_t end = text.find('\n', start);
           if (end == std::string::npos) end = text.size();
           std::string l = text.substr(start, end - start);
           if (l.find('{') != std::string::npos) out.push_back(json::parse(l));
           start = end + 1;
         }
         return out;
       }()) {
    if (line.value("lead_id", "") == id) return line;
  }
  ADD_FAILURE() << "no lead " << id << " in leads.jsonl";
  return json::object();
}

// Coordinator + one worker per role in one namespace, on a shared broker and Redis.
class NsFleet {
 public:
  NsFleet(std::string ns, const Broker& broker, const RedisServer& redis)
      : ns_(std::move(ns)), brokers_(broker.bootstrap()), redis_(redis.address()) {
    dir_ = make_temp_dir("baton-e2e-ns-" + ns_);
  }
  ~NsFleet() { stop(); remove_tree(dir_); }
  NsFleet(const NsFleet&) = delete;
  NsFleet& operator=(const NsFleet&) = delete;

  ::testing::AssertionResult start() {
    std::string port_file = dir_ + "/http.port";
    if (!coordinator_.start({bin_dir() + "/baton-coordinator", "--brokers", brokers_, "--redis", redis_,
                             "--namespace", ns_, "--workflows", example_dir(), "--http", "127.0.0.1:0",
                             "--http-port-file", port_file},
                            dir_ + "/coordinator.log"))
      return ::testing::AssertionFailure() << ns_ << ": cannot start the coordinator";
    for (const auto& role : kRoles) {
      if (!workers_[role].start({bin_dir() + "/baton-worker", "--role", role, "--brokers", brokers_, "--redis",
                                 redis_, "--namespace", ns_, "--workflows", example_dir(), "--worker-id",
                                 worker_id(role)},
                                dir_ + "/worker-" + role + ".log"))
        return ::testing::AssertionFailure() << ns_ << ": cannot start the " << role << " worker";
    }
    auto port = wait_until([&] { return !read_file(port_file).empty() || !coordinator_.running(); }, seconds(60),
                           [&] { return coordinator_log(); });
    if (!port) return port;
    if (!coordinator_.running()) return ::testing::AssertionFailure() << ns_ << " coordinator exited:\n" << coordinator_log();
    api_ = "http://127.0.0.1:" + std::to_string(std::stoi(read_file(port_file)));
    return wait_until(
        [&] {
          auto r = http::request("GET", api_ + "/readyz", "", 2000);
          return r && r->status == 200;
        },
        seconds(90), [&] { return ns_ + " coordinator never ready:\n" + coordinator_log(); }, milliseconds(100));
  }

  void stop() {
    for (auto& [_, w] : workers_) w.stop(seconds(15));
    coordinator_.stop(seconds(15));
  }

  std::string worker_id(const std::string& role) const { return ns_ + "-" + role; }

  // POST /v1/runs; returns the run id ("" on failure, reported).
  std::string start_run(const json& input, const std::string& dedupe_key) {
    json body = {{"workflow", "lead-to-meeting"}, {"input", input}, {"dedupe_key", dedupe_key}};
    auto r = http::request("POST", api_ + "/v1/runs", body.dump(), 10000);
    if (!r || r->status != 202) {
      ADD_FAILURE() << ns_ << ": start refused: " << (r ? r->body : r.status().to_string());
      return "";
    }
    return json::parse(r->body).value("run_id", "");
  }

  // GET /v1/runs/{id}: the HTTP status and the body.
  std::pair<int, json> get_run(const std::string& id) {
    auto r = http::request("GET", api_ + "/v1/runs/" + id, "", 5000);
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

  // Waits until every run has ended (not "running"); describes the last one seen running.
  ::testing::AssertionResult wait_ended(const std::vector<std::string>& ids) {
    std::string last;
    return wait_until(
        [&] {
          for (const auto& id : ids) {
            auto [code, run] = get_run(id);
            if (code != 200 || run.value("status", "running") == "running") {
              last = ns_ + " " + id + ": " + std::to_string(code) + " " + run.dump();
              return false;
            }
          }
          return true;
        },
        seconds(120), [&] { return last + "\ncoordinator log:\n" + coordinator_log(); }, milliseconds(100));
  }

  std::string coordinator_log() const { return read_file(dir_ + "/coordinator.log"); }
  const std::string& ns() const { return ns_; }

 private:
  std::string ns_, brokers_, redis_, dir_, api_;
  Process coordinator_;
  std::map<std::string, Process> workers_;
};

std::unique_ptr<redis::Client> connect(const RedisServer& server) {
  auto ep = redis::parse_endpoint(server.address());
  if (!ep) return nullptr;
  auto c = redis::Client::connect(*ep);
  if (!c) return nullptr;
  return std::move(c).value();
}

// Every key in Redis (SCAN, bounded).
std::vector<std::string> all_keys(redis::Client& c) {
  std::vector<std::string> out;
  std::string cursor = "0";
  for (int i = 0; i < 100000; ++i) {
    auto r = c.command({"SCAN", cursor, "COUNT", "1000"});
    if (!r || !r->is_array() || r->elements.size() != 2) {
      ADD_FAILURE() << "SCAN failed";
      break;
    }
    cursor = r->elements[0].str;
    for (const auto& e : r->elements[1].elements) out.push_back(e.str);
    if (cursor == "0") break;
  }
  return out;
}

void flatten(const redis::Reply& r, std::string& out) {
  out += r.str;
  out += '\n';
  for (const auto& e : r.elements) flatten(e, out);
}

// The key's whole content as text, whatever its type.
std::string key_content(redis::Client& c, const std::string& key) {
  auto type = c.command({"TYPE", key});
  if (!type) return "";
  const std::string& t = type->str;
  std::vector<std::string_view> cmd;
  if (t == "string") cmd = {"GET", key};
  else if (t == "hash") cmd = {"HGETALL", key};
  else if (t == "list") cmd = {"LRANGE", key, "0", "-1"};
  else if (t == "set") cmd = {"SMEMBERS", key};
  else if (t == "zset") cmd = {"ZRANGE", key, "0", "-1", "WITHSCORES"};
  else if (t == "stream") cmd = {"XRANGE", key, "-", "+"};
  else return "<type " + t + ">";
  auto r = c.command(cmd);
  std::string out;
  if (r) flatten(*r, out);
  return out;
}

// Topic names on the broker, from `kcat -L -J` (metadata only: creates nothing).
std::set<std::string> list_topics(const std::string& brokers) {
  std::string dir = make_temp_dir("baton-e2e-kcat");
  Process kcat;
  std::set<std::string> out;
  if (kcat.start({"kcat", "-L", "-J", "-b", brokers}, dir + "/out")) {
    int st = -1;
    if (kcat.wait_exit(seconds(30), &st) && st == 0) {
      json meta = json::parse(read_file(dir + "/out"), nullptr, false);
      if (meta.is_object())
        for (const auto& t : meta.value("topics", json::array())) out.insert(t.value("topic", ""));
    }
  }
  remove_tree(dir);
  return out;
}

// Every message now on `topic`, read from the beginning by a fresh group.
// Stops after `idle_polls` empty polls in a row (bounded overall).
std::vector<kafka::Message> read_topic(const std::string& brokers, const std::string& topic) {
  kafka::KafkaConfig kc;
  kc.brokers = brokers;
  std::vector<kafka::Message> out;
  auto c = kafka::make_consumer(kc, "ns-test-reader-" + random_id());
  if (!c) {
    ADD_FAILURE() << c.status().to_string();
    return out;
  }
  if (!(*c)->subscribe({topic})) {
    ADD_FAILURE() << "cannot subscribe to " << topic;
    return out;
  }
  int idle = 0;
  // The first polls include the group join; afterwards a few empty polls in a row mean the end.
  for (int i = 0; i < 600 && (out.empty() ? idle < 60 : idle < 10); ++i) {
    std::size_t before = out.size();
    (void)(*c)->poll_batch(out, 500, 200);
    idle = out.size() == before ? idle + 1 : 0;
  }
  (*c)->close();
  return out;
}

struct Started {
  std::string run_id;
  std::string lead_id;
};

TEST(Namespaces, TwoFleetsOnOneBrokerAndRedisStayIsolated) {
  // The broker pre-creates staging's topics (--namespace staging --roles ...);
  // prod's are created when first used, as on a cluster with auto-creation.
  Broker broker(4, "staging", "responder,qualifier,booker");
  RedisServer redis_server;
  ASSERT_TRUE(broker.ok() && redis_server.ok());
  auto redis = connect(redis_server);
  ASSERT_TRUE(redis);

  NsFleet staging("staging", broker, redis_server);
  NsFleet prod("prod", broker, redis_server);
  ASSERT_TRUE(staging.start());
  ASSERT_TRUE(prod.start());

  // Runs of one namespace only (their own dedupe keys), and one dedupe key used
  // in both with different leads: L-001 completes, L-007 misses a field and
  // ends in the exception queue.
  std::vector<Started> staging_only, prod_only;
  for (const char* id : {"L-001", "L-002", "L-003"})
    staging_only.push_back({staging.start_run(lead(id), std::string("staging-only-") + id), id});
  for (const char* id : {"L-005", "L-006"}) prod_only.push_back({prod.start_run(lead(id), std::string("prod-only-") + id), id});
  json shared_staging_input = lead("L-001");
  json shared_prod_input = lead("L-007");
  std::string shared_staging = staging.start_run(shared_staging_input, "shared-key");
  std::string shared_prod = prod.start_run(shared_prod_input, "shared-key");
  for (const auto& s : staging_only) ASSERT_FALSE(s.run_id.empty());
  for (const auto& s : prod_only) ASSERT_FALSE(s.run_id.empty());
  ASSERT_FALSE(shared_staging.empty());
  ASSERT_FALSE(shared_prod.empty());
  // The run id is derived from (workflow, dedupe key): the same in both
  // namespaces, and the namespace keeps the two runs apart.
  EXPECT_EQ(shared_staging, shared_prod);
  // Within a namespace the dedupe key still deduplicates.
  EXPECT_EQ(staging.start_run(lead("L-002"), "shared-key"), shared_staging);

  std::vector<std::string> staging_ids = {shared_staging}, prod_ids = {shared_prod};
  for (const auto& s : staging_only) staging_ids.push_back(s.run_id);
  for (const auto& s : prod_only) prod_ids.push_back(s.run_id);
  ASSERT_TRUE(staging.wait_ended(staging_ids));
  ASSERT_TRUE(prod.wait_ended(prod_ids));

  // 1. Each run went through its own namespace's workers only.
  auto check_workers = [&](NsFleet& fleet, const std::string& id) {
    auto [code, run] = fleet.get_run(id);
    ASSERT_EQ(code, 200) << run.dump();
    int ran = 0;
    for (const auto& step : run["steps"]) {
      std::string w = step.value("worker_id", "");
      if (w.empty()) continue;  // not reached (a run that ended in the exception queue)
      ++ran;
      EXPECT_EQ(w, fleet.worker_id(step.value("role", ""))) << fleet.ns() << " " << id << ": " << step.dump();
    }
    EXPECT_GT(ran, 0) << run.dump();
    // The audit trail names the same workers as the actors of the results.
    auto audit = redis->command({"XRANGE", keys::run_audit(fleet.ns(), id), "-", "+"});
    ASSERT_TRUE(audit && audit->is_array());
    int results = 0;
    for (const auto& entry : audit->elements) {
      std::map<std::string, std::string> f;
      const auto& kv = entry.elements.at(1).elements;
      for (std::size_t i = 0; i + 1 < kv.size(); i += 2) f[kv[i].str] = kv[i + 1].str;
      if (f["kind"] != "step_result") continue;
      ++results;
      EXPECT_EQ(f["actor"].rfind(fleet.ns() + "-", 0), 0u) << fleet.ns() << " " << id << ": " << f["actor"];
    }
    EXPECT_GE(results, ran) << fleet.ns() << " " << id;  // a retried step has one result per attempt
  };
  for (const auto& id : staging_ids) check_workers(staging, id);
  for (const auto& id : prod_ids) check_workers(prod, id);

  // 2. The other namespace's API does not know a namespace's own runs.
  for (const auto& s : staging_only) {
    EXPECT_EQ(prod.get_run(s.run_id).first, 404) << s.run_id;
    EXPECT_EQ(staging.get_run(s.run_id).first, 200) << s.run_id;
  }
  for (const auto& s : prod_only) {
    EXPECT_EQ(staging.get_run(s.run_id).first, 404) << s.run_id;
    EXPECT_EQ(prod.get_run(s.run_id).first, 200) << s.run_id;
  }
  for (const auto& s : staging_only) EXPECT_EQ(staging.get_run(s.run_id).second.value("status", ""), "completed");

  // 3. The same dedupe key: two independent runs, each with its own input and outcome.
  {
    auto [sc, srun] = staging.get_run(shared_staging);
    auto [pc, prun] = prod.get_run(shared_prod);
    ASSERT_EQ(sc, 200);
    ASSERT_EQ(pc, 200);
    EXPECT_EQ(srun.value("dedupe_key", ""), "shared-key");
    EXPECT_EQ(prun.value("dedupe_key", ""), "shared-key");
    json shown = shared_staging_input;
    shown["email"] = "[redacted]";  // a sensitive field of the lead record: never in an API answer
    EXPECT_EQ(srun["input"], shown);
    EXPECT_EQ(prun["input"], shared_prod_input);
    EXPECT_EQ(srun.value("status", ""), "completed") << srun.dump();
    EXPECT_EQ(prun.value("status", ""), "exception") << prun.dump();
    EXPECT_EQ(srun.value("record_key", ""), "lead:L-001");
    EXPECT_EQ(prun.value("record_key", ""), "lead:L-007");
  }

  // 4. Redis: every key is under one namespace; staging's own runs and leads
  // appear only in staging keys, prod's only in prod keys.
  std::vector<std::string> all = all_keys(*redis);
  ASSERT_FALSE(all.empty());
  std::set<std::string> staging_keys, prod_keys;
  for (const auto& k : all) {
    if (k.rfind("baton:staging:", 0) == 0) {
      staging_keys.insert(k);
    } else if (k.rfind("baton:prod:", 0) == 0) {
      prod_keys.insert(k);
    } else {
      ADD_FAILURE() << "key outside both namespaces: " << k;
    }
  }
  for (const auto& s : staging_only) {
    EXPECT_TRUE(staging_keys.count(keys::run("staging", s.run_id))) << s.run_id;
    EXPECT_TRUE(staging_keys.count(keys::run_audit("staging", s.run_id))) << s.run_id;
    EXPECT_TRUE(staging_keys.count(keys::record("staging", "lead:" + s.lead_id))) << s.lead_id;
  }
  for (const auto& s : prod_only) {
    EXPECT_TRUE(prod_keys.count(keys::run("prod", s.run_id))) << s.run_id;
    EXPECT_TRUE(prod_keys.count(keys::record("prod", "lead:" + s.lead_id))) << s.lead_id;
  }
  EXPECT_TRUE(staging_keys.count(keys::run("staging", shared_staging)));
  EXPECT_TRUE(prod_keys.count(keys::run("prod", shared_prod)));
  // L-001 ran in staging only (its shared-key twin in prod is L-007).
  EXPECT_TRUE(staging_keys.count(keys::record("staging", "lead:L-001")));
  EXPECT_FALSE(prod_keys.count(keys::record("prod", "lead:L-001")));
  EXPECT_FALSE(staging_keys.count(keys::record("staging", "lead:L-007")));

  auto mentions_any = [](const std::string& text, const std::vector<Started>& runs) -> std::string {
    for (const auto& s : runs) {
      if (text.find(s.run_id) != std::string::npos) return s.run_id;
      if (text.find("\"" + s.lead_id + "\"") != std::string::npos || text.find(":" + s.lead_id) != std::string::npos)
        return s.lead_id;
    }
    return "";
  };
  std::size_t scanned = 0;
  // The API call log records what each caller asked for, including the other
  // namespace's run ids this test asks about (answered 404): not run data.
  auto content = [&](const std::string& k) {
    return k == keys::api_audit("prod") || k == keys::api_audit("staging") ? std::string() : key_content(*redis, k);
  };
  for (const auto& k : prod_keys) {
    std::string hit = mentions_any(k + "\n" + content(k), staging_only);
    EXPECT_TRUE(hit.empty()) << "prod key " << k << " mentions staging's " << hit;
    ++scanned;
  }
  for (const auto& k : staging_keys) {
    std::string hit = mentions_any(k + "\n" + content(k), prod_only);
    EXPECT_TRUE(hit.empty()) << "staging key " << k << " mentions prod's " << hit;
    ++scanned;
  }
  EXPECT_EQ(scanned, all.size());
  std::cout << "redis: " << staging_keys.size() << " staging keys, " << prod_keys.size() << " prod keys scanned\n";

  // 5. Topics: both namespaces' topics exist, and no `baton.` topic of any other namespace.
  std::set<std::string> topics = list_topics(broker.bootstrap());
  for (const std::string ns : {"staging", "prod"}) {
    EXPECT_TRUE(topics.count(keys::events_topic(ns))) << ns;
    for (const auto& role : kRoles) EXPECT_TRUE(topics.count(keys::tasks_topic(ns, role))) << ns << " " << role;
  }
  std::cout << "topics:";
  for (const auto& t : topics) std::cout << " " << t;
  std::cout << "\n";
  for (const auto& t : topics) {
    if (t.rfind("baton.", 0) != 0) continue;
    EXPECT_TRUE(t.rfind("baton.staging.", 0) == 0 || t.rfind("baton.prod.", 0) == 0) << "topic " << t;
  }

  // 6. Each namespace's task topics carry only its own tasks, and its events
  // topic only its own runs' events.
  std::set<std::string> staging_set(staging_ids.begin(), staging_ids.end());
  std::set<std::string> prod_set(prod_ids.begin(), prod_ids.end());
  auto check_topics = [&](const std::string& ns, const std::set<std::string>& own, const std::vector<Started>& other) {
    std::set<std::string> seen_runs;
    std::size_t tasks = 0;
    for (const auto& role : kRoles) {
      for (const auto& m : read_topic(broker.bootstrap(), keys::tasks_topic(ns, role))) {
        baton::v1::Task task;
        ASSERT_TRUE(task.ParseFromString(m.payload)) << ns << " " << role;
        ++tasks;
        EXPECT_EQ(task.namespace_(), ns) << task.ShortDebugString();
        EXPECT_EQ(task.role(), role);
        EXPECT_TRUE(own.count(task.run_id())) << ns << " task of a foreign run: " << task.ShortDebugString();
        std::string hit;
        for (const auto& s : other)
          if (task.input_json().find("\"" + s.lead_id + "\"") != std::string::npos) hit = s.lead_id;
        EXPECT_TRUE(hit.empty()) << ns << " task carries the other namespace's lead " << hit;
        seen_runs.insert(task.run_id());
      }
    }
    EXPECT_EQ(seen_runs, own) << ns << ": every run dispatched at least one task, all on " << ns << " topics";
    EXPECT_GE(tasks, own.size());
    std::size_t events = 0;
    for (const auto& m : read_topic(broker.bootstrap(), keys::events_topic(ns))) {
      baton::v1::RunEvent ev;
      ASSERT_TRUE(ev.ParseFromString(m.payload)) << ns;
      ++events;
      EXPECT_TRUE(own.count(ev.run_id())) << ns << " event of a foreign run: " << ev.ShortDebugString();
      if (ev.has_step_result()) {
        EXPECT_EQ(ev.step_result().worker_id().rfind(ns + "-", 0), 0u) << ev.ShortDebugString();
      }
    }
    EXPECT_GT(events, own.size());
    std::cout << ns << ": " << own.size() << " runs, " << tasks << " tasks, " << events << " events on its topics\n";
  };
  check_topics("staging", staging_set, prod_only);
  check_topics("prod", prod_set, staging_only);

  staging.stop();
  prod.stop();
}

}  // namespace
}  // namespace baton::testing
