// The `baton` Redis Functions library (common/redis/baton.lua) against a real
// redis-server: baton_apply (fencing, offsets, run keys, outbox, timers, audit,
// active set, exception queue), baton_record_write (permissions, versions,
// idempotency memo) and ensure_library (load, idempotence, upgrade).
// Also measures pipelined baton_apply throughput (printed, not asserted).
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/redis/client.h"
#include "common/util/keys.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::redis {
namespace {

using baton::testing::RedisServer;

constexpr const char* kNs = "t";
constexpr int32_t kPartition = 3;

using Pairs = std::vector<std::pair<std::string, std::string>>;

// One baton_apply call, in the library's argument layout.
struct Apply {
  std::string epoch = "0";
  std::string offset = "0";
  std::string mode = "new";
  std::string run_id = "r1";
  std::string now = "1000";
  Pairs run_fields;
  Pairs ctx_fields;
  Pairs outbox_puts;
  std::vector<std::string> outbox_dels;
  Pairs timer_adds;  // (member, due_ms)
  std::vector<std::string> timer_dels;
  std::vector<std::array<std::string, 4>> audit;  // kind, at_ms, actor, detail
  std::string ending;
  std::string reason;

  // The whole FCALL argv (owned strings; see views()).
  std::vector<std::string> argv() const {
    std::vector<std::string> a = {"FCALL",
                                  "baton_apply",
                                  "9",
                                  keys::run(kNs, run_id),
                                  keys::run_ctx(kNs, run_id),
                                  keys::run_outbox(kNs, run_id),
                                  keys::run_audit(kNs, run_id),
                                  keys::epoch(kNs, kPartition),
                                  keys::applied(kNs, kPartition),
                                  keys::timers(kNs, kPartition),
                                  keys::active(kNs, kPartition),
                                  keys::exceptions(kNs),
                                  epoch,
                                  offset,
                                  mode,
                                  run_id,
                                  now};
    auto pairs = [&](const Pairs& p) {
      a.push_back(std::to_string(p.size()));
      for (const auto& [f, v] : p) {
        a.push_back(f);
        a.push_back(v);
      }
    };
    auto singles = [&](const std::vector<std::string>& s) {
      a.push_back(std::to_string(s.size()));
      for (const auto& x : s) a.push_back(x);
    };
    pairs(run_fields);
    pairs(ctx_fields);
    pairs(outbox_puts);
    singles(outbox_dels);
    pairs(timer_adds);
    singles(timer_dels);
    a.push_back(std::to_string(audit.size()));
    for (const auto& e : audit) a.insert(a.end(), e.begin(), e.end());
    a.push_back(ending);
    a.push_back(reason);
    return a;
  }
};

std::vector<std::string_view> views(const std::vector<std::string>& a) {
  return std::vector<std::string_view>(a.begin(), a.end());
}

// One baton_record_write call.
struct RecordWrite {
  std::string record = "lead:42";
  std::string idem = "r1:qualify:1";
  std::string version_read = "0";
  std::string writer = "r1:qualify";
  std::string ttl = "3600";
  std::vector<std::string> allowed = {"score", "reason", "owner"};
  Pairs fields;

