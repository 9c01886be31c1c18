// The example custom worker binary (examples/invoice-custom-agents/worker,
// built as baton-example-worker) against a real redis-server and
// baton-broker: it takes baton-worker's flags, serves the example's
// `bank_check` step with its C++ agent (IBAN on file, a different one, bad
// check digits, none on the invoice), refuses a bad `bank_check` config as
// FAILED bad_agent_config naming the key while it keeps serving, still hosts
// the built-in kinds, and exits 0 on SIGTERM and 2 on bad flags.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/kafka/kafka.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "proto/baton/v1/baton.pb.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kNs = "exw";
constexpr const char* kRole = "treasury";

class ExampleWorker : public ::testing::Test {
 protected:
  ExampleWorker() : broker_(2, kNs, kRole) {}

  void SetUp() override {
    ASSERT_TRUE(redis_.ok());
    ASSERT_TRUE(broker_.ok());
    cfg_.brokers = broker_.bootstrap();
    cfg_.session_timeout_ms = 3000;
    auto p = kafka::make_producer(cfg_);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    producer_ = std::move(p).value();
    auto c = kafka::make_consumer(cfg_, "reader-" + random_id());
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    events_ = std::move(c).value();
    ASSERT_TRUE(events_->subscribe({keys::events_topic(kNs)}).is_ok());

    // The example's workflow, plus one whose bank_check config is wrong and
    // one with a built-in kind on the same role.
    dir_ = make_temp_dir("baton-example-worker");
    std::filesystem::copy_file(example_dir("invoice-custom-agents") + "/workflow.yaml", dir_ + "/workflow.yaml");
    std::ofstream(dir_ + "/other.yaml") << "name: other\nversion: 1\nsteps:\n"
                                           "  - id: bad\n    role: treasury\n"
                                           "    agent: { kind: bank_check, iban: steps.x.iban, account: x }\n"
                                           "    next: echo\n"
                                           "  - id: echo\n    role: treasury\n    agent: { kind: echo }\n";
  }

  void TearDown() override {
    worker_.stop();
    remove_tree(dir_);
  }

  bool start_worker() {
    return worker_.start({bin_dir() + "/baton-example-worker", "--role", kRole, "--brokers", broker_.bootstrap(),
                          "--redis", redis_.address(), "--namespace", kNs, "--workflows", dir_, "--concurrency", "2",
                          "--worker-id", "example-1"},
                         dir_ + "/worker.log", {{"BATON_LOG_FORMAT", "text"}});
  }

  void produce(const std::string& run_id, const std::string& workflow, const std::string& step, json context) {
    v1::Task t;
    t.set_run_id(run_id);
    t.set_step_id(step);
    t.set_attempt(1);
    t.set_role(kRole);
    t.set_namespace_(kNs);
    t.mutable_workflow()->set_name(workflow);
    t.mutable_workflow()->set_version(1);
    t.set_input_json(json({{"invoice_id", run_id}}).dump());
    t.set_context_json(context.dump());
    t.set_idempotency_key(run_id + ":" + step + ":1");
    std::atomic<int> done{0};
    ASSERT_TRUE(producer_
                    ->produce(keys::tasks_topic(kNs, kRole), run_id, t.SerializeAsString(),
                              [&](const Status& s) {
                                EXPECT_TRUE(s.is_ok()) << s.to_string();
                                done++;
                              })
                    .is_ok());
    ASSERT_TRUE(producer_->flush(10000).is_ok());
    ASSERT_EQ(done.load(), 1);
  }

  // The step results for `run_ids`, read from the events topic (bounded wait).
  std::map<std::string, v1::StepResult> results(const std::vector<std::string>& run_ids) {
    std::map<std::string, v1::StepResult> out;
    auto got = wait_until(
        [&] {
          std::vector<kafka::Message> ms;
          (void)events_->poll_batch(ms, 100, 50);
          for (const auto& m : ms) {
            v1::RunEvent ev;
            if (ev.ParseFromString(m.payload) && ev.has_step_result()) out[ev.run_id()] = ev.step_result();
          }
          for (const auto& id : run_ids)
            if (!out.count(id)) return false;
          return true;
        },
        60s, [&] { return std::to_string(out.size()) + " results; worker log:\n" + read_file(dir_ + "/worker.log"); },
        1ms);
    EXPECT_TRUE(got);
    return out;
  }

  RedisServer redis_;
  Broker broker_;
  kafka::KafkaConfig cfg_;
  std::unique_ptr<kafka::Producer> producer_;
  std::unique_ptr<kafka::Consumer> events_;
  std::string dir_;
  Process worker_;
};

