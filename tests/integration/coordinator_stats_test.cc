// KPIs from Redis (coordinator/stats.h) against a real redis-server: synthetic
// run hashes, audit streams and runs index written with plain HSET/XADD/ZADD,
// then every KPI checked exactly; the window, the filters, truncation, gone
// and broken runs, malformed details, long streams read in pages, and the
// time to compute stats over 5,000 runs (printed, not asserted).
#include "coordinator/stats.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "common/util/keys.h"
#include "tests/support/servers.h"

namespace baton::coordinator {
namespace {

using nlohmann::json;

constexpr const char* kNs = "st";
constexpr int64_t kNow = 1'000'000;

// One audit entry as the coordinator writes it (kind, at, actor, detail);
// `detail_raw` for malformed details, `no_kind` for an entry without a kind.
struct Entry {
  std::string kind;
  int64_t at = 0;
  std::string detail;
  bool no_kind = false;
};
Entry E(std::string kind, int64_t at, const json& detail) { return {std::move(kind), at, detail.dump(), false}; }
Entry raw(std::string kind, int64_t at, std::string detail) { return {std::move(kind), at, std::move(detail), false}; }

json result(const std::string& step, const std::string& status, int64_t duration, json usage = nullptr) {
  json d = {{"step", step}, {"attempt", 1}, {"status", status}, {"worker", "w1"}, {"duration_ms", duration}};
  if (!usage.is_null()) d["usage"] = std::move(usage);
  return d;
}
json usage(int64_t in, int64_t out, int64_t cost) {
  return {{"tokens_in", in}, {"tokens_out", out}, {"cost_micros", cost}, {"model", "m"}};
}
json decided(const std::string& step, const std::string& decision, const std::string& kind, int64_t waited,
             bool overturned) {
  return {{"step", step}, {"decision", decision}, {"kind", kind}, {"group", "sales"},
          {"waited_ms", waited}, {"overturned", overturned}};
}
json opened(const std::string& step, const std::string& kind) {
  return {{"step", step}, {"kind", kind}, {"group", "sales"}, {"due_ms", 0}};
}

// Queues the commands that write one run (index entry, hash, audit stream).
void append_run(redis::Client& c, const std::string& ns, const std::string& id, int64_t start,
                const std::vector<std::pair<std::string, std::string>>& hash, const std::vector<Entry>& audit) {
  const std::string index = keys::runs_index(ns), run = keys::run(ns, id), stream = keys::run_audit(ns, id);
  c.append({"ZADD", index, std::to_string(start), id});
  if (!hash.empty()) {
    std::vector<std::string> argv = {"HSET", run};
    for (const auto& [k, v] : hash) {
      argv.push_back(k);
      argv.push_back(v);
    }
    c.append(std::vector<std::string_view>(argv.begin(), argv.end()));
  }
  for (const Entry& e : audit) {
    const std::string at = std::to_string(e.at);
    if (e.no_kind) {
      c.append({"XADD", stream, "*", "at", at, "actor", "coordinator", "detail", e.detail});
    } else {
      c.append({"XADD", stream, "*", "kind", e.kind, "at", at, "actor", "coordinator", "detail", e.detail});
    }
  }
}

std::vector<std::pair<std::string, std::string>> hash(const std::string& wf, int ver, const std::string& status,
                                                      const std::string& reason = "") {
  return {{"wf", wf}, {"ver", std::to_string(ver)}, {"status", status}, {"reason", reason},
          {"created", "0"}, {"ended", "0"}, {"executed", "1"}, {"at", ""}};
}

class CoordinatorStatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    auto ep = redis::parse_endpoint(server_.address());
    ASSERT_TRUE(ep);
    auto c = redis::Client::connect(*ep);
    ASSERT_TRUE(c) << c.status().to_string();
    client_ = std::move(c).value();
  }

  void flush() {
    auto r = client_->exec();
    ASSERT_TRUE(r) << r.status().to_string();
    for (const auto& x : *r) ASSERT_FALSE(x.is_error()) << x.str;
  }

