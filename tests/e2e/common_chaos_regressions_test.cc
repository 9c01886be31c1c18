// Regression tests for bugs the chaos suite (tests/chaos/README.md) found,
// each replaying the interleaving deterministically with the real
// coordinator binary, a real redis-server and baton-broker; the test plays
// the worker (and, where needed, the dead coordinator's half-done work).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
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

constexpr const char* kNs = "regress";

// One step that writes the shared record, with a short timeout.
constexpr const char* kWorkflow = R"(name: takeover
version: 1
record: "doc:{{input.id}}"
steps:
  - id: write
    role: writer
    agent: { kind: echo }
    writes: [note]
    output: { note: string }
    timeout: 1s
    retry: { max_attempts: 3, backoff: 1s }
)";

std::map<std::string, std::string> hgetall(redis::Client& c, const std::string& key) {
  std::map<std::string, std::string> out;
  auto r = c.command({"HGETALL", key});
  if (r && r->is_array())
    for (std::size_t i = 0; i + 1 < r->elements.size(); i += 2) out[r->elements[i].str] = r->elements[i + 1].str;
  return out;
}

// Found by the chaos soak (seed 11, BATON_CHAOS_RUNS=300 BATON_CHAOS_FAULTS=30):
// a coordinator applied a result's record write (phase 1) and died before the
// run's transition (phase 2). The new owner took the partition over, fired the
// attempt's due timeout before it read the redelivered result, and then
// ignored the result as stale: the record kept a write no audit entry shows
// (invariant: every record equals the replay of its audit trail).
TEST(ChaosRegression, ATakeoverAppliesAHalfAppliedResultBeforeItsDueTimeout) {
  Broker broker(4, kNs, "writer");
  RedisServer redis;
  ASSERT_TRUE(broker.ok() && redis.ok());
  std::string dir = make_temp_dir("baton-regress");
  std::filesystem::create_directories(dir + "/wf");
  std::ofstream(dir + "/wf/takeover.yaml") << kWorkflow;
  auto rc = redis::Client::connect(*redis::parse_endpoint(redis.address()));
  ASSERT_TRUE(rc) << rc.status().to_string();
  redis::Client& r = **rc;

  const int port = free_port();
  const std::string api = "http://127.0.0.1:" + std::to_string(port);
  std::vector<std::string> argv = {bin_dir() + "/baton-coordinator", "--brokers", broker.bootstrap(), "--redis",
                                   redis.address(), "--namespace", kNs, "--workflows", dir + "/wf", "--http",
                                   "127.0.0.1:" + std::to_string(port)};
  auto ready = [&](Process& p) {
    return wait_until(
        [&] {
          auto h = http::request("GET", api + "/readyz", "", 1000);
          return (h && h->status == 200) || !p.running();
        },
        seconds(60), [&] { return read_file(dir + "/coordinator.log"); });
  };
  Process coordinator;
  ASSERT_TRUE(coordinator.start(argv, dir + "/coordinator.log"));
  ASSERT_TRUE(ready(coordinator));

  auto started = http::request("POST", api + "/v1/runs",
                               json{{"workflow", "takeover"}, {"input", {{"id", "d1"}, {"note", "hi"}}}}.dump());
  ASSERT_TRUE(started && started->status == 202) << (started ? started->body : started.status().to_string());
  const std::string run = json::parse(started->body)["run_id"];
  const std::string run_key = keys::run(kNs, run);
  ASSERT_TRUE(wait_until([&] { return hgetall(r, run_key).count("step:write") > 0; }, seconds(30)));

  // The owner dies after phase 1 of the result of attempt 1: the record write
  // is applied (and memoised), the run's transition is not.
  coordinator.kill();
  const std::string ikey = run + ":write:1";
  auto w = r.command({"FCALL", "baton_record_write", "2", keys::record(kNs, "doc:d1"),
                      keys::record_write_memo(kNs, "doc:d1", ikey), ikey, "0", run + ":write", "604800", "1", "note",
                      "1", "note", "\"hi\""});
  ASSERT_TRUE(w && w->is_array() && !w->elements.empty() && w->elements[0].str == "OK")
      << (w ? w->str : w.status().to_string());
  baton::v1::RunEvent ev;
  ev.set_run_id(run);
  ev.set_event_id(random_id());
  ev.set_produced_unix_ms(now_unix_ms());
  auto* sr = ev.mutable_step_result();
  sr->set_step_id("write");
  sr->set_attempt(1);
  sr->set_status(baton::v1::StepResult::OK);
  sr->set_output_json(R"({"note":"hi"})");
  sr->set_writes_json(R"({"note":"hi"})");
  sr->set_worker_id("test-worker");
  kafka::KafkaConfig kc;
  kc.brokers = broker.bootstrap();
  auto producer = kafka::make_producer(kc, true);
  ASSERT_TRUE(producer);
  auto done = std::make_shared<std::promise<Status>>();
  auto fut = done->get_future();
  ASSERT_TRUE((*producer)->produce(keys::events_topic(kNs), run, ev.SerializeAsString(),
                                   [done](const Status& s) { done->set_value(s); }));
  ASSERT_EQ(fut.wait_for(seconds(10)), std::future_status::ready);
  ASSERT_TRUE(fut.get());
  // The attempt's timeout (1 s) is due before a new owner starts.
  auto step = parse_json(hgetall(r, run_key)["step:write"]);
  ASSERT_TRUE(step);
  const int64_t dispatched = (*step)["d"].get<int64_t>();
  ASSERT_TRUE(wait_until([&] { return now_unix_ms() > dispatched + 1500; }, seconds(10)));

  ASSERT_TRUE(coordinator.start(argv, dir + "/coordinator.log"));
  ASSERT_TRUE(ready(coordinator));
  ASSERT_TRUE(wait_until([&] { return hgetall(r, run_key)["status"] == "completed"; }, seconds(30),
                         [&] { return json(hgetall(r, run_key)).dump(); }));

  // The result of attempt 1 was applied, with its record write in the audit
  // trail; the timeout did not pre-empt it.
  auto after = parse_json(hgetall(r, run_key)["step:write"]);
  ASSERT_TRUE(after);
  EXPECT_EQ((*after)["a"], 1);
  EXPECT_EQ((*after)["s"], "succeeded");
  int written = 0, stale = 0, timeouts = 0;
  for (const auto& a : read_run_audit(r, kNs, run)) {
    if (a.kind == "record_written" && a.detail.value("version", 0) == 1) ++written;
    if (a.kind == "stale_result") ++stale;
    if (a.kind == "step_timeout") ++timeouts;
  }
  EXPECT_EQ(written, 1);
  EXPECT_EQ(stale, 0);
  EXPECT_EQ(timeouts, 0);
  EXPECT_EQ(hgetall(r, keys::record(kNs, "doc:d1"))["_v"], "1");
  coordinator.stop();
  remove_tree(dir);
}

