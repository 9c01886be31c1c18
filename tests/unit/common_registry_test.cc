// Registry: concurrent readers while workflows are added, add_yaml, the miss
// handler (used to fetch applied workflows from Redis on a miss).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "common/workflow/parser.h"
#include "common/workflow/registry.h"

namespace baton::workflow {
namespace {

std::string yaml(const std::string& name, int version, const std::string& role) {
  return "name: " + name + "\nversion: " + std::to_string(version) + "\nsteps:\n  - id: a\n    role: " + role +
         "\n";
}

TEST(RegistryVersions, AddYamlParsesAddsAndRefusesConflicts) {
  Registry reg;
  ASSERT_TRUE(reg.add_yaml(yaml("w", 1, "r"), "<applied>").is_ok());
  EXPECT_EQ(reg.find("w", 1)->source_path, "<applied>");
  // Same content (other layout): accepted, first copy kept.
  ASSERT_TRUE(reg.add_yaml("# again\n" + yaml("w", 1, "r"), "other.yaml").is_ok());
  EXPECT_EQ(reg.find("w", 1)->source_path, "<applied>");
  Status conflict = reg.add_yaml(yaml("w", 1, "s"), "x.yaml");
  EXPECT_EQ(conflict.code(), Code::kAlreadyExists);
  EXPECT_EQ(conflict.message(),
            "x.yaml:1:1: workflow `w` version 1 is already loaded from <applied> with different content (bump "
            "`version`)");
  Status bad = reg.add_yaml("name: w\n", "<applied>");
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.message(), "<applied>:1:1: missing required key `steps`");
  ASSERT_TRUE(reg.add_yaml(yaml("w", 3, "t"), "<applied>").is_ok());
  EXPECT_EQ(reg.find("w")->version, 3u);
  EXPECT_EQ(reg.find("w", 2), nullptr);
  EXPECT_EQ(reg.roles(), (std::vector<std::string>{"r", "t"}));
}

// Readers never see a torn registry and keep their copies while versions are
// added; every added version is visible once add() returned.
TEST(RegistryVersions, ReadersRunConcurrentlyWithAnAdder) {
  Registry reg;
  ASSERT_TRUE(reg.add_yaml(yaml("w", 1, "r1"), "<applied>").is_ok());
  constexpr int kVersions = 50;
  std::vector<WorkflowPtr> parsed;
  for (int v = 2; v <= kVersions; ++v) {
    auto wf = parse_workflow(yaml("w", v, "r" + std::to_string(v)), "<applied>");
    ASSERT_TRUE(wf.is_ok()) << wf.status().message();
    parsed.push_back(std::move(wf).value());
  }

  std::atomic<bool> done{false};
  std::atomic<int> errors{0};
  std::atomic<long> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      uint32_t last_latest = 1;
      WorkflowPtr held = reg.find("w", 1);
      // Bounded: stops when the adder is done, and in any case after 100M reads.
      for (long i = 0; i < 100'000'000 && !done.load(); ++i) {
        WorkflowPtr latest = reg.find("w");
        if (!latest || latest->version < last_latest) ++errors;  // versions only grow
        if (latest) {
          last_latest = latest->version;
          // The step's role matches its version: never a half-built model.
          if (latest->steps.size() != 1 || latest->steps[0].role != "r" + std::to_string(latest->version)) ++errors;
        }
        if (reg.all().empty() || !reg.contains("w", 1)) ++errors;
        ++reads;
      }
      if (!held || held->steps[0].role != "r1") ++errors;  // our copy is still intact
    });
  }
  // Interleave for real: the adder waits (bounded) until the readers are
  // reading, and after each add until they have read again.
  auto wait_for_reads_beyond = [&](long n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (reads.load() <= n && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  };
  wait_for_reads_beyond(2);
  for (const auto& wf : parsed) {
    wait_for_reads_beyond(reads.load());
    Status s = reg.add(wf);
    if (!s) ++errors;
    if (!reg.contains("w", wf->version)) ++errors;  // visible as soon as add() returned
  }
  done.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reads.load(), static_cast<long>(kVersions));
  EXPECT_EQ(reg.find("w")->version, static_cast<uint32_t>(kVersions));
  EXPECT_EQ(reg.all().size(), static_cast<std::size_t>(kVersions));
}

TEST(RegistryVersions, MissHandlerCanAddAndFindLooksAgainOnce) {
  Registry reg;
  std::vector<std::string> misses;
  reg.set_miss_handler([&](std::string_view name, uint32_t version) {
    misses.push_back(std::string(name) + "@" + std::to_string(version));
    if (name == "fetched") (void)reg.add_yaml(yaml("fetched", 2, "r"), "<applied>");
  });
  ASSERT_NE(reg.find("fetched", 2), nullptr);
  EXPECT_EQ(reg.find("fetched", 2)->version, 2u);  // now known: no second miss
  EXPECT_EQ(reg.find("nope"), nullptr);
  EXPECT_EQ(reg.find("fetched", 9), nullptr);
  EXPECT_FALSE(reg.contains("other", 1));  // contains() never calls the handler
  EXPECT_EQ(misses, (std::vector<std::string>{"fetched@2", "nope@0", "fetched@9"}));

  reg.set_miss_handler(nullptr);
  EXPECT_EQ(reg.find("nope"), nullptr);
  EXPECT_EQ(misses.size(), 3u);
}

}  // namespace
}  // namespace baton::workflow