  // The data set every KPI test reads: lead v1 (9 runs), lead v2 (1 run),
  // invoice v1 (2 runs), a run whose hash is gone and a run hash without wf.
  // Start times: lead v1 at 1000..1080, lead v2 at 2000, invoice at 3000/3010,
  // the gone run at 3020, the broken one at 3030.
  void write_data_set() {
    redis::Client& c = *client_;
    // r1: completed; a retried book; an approved approval gate.
    append_run(c, kNs, "r1", 1000, hash("lead", 1, "completed"),
               {E("step_result", 10, result("qualify", "ok", 100, usage(10, 5, 1000))),
                E("step_result", 20, result("book", "retryable", 50)),
                E("retry_scheduled", 20, {{"step", "book"}, {"attempt", 1}, {"error", "x"}, {"delay_ms", 10}}),
                E("step_result", 40, result("book", "ok", 300, usage(20, 0, 2000))),
                E("gate_opened", 50, opened("review", "approval")),
                E("gate_decided", 1050, decided("review", "approved", "approval", 1000, false)),
                E("run_completed", 1060, {{"duration_ms", 1060}})});
    // r2: completed; a second qualify instance; a collision and retry; two fallbacks.
    append_run(c, kNs, "r2", 1010, hash("lead", 1, "completed"),
               {E("step_result", 10, result("qualify", "ok", 200, usage(30, 15, 3000))),
                E("budget_fallback", 11, {{"step", "qualify"}, {"from_model", "a"}, {"to_model", "b"}}),
                E("step_result", 20, result("qualify#2", "ok", 400)),
                E("budget_fallback", 21, {{"step", "qualify#2"}, {"from_model", "a"}, {"to_model", "b"}}),
                E("collision", 30, {{"step", "book"}, {"record", "lead:1"}, {"version_read", 1}, {"version_now", 2}}),
                E("retry_scheduled", 30, {{"step", "book"}, {"attempt", 1}, {"error", "collision"}, {"delay_ms", 1}}),
                E("step_result", 40, result("book", "ok", 500)),
                E("gate_opened", 50, opened("review", "approval")),
                E("gate_decided", 3050, decided("review", "approved", "approval", 3000, false))});
    // r3: in the exception queue, never acted on; its cost is not a completed run's.
    append_run(c, kNs, "r3", 1020, hash("lead", 1, "exception", "missing_field"),
               {E("step_result", 10, result("qualify", "ok", 600, usage(40, 20, 5000))),
                E("budget_exceeded", 11, {{"limit", "cost"}}),
                E("run_exception", 10000, {{"reason", "missing_field"}, {"detail", "no email"}})});
    // r4: retried after 3000 ms, then back in the queue (still open).
    append_run(c, kNs, "r4", 1030, hash("lead", 1, "exception", "missing_field"),
               {E("run_exception", 1000, {{"reason", "missing_field"}, {"detail", ""}}),
                E("operator_action", 4000, {{"action", "retry"}, {"step", "qualify"}, {"comment", ""}}),
                E("run_exception", 5000, {{"reason", "missing_field"}, {"detail", ""}})});
    // r5: cancelled by an operator 500 ms after its exception.
    append_run(c, kNs, "r5", 1040, hash("lead", 1, "cancelled"),
               {E("run_exception", 2000, {{"reason", "step_failed"}, {"detail", ""}}),
                E("operator_action", 2500, {{"action", "cancel"}, {"comment", ""}})});
    // r6: resolved after 10 s and running again; a research instance; a
    // corrected review; an approval gate that escalated and timed out.
    append_run(c, kNs, "r6", 1050, hash("lead", 1, "running"),
               {E("run_exception", 100, {{"reason", "timeout"}, {"detail", ""}}),
                E("operator_action", 10100, {{"action", "resolve"}, {"step", "qualify"}, {"comment", ""}}),
                E("step_result", 10200, result("research#market", "ok", 700)),
                E("gate_opened", 10300, opened("check", "review")),
                E("gate_decided", 12300, decided("check#2", "corrected", "review", 2000, true)),
                E("gate_opened", 12400, opened("review", "approval")),
                E("gate_escalated", 13000, {{"step", "review"}, {"from", "sales"}, {"to", "managers"}}),
                E("gate_timeout", 14000, {{"step", "review"}, {"group", "managers"}})});
    append_run(c, kNs, "r7", 1060, hash("lead", 1, "exception", "timeout"), {});
    // r8: a held result rejected (overturned).
    append_run(c, kNs, "r8", 1070, hash("lead", 1, "exception", "rejected"),
               {E("gate_opened", 10, opened("review", "approval")),
                E("gate_decided", 5010, decided("review", "rejected", "approval", 5000, true))});
    append_run(c, kNs, "r9", 1080, hash("lead", 1, "waiting"), {});
    append_run(c, kNs, "r10", 2000, hash("lead", 2, "completed"),
               {E("step_result", 10, result("qualify", "ok", 50, usage(1, 2, 700)))});
    append_run(c, kNs, "r11", 3000, hash("invoice", 1, "completed"), {});
    // r12: malformed entries between good ones.
    append_run(c, kNs, "r12", 3010, hash("invoice", 1, "running"),
               {raw("step_result", 10, "{not json"), raw("gate_decided", 20, R"({"step": 5, "decision": "approved"})"),
                Entry{"", 30, result("extract", "ok", 1).dump(), true},
                raw("step_result", 40, R"({"step": "extract", "status": "ok", "duration_ms": "abc"})"),
                raw("run_exception", 50, "][ not json, but its detail is never read"),
                E("step_result", 60, result("extract", "ok", 80, usage(7, 8, 9)))});
    append_run(c, kNs, "gone", 3020, {}, {});
    append_run(c, kNs, "broken", 3030, {{"status", "running"}, {"ver", "1"}}, {});
    flush();
  }

