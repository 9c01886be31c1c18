// The chaos suite (tests/chaos/README.md). The first tests pin down the parts
// the soak relies on: the effect sink's idempotency, the seeded schedule, and
// that the invariant checker catches each kind of violation on hand-made
// Redis state (a checker that passes everything proves nothing). The last
// test is the soak itself, sized by BATON_CHAOS_* (small by default).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "tests/chaos/checker.h"
#include "tests/chaos/faults.h"
#include "tests/chaos/sink.h"
#include "tests/chaos/soak.h"
#include "tests/support/servers.h"

namespace baton::chaos {
namespace {

using nlohmann::json;

http::Request effect(const std::string& key, const std::string& body = R"({"x":1})") {
  http::Request r;
  r.method = "POST";
  r.path = r.target = "/v1/effects/bookings";
  if (!key.empty()) r.headers["idempotency-key"] = key;
  r.body = body;
  return r;
}

TEST(ChaosSink, AppliesAnEffectOncePerKeyAndCountsDuplicateDeliveries) {
  EffectSink sink;
  auto first = sink.handle(effect("r1:book:1"));
  auto again = sink.handle(effect("r1:book:1"));
  auto other = sink.handle(effect("r1:book:2"));
  EXPECT_EQ(first.status, 201);
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(other.status, 201);
  json a = json::parse(first.body), b = json::parse(again.body), c = json::parse(other.body);
  EXPECT_EQ(a["effect_id"], b["effect_id"]);
  EXPECT_NE(a["effect_id"], c["effect_id"]);
  EXPECT_EQ(a["x"], 1);
  EXPECT_TRUE(a["applied"].get<bool>());
  EXPECT_FALSE(b["applied"].get<bool>());
  EXPECT_EQ(sink.applied_count(), 2u);
  auto reqs = sink.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].run_id, "r1");
  EXPECT_EQ(reqs[0].step, "book");
  EXPECT_EQ(reqs[0].attempt, 1u);
  EXPECT_TRUE(reqs[0].applied);
  EXPECT_FALSE(reqs[1].applied);
}

TEST(ChaosSink, RefusesRequestsWithoutAKeyAndFailsOnRequest) {
  EffectSink sink;
  EXPECT_EQ(sink.handle(effect("")).status, 400);
  EXPECT_EQ(sink.handle(effect("no-attempt")).status, 400);
  EXPECT_EQ(sink.handle(effect("r:s:0")).status, 400);
  EXPECT_EQ(sink.handle(effect("r:s:1", "[1]")).status, 400);
  sink.fail_next(2);
  EXPECT_EQ(sink.handle(effect("r:s:1")).status, 503);
  EXPECT_EQ(sink.handle(effect("r:s:1")).status, 503);
  EXPECT_EQ(sink.handle(effect("r:s:1")).status, 201);
  EXPECT_EQ(sink.applied_count(), 1u);
  // Slow answers are still applied once.
  sink.slow_next(1, 50);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(sink.handle(effect("r:s:2")).status, 201);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(50));
  EXPECT_EQ(sink.handle(effect("r:s:2")).status, 200);
  EXPECT_EQ(sink.applied_count(), 2u);
}

TEST(ChaosSink, ParsesKeysWhoseStepIsAnInstance) {
  std::string run, step;
  uint32_t attempt = 0;
  ASSERT_TRUE(parse_idempotency_key("abc:draft#2:3", &run, &step, &attempt));
  EXPECT_EQ(run, "abc");
  EXPECT_EQ(step, "draft#2");
  EXPECT_EQ(attempt, 3u);
  EXPECT_FALSE(parse_idempotency_key("abc::3", &run, &step, &attempt));
  EXPECT_FALSE(parse_idempotency_key("abc:s:x", &run, &step, &attempt));
}

TEST(ChaosSchedule, IsAFunctionOfTheSeedAndCoversEveryKind) {
  ScheduleOptions o;
  o.count = 40;
  o.first_ms = 1000;
  o.last_ms = 50000;
  auto a = make_schedule(42, o), b = make_schedule(42, o), c = make_schedule(43, o);
  ASSERT_EQ(a.size(), 40u);
  std::map<FaultKind, int> kinds;
  bool long_pause = false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].describe(), b[i].describe());
    EXPECT_EQ(a[i].pick, b[i].pick);
    EXPECT_GE(a[i].at_ms, o.first_ms);
    EXPECT_LE(a[i].at_ms, o.last_ms);
    if (i) {
      EXPECT_LE(a[i - 1].at_ms, a[i].at_ms);
    }
    ++kinds[a[i].kind];
  }
  EXPECT_EQ(kinds.size(), static_cast<std::size_t>(kFaultKinds));
  std::string da, dc;
  for (const auto& f : a) da += f.describe();
  for (const auto& f : c) dc += f.describe();
  EXPECT_NE(da, dc);
  // Over many seeds some pauses outlast the group session.
  for (uint64_t s = 0; s < 20 && !long_pause; ++s)
    for (const auto& f : make_schedule(s, o))
      if ((f.kind == FaultKind::kPauseWorker || f.kind == FaultKind::kPauseCoordinator) &&
          f.duration_ms > o.session_timeout_ms)
        long_pause = true;
  EXPECT_TRUE(long_pause);
}