// The other side of the same race: a coordinator paused past its group
// session (a zombie, as the chaos suite's long pause_coordinator makes) wakes
// up with a late result of an attempt the new owner has already timed out.
// Its record write (phase 1 is not fenced by the partition epoch) must write
// nothing, else the record keeps a stale attempt's write that no audit entry
// shows.
TEST(ChaosRegression, ALateRecordWriteOfATimedOutAttemptWritesNothing) {
  Broker broker(4, kNs, "writer");
  RedisServer redis;
  ASSERT_TRUE(broker.ok() && redis.ok());
  std::string dir = make_temp_dir("baton-regress");
  std::filesystem::create_directories(dir + "/wf");
  std::ofstream(dir + "/wf/takeover.yaml") << kWorkflow;
  auto rc = redis::Client::connect(*redis::parse_endpoint(redis.address()));
  ASSERT_TRUE(rc) << rc.status().to_string();
  redis::Client& r = **rc;

  const int port = free_port();
  const std::string api = "http://127.0.0.1:" + std::to_string(port);
  Process coordinator;
  ASSERT_TRUE(coordinator.start({bin_dir() + "/baton-coordinator", "--brokers", broker.bootstrap(), "--redis",
                                 redis.address(), "--namespace", kNs, "--workflows", dir + "/wf", "--http",
                                 "127.0.0.1:" + std::to_string(port)},
                                dir + "/coordinator.log"));
  ASSERT_TRUE(wait_until(
      [&] {
        auto h = http::request("GET", api + "/readyz", "", 1000);
        return h && h->status == 200;
      },
      seconds(60), [&] { return read_file(dir + "/coordinator.log"); }));
  auto started = http::request("POST", api + "/v1/runs",
                               json{{"workflow", "takeover"}, {"input", {{"id", "d2"}, {"note", "hi"}}}}.dump());
  ASSERT_TRUE(started && started->status == 202);
  const std::string run = json::parse(started->body)["run_id"];
  const std::string run_key = keys::run(kNs, run);
  // No worker answers: attempt 1 times out and attempt 2 is dispatched.
  ASSERT_TRUE(wait_until(
      [&] {
        auto s = parse_json(hgetall(r, run_key)["step:write"]);
        return s && s->is_object() && s->value("a", 0) >= 2;
      },
      seconds(30), [&] { return json(hgetall(r, run_key)).dump(); }));

  // The zombie's phase 1 for attempt 1, exactly as the coordinator sends it.
  const std::string ikey = run + ":write:1";
  auto w = r.command({"FCALL", "baton_record_write", "2", keys::record(kNs, "doc:d2"),
                      keys::record_write_memo(kNs, "doc:d2", ikey), ikey, "0", run + ":write", "604800", "1", "note",
                      "1", "note", "\"late\""});
  ASSERT_TRUE(w && w->is_array() && !w->elements.empty()) << (w ? w->str : w.status().to_string());
  EXPECT_EQ(w->elements[0].str, "COLLISION");
  EXPECT_TRUE(hgetall(r, keys::record(kNs, "doc:d2")).empty());
  coordinator.stop();
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
