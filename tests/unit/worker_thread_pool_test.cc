// ThreadPool: every index runs exactly once per round, never more than `threads`
// at a time, rounds do not bleed into each other, and the threads' large stacks
// carry std::regex over the longest text an agent may search.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <vector>

#include "baton/agent.h"
#include "workers/agents/config.h"
#include "workers/thread_pool.h"

namespace baton::worker {
namespace {

TEST(ThreadPool, RunsEveryIndexOncePerRound) {
  ThreadPool pool(4);
  EXPECT_EQ(pool.size(), 4u);
  for (int round = 0; round < 200; ++round) {
    std::size_t n = static_cast<std::size_t>(round % 37);
    std::vector<std::atomic<int>> hits(n);
    pool.for_each(n, [&](std::size_t i) { hits[i].fetch_add(1); });
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "round " << round << " index " << i;
  }
}

TEST(ThreadPool, NeverRunsMoreThanItsThreads) {
  ThreadPool pool(3);
  std::atomic<int> running{0}, peak{0};
  pool.for_each(60, [&](std::size_t) {
    int now = running.fetch_add(1) + 1;
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    volatile double x = 0;  // a little work so that the threads overlap
    for (int i = 0; i < 20000; ++i) x = x + i;
    running.fetch_sub(1);
  });
  EXPECT_LE(peak.load(), 3);
  EXPECT_GE(peak.load(), 1);
  EXPECT_EQ(running.load(), 0);
}

TEST(ThreadPool, LargeStacksCarryTheLongestRegexSearch) {
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "TSan's per-thread trace cannot follow std::regex's recursion this deep";
#endif
  // On an 8 MiB stack this search overflows; on a pool thread it must not.
  agent::AgentRegistry r;
  agent::register_builtin_agents(r);
  auto a = r.create("rules", {{"text", "{{input.m}}"},
                              {"rules", {{{"label", "x"}, {"regex", "^(a|b)*c"}}}},
                              {"default", "none"},
                              {"max_text_bytes", agent::config::kMaxRegexTextBytes}});
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  agent::OwnedInput in(nlohmann::json{{"m", std::string(agent::config::kMaxRegexTextBytes, 'a') + "c"}});
  ThreadPool pool(2);
  std::string label;
  pool.for_each(1, [&](std::size_t) { label = (*a)->execute(in.view()).output["label"]; });
  EXPECT_EQ(label, "none");  // the "c" lies beyond the searched prefix
}

}  // namespace
}  // namespace baton::worker
