// WorkflowStore against a real redis-server: apply (created / unchanged /
// invalid / conflict / too large), two stores applying different content to
// the same version at once (exactly one wins), load_all, refresh, and the
// refresh-on-miss handler with its rate limit.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/redis/client.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "common/workflow/registry.h"
#include "coordinator/workflow_store.h"
#include "tests/support/servers.h"

namespace baton::coordinator {
namespace {

constexpr const char* kNs = "wfstore";

std::string yaml(const std::string& name, int version, const std::string& role, const std::string& extra = "") {
  return extra + "name: " + name + "\nversion: " + std::to_string(version) +
         "\nsteps:\n  - id: a\n    role: " + role + "\n";
}

class WorkflowStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.ok());
    client_ = connect();
    ASSERT_NE(client_, nullptr);
  }
  std::unique_ptr<redis::Client> connect() {
    auto ep = redis::parse_endpoint(server_.address());
    if (!ep) return nullptr;
    auto c = redis::Client::connect(*ep);
    return c ? std::move(c).value() : nullptr;
  }
  std::string stored(const std::string& field) {
    auto r = client_->command({"HGET", keys::workflows(kNs), field});
    return r && r->is_string() ? r->str : std::string("<nil>");
  }
  long long stored_count() {
    auto r = client_->command({"HLEN", keys::workflows(kNs)});
    return r ? r->integer : -1;
  }

  testing::RedisServer server_;
  std::unique_ptr<redis::Client> client_;
};

