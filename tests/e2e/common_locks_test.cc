// Two workflows that touch the same records never lose a write: 200 runs of
// two `lock: record` workflows on 20 shared records, all started at once
// through the real processes; then every record's final fields are checked
// against a sequential replay of the audit trail (record_written entries in
// version order), every write is there exactly once, and no write collided.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

// Both stamp the shared `acct:<n>` record: their own field and a shared one.
std::string stamp_workflow(const std::string& name, const std::string& field) {
  return "name: " + name + R"(
record:
  key: "acct:{{input.acct}}"
  fields:
    last_a: string
    last_b: string
    by: string
steps:
  - id: stamp
    role: stamper
    lock: record
    agent:
      kind: template
      fields:
        )" + field + R"(: "{{input.tag}}"
        by: "{{input.tag}}"
    writes: [)" + field + R"(, by]
    output: { )" + field + R"(: string, by: string }
    timeout: 20s
)";
}

TEST(RecordLocks, TwoHundredConcurrentRunsOnTwentyRecordsLoseNoWrite) {
  const std::string dir = make_temp_dir("baton-locks");
  std::filesystem::create_directories(dir + "/wf");
  std::ofstream(dir + "/wf/a.yaml") << stamp_workflow("stamp-a", "last_a");
  std::ofstream(dir + "/wf/b.yaml") << stamp_workflow("stamp-b", "last_b");
  DevFleet fleet(dir + "/wf", "locks");
  ASSERT_TRUE(fleet.start());
  ASSERT_TRUE(fleet.wait_ready());
  const std::string api = fleet.api();

  constexpr int kRuns = 200, kRecords = 20;
  struct Started {
    std::string run_id, workflow, acct, tag;
  };
  std::vector<Started> runs;
  for (int i = 0; i < kRuns; ++i) {
    std::string wf = i % 2 ? "stamp-b" : "stamp-a";
    std::string acct = std::to_string(i % kRecords);
    std::string tag = wf + "-" + std::to_string(i);
    auto r = http::request("POST", api + "/v1/runs",
                           json{{"workflow", wf}, {"input", {{"acct", acct}, {"tag", tag}}}}.dump(), 10000);
    ASSERT_TRUE(r && r->status == 202) << (r ? r->body : r.status().to_string());
    runs.push_back({json::parse(r->body)["run_id"], wf, acct, tag});
  }

  // Every run completes.
  std::size_t done = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        done = 0;
        for (const auto& s : runs) {
          auto run = get_run(api, s.run_id);
          if (run && run->value("status", "") == "completed") ++done;
        }
        return done == runs.size();
      },
      seconds(180), [&] { return std::to_string(done) + " of " + std::to_string(runs.size()) + " completed"; },
      std::chrono::milliseconds(500)))
      << read_file(fleet.log());

  auto ep = redis::parse_endpoint(fleet.redis());
  ASSERT_TRUE(ep.is_ok());
  auto rc = redis::Client::connect(*ep);
  ASSERT_TRUE(rc.is_ok());
  // The record_written entries of every run, per record; and the lock trail.
  struct Write {
    int64_t version;
    std::string run;
    json fields;
  };
  std::map<std::string, std::vector<Write>> writes;
  int collisions = 0, fenced = 0, acquired = 0, released = 0;
  for (const auto& s : runs) {
    for (const auto& e : read_run_audit(**rc, "locks", s.run_id)) {
      if (e.kind == "record_written") {
        writes[e.detail.value("record", "")].push_back({e.detail.value("version", int64_t{0}), s.run_id, e.detail["fields"]});
      }
      collisions += e.kind == "collision";
      fenced += e.kind == "write_fenced";
      acquired += e.kind == "lock_acquired";
      released += e.kind == "lock_released";
    }
  }
  EXPECT_EQ(collisions, 0) << "the lock serialises the writers: no optimistic collision";
  EXPECT_EQ(fenced, 0);
  EXPECT_EQ(acquired, kRuns);
  EXPECT_EQ(released, kRuns);
  ASSERT_EQ(writes.size(), static_cast<std::size_t>(kRecords));
  for (int n = 0; n < kRecords; ++n) {
    const std::string key = "acct:" + std::to_string(n);
    SCOPED_TRACE(key);
    auto& ws = writes[key];
    // Each of the record's 10 runs wrote once, at versions 1..10.
    ASSERT_EQ(ws.size(), static_cast<std::size_t>(kRuns / kRecords));
    std::sort(ws.begin(), ws.end(), [](const Write& a, const Write& b) { return a.version < b.version; });
    std::set<std::string> writers;
    for (std::size_t i = 0; i < ws.size(); ++i) {
      EXPECT_EQ(ws[i].version, static_cast<int64_t>(i + 1));
      writers.insert(ws[i].run);
    }
    EXPECT_EQ(writers.size(), ws.size());
    // Sequential replay of the audit trail, in version order.
    std::map<std::string, json> replay;
    for (const auto& w : ws)
      for (const auto& [f, ch] : w.fields.items()) replay[f] = ch["new"];
    auto rec = (*rc)->command({"HGETALL", keys::record("locks", key)});
    ASSERT_TRUE(rec.is_ok());
    std::map<std::string, std::string> stored;
    for (std::size_t i = 0; i + 1 < rec->elements.size(); i += 2) stored[rec->elements[i].str] = rec->elements[i + 1].str;
    EXPECT_EQ(stored["_v"], std::to_string(ws.size()));
    for (const auto& [f, v] : replay) {
      auto got = parse_json(stored[f]);
      ASSERT_TRUE(got.is_ok()) << f << " = " << stored[f];
      EXPECT_EQ(*got, v) << f;
    }
    for (const auto& [f, v] : stored) {
      if (f[0] != '_') {
        EXPECT_TRUE(replay.count(f)) << "field " << f << " is in the record but in no audited write";
      }
    }
    // No lock left behind.
    auto lock = (*rc)->command({"EXISTS", keys::record_lock("locks", key)});
    ASSERT_TRUE(lock.is_ok());
    EXPECT_EQ(lock->integer, 0);
  }
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