TEST(ChaosChecker, PercentileIsByNearestRank) {
  std::vector<int64_t> v = {5, 1, 4, 2, 3};
  EXPECT_EQ(percentile(v, 50), 3);
  EXPECT_EQ(percentile(v, 99), 5);
  std::vector<int64_t> none;
  EXPECT_EQ(percentile(none, 50), -1);
}

// Hand-made Redis state shaped like the coordinator's (docs/ARCHITECTURE.md §4).
class ChaosCheckerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.ok());
    auto c = redis::Client::connect(*redis::parse_endpoint(redis_.address()));
    ASSERT_TRUE(c) << c.status().to_string();
    rc_ = std::move(c).value();
  }

  void cmd(std::vector<std::string> argv) {
    std::vector<std::string_view> v(argv.begin(), argv.end());
    auto r = rc_->command(v);
    ASSERT_TRUE(r) << r.status().to_string();
    ASSERT_FALSE(r->is_error()) << r->str;
  }
  void audit(const std::string& run, const std::string& kind, const json& detail) {
    cmd({"XADD", keys::run_audit(kNs, run), "*", "kind", kind, "at", "1", "actor", "t", "detail", detail.dump()});
  }
  // A completed lead run: respond and book (attempt 2 accepted, attempt 1
  // timed out after its effect was applied), record lead:<id> written twice.
  std::string completed_run(const std::string& id) {
    std::string run = "run-" + id, rec = "lead:" + id;
    cmd({"HSET", keys::run(kNs, run), "status", "completed", "reason", "", "record", rec, "created", "1000",
         "ended", "3000", "step:respond", R"({"s":"succeeded","a":1})", "step:book", R"({"s":"succeeded","a":2})"});
    cmd({"HSET", keys::run_ctx(kNs, run), "out:book", json{{"booking_id", "E-" + id}}.dump()});
    audit(run, "run_started", json::object());
    audit(run, "task_dispatched", {{"step", "respond"}, {"attempt", 1}});
    audit(run, "step_result", {{"step", "respond"}, {"attempt", 1}, {"status", "OK"}});
    audit(run, "record_written", {{"step", "respond"}, {"record", rec}, {"version", 1},
                                  {"fields", {{"email", {{"old", nullptr}, {"new", "[redacted]"}}},
                                              {"source", {{"old", nullptr}, {"new", "web"}}}}}});
    audit(run, "task_dispatched", {{"step", "book"}, {"attempt", 1}});
    audit(run, "task_dispatched", {{"step", "book"}, {"attempt", 2}});
    audit(run, "step_result", {{"step", "book"}, {"attempt", 2}, {"status", "OK"}});
    audit(run, "stale_result", {{"step", "book"}, {"attempt", 1}});
    audit(run, "record_written", {{"step", "book"}, {"record", rec}, {"version", 2},
                                  {"fields", {{"booking_id", {{"old", nullptr}, {"new", "E-" + id}}}}}});
    audit(run, "run_completed", json::object());
    cmd({"HSET", keys::record(kNs, rec), "_v", "2", "email", R"("a@b.c")", "source", R"("web")", "booking_id",
         json("E-" + id).dump(), "_w:source", run + ":respond"});
    in_.runs.push_back({run, "lead-to-meeting", 500});
    SinkRequest s;
    s.run_id = run;
    s.step = "book";
    s.kind = "bookings";
    s.status = 201;
    s.applied = true;
    s.attempt = 1;
    s.key = run + ":book:1";
    s.effect_id = "E-old-" + id;
    in_.sink.push_back(s);  // the timed-out attempt's effect (superseded)
    s.attempt = 2;
    s.key = run + ":book:2";
    s.effect_id = "E-" + id;
    in_.sink.push_back(s);
    s.applied = false;
    s.status = 200;
    in_.sink.push_back(s);  // a duplicate delivery of attempt 2
    return run;
  }
  Report run_check() {
    in_.ns = kNs;
    in_.effect_steps = {{"book", "booking_id"}};
    auto r = check(*rc_, in_);
    EXPECT_TRUE(r) << r.status().to_string();
    return r ? *r : Report();
  }
  static bool has(const Report& r, const std::string& invariant) {
    for (const auto& v : r.violations)
      if (v.invariant == invariant) return true;
    return false;
  }

  static constexpr const char* kNs = "chk";
  testing::RedisServer redis_;
  std::unique_ptr<redis::Client> rc_;
  CheckInput in_;
};