TEST_F(WorkflowStoreTest, ApplyCreatesThenUnchangedThenRefusesADifferentContent) {
  WorkflowStore store(*client_, kNs);
  workflow::Registry reg;
  auto a = store.apply(yaml("w", 1, "r"), &reg);
  ASSERT_TRUE(a) << a.status().to_string();
  EXPECT_TRUE(a->created);
  EXPECT_EQ(a->workflow->name, "w");
  EXPECT_EQ(a->workflow->source_path, kAppliedSource);
  EXPECT_EQ(stored("w@1"), yaml("w", 1, "r"));
  ASSERT_NE(reg.find("w", 1), nullptr);  // usable right away

  // Same model, other text: unchanged, and the first text stays.
  auto again = store.apply(yaml("w", 1, "r", "# reformatted\n"), &reg);
  ASSERT_TRUE(again) << again.status().to_string();
  EXPECT_FALSE(again->created);
  EXPECT_EQ(stored("w@1"), yaml("w", 1, "r"));

  auto conflict = store.apply(yaml("w", 1, "other"), &reg);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(conflict.status().message(),
            "<applied>:1:1: workflow `w` version 1 already exists with different content (applied earlier); bump "
            "`version` to change it");
  // Without a registry the conflict is found in Redis.
  auto conflict2 = store.apply(yaml("w", 1, "other"));
  ASSERT_FALSE(conflict2);
  EXPECT_EQ(conflict2.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(stored("w@1"), yaml("w", 1, "r"));
  EXPECT_EQ(reg.find("w", 1)->steps[0].role, "r");

  auto v2 = store.apply(yaml("w", 2, "other"), &reg);
  ASSERT_TRUE(v2);
  EXPECT_TRUE(v2->created);
  EXPECT_EQ(reg.find("w")->version, 2u);
  EXPECT_EQ(stored_count(), 2);
}

TEST_F(WorkflowStoreTest, InvalidAndOversizedAreRefusedAndNothingIsWritten) {
  WorkflowStore store(*client_, kNs);
  auto bad = store.apply("name: w\nversion: 1\nsteps:\n  - id: a\n    role: r\n    timeout: 30\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.status().message().rfind("<applied>:6:14: `timeout` must be a duration", 0), 0u)
      << bad.status().message();
  auto big = store.apply(std::string(limits::kMaxWorkflowFileBytes + 1, '#'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.status().code(), Code::kTooLarge);
  EXPECT_EQ(stored_count(), 0);
}

TEST_F(WorkflowStoreTest, AConflictWithAFileLoadedWorkflowIsRefusedBeforeWriting) {
  workflow::Registry reg;
  auto file = workflow::parse_workflow(yaml("f", 1, "r"), "/etc/baton/f.yaml");
  ASSERT_TRUE(file);
  ASSERT_TRUE(reg.add(*file));
  WorkflowStore store(*client_, kNs);
  auto r = store.apply(yaml("f", 1, "s"), &reg);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), Code::kAlreadyExists);
  EXPECT_NE(r.status().message().find("loaded from /etc/baton/f.yaml"), std::string::npos) << r.status().message();
  EXPECT_EQ(stored_count(), 0);
  // The same content as the file: shared through Redis, reported unchanged.
  auto same = store.apply(yaml("f", 1, "r"), &reg);
  ASSERT_TRUE(same) << same.status().to_string();
  EXPECT_FALSE(same->created);
  EXPECT_EQ(stored("f@1"), yaml("f", 1, "r"));
  EXPECT_EQ(reg.find("f", 1)->source_path, "/etc/baton/f.yaml");
}

// Two replicas (own connections, own registries) apply different content to
// the same version at the same moment, many times over: exactly one wins each
// round, the loser gets kAlreadyExists, and Redis holds the winner's text.
TEST_F(WorkflowStoreTest, TwoStoresApplyingDifferentContentConcurrentlyExactlyOneWins) {
  auto c1 = connect();
  auto c2 = connect();
  ASSERT_TRUE(c1 && c2);
  constexpr int kRounds = 50;
  for (int round = 1; round <= kRounds; ++round) {
    workflow::Registry r1, r2;
    std::string y1 = yaml("race", round, "one");
    std::string y2 = yaml("race", round, "two");
    std::atomic<int> ready{0};
    Result<AppliedWorkflow> out1 = Status(Code::kInternal, "not run");
    Result<AppliedWorkflow> out2 = Status(Code::kInternal, "not run");
    auto go = [&ready](redis::Client& c, const std::string& y, workflow::Registry& r, Result<AppliedWorkflow>& out) {
      ready.fetch_add(1);
      for (int spin = 0; spin < 1'000'000 && ready.load() < 2; ++spin) std::this_thread::yield();
      out = WorkflowStore(c, kNs).apply(y, &r);
    };
    std::thread t1(go, std::ref(*c1), std::cref(y1), std::ref(r1), std::ref(out1));
    std::thread t2(go, std::ref(*c2), std::cref(y2), std::ref(r2), std::ref(out2));
    t1.join();
    t2.join();
    ASSERT_NE(out1.is_ok(), out2.is_ok()) << "round " << round << ": " << out1.status().to_string() << " / "
                                          << out2.status().to_string();
    const auto& loser = out1 ? out2 : out1;
    EXPECT_EQ(loser.status().code(), Code::kAlreadyExists);
    const auto& winner = out1 ? out1 : out2;
    EXPECT_TRUE(winner->created);
    EXPECT_EQ(stored("race@" + std::to_string(round)), out1 ? y1 : y2);
    // Only the winner's registry has it.
    EXPECT_EQ(r1.contains("race", round), out1.is_ok());
    EXPECT_EQ(r2.contains("race", round), out2.is_ok());
  }
}

TEST_F(WorkflowStoreTest, LoadAllAndRefreshFillARegistryAndSkipBadEntries) {
  WorkflowStore store(*client_, kNs);
  ASSERT_TRUE(store.apply(yaml("a", 1, "r")));
  ASSERT_TRUE(store.apply(yaml("b", 3, "s")));
  // Hand-written garbage: not parseable, and a field that lies about its version.
  ASSERT_TRUE(client_->command({"HSET", keys::workflows(kNs), "junk@1", "name: [unclosed"}));
  ASSERT_TRUE(client_->command({"HSET", keys::workflows(kNs), "a@9", yaml("a", 2, "r")}));
  ASSERT_TRUE(client_->command({"HSET", keys::workflows(kNs), "nonsense", yaml("z", 1, "r")}));

  workflow::Registry reg;
  ASSERT_TRUE(store.load_all(reg));
  std::vector<std::string> got;
  for (const auto& wf : reg.all()) got.push_back(keys::workflow_field(wf->name, wf->version));
  EXPECT_EQ(got, (std::vector<std::string>{"a@1", "b@3"}));
  EXPECT_EQ(reg.find("b")->source_path, kAppliedSource);

  // Another replica applies more; refresh picks up only what is new.
  auto other = connect();
  ASSERT_TRUE(other);
  ASSERT_TRUE(WorkflowStore(*other, kNs).apply(yaml("b", 4, "t")));
  ASSERT_TRUE(WorkflowStore(*other, kNs).apply(yaml("c", 1, "u")));
  auto b3 = reg.find("b", 3);
  ASSERT_TRUE(store.refresh(reg));
  got.clear();
  for (const auto& wf : reg.all()) got.push_back(keys::workflow_field(wf->name, wf->version));
  EXPECT_EQ(got, (std::vector<std::string>{"a@1", "b@3", "b@4", "c@1"}));
  EXPECT_EQ(reg.find("b", 3), b3);  // known entries are not reloaded
  EXPECT_EQ(reg.roles(), (std::vector<std::string>{"r", "s", "t", "u"}));
  ASSERT_TRUE(store.refresh(reg));  // nothing new: still fine
  EXPECT_EQ(reg.all().size(), 4u);
}

TEST_F(WorkflowStoreTest, RefreshOnMissFindsAppliedWorkflowsAndIsRateLimited) {
  workflow::Registry reg;
  auto ep = redis::parse_endpoint(server_.address());
  ASSERT_TRUE(ep);
  refresh_on_miss(reg, *ep, kNs, /*min_interval_ms=*/60'000);
  EXPECT_EQ(reg.find("late", 1), nullptr);  // nothing stored yet; this miss is now remembered

  ASSERT_TRUE(WorkflowStore(*client_, kNs).apply(yaml("late", 1, "r")));
  ASSERT_TRUE(WorkflowStore(*client_, kNs).apply(yaml("other", 1, "r")));
  // The same miss within the interval does not go to Redis again...
  EXPECT_EQ(reg.find("late", 1), nullptr);
  // ...but another name@version does, and the refresh loads everything new.
  ASSERT_NE(reg.find("other", 1), nullptr);
  ASSERT_NE(reg.find("late", 1), nullptr);
  EXPECT_EQ(reg.find("late", 1)->source_path, kAppliedSource);

  // Redis gone: a miss stays a miss, nothing throws or hangs.
  workflow::Registry lonely;
  redis::Endpoint nowhere;
  nowhere.port = 1;
  nowhere.connect_timeout_ms = 200;
  refresh_on_miss(lonely, nowhere, kNs);
  EXPECT_EQ(lonely.find("late", 1), nullptr);
}

}  // namespace
}  // namespace baton::coordinator