  Result<json> stats(StatsQuery q = {}, int64_t now = kNow) { return compute_stats(*client_, kNs, q, now); }

  static const json* group(const json& doc, const std::string& wf, int ver) {
    for (const auto& w : doc["workflows"]) {
      if (w["workflow"] == wf && w["version"] == ver) return &w;
    }
    return nullptr;
  }

  testing::RedisServer server_;
  std::unique_ptr<redis::Client> client_;
};

TEST_F(CoordinatorStatsTest, EveryKpiOfTheDataSet) {
  write_data_set();
  auto r = stats();
  ASSERT_TRUE(r) << r.status().to_string();
  const json& doc = *r;
  EXPECT_EQ(doc["since_ms"], 0);
  EXPECT_EQ(doc["until_ms"], kNow);
  EXPECT_EQ(doc["runs_scanned"], 14);
  EXPECT_EQ(doc["runs_counted"], 12);
  EXPECT_EQ(doc["runs_missing"], 1);
  EXPECT_EQ(doc["runs_skipped"], 1);
  EXPECT_EQ(doc["entries_skipped"], 3);  // bad JSON, a step that is not a string, no kind
  EXPECT_EQ(doc["truncated"], false);
  ASSERT_EQ(doc["workflows"].size(), 3u);
  // Ordered by workflow, then version.
  EXPECT_EQ(doc["workflows"][0]["workflow"], "invoice");
  EXPECT_EQ(doc["workflows"][1]["version"], 1);
  EXPECT_EQ(doc["workflows"][2]["version"], 2);

  const json* l1 = group(doc, "lead", 1);
  ASSERT_NE(l1, nullptr);
  const json& w = *l1;
  EXPECT_EQ(w["runs"], 9);
  EXPECT_EQ(w["completed"], 2);
  EXPECT_EQ(w["exceptions"], 4);
  EXPECT_EQ(w["running"], 2);  // r6 running, r9 waiting
  EXPECT_EQ(w["waiting"], 1);
  EXPECT_EQ(w["cancelled"], 1);
  EXPECT_EQ(w["other"], 0);
  EXPECT_DOUBLE_EQ(w["completion_rate"].get<double>(), 2.0 / 7.0);
  EXPECT_DOUBLE_EQ(w["exception_rate"].get<double>(), 4.0 / 9.0);
  EXPECT_EQ(w["exceptions_by_reason"], (json{{"missing_field", 2}, {"timeout", 1}, {"rejected", 1}}));
  EXPECT_EQ(w["ever_excepted"], 4);  // r3, r4, r5, r6 (r6 resolved, r5 cancelled)
  EXPECT_EQ(w["step_results"], 8);
  EXPECT_EQ(w["retries"], 2);
  EXPECT_DOUBLE_EQ(w["retry_rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(w["fallback_rate"].get<double>(), 1.0 / 9.0);
  EXPECT_EQ(w["fallbacks"], 2);
  EXPECT_EQ(w["budget_exceeded"], 1);
  EXPECT_EQ(w["approval_latency_ms"], (json{{"p50", 3000}, {"p95", 5000}, {"count", 3}}));
  EXPECT_EQ(w["review_latency_ms"], (json{{"p50", 2000}, {"p95", 2000}, {"count", 1}}));
  EXPECT_EQ(w["time_to_resolve_ms"], (json{{"p50", 3000}, {"p95", 10000}, {"count", 3}}));
  EXPECT_EQ(w["cost_micros"], 11000);
  EXPECT_DOUBLE_EQ(w["cost_per_completed_run_micros"].get<double>(), 3000.0);  // (1000+2000+3000)/2
  EXPECT_EQ(w["tokens"], (json{{"in", 100}, {"out", 40}}));
  EXPECT_EQ(w["collisions"], 1);
  // Instances folded: qualify#2 into qualify, research#market into research;
  // the retryable book attempt is not a latency sample.
  EXPECT_EQ(w["step_latency_ms"],
            (json{{"qualify", {{"p50", 200}, {"p95", 600}, {"p99", 600}, {"count", 4}}},
                  {"book", {{"p50", 300}, {"p95", 500}, {"p99", 500}, {"count", 2}}},
                  {"research", {{"p50", 700}, {"p95", 700}, {"p99", 700}, {"count", 1}}}}));
  const json& review = w["gates"]["review"];
  EXPECT_EQ(review["kind"], "approval");
  EXPECT_EQ(review["opened"], 4);
  EXPECT_EQ(review["decisions"], 3);
  EXPECT_EQ(review["approved"], 2);
  EXPECT_EQ(review["rejected"], 1);
  EXPECT_EQ(review["corrected"], 0);
  EXPECT_EQ(review["timeouts"], 1);
  EXPECT_EQ(review["escalations"], 1);
  EXPECT_EQ(review["overturned"], 1);
  EXPECT_DOUBLE_EQ(review["agent_accuracy"].get<double>(), 2.0 / 3.0);
  const json& check = w["gates"]["check"];
  EXPECT_EQ(check["kind"], "review");
  EXPECT_EQ(check["opened"], 1);
  EXPECT_EQ(check["decisions"], 1);
  EXPECT_EQ(check["corrected"], 1);
  EXPECT_EQ(check["overturned"], 1);
  EXPECT_DOUBLE_EQ(check["agent_accuracy"].get<double>(), 0.0);
  EXPECT_EQ(w["gates"].size(), 2u);

  const json* l2 = group(doc, "lead", 2);
  ASSERT_NE(l2, nullptr);
  EXPECT_EQ((*l2)["runs"], 1);
  EXPECT_DOUBLE_EQ((*l2)["completion_rate"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ((*l2)["exception_rate"].get<double>(), 0.0);
  EXPECT_EQ((*l2)["exceptions_by_reason"], json::object());
  EXPECT_DOUBLE_EQ((*l2)["retry_rate"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ((*l2)["cost_per_completed_run_micros"].get<double>(), 700.0);
  EXPECT_EQ((*l2)["approval_latency_ms"], (json{{"p50", nullptr}, {"p95", nullptr}, {"count", 0}}));
  EXPECT_EQ((*l2)["time_to_resolve_ms"]["count"], 0);
  EXPECT_EQ((*l2)["gates"], json::object());
  EXPECT_EQ((*l2)["tokens"], (json{{"in", 1}, {"out", 2}}));

  const json* inv = group(doc, "invoice", 1);
  ASSERT_NE(inv, nullptr);
  EXPECT_EQ((*inv)["runs"], 2);
  EXPECT_EQ((*inv)["completed"], 1);
  EXPECT_EQ((*inv)["running"], 1);
  EXPECT_DOUBLE_EQ((*inv)["completion_rate"].get<double>(), 1.0);
  // The good entries around the malformed ones still count; a duration of the
  // wrong type is a result without a latency sample.
  EXPECT_EQ((*inv)["step_results"], 2);
  EXPECT_EQ((*inv)["step_latency_ms"]["extract"], (json{{"p50", 80}, {"p95", 80}, {"p99", 80}, {"count", 1}}));
  EXPECT_EQ((*inv)["ever_excepted"], 1);
  EXPECT_EQ((*inv)["tokens"], (json{{"in", 7}, {"out", 8}}));
  // The completed run cost nothing; the running one's cost is not per completed run.
  EXPECT_DOUBLE_EQ((*inv)["cost_per_completed_run_micros"].get<double>(), 0.0);
  EXPECT_EQ((*inv)["cost_micros"], 9);
  EXPECT_EQ((*inv)["gates"], json::object());
}

TEST_F(CoordinatorStatsTest, WindowIsInclusiveAndUntilDefaultsToNow) {
  write_data_set();
  StatsQuery q;
  q.since_ms = 1000;
  q.until_ms = 1040;
  auto r = stats(q);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["since_ms"], 1000);
  EXPECT_EQ((*r)["until_ms"], 1040);
  EXPECT_EQ((*r)["runs_scanned"], 5);  // r1..r5, both ends included
  ASSERT_EQ((*r)["workflows"].size(), 1u);
  const json& w = (*r)["workflows"][0];
  EXPECT_EQ(w["runs"], 5);
  EXPECT_EQ(w["completed"], 2);
  EXPECT_EQ(w["exceptions"], 2);
  EXPECT_EQ(w["cancelled"], 1);
  EXPECT_EQ(w["time_to_resolve_ms"], (json{{"p50", 500}, {"p95", 3000}, {"count", 2}}));

  q.since_ms = 1001;
  q.until_ms = 1039;
  r = stats(q);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["runs_scanned"], 3);  // r2..r4

  // until 0 = now: runs started after now are not read.
  q = StatsQuery{};
  r = stats(q, 2500);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["until_ms"], 2500);
  EXPECT_EQ((*r)["runs_scanned"], 10);
  EXPECT_EQ((*r)["workflows"].size(), 2u);
  EXPECT_EQ(group(*r, "invoice", 1), nullptr);

  // A window with nothing in it.
  q.since_ms = 5000;
  q.until_ms = 6000;
  r = stats(q);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["runs_scanned"], 0);
  EXPECT_EQ((*r)["workflows"], json::array());
}

TEST_F(CoordinatorStatsTest, WorkflowAndVersionFilter) {
  write_data_set();
  StatsQuery q;
  q.workflow = "lead";
  q.version = 2;
  auto r = stats(q);
  ASSERT_TRUE(r) << r.status().to_string();
  ASSERT_EQ((*r)["workflows"].size(), 1u);
  EXPECT_EQ((*r)["workflows"][0]["version"], 2);
  EXPECT_EQ((*r)["workflows"][0]["runs"], 1);
  EXPECT_EQ((*r)["runs_scanned"], 14);  // the index has no workflow: every run in the window is read
  EXPECT_EQ((*r)["runs_counted"], 1);

  q.version = 0;
  r = stats(q);
  ASSERT_TRUE(r);
  ASSERT_EQ((*r)["workflows"].size(), 2u);
  EXPECT_EQ((*r)["workflows"][0]["runs"], 9);
  EXPECT_EQ((*r)["workflows"][1]["runs"], 1);

  q.workflow = "";
  q.version = 1;  // version 1 of every workflow
  r = stats(q);
  ASSERT_TRUE(r);
  ASSERT_EQ((*r)["workflows"].size(), 2u);
  EXPECT_EQ((*r)["workflows"][0]["workflow"], "invoice");
  EXPECT_EQ((*r)["workflows"][1]["workflow"], "lead");

  q.workflow = "nope";
  q.version = 0;
  r = stats(q);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["workflows"], json::array());
  EXPECT_EQ((*r)["runs_counted"], 0);
}

TEST_F(CoordinatorStatsTest, MaxRunsReadsTheNewestAndSaysTruncated) {
  write_data_set();
  StatsQuery q;
  q.max_runs = 3;
  auto r = stats(q);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["truncated"], true);
  EXPECT_EQ((*r)["runs_scanned"], 3);  // broken (3030), gone (3020), r12 (3010)
  EXPECT_EQ((*r)["runs_skipped"], 1);
  EXPECT_EQ((*r)["runs_missing"], 1);
  ASSERT_EQ((*r)["workflows"].size(), 1u);
  EXPECT_EQ((*r)["workflows"][0]["workflow"], "invoice");
  EXPECT_EQ((*r)["workflows"][0]["runs"], 1);

  q.max_runs = 14;  // exactly what the window holds
  r = stats(q);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["truncated"], false);
  EXPECT_EQ((*r)["runs_scanned"], 14);

  q.max_runs = 13;
  r = stats(q);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)["truncated"], true);
  EXPECT_EQ((*r)["runs_scanned"], 13);  // r1, the oldest, is left out
  EXPECT_EQ(group(*r, "lead", 1)->at("runs"), 8);
}