TEST_F(ChaosCheckerTest, ACleanSoakPasses) {
  completed_run("1");
  std::string run = "run-x";
  cmd({"HSET", keys::run(kNs, run), "status", "exception", "reason", "needs_review", "ended", "2000"});
  cmd({"ZADD", keys::exceptions(kNs), "1", run});
  audit(run, "run_started", json::object());
  audit(run, "run_exception", {{"reason", "needs_review"}});
  in_.runs.push_back({run, "invoice-processing", 1000});
  Report r = run_check();
  EXPECT_TRUE(r.ok()) << r.violations_text();
  EXPECT_EQ(r.runs, 2u);
  EXPECT_EQ(r.completed, 1u);
  EXPECT_EQ(r.exceptions, 1u);
  EXPECT_EQ(r.exception_reasons["needs_review"], 1u);
  EXPECT_EQ(r.superseded_effects, 1u);
  EXPECT_EQ(r.duplicate_deliveries, 1u);
  EXPECT_EQ(r.effects_applied, 2u);
  EXPECT_EQ(r.records, 1u);
  EXPECT_EQ(r.retried_attempts, 1u);
  EXPECT_EQ(r.stale_results, 1u);
  EXPECT_EQ(r.p50_ms, 1000);  // 2000 - 1000 and 3000 - 500: nearest rank
  EXPECT_EQ(r.p99_ms, 2500);
  EXPECT_NE(r.table().find("p99 2.50 s"), std::string::npos) << r.table();
}

TEST_F(ChaosCheckerTest, ARunMissingFromRedisIsLost) {
  completed_run("1");
  in_.runs.push_back({"never-written", "lead-to-meeting", 1});
  Report r = run_check();
  EXPECT_EQ(r.lost, 1u);
  EXPECT_TRUE(has(r, "lost"));
}

TEST_F(ChaosCheckerTest, ARunStillRunningIsStuckAndAnExceptionNeedsAReasonAndTheQueue) {
  cmd({"HSET", keys::run(kNs, "r-run"), "status", "running", "step:a", R"({"s":"running","a":1})"});
  audit("r-run", "run_started", json::object());
  cmd({"HSET", keys::run(kNs, "r-exc"), "status", "exception", "reason", "", "ended", "5"});
  audit("r-exc", "run_started", json::object());
  audit("r-exc", "run_exception", json::object());
  in_.runs = {{"r-run", "w", 1}, {"r-exc", "w", 1}};
  Report r = run_check();
  EXPECT_EQ(r.stuck, 1u);
  EXPECT_TRUE(has(r, "stuck"));
  int ended = 0;
  for (const auto& v : r.violations) ended += v.invariant == "ended";
  EXPECT_EQ(ended, 2) << r.violations_text();  // no reason, not in the zset
}

TEST_F(ChaosCheckerTest, PartitionSetsMustMatchTheRunsState) {
  std::string done = completed_run("1");
  cmd({"HSET", keys::run(kNs, done), "partition", "3"});
  cmd({"SADD", keys::active(kNs, 3), done});  // ended, yet a takeover would reload it
  // Running, in active:<p>, its step's timeout timer in place: fine.
  cmd({"HSET", keys::run(kNs, "ok-run"), "status", "running", "partition", "3", "step:a", R"({"s":"running","a":2})"});
  cmd({"SADD", keys::active(kNs, 3), "ok-run"});
  cmd({"ZADD", keys::timers(kNs, 3), "1", "ok-run|timeout|a|2"});
  audit("ok-run", "run_started", json::object());
  // Running but its timer is for another attempt.
  cmd({"HSET", keys::run(kNs, "no-timer"), "status", "running", "partition", "3", "step:a",
       R"({"s":"running","a":1})"});
  cmd({"SADD", keys::active(kNs, 3), "no-timer"});
  cmd({"ZADD", keys::timers(kNs, 3), "1", "no-timer|timeout|a|2"});
  audit("no-timer", "run_started", json::object());
  in_.runs.push_back({"ok-run", "w", 1});
  in_.runs.push_back({"no-timer", "w", 1});
  Report r = run_check();
  std::vector<std::string> got;
  for (const auto& v : r.violations) got.push_back(v.invariant + " " + v.run_id + ": " + v.detail);
  ASSERT_EQ(got.size(), 4u) << r.violations_text();
  // Both running runs are stuck (not ended after the drain), one also lacks its timer.
  EXPECT_EQ(r.stuck, 2u);
  EXPECT_NE(r.violations_text().find("still in active:3"), std::string::npos);
  EXPECT_NE(r.violations_text().find("no-timer: a attempt 1 is running without its timeout timer"), std::string::npos)
      << r.violations_text();
}