  std::vector<std::string> argv() const {
    std::vector<std::string> a = {"FCALL", "baton_record_write", "2", keys::record(kNs, record),
                                  keys::record_write_memo(kNs, record, idem), idem, version_read, writer, ttl,
                                  std::to_string(allowed.size())};
    a.insert(a.end(), allowed.begin(), allowed.end());
    a.push_back(std::to_string(fields.size()));
    for (const auto& [f, v] : fields) {
      a.push_back(f);
      a.push_back(v);
    }
    return a;
  }
};

class FunctionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    Endpoint ep;
    ep.port = server_.port();
    auto c = Client::connect(ep);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    c_ = std::move(c).value();
    Status st = ensure_library(*c_);
    ASSERT_TRUE(st.is_ok()) << st.to_string();
  }

  Reply call(const std::vector<std::string>& argv) {
    auto r = c_->command(views(argv));
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : Reply{};
  }
  Reply apply(const Apply& a) { return call(a.argv()); }
  Reply cmd(std::initializer_list<std::string_view> argv) {
    auto r = c_->command(argv);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? std::move(r).value() : Reply{};
  }
  std::string get(const std::string& key) { return cmd({"GET", key}).str; }
  std::string hget(const std::string& key, const std::string& f) { return cmd({"HGET", key, f}).str; }
  bool hexists(const std::string& key, const std::string& f) { return cmd({"HEXISTS", key, f}).integer == 1; }
  bool exists(const std::string& key) { return cmd({"EXISTS", key}).integer == 1; }
  bool is_active(const std::string& run) {
    return cmd({"SISMEMBER", keys::active(kNs, kPartition), run}).integer == 1;
  }
  Reply zscore(const std::string& key, const std::string& m) { return cmd({"ZSCORE", key, m}); }
  int64_t xlen(const std::string& key) { return cmd({"XLEN", key}).integer; }
  // A full snapshot of the keyspace (names only), to check "nothing written".
  int64_t dbsize() { return cmd({"DBSIZE"}).integer; }

  static Apply new_run(std::string run_id, std::string offset) {
    Apply a;
    a.run_id = std::move(run_id);
    a.offset = std::move(offset);
    a.run_fields = {{"workflow", "lead-to-meeting"}, {"version", "3"}, {"status", "running"}};
    a.ctx_fields = {{"input", R"({"lead_id":"42"})"}};
    a.outbox_puts = {{"respond:1", "task-bytes"}};
    a.timer_adds = {{a.run_id + "|timeout|respond|1", "31000"}};
    a.audit = {{{"run_started", "1000", "api", R"({"by":"ops"})"}}};
    return a;
  }

  RedisServer server_;
  std::unique_ptr<Client> c_;
};

// --- baton_apply --------------------------------------------------------------

TEST_F(FunctionsTest, ApplyNewRunWritesEveryKey) {
  Apply a = new_run("r1", "10");
  Reply r = apply(a);
  ASSERT_EQ(r.type, Reply::Type::kStatus) << r.str;
  EXPECT_EQ(r.str, "OK");

  EXPECT_EQ(hget(keys::run(kNs, "r1"), "workflow"), "lead-to-meeting");
  EXPECT_EQ(hget(keys::run(kNs, "r1"), "status"), "running");
  EXPECT_EQ(hget(keys::run_ctx(kNs, "r1"), "input"), R"({"lead_id":"42"})");
  EXPECT_EQ(hget(keys::run_outbox(kNs, "r1"), "respond:1"), "task-bytes");
  EXPECT_EQ(zscore(keys::timers(kNs, kPartition), "r1|timeout|respond|1").str, "31000");
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "10");
  EXPECT_TRUE(is_active("r1"));
  EXPECT_FALSE(exists(keys::exceptions(kNs)));

  Reply audit = cmd({"XRANGE", keys::run_audit(kNs, "r1"), "-", "+"});
  ASSERT_EQ(audit.elements.size(), 1u);
  const Reply& fields = audit.elements[0].elements[1];
  ASSERT_EQ(fields.elements.size(), 8u);
  EXPECT_EQ(fields.elements[0].str, "kind");
  EXPECT_EQ(fields.elements[1].str, "run_started");
  EXPECT_EQ(fields.elements[2].str, "at");
  EXPECT_EQ(fields.elements[3].str, "1000");
  EXPECT_EQ(fields.elements[5].str, "api");
  EXPECT_EQ(fields.elements[7].str, R"({"by":"ops"})");
}

TEST_F(FunctionsTest, ApplyWithStaleEpochIsFencedAndWritesNothing) {
  ASSERT_TRUE(c_->command({"SET", keys::epoch(kNs, kPartition), "4"}).is_ok());
  int64_t before = dbsize();
  Apply a = new_run("r1", "10");
  a.epoch = "3";
  Reply r = apply(a);
  ASSERT_TRUE(r.is_error());
  EXPECT_EQ(r.str.rfind("FENCED", 0), 0u) << r.str;
  EXPECT_EQ(r.str, "FENCED 4");
  EXPECT_EQ(dbsize(), before);
  EXPECT_FALSE(exists(keys::run(kNs, "r1")));

  a.epoch = "4";
  EXPECT_EQ(apply(a).str, "OK");
}

