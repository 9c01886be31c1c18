// RunStore against a real redis-server: engine transitions become baton_apply
// calls (fenced by epoch, idempotent by offset), results' writes become
// baton_record_write calls (versions, collisions, permissions, replays), and a
// new owner can reload a partition's runs, outboxes and timers.
#include "coordinator/run_store.h"

#include <gtest/gtest.h>

#include <chrono>

#include "common/redis/client.h"
#include "common/util/keys.h"
#include "tests/support/servers.h"

namespace baton::coordinator {
namespace {

using nlohmann::json;

constexpr const char* kNs = "rs";

workflow::Workflow two_steps() {
  workflow::Workflow wf;
  wf.name = "lead";
  wf.version = 1;
  wf.record_template = "lead:{{input.id}}";
  workflow::Step a;
  a.id = "qualify";
  a.role = "qualifier";
  a.writes = {"score", "owner"};
  a.next = "book";
  workflow::Step b;
  b.id = "book";
  b.role = "booker";
  b.writes = {"meeting_at"};
  wf.steps = {a, b};
  return wf;
}

class RunStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    auto ep = redis::parse_endpoint(server_.address());
    ASSERT_TRUE(ep);
    auto c = redis::Client::connect(*ep);
    ASSERT_TRUE(c) << c.status().to_string();
    ASSERT_TRUE(redis::ensure_library(**c));
    store_ = std::make_unique<RunStore>(std::move(c).value(), kNs);
    auto e = store_->bump_epoch(0);
    ASSERT_TRUE(e);
    epoch_ = *e;
  }

  // Starts run `id` (input id `lead`) on partition 0 at `offset`.
  Transition start(const std::string& id, const std::string& lead, int64_t offset, RunState& st) {
    baton::v1::RunStarted s;
    s.set_workflow("lead");
    s.set_input_json(json{{"id", lead}}.dump());
    Transition t = engine_.start(&wf_, id, 0, s, 1000, st);
    store_->append_apply(st, t, epoch_, offset, 1000);
    return t;
  }

  baton::v1::StepResult ok(const std::string& step, uint32_t attempt, const json& writes, int64_t version_read) {
    baton::v1::StepResult r;
    r.set_step_id(step);
    r.set_attempt(attempt);
    r.set_status(baton::v1::StepResult::OK);
    r.set_output_json(writes.dump());
    r.set_writes_json(writes.dump());
    r.set_record_version_read(version_read);
    r.set_worker_id("w1");
    return r;
  }

  testing::RedisServer server_;
  std::unique_ptr<RunStore> store_;
  int64_t epoch_ = 0;
  Engine engine_{EngineOptions{kNs}};
  workflow::Workflow wf_ = two_steps();
};

TEST_F(RunStoreTest, AppliesTransitionsOnceAndFencesStaleOwners) {
  RunState st;
  Transition t = start("r1", "L1", 10, st);
  auto replies = store_->exec_applies();
  ASSERT_TRUE(replies);
  ASSERT_EQ(replies->size(), 1u);
  EXPECT_EQ((*replies)[0], ApplyReply::kOk);
  EXPECT_EQ(*store_->applied_offset(0), 10);
  EXPECT_EQ(*store_->active_runs(0), std::vector<std::string>{"r1"});

  // The same offset again (a redelivered event): refused, nothing changes.
  RunState again;
  start("r1", "L1", 10, again);
  replies = store_->exec_applies();
  ASSERT_TRUE(replies);
  EXPECT_EQ((*replies)[0], ApplyReply::kDup);
  // A later start of an existing run: EXISTS, and the offset is consumed.
  start("r1", "L1", 11, again);
  replies = store_->exec_applies();
  EXPECT_EQ((*replies)[0], ApplyReply::kExists);
  EXPECT_EQ(*store_->applied_offset(0), 11);

  // A new owner bumps the epoch: the old owner's next write is refused.
  ASSERT_TRUE(store_->bump_epoch(0));
  Transition r = engine_.on_result(wf_, st, ok("qualify", 1, json::object(), 0), {}, 2000);
  store_->append_apply(st, r, epoch_, 12, 2000);
  replies = store_->exec_applies();
  ASSERT_TRUE(replies);
  EXPECT_EQ((*replies)[0], ApplyReply::kFenced);
  EXPECT_EQ(*store_->applied_offset(0), 11);

  // What is in Redis is what the engine decided at the start, reloadable.
  auto loaded = store_->load_runs({"r1", "nope"});
  ASSERT_TRUE(loaded);
  ASSERT_EQ(loaded->size(), 1u);
  const LoadedRun& lr = (*loaded)[0];
  EXPECT_EQ(lr.state.record_key, "lead:L1");
  EXPECT_EQ(lr.state.steps.at("qualify").status, StepStatus::kRunning);
  ASSERT_EQ(lr.outbox.size(), 1u);  // the dispatched task, until its delivery is acked
  EXPECT_EQ(lr.outbox[0].first, "qualify:1");
  baton::v1::Task task;
  ASSERT_TRUE(task.ParseFromString(lr.outbox[0].second));
  EXPECT_EQ(task.SerializeAsString(), t.dispatch[0].SerializeAsString());
  ASSERT_TRUE(store_->ack_outbox({{"r1", "qualify:1"}}));
  loaded = store_->load_runs({"r1"});
  EXPECT_TRUE((*loaded)[0].outbox.empty());
}