TEST_F(ChaosCheckerTest, AResultAppliedTwiceIsAnEventAppliedTwice) {
  std::string run = completed_run("1");
  audit(run, "step_result", {{"step", "respond"}, {"attempt", 1}, {"status", "OK"}});
  Report r = run_check();
  EXPECT_EQ(r.events_applied_twice, 1u);
  EXPECT_TRUE(has(r, "audit"));
}

TEST_F(ChaosCheckerTest, ARecordThatDiffersFromItsAuditReplayIsCaught) {
  completed_run("1");
  cmd({"HSET", keys::record(kNs, "lead:1"), "source", R"("tampered")"});
  Report r = run_check();
  EXPECT_EQ(r.record_mismatches, 1u);
  EXPECT_TRUE(has(r, "record"));
}

TEST_F(ChaosCheckerTest, AVersionGapInARecordIsCaught) {
  std::string run = completed_run("1");
  audit(run, "record_written", {{"step", "book"}, {"record", "lead:1"}, {"version", 4},
                                {"fields", {{"booking_id", {{"old", "E-1"}, {"new", "E-1"}}}}}});
  cmd({"HSET", keys::record(kNs, "lead:1"), "_v", "4"});
  Report r = run_check();
  EXPECT_TRUE(has(r, "record")) << r.violations_text();
}

TEST_F(ChaosCheckerTest, AnEffectOfAnAttemptNeverDispatchedIsADuplicatedEffect) {
  std::string run = completed_run("1");
  SinkRequest s = in_.sink.back();
  s.attempt = 3;
  s.key = run + ":book:3";
  s.applied = true;
  s.status = 201;
  s.effect_id = "E-extra";
  in_.sink.push_back(s);
  Report r = run_check();
  EXPECT_EQ(r.duplicated_effects, 1u);
  EXPECT_TRUE(has(r, "effect"));
}

TEST_F(ChaosCheckerTest, AnAcceptedResultWhoseEffectIsMissingOrAnotherIsCaught) {
  completed_run("1");
  completed_run("2");
  // Run 1: the sink never applied the accepted attempt.
  in_.sink.erase(std::remove_if(in_.sink.begin(), in_.sink.end(),
                                [](const SinkRequest& s) { return s.key == "run-1:book:2"; }),
                 in_.sink.end());
  // Run 2: the output names another effect than the one applied for its attempt.
  cmd({"HSET", keys::run_ctx(kNs, "run-2"), "out:book", R"({"booking_id":"E-old-2"})"});
  Report r = run_check();
  EXPECT_EQ(r.missing_effects, 1u);
  EXPECT_EQ(r.duplicated_effects, 1u) << r.violations_text();
}

// The soak: the real binaries under a seeded fault schedule. Sized by
// BATON_CHAOS_RUNS / _FAULTS / _SECONDS; BATON_CHAOS_SEED replays a schedule.
TEST(Chaos, SoakUnderFaultsKeepsEveryGuarantee) {
  SoakOptions o = SoakOptions::from_env();
  std::printf("[chaos] seed %llu: %s\n", static_cast<unsigned long long>(o.seed), o.replay_env().c_str());
  std::fflush(stdout);
  SoakResult r = run_soak(o);
  ASSERT_TRUE(r.setup) << r.setup.to_string() << "\n" << r.logs << "\nseed " << o.seed << " (" << o.replay_env() << ")";
  std::printf("%s", r.report.table().c_str());
  std::printf("[chaos] wall %.1f s, %zu gate decisions, %zu duplicate messages delivered, work dir %s\n",
              static_cast<double>(r.wall_ms) / 1000.0, r.decisions, r.duplicates,
              r.ok() ? "(removed)" : r.work_dir.c_str());
  std::string exits;
  for (const auto& e : r.exits) exits += "  " + e.member + ": " + e.how + "\n";
  std::string timeline;
  for (const auto& l : r.timeline) timeline += "  " + l + "\n";
  EXPECT_TRUE(r.ok()) << "chaos soak failed; replay with: " << o.replay_env() << "\n"
                      << r.report.violations_text() << (r.not_started ? std::to_string(r.not_started) +
                                                                          " run(s) could not be started\n"
                                                                    : "")
                      << (exits.empty() ? "" : "members that exited on their own:\n" + exits)
                      << "fault timeline:\n" << timeline << "logs (tails):\n" << r.logs;
  EXPECT_GE(r.report.runs, static_cast<std::size_t>(o.runs) - r.not_started);
}

}  // namespace
}  // namespace baton::chaos