TEST_F(FunctionsTest, ApplyRefusesOffsetsAtOrBelowTheAppliedOne) {
  ASSERT_EQ(apply(new_run("r1", "10")).str, "OK");

  for (const char* off : {"10", "9", "0"}) {
    Apply dup = new_run("r2", off);
    int64_t before = dbsize();
    Reply r = apply(dup);
    EXPECT_EQ(r.type, Reply::Type::kStatus);
    EXPECT_EQ(r.str, "DUP") << off;
    EXPECT_EQ(dbsize(), before) << off;
    EXPECT_FALSE(exists(keys::run(kNs, "r2"))) << off;
    EXPECT_EQ(get(keys::applied(kNs, kPartition)), "10");
  }
  EXPECT_EQ(apply(new_run("r2", "11")).str, "OK");
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "11");
}

TEST_F(FunctionsTest, ApplyNewOnExistingRunIsExistsButRecordsTheOffset) {
  ASSERT_EQ(apply(new_run("r1", "10")).str, "OK");
  Apply again = new_run("r1", "11");
  again.run_fields = {{"status", "overwritten"}};
  Reply r = apply(again);
  EXPECT_EQ(r.str, "EXISTS");
  EXPECT_EQ(hget(keys::run(kNs, "r1"), "status"), "running");
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "11");
  EXPECT_EQ(xlen(keys::run_audit(kNs, "r1")), 1);
  EXPECT_EQ(apply(again).str, "DUP");
}

TEST_F(FunctionsTest, ApplyUpdateOfMissingRunIsMissingAndCreatesNothing) {
  Apply u;
  u.mode = "upd";
  u.run_id = "ghost";
  u.offset = "5";
  u.run_fields = {{"status", "running"}};
  u.audit = {{{"step_result", "1000", "w", "{}"}}};
  Reply r = apply(u);
  EXPECT_EQ(r.str, "MISSING");
  EXPECT_FALSE(exists(keys::run(kNs, "ghost")));
  EXPECT_FALSE(exists(keys::run_audit(kNs, "ghost")));
  EXPECT_FALSE(is_active("ghost"));
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "5");
}

TEST_F(FunctionsTest, ApplyUpdateDeletesOutboxEntriesAndTimers) {
  Apply a = new_run("r1", "1");
  a.outbox_puts = {{"respond:1", "t1"}, {"side:1", "t2"}};
  a.timer_adds = {{"r1|timeout|respond|1", "31000"}, {"r1|sla|review", "99000"}};
  ASSERT_EQ(apply(a).str, "OK");

  Apply u;
  u.mode = "upd";
  u.offset = "2";
  u.run_fields = {{"current", "qualify"}};
  u.ctx_fields = {{"respond", R"({"ok":true})"}};
  u.outbox_puts = {{"qualify:1", "t3"}};
  u.outbox_dels = {"respond:1", "side:1"};
  u.timer_adds = {{"r1|timeout|qualify|1", "62000"}};
  u.timer_dels = {"r1|timeout|respond|1", "r1|sla|review"};
  u.audit = {{{"step_ok", "2000", "worker-1", "{}"}}, {{"dispatched", "2000", "coordinator", "{}"}}};
  ASSERT_EQ(apply(u).str, "OK");

  EXPECT_FALSE(hexists(keys::run_outbox(kNs, "r1"), "respond:1"));
  EXPECT_FALSE(hexists(keys::run_outbox(kNs, "r1"), "side:1"));
  EXPECT_EQ(hget(keys::run_outbox(kNs, "r1"), "qualify:1"), "t3");
  EXPECT_TRUE(zscore(keys::timers(kNs, kPartition), "r1|timeout|respond|1").is_nil());
  EXPECT_TRUE(zscore(keys::timers(kNs, kPartition), "r1|sla|review").is_nil());
  EXPECT_EQ(zscore(keys::timers(kNs, kPartition), "r1|timeout|qualify|1").str, "62000");
  EXPECT_EQ(hget(keys::run(kNs, "r1"), "current"), "qualify");
  EXPECT_EQ(hget(keys::run(kNs, "r1"), "workflow"), "lead-to-meeting");  // untouched fields stay
  EXPECT_EQ(hget(keys::run_ctx(kNs, "r1"), "respond"), R"({"ok":true})");
  EXPECT_EQ(xlen(keys::run_audit(kNs, "r1")), 3);
  EXPECT_TRUE(is_active("r1"));
}