json context(const json& invoice_iban, const std::string& on_file) {
  json extract = {{"supplier", "Northwind Office Supplies BV"}, {"total", 1512.5}};
  if (!invoice_iban.is_null()) extract["iban"] = invoice_iban;
  return {{"extract", extract}, {"po_lookup", {{"found", true}, {"iban", on_file}}}};
}

TEST_F(ExampleWorker, ServesTheCppAgentWithTheBuiltInsAndRefusesABadConfig) {
  ASSERT_TRUE(start_worker());
  const std::string wf = "invoice-custom-agents";
  produce("same", wf, "bank_check", context("nl91 abna 0417 1643 00", "NL91 ABNA 0417 1643 00"));
  produce("other-account", wf, "bank_check", context("NL64 BUNQ 2041 8766 55", "NL91 ABNA 0417 1643 00"));
  produce("typo", wf, "bank_check", context("NL91 ABNA 0417 1643 01", "NL91 ABNA 0417 1643 00"));
  produce("none", wf, "bank_check", context(json(), "NL91 ABNA 0417 1643 00"));
  produce("not-a-string", wf, "bank_check", context(12345, "NL91 ABNA 0417 1643 00"));
  produce("no-file", wf, "bank_check", context("NL91 ABNA 0417 1643 00", ""));
  produce("bad-config", "other", "bad", json::object());
  produce("builtin", "other", "echo", json::object());
  auto r = results({"same", "other-account", "typo", "none", "not-a-string", "no-file", "bad-config", "builtin"});
  ASSERT_EQ(r.size(), 8u);

  auto out = [&](const std::string& id) {
    EXPECT_EQ(r[id].status(), v1::StepResult::OK) << id << ": " << r[id].error().message();
    EXPECT_EQ(r[id].worker_id(), "example-1");
    return json::parse(r[id].output_json(), nullptr, false);
  };
  EXPECT_EQ(out("same"), (json{{"ok", true},
                               {"iban", "NL91ABNA0417164300"},
                               {"on_file", "NL91ABNA0417164300"},
                               {"iban_valid", true},
                               {"reason", "IBAN matches the account on file"}}));
  json o = out("other-account");
  EXPECT_EQ(o["ok"], false);
  EXPECT_EQ(o["iban_valid"], true);
  o = out("typo");
  EXPECT_EQ(o["ok"], false);
  EXPECT_EQ(o["iban_valid"], false);
  o = out("none");
  EXPECT_EQ(o["ok"], true);
  EXPECT_EQ(o["iban"], "");
  EXPECT_EQ(out("not-a-string")["iban"], "");  // not a string: treated as absent
  o = out("no-file");
  EXPECT_EQ(o["ok"], false);
  EXPECT_EQ(o["reason"], "no account on file for the supplier");

  EXPECT_EQ(r["bad-config"].status(), v1::StepResult::FAILED);
  EXPECT_EQ(r["bad-config"].error().code(), "bad_agent_config");
  EXPECT_NE(r["bad-config"].error().message().find("bank_check: `account` is not a setting"), std::string::npos)
      << r["bad-config"].error().message();
  EXPECT_EQ(r["builtin"].status(), v1::StepResult::OK) << r["builtin"].error().message();

  worker_.signal(SIGTERM);
  int status = -1;
  ASSERT_TRUE(worker_.wait_exit(20s, &status)) << read_file(dir_ + "/worker.log");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << exit_text(status) << read_file(dir_ + "/worker.log");
}

TEST(ExampleWorkerBinary, TakesBatonWorkerFlags) {
  const std::string dir = make_temp_dir("baton-example-worker-flags");
  auto help = run_cli({bin_dir() + "/baton-example-worker", "--help"}, 20s);
  ASSERT_TRUE(help.exited);
  EXPECT_TRUE(WIFEXITED(help.status) && WEXITSTATUS(help.status) == 0) << exit_text(help.status);
  for (const char* flag : {"--role", "--brokers", "--redis", "--namespace", "--workflows", "--concurrency"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << "\n" << help.out;
  auto no_role = run_cli({bin_dir() + "/baton-example-worker", "--workflows", dir}, 20s);
  ASSERT_TRUE(no_role.exited);
  EXPECT_TRUE(WIFEXITED(no_role.status) && WEXITSTATUS(no_role.status) == 2) << exit_text(no_role.status);
  auto bad_dir = run_cli({bin_dir() + "/baton-example-worker", "--role", kRole, "--workflows", dir + "/missing"}, 20s);
  ASSERT_TRUE(bad_dir.exited);
  EXPECT_TRUE(WIFEXITED(bad_dir.status) && WEXITSTATUS(bad_dir.status) == 2) << exit_text(bad_dir.status);
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