TEST_F(RunStoreTest, TimeoutTimersComeDueAndAreRemovedByTheirTransition) {
  RunState st;
  start("r2", "L2", 1, st);
  ASSERT_TRUE(store_->exec_applies());
  auto none = store_->due_timers({0}, 1000 + 29999, 10);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  auto due = store_->due_timers({0}, 1000 + 30000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].second, "r2|timeout|qualify|1");
  Transition t = engine_.on_timer(wf_, st, Timer{TimerKind::kTimeout, "qualify", 1, 31000}, 31000);
  store_->append_apply(st, t, epoch_, -1, 31000);
  auto replies = store_->exec_applies();
  ASSERT_TRUE(replies);
  EXPECT_EQ((*replies)[0], ApplyReply::kOk);
  due = store_->due_timers({0}, 40000, 10);
  ASSERT_TRUE(due);
  ASSERT_EQ(due->size(), 1u);  // the timeout is gone; the retry timer replaced it
  EXPECT_EQ((*due)[0].second, "r2|retry|qualify|1");
  ASSERT_TRUE(store_->drop_timers(0, {"r2|retry|qualify|1"}));
  EXPECT_TRUE(store_->due_timers({0}, 40000, 10)->empty());
}

TEST_F(RunStoreTest, RecordWritesAreVersionedAndCollisionsNeverOverwrite) {
  RunState a, b;
  start("ra", "shared", 1, a);
  start("rb", "shared", 2, b);
  ASSERT_TRUE(store_->exec_applies());

  // Both read version 0; the first write wins, the second collides.
  auto ra = engine_.record_write_for(wf_, a, ok("qualify", 1, {{"score", 0.9}, {"owner", "ann"}}, 0));
  auto rb = engine_.record_write_for(wf_, b, ok("qualify", 1, {{"score", 0.1}}, 0));
  ASSERT_TRUE(ra && rb);
  store_->append_record_write(*ra);
  store_->append_record_write(*rb);
  auto out = store_->exec_record_writes({*ra, *rb});
  ASSERT_TRUE(out) << out.status().to_string();
  ASSERT_EQ(out->size(), 2u);
  EXPECT_EQ((*out)[0].kind, RecordWriteOutcome::Kind::kApplied);
  EXPECT_EQ((*out)[0].version, 1);
  ASSERT_EQ((*out)[0].changes.size(), 2u);
  EXPECT_EQ((*out)[0].changes[0].first, "owner");  // JSON object keys are sorted
  EXPECT_EQ((*out)[0].changes[0].second.first, "null");
  EXPECT_EQ((*out)[0].changes[0].second.second, "\"ann\"");
  EXPECT_EQ((*out)[1].kind, RecordWriteOutcome::Kind::kCollision);
  EXPECT_EQ((*out)[1].version, 1);

  auto rec = store_->client().command({"HGET", keys::record(kNs, "lead:shared"), "score"});
  ASSERT_TRUE(rec);
  EXPECT_EQ(rec->str, "0.9");  // the collided write changed nothing

  // A replay of the applied attempt gets the same answer and writes nothing.
  store_->append_record_write(*ra);
  auto replay = store_->exec_record_writes({*ra});
  ASSERT_TRUE(replay);
  EXPECT_EQ((*replay)[0].kind, RecordWriteOutcome::Kind::kApplied);
  EXPECT_EQ((*replay)[0].version, 1);
  auto v = store_->client().command({"HGET", keys::record(kNs, "lead:shared"), "_v"});
  EXPECT_EQ(v->str, "1");

  // The engine turns the collision into a retry of that attempt.
  engine_.on_result(wf_, b, ok("qualify", 1, {{"score", 0.1}}, 0), (*out)[1], 3000);
  EXPECT_EQ(b.steps.at("qualify").status, StepStatus::kRetryWait);
  EXPECT_EQ(b.steps.at("qualify").error_code, "collision");
}