TEST_F(FunctionsTest, ApplyEndingRemovesFromActiveAndReasonQueuesException) {
  ASSERT_EQ(apply(new_run("done-run", "1")).str, "OK");
  ASSERT_EQ(apply(new_run("bad-run", "2")).str, "OK");
  ASSERT_TRUE(is_active("done-run"));
  ASSERT_TRUE(is_active("bad-run"));

  Apply done;
  done.mode = "upd";
  done.run_id = "done-run";
  done.offset = "3";
  done.run_fields = {{"status", "completed"}};
  done.ending = "completed";
  ASSERT_EQ(apply(done).str, "OK");
  EXPECT_FALSE(is_active("done-run"));
  EXPECT_TRUE(zscore(keys::exceptions(kNs), "done-run").is_nil());

  Apply bad;
  bad.mode = "upd";
  bad.run_id = "bad-run";
  bad.offset = "4";
  bad.now = "5555";
  bad.ending = "exception";
  bad.reason = "partial fit";
  ASSERT_EQ(apply(bad).str, "OK");
  EXPECT_FALSE(is_active("bad-run"));
  EXPECT_EQ(zscore(keys::exceptions(kNs), "bad-run").str, "5555");
}

// The coordinator records stale events (a late result, an old timer) on runs
// that have already ended with an "upd" and ending "": that must not bring the
// run back into active:<p> nor out of the exception queue.
TEST_F(FunctionsTest, ApplyUpdateWithoutEndingLeavesEndedRunsAlone) {
  ASSERT_EQ(apply(new_run("done-run", "1")).str, "OK");
  ASSERT_EQ(apply(new_run("bad-run", "2")).str, "OK");
  Apply done;
  done.mode = "upd";
  done.run_id = "done-run";
  done.offset = "3";
  done.ending = "completed";
  ASSERT_EQ(apply(done).str, "OK");
  Apply park;
  park.mode = "upd";
  park.run_id = "bad-run";
  park.offset = "4";
  park.ending = "exception";
  park.reason = "needs_review";
  ASSERT_EQ(apply(park).str, "OK");

  int64_t offset = 5;
  for (const char* run : {"done-run", "bad-run"}) {
    Apply stale;
    stale.mode = "upd";
    stale.run_id = run;
    stale.offset = std::to_string(offset++);
    stale.audit = {{{"stale_result", "9000", "worker-2", "{}"}}};
    ASSERT_EQ(apply(stale).str, "OK") << run;
    EXPECT_FALSE(is_active(run)) << run;
    EXPECT_EQ(xlen(keys::run_audit(kNs, run)), 2) << run;
  }
  EXPECT_FALSE(zscore(keys::exceptions(kNs), "bad-run").is_nil());
}

// "resumed": a parked run runs again (operator retry), and leaves the queue.
TEST_F(FunctionsTest, ApplyResumedRestoresActiveAndLeavesTheExceptionQueue) {
  ASSERT_EQ(apply(new_run("r1", "1")).str, "OK");
  Apply park;
  park.mode = "upd";
  park.offset = "2";
  park.ending = "exception";
  park.reason = "needs_review";
  ASSERT_EQ(apply(park).str, "OK");
  ASSERT_FALSE(is_active("r1"));
  ASSERT_FALSE(zscore(keys::exceptions(kNs), "r1").is_nil());

  Apply retry;
  retry.mode = "upd";
  retry.offset = "3";
  retry.run_fields = {{"status", "running"}};
  retry.ending = "resumed";
  ASSERT_EQ(apply(retry).str, "OK");
  EXPECT_TRUE(is_active("r1"));
  EXPECT_TRUE(zscore(keys::exceptions(kNs), "r1").is_nil());

  // Completing it later (no reason) keeps it out of the queue.
  Apply done;
  done.mode = "upd";
  done.offset = "4";
  done.ending = "completed";
  ASSERT_EQ(apply(done).str, "OK");
  EXPECT_FALSE(is_active("r1"));
  EXPECT_TRUE(zscore(keys::exceptions(kNs), "r1").is_nil());
}

// A parked run resolved straight to "completed" (manual output) leaves the queue.
TEST_F(FunctionsTest, ApplyCompletingAParkedRunRemovesItFromTheExceptionQueue) {
  ASSERT_EQ(apply(new_run("r1", "1")).str, "OK");
  Apply park;
  park.mode = "upd";
  park.offset = "2";
  park.ending = "exception";
  park.reason = "partial fit";
  ASSERT_EQ(apply(park).str, "OK");
  ASSERT_FALSE(zscore(keys::exceptions(kNs), "r1").is_nil());
  Apply resolve;
  resolve.mode = "upd";
  resolve.offset = "3";
  resolve.ending = "completed";
  ASSERT_EQ(apply(resolve).str, "OK");
  EXPECT_TRUE(zscore(keys::exceptions(kNs), "r1").is_nil());
  EXPECT_FALSE(is_active("r1"));
}