TEST_F(CoordinatorStatsTest, EmptyNamespaceHasZeroRuns) {
  write_data_set();
  auto r = compute_stats(*client_, "other", StatsQuery{}, kNow);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["runs_scanned"], 0);
  EXPECT_EQ((*r)["runs_counted"], 0);
  EXPECT_EQ((*r)["truncated"], false);
  EXPECT_EQ((*r)["workflows"], json::array());
}

TEST_F(CoordinatorStatsTest, BadQueriesAreRefused) {
  StatsQuery q;
  q.since_ms = 2000;
  q.until_ms = 1000;
  auto r = stats(q);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  q = StatsQuery{};
  q.max_runs = 0;
  r = stats(q);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  q.max_runs = kMaxStatsRuns + 1;
  r = stats(q);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST_F(CoordinatorStatsTest, WrongTypeRunKeyIsSkippedWrongTypeIndexIsAnError) {
  append_run(*client_, kNs, "ok", 10, hash("lead", 1, "completed"), {});
  client_->append({"ZADD", keys::runs_index(kNs), "20", "str"});
  client_->append({"SET", keys::run(kNs, "str"), "not a hash"});
  flush();
  auto r = stats();
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["runs_scanned"], 2);
  EXPECT_EQ((*r)["runs_counted"], 1);
  EXPECT_EQ((*r)["runs_skipped"], 1);

  auto del = client_->command({"DEL", keys::runs_index("bad")});
  ASSERT_TRUE(del);
  auto set = client_->command({"SET", keys::runs_index("bad"), "x"});
  ASSERT_TRUE(set);
  r = compute_stats(*client_, "bad", StatsQuery{}, kNow);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST_F(CoordinatorStatsTest, RedisDownIsUnavailable) {
  write_data_set();
  // A client whose server has gone: the next call fails with kUnavailable.
  auto shutdown = client_->command({"SHUTDOWN", "NOSAVE"});
  (void)shutdown;  // the connection closes instead of answering
  auto r = stats();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
}

TEST_F(CoordinatorStatsTest, LongAuditStreamIsReadInPages) {
  const std::size_t n = 3 * kStatsAuditPage + 17;
  std::vector<Entry> audit;
  for (std::size_t i = 1; i <= n; ++i) {
    audit.push_back(E("step_result", static_cast<int64_t>(i), result("loop#" + std::to_string(i), "ok",
                                                                     static_cast<int64_t>(i))));
  }
  audit.push_back(E("run_exception", 100000, {{"reason", "x"}}));
  audit.push_back(E("operator_action", 100250, {{"action", "retry"}}));
  append_run(*client_, kNs, "long", 10, hash("loopy", 1, "running"), audit);
  append_run(*client_, kNs, "short", 11, hash("loopy", 1, "completed"),
             {E("step_result", 1, result("loop", "ok", 0))});
  flush();
  auto r = stats();
  ASSERT_TRUE(r) << r.status().to_string();
  const json& w = (*r)["workflows"][0];
  EXPECT_EQ(w["step_results"], n + 1);
  // Samples 0, 1..n: nearest rank over n+1 values.
  const std::size_t m = n + 1;
  auto at_rank = [](std::size_t rank) { return static_cast<int64_t>(rank - 1); };
  EXPECT_EQ(w["step_latency_ms"]["loop"]["count"], m);
  EXPECT_EQ(w["step_latency_ms"]["loop"]["p50"], at_rank((50 * m + 99) / 100));
  EXPECT_EQ(w["step_latency_ms"]["loop"]["p95"], at_rank((95 * m + 99) / 100));
  EXPECT_EQ(w["step_latency_ms"]["loop"]["p99"], at_rank((99 * m + 99) / 100));
  // The entries after the last page boundary were read too.
  EXPECT_EQ(w["time_to_resolve_ms"], (json{{"p50", 250}, {"p95", 250}, {"count", 1}}));
}

TEST(CoordinatorStatsAccumulatorTest, NearestRank) {
  std::vector<int64_t> v = {15, 20, 35, 40, 50};
  EXPECT_EQ(nearest_rank(v, 5), 15);
  EXPECT_EQ(nearest_rank(v, 30), 20);
  EXPECT_EQ(nearest_rank(v, 40), 20);
  EXPECT_EQ(nearest_rank(v, 50), 35);
  EXPECT_EQ(nearest_rank(v, 100), 50);
  std::vector<int64_t> twenty;
  for (int i = 1; i <= 20; ++i) twenty.push_back(i);
  EXPECT_EQ(nearest_rank(twenty, 95), 19);  // rank exactly 19, not pushed to 20
  EXPECT_EQ(nearest_rank(twenty, 50), 10);
  EXPECT_EQ(nearest_rank({7}, 99), 7);
}

TEST(CoordinatorStatsAccumulatorTest, PureAggregationWithoutRedis) {
  StatsAccumulator acc("lead", 0);
  StatsAccumulator::HashPairs done = {{"wf", "lead"}, {"ver", "3"}, {"status", "completed"}};
  StatsAccumulator::HashPairs other = {{"wf", "invoice"}, {"ver", "3"}, {"status", "completed"}};
  EXPECT_TRUE(acc.add_run(done, {{"step_result", 1, result("a", "ok", 10, usage(1, 1, 100)).dump()},
                                 {"retry_scheduled", 2, "{}"},
                                 {"step_result", 3, result("a", "failed", 10).dump()}}));
  EXPECT_FALSE(acc.add_run(other, {{"step_result", 1, result("a", "ok", 10).dump()}}));
  EXPECT_FALSE(acc.add_run({}, {}));
  EXPECT_FALSE(acc.add_run({{"wf", "lead"}, {"ver", "x"}, {"status", "running"}}, {}));
  // begin_run without end_run: the previous run is ended first.
  ASSERT_TRUE(acc.begin_run({{"wf", "lead"}, {"ver", "3"}, {"status", "exception"}, {"reason", ""}}));
  acc.add_entry({"run_exception", 5, ""});
  acc.add_entry({"budget_fallback", 6, ""});
  ASSERT_TRUE(acc.begin_run({{"wf", "lead"}, {"ver", "3"}, {"status", "running"}}));
  acc.add_entry({"operator_action", 10, ""});  // no open exception in this run: not a resolve time
  acc.end_run();
  acc.add_entry({"collision", 11, ""});  // no current run: ignored
  EXPECT_EQ(acc.runs_counted(), 3u);
  EXPECT_EQ(acc.runs_filtered(), 1u);
  EXPECT_EQ(acc.runs_missing(), 1u);
  EXPECT_EQ(acc.runs_skipped(), 1u);
  json out = acc.to_json();
  ASSERT_EQ(out.size(), 1u);
  const json& w = out[0];
  EXPECT_EQ(w["runs"], 3);
  EXPECT_EQ(w["exceptions_by_reason"], (json{{"unknown", 1}}));
  EXPECT_EQ(w["ever_excepted"], 1);
  EXPECT_DOUBLE_EQ(w["fallback_rate"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(w["retry_rate"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(w["completion_rate"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(w["cost_per_completed_run_micros"].get<double>(), 100.0);
  EXPECT_EQ(w["time_to_resolve_ms"]["count"], 0);
  EXPECT_EQ(w["collisions"], 0);

  StatsAccumulator none;
  EXPECT_EQ(none.to_json(), json::array());
  ASSERT_TRUE(none.add_run({{"wf", "x"}, {"ver", "1"}, {"status", "running"}}, {}));
  json x = none.to_json()[0];
  EXPECT_TRUE(x["completion_rate"].is_null());  // nothing ended
  EXPECT_TRUE(x["retry_rate"].is_null());       // no step results
  EXPECT_TRUE(x["cost_per_completed_run_micros"].is_null());
}

// Not a check: how long stats over 5,000 runs (about 12 audit entries each)
// take against a local redis-server.
TEST_F(CoordinatorStatsTest, MeasureFiveThousandRuns) {
  constexpr int kRuns = 5000;
  for (int i = 0; i < kRuns; ++i) {
    const std::string status = i % 10 == 0 ? "exception" : i % 10 == 1 ? "running" : "completed";
    std::vector<Entry> audit = {
        E("step_result", 10, result("respond", "ok", 100 + i % 50, usage(100, 50, 1200))),
        E("step_result", 20, result("qualify", i % 7 == 0 ? "retryable" : "ok", 200 + i % 90, usage(300, 80, 3400))),
        E("step_result", 40, result("qualify", "ok", 210 + i % 70, usage(300, 80, 3400))),
        E("gate_opened", 50, opened("review", "approval")),
        E("gate_decided", 50 + 1000 * (i % 30), decided("review", i % 5 ? "approved" : "rejected", "approval",
                                                        1000 * (i % 30), i % 5 == 0)),
        E("step_result", 60000, result("book", "ok", 400 + i % 200, usage(50, 20, 800))),
        E("retry_scheduled", 21, {{"step", "qualify"}, {"attempt", 1}, {"error", "x"}, {"delay_ms", 1}}),
        E("run_exception", 70000, {{"reason", "missing_field"}}),
        E("operator_action", 70000 + 100 * (i % 100), {{"action", "retry"}}),
        E("collision", 80000, {{"step", "book"}}),
        E("gate_opened", 80001, opened("check", "review")),
        E("run_completed", 90000, {{"duration_ms", 90000}})};
    append_run(*client_, kNs, "p" + std::to_string(i), 1000 + i,
               hash(i % 2 ? "lead" : "invoice", 1 + i % 3, status, status == "exception" ? "missing_field" : ""),
               audit);
    if (client_->pending() > 2000) flush();
  }
  flush();
  auto t0 = std::chrono::steady_clock::now();
  auto r = stats();
  auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ((*r)["runs_counted"], kRuns);
  EXPECT_EQ((*r)["entries_skipped"], 0);
  EXPECT_EQ((*r)["workflows"].size(), 6u);
  std::printf("[ MEASURE  ] compute_stats over %d runs (%d audit entries): %.1f ms\n", kRuns, kRuns * 12, ms);
}

}  // namespace
}  // namespace baton::coordinator