TEST_F(RunStoreTest, WritesOutsideTheStepsFieldsAreForbidden) {
  RunState a;
  start("rf", "L9", 1, a);
  ASSERT_TRUE(store_->exec_applies());
  auto req = engine_.record_write_for(wf_, a, ok("qualify", 1, {{"meeting_at", "now"}}, 0));
  ASSERT_TRUE(req);
  store_->append_record_write(*req);
  auto out = store_->exec_record_writes({*req});
  ASSERT_TRUE(out);
  EXPECT_EQ((*out)[0].kind, RecordWriteOutcome::Kind::kForbidden);
  EXPECT_EQ((*out)[0].field, "meeting_at");
  auto exists = store_->client().command({"EXISTS", keys::record(kNs, "lead:L9")});
  EXPECT_EQ(exists->integer, 0);
}

// The record's lease lock in Redis: first come first served, a queue in
// arrival order, the lease passed on at release or expiry, and a write with
// a token that no longer holds the lock refused.
TEST_F(RunStoreTest, RecordLockQueuesPassesOnAndFencesExpiredTokens) {
  const std::string rec = "acct:1";
  // Lock times are wall-clock (a fenced write compares with the real now).
  const int64_t base = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  auto ops = [&](std::vector<LockOp> v, int64_t now) {
    auto r = store_->run_locks(v, now);
    EXPECT_TRUE(r) << r.status().to_string();
    return r ? *r : std::vector<RunStore::LockGrant>();
  };
  auto a = ops({{"acquire", rec, "r1|s", 60000}}, base);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].holder, "r1|s");
  const int64_t t1 = a[0].token;
  EXPECT_GT(t1, 0);
  // Two more wait in order; asking twice queues once; the holder asking again keeps its token.
  auto q = ops({{"acquire", rec, "r2|s", 1000}, {"acquire", rec, "r3|s", 1000}, {"acquire", rec, "r2|s", 1000},
                {"acquire", rec, "r1|s", 60000}},
               base + 10);
  EXPECT_EQ(q[0].holder, "");
  EXPECT_EQ(q[1].holder, "");
  EXPECT_EQ(q[2].holder, "");
  EXPECT_EQ(q[3].holder, "r1|s");
  EXPECT_EQ(q[3].token, t1);
  // A write with the holder's token goes through.
  RecordWriteRequest w;
  w.record_key = rec;
  w.idempotency_key = "r1:s:1";
  w.writer = "r1:s";
  w.allowed = {"n"};
  w.fields = {{"n", "1"}};
  w.fence = t1;
  store_->append_record_write(w);
  auto out = store_->exec_record_writes({w});
  ASSERT_TRUE(out);
  EXPECT_EQ((*out)[0].kind, RecordWriteOutcome::Kind::kApplied);
  // Release: the first waiter gets it with a new token.
  auto rel = ops({{"release", rec, "r1|s", 0}}, base + 20);
  EXPECT_EQ(rel[0].holder, "r2|s");
  const int64_t t2 = rel[0].token;
  EXPECT_GT(t2, t1);
  // r2's lease (1000 ms from 20) expires; the sweep passes the lock to r3.
  auto none = store_->expire_locks(base + 500, 10);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty() || none->at(0).holder.empty());
  auto exp = store_->expire_locks(base + 2000, 10);
  ASSERT_TRUE(exp);
  ASSERT_EQ(exp->size(), 1u);
  EXPECT_EQ((*exp)[0].holder, "r3|s");
  // r2's write, with its expired token, is refused and writes nothing.
  RecordWriteRequest late = w;
  late.idempotency_key = "r2:s:1";
  late.writer = "r2:s";
  late.version_read = 1;
  late.fields = {{"n", "2"}};
  late.fence = t2;
  store_->append_record_write(late);
  out = store_->exec_record_writes({late});
  ASSERT_TRUE(out);
  EXPECT_EQ((*out)[0].kind, RecordWriteOutcome::Kind::kFenced);
  auto n = store_->client().command({"HGET", keys::record(kNs, rec), "n"});
  ASSERT_TRUE(n);
  EXPECT_EQ(n->str, "1");
  // r2 releasing a lock it no longer holds changes nothing; r3's release frees it.
  EXPECT_EQ(ops({{"release", rec, "r2|s", 0}}, base + 2100)[0].holder, "");
  EXPECT_EQ(ops({{"release", rec, "r3|s", 0}}, base + 2200)[0].holder, "");
  auto held = store_->client().command({"EXISTS", keys::record_lock(kNs, rec)});
  ASSERT_TRUE(held);
  EXPECT_EQ(held->integer, 0);
  auto swept = store_->client().command({"ZCARD", keys::locks(kNs)});
  ASSERT_TRUE(swept);
  EXPECT_EQ(swept->integer, 0);
}

}  // namespace
}  // namespace baton::coordinator