TEST_F(FunctionsTest, ApplyInternalEventSkipsTheOffsetCheck) {
  ASSERT_EQ(apply(new_run("r1", "50")).str, "OK");
  for (int i = 0; i < 2; ++i) {
    Apply t;
    t.mode = "upd";
    t.offset = "-1";
    t.run_fields = {{"timer_fired", std::to_string(i)}};
    EXPECT_EQ(apply(t).str, "OK") << i;
    EXPECT_EQ(hget(keys::run(kNs, "r1"), "timer_fired"), std::to_string(i));
  }
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "50");
}

// Regression: malformed arguments used to fail half-way (a Lua error after the
// offset and earlier sections were written). Now nothing is written.
TEST_F(FunctionsTest, ApplyWithMalformedArgumentsWritesNothing) {
  ASSERT_EQ(apply(new_run("r1", "1")).str, "OK");
  int64_t before = dbsize();

  Apply bad_due = new_run("r2", "2");
  bad_due.timer_adds = {{"r2|timeout", "soon"}};
  Reply r = apply(bad_due);
  ASSERT_TRUE(r.is_error());
  EXPECT_NE(r.str.find("timer due"), std::string::npos) << r.str;

  std::vector<std::string> truncated = new_run("r2", "2").argv();
  truncated.resize(truncated.size() - 6);  // cut inside the sections
  Reply t = call(truncated);
  ASSERT_TRUE(t.is_error());
  EXPECT_NE(t.str.find("baton_apply"), std::string::npos) << t.str;

  Apply bad_mode = new_run("r2", "2");
  bad_mode.mode = "create";
  EXPECT_TRUE(apply(bad_mode).is_error());

  EXPECT_EQ(dbsize(), before);
  EXPECT_EQ(get(keys::applied(kNs, kPartition)), "1");
  EXPECT_FALSE(exists(keys::run(kNs, "r2")));
  EXPECT_EQ(apply(new_run("r2", "2")).str, "OK");
}

TEST_F(FunctionsTest, ApplyHandlesLargeSections) {
  Apply a = new_run("big", "1");
  for (int i = 0; i < 5000; ++i) a.ctx_fields.push_back({"f" + std::to_string(i), std::to_string(i)});
  ASSERT_EQ(apply(a).str, "OK");
  EXPECT_EQ(cmd({"HLEN", keys::run_ctx(kNs, "big")}).integer, 5001);
  EXPECT_EQ(hget(keys::run_ctx(kNs, "big"), "f4999"), "4999");
}

// --- baton_record_write -------------------------------------------------------

TEST_F(FunctionsTest, RecordWriteAppliesFieldsVersionAndWriters) {
  RecordWrite w;
  w.fields = {{"score", "0.8"}, {"reason", R"("fit")"}};
  Reply r = call(w.argv());
  ASSERT_TRUE(r.is_array()) << r.str;
  ASSERT_EQ(r.elements.size(), 4u);
  EXPECT_EQ(r.elements[0].str, "OK");
  EXPECT_EQ(r.elements[1].integer, 1);
  EXPECT_EQ(r.elements[2].str, "null");
  EXPECT_EQ(r.elements[3].str, "null");

  std::string rec = keys::record(kNs, "lead:42");
  EXPECT_EQ(hget(rec, "score"), "0.8");
  EXPECT_EQ(hget(rec, "reason"), R"("fit")");
  EXPECT_EQ(hget(rec, "_v"), "1");
  EXPECT_EQ(hget(rec, "_w:score"), "r1:qualify");
  EXPECT_EQ(hget(rec, "_w:reason"), "r1:qualify");

  RecordWrite w2;
  w2.idem = "r1:qualify:2";
  w2.version_read = "1";
  w2.writer = "r9:book";
  w2.fields = {{"score", "0.9"}, {"owner", R"("ana")"}};
  Reply r2 = call(w2.argv());
  ASSERT_EQ(r2.elements.size(), 4u);
  EXPECT_EQ(r2.elements[0].str, "OK");
  EXPECT_EQ(r2.elements[1].integer, 2);
  EXPECT_EQ(r2.elements[2].str, "0.8");  // old values, in field order
  EXPECT_EQ(r2.elements[3].str, "null");
  EXPECT_EQ(hget(rec, "_v"), "2");
  EXPECT_EQ(hget(rec, "_w:score"), "r9:book");
  EXPECT_EQ(hget(rec, "_w:reason"), "r1:qualify");
}

TEST_F(FunctionsTest, RecordWriteWithStaleVersionCollidesAndWritesNothing) {
  RecordWrite first;
  first.fields = {{"score", "0.5"}};
  ASSERT_EQ(call(first.argv()).elements[0].str, "OK");

  RecordWrite stale;
  stale.idem = "r2:qualify:1";
  stale.writer = "r2:qualify";
  stale.version_read = "0";
  stale.fields = {{"score", "0.1"}};
  Reply r = call(stale.argv());
  ASSERT_EQ(r.elements.size(), 2u);
  EXPECT_EQ(r.elements[0].str, "COLLISION");
  EXPECT_EQ(r.elements[1].integer, 1);
  std::string rec = keys::record(kNs, "lead:42");
  EXPECT_EQ(hget(rec, "score"), "0.5");
  EXPECT_EQ(hget(rec, "_v"), "1");
  EXPECT_EQ(hget(rec, "_w:score"), "r1:qualify");
}

TEST_F(FunctionsTest, RecordWriteRefusesFieldsOutsideTheAllowedList) {
  for (const char* field : {"meeting_at", "_v", "_w:score"}) {
    RecordWrite w;
    w.idem = std::string("r1:q:") + field;
    w.allowed = {"score", "_v", "_w:score"};  // even if listed, "_" fields are reserved
    w.fields = {{"score", "1"}, {field, "x"}};
    if (std::string(field) == "meeting_at") w.allowed = {"score"};
    Reply r = call(w.argv());
    ASSERT_EQ(r.elements.size(), 2u) << field;
    EXPECT_EQ(r.elements[0].str, "FORBIDDEN") << field;
    EXPECT_EQ(r.elements[1].str, field);
  }
  EXPECT_FALSE(exists(keys::record(kNs, "lead:42")));
}

TEST_F(FunctionsTest, RecordWriteReplayReturnsTheSameReplyAndWritesNothing) {
  RecordWrite w;
  w.fields = {{"score", "0.8"}, {"owner", R"("bob")"}};
  Reply first = call(w.argv());
  ASSERT_EQ(first.elements[0].str, "OK");

  // Another writer moves the record on.
  RecordWrite other;
  other.idem = "r7:qualify:1";
  other.writer = "r7:qualify";
  other.version_read = "1";
  other.fields = {{"score", "0.2"}};
  ASSERT_EQ(call(other.argv()).elements[0].str, "OK");

  // The replay (say, the step's result redelivered) gets the original answer.
  Reply replay = call(w.argv());
  ASSERT_EQ(replay.type, first.type);
  ASSERT_EQ(replay.elements.size(), first.elements.size());
  for (size_t i = 0; i < first.elements.size(); ++i) {
    EXPECT_EQ(replay.elements[i].type, first.elements[i].type) << i;
    EXPECT_EQ(replay.elements[i].str, first.elements[i].str) << i;
    EXPECT_EQ(replay.elements[i].integer, first.elements[i].integer) << i;
  }
  std::string rec = keys::record(kNs, "lead:42");
  EXPECT_EQ(hget(rec, "score"), "0.2");
  EXPECT_EQ(hget(rec, "owner"), R"("bob")");
  EXPECT_EQ(hget(rec, "_v"), "2");

  // Memoised refusals replay identically too.
  RecordWrite coll = other;
  coll.idem = "r8:qualify:1";
  coll.version_read = "0";
  Reply c1 = call(coll.argv());
  Reply c2 = call(coll.argv());
  ASSERT_EQ(c1.elements.size(), 2u);
  EXPECT_EQ(c1.elements[0].str, "COLLISION");
  EXPECT_EQ(c2.elements[0].str, "COLLISION");
  EXPECT_EQ(c2.elements[1].integer, c1.elements[1].integer);
}

TEST_F(FunctionsTest, RecordWriteSetsTheMemoTtl) {
  RecordWrite w;
  w.ttl = "600";
  w.fields = {{"score", "1"}};
  ASSERT_EQ(call(w.argv()).elements[0].str, "OK");
  int64_t ttl = cmd({"TTL", keys::record_write_memo(kNs, "lead:42", "r1:qualify:1")}).integer;
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 600);
  EXPECT_EQ(cmd({"TTL", keys::record(kNs, "lead:42")}).integer, -1);  // the record itself never expires
}

// Regression: a non-numeric TTL used to fail after the record was written.
TEST_F(FunctionsTest, RecordWriteWithMalformedArgumentsWritesNothing) {
  RecordWrite w;
  w.ttl = "forever";
  w.fields = {{"score", "1"}};
  Reply r = call(w.argv());
  ASSERT_TRUE(r.is_error());
  EXPECT_NE(r.str.find("baton_record_write"), std::string::npos) << r.str;
  EXPECT_FALSE(exists(keys::record(kNs, "lead:42")));
  EXPECT_FALSE(exists(keys::record_write_memo(kNs, "lead:42", "r1:qualify:1")));

  w.ttl = "60";  // the same idempotency key is not poisoned by the bad call
  EXPECT_EQ(call(w.argv()).elements[0].str, "OK");
}

// --- ensure_library -----------------------------------------------------------

TEST(FunctionsLibrary, LoadsIsIdempotentAndUpgradesAnOlderVersion) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  Endpoint ep;
  ep.port = server.port();
  auto c = Client::connect(ep);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  Client& client = **c;

  auto missing = client.command({"FCALL", "baton_version", "0"});
  ASSERT_TRUE(missing.is_ok());
  EXPECT_TRUE(missing->is_error());

  // An older library under the same name.
  auto old = client.command({"FUNCTION", "LOAD",
                             "#!lua name=baton\n"
                             "redis.register_function('baton_version', function() return 0 end)\n"});
  ASSERT_TRUE(old.is_ok());
  ASSERT_FALSE(old->is_error()) << old->str;
  EXPECT_EQ(client.command({"FCALL", "baton_version", "0"})->integer, 0);

  Status st = ensure_library(client);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  auto v = client.command({"FCALL", "baton_version", "0"});
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(v->integer, kLibraryVersion);
  auto apply_exists = client.command({"FUNCTION", "LIST", "LIBRARYNAME", "baton"});
  ASSERT_TRUE(apply_exists.is_ok());
  ASSERT_EQ(apply_exists->elements.size(), 1u);

  // Idempotent: a second call neither fails nor reloads (the library would
  // otherwise be replaced; the functions and version stay).
  st = ensure_library(client);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(client.command({"FCALL", "baton_version", "0"})->integer, kLibraryVersion);

  // And on an empty server it loads from scratch.
  ASSERT_TRUE(client.command({"FUNCTION", "DELETE", "baton"}).is_ok());
  st = ensure_library(client);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(client.command({"FCALL", "baton_version", "0"})->integer, kLibraryVersion);
}

// A restarted server has lost its functions (no persistence in tests): the
// coordinator's start-up call either reports kUnavailable (stale connection)
// or reloads; a retry loads it.
TEST(FunctionsLibrary, ReloadsAfterServerRestart) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  Endpoint ep;
  ep.port = server.port();
  auto c = Client::connect(ep);
  ASSERT_TRUE(c.is_ok());
  ASSERT_TRUE(ensure_library(**c).is_ok());
  ASSERT_TRUE(server.restart());

  Status st = ensure_library(**c);
  if (!st.is_ok()) {
    EXPECT_EQ(st.code(), Code::kUnavailable) << st.to_string();
  }
  std::string last;
  EXPECT_TRUE(baton::testing::wait_until(
      [&] {
        Status s = ensure_library(**c);
        last = s.to_string();
        return s.is_ok();
      },
      std::chrono::seconds(10), [&] { return last; }));
  auto v = (*c)->command({"FCALL", "baton_version", "0"});
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(v->integer, kLibraryVersion);
}

// --- throughput (measured, printed, not asserted) ------------------------------

TEST(FunctionsThroughput, PipelinedApplyCallsPerSecond) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  Endpoint ep;
  ep.port = server.port();
  auto cr = Client::connect(ep);
  ASSERT_TRUE(cr.is_ok());
  Client& c = **cr;
  ASSERT_TRUE(ensure_library(c).is_ok());

  const std::string task(400, 't');
  constexpr int kBatch = 100;
  constexpr int kBatches = 100;
  constexpr int kCalls = kBatch * kBatches;
  // The realistic payload of one step transition. The first phase starts
  // kCalls runs ("new": every key is created), the second moves each of them
  // one step on ("upd": the common case).
  auto make = [&](int i, bool fresh) {
    std::string run = "run-" + std::to_string(i);
    Apply a;
    a.run_id = run;
    a.offset = std::to_string(fresh ? i : kCalls + i);
    a.mode = fresh ? "new" : "upd";
    a.now = "1700000000000";
    a.run_fields = {{"workflow", "lead-to-meeting"}, {"version", "3"},    {"status", "running"},
                    {"current", "qualify"},          {"attempt", "1"},    {"steps", "2"},
                    {"handoffs", "1"},               {"cost_micros", "0"}, {"partition", "3"},
                    {"updated_ms", "1700000000000"}};
    a.ctx_fields = {{"respond", R"({"first_touch":"Hi Ana, thanks for reaching out","source":"web"})"}};
    a.outbox_puts = {{"qualify:1", task}};
    a.outbox_dels = {"respond:1"};
    a.timer_adds = {{run + "|timeout|qualify|1", "1700000030000"}};
    a.timer_dels = {run + "|timeout|respond|1"};
    a.audit = {{{"step_ok", "1700000000000", "worker-7", R"({"step":"respond","attempt":1})"}}};
    return a.argv();
  };

  for (bool fresh : {true, false}) {
    // Build all argument lists first: the figure is Redis + client, not string building.
    std::vector<std::vector<std::string>> calls;
    calls.reserve(kCalls);
    for (int i = 0; i < kCalls; ++i) calls.push_back(make(i, fresh));
    ASSERT_TRUE(c.command({"CONFIG", "RESETSTAT"}).is_ok());

    std::vector<std::string_view> argv;
    auto start = std::chrono::steady_clock::now();
    for (int b = 0; b < kBatches; ++b) {
      for (int k = 0; k < kBatch; ++k) {
        const auto& a = calls[static_cast<size_t>(b * kBatch + k)];
        argv.assign(a.begin(), a.end());
        c.append(argv);
      }
      auto r = c.exec();
      ASSERT_TRUE(r.is_ok()) << r.status().to_string();
      ASSERT_EQ(r->size(), static_cast<size_t>(kBatch));
      for (const Reply& rep : *r) ASSERT_EQ(rep.str, "OK") << rep.str;
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double per_sec = kCalls / secs;
    const char* kind = fresh ? "new runs" : "updates";
    std::printf("[ MEASURE  ] baton_apply pipelined (%s), batches of %d: %.0f calls/s (%d calls in %.3f s)\n", kind,
                kBatch, per_sec, kCalls, secs);
    RecordProperty(fresh ? "apply_new_calls_per_sec" : "apply_upd_calls_per_sec", static_cast<int>(per_sec));
    // Server-side cost per call (Lua included), from INFO commandstats.
    auto stats = c.command({"INFO", "commandstats"});
    if (stats.is_ok() && stats->is_string()) {
      auto pos = stats->str.find("cmdstat_fcall:");
      if (pos != std::string::npos) {
        std::string line = stats->str.substr(pos, stats->str.find('\r', pos) - pos);
        std::printf("[ MEASURE  ] server side (%s): %s\n", kind, line.c_str());
      }
    }
  }

  // redis-benchmark's SET on the same server, for scale.
  std::string cmd = "redis-benchmark -h 127.0.0.1 -p " + std::to_string(server.port()) +
                    " -t set -n 100000 -q 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (pipe) {
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), pipe.get())) > 0) out.append(buf, n);
    // -q prints progress lines separated by \r, then the result line.
    size_t start = 0;
    while (start < out.size()) {
      size_t end = out.find_first_of("\r\n", start);
      if (end == std::string::npos) end = out.size();
      std::string line = out.substr(start, end - start);
      if (line.rfind("SET:", 0) == 0 && line.find("requests per second") != std::string::npos)
        std::printf("[ MEASURE  ] redis-benchmark -t set (50 clients, no pipelining): %s\n", line.c_str());
      start = end + 1;
    }
  }
}

}  // namespace
}  // namespace baton::redis
