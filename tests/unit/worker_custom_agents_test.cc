// examples/invoice-custom-agents, the Python step: the workflow's own
// `po_lookup` step (an exec agent running agents/po_lookup.py with python3)
// built by the worker's Executor from workflow.yaml, with
// ${BATON_WORKFLOWS_DIR} taken from the environment as `batonctl dev` sets it.
// Every answer of the script (found by PO number, by supplier and amount, not
// found, someone else's order, a closed order), its permanent failure (an order
// row it cannot read: FAILED with the script's stderr) and its transient ones
// (the export locked or missing: RETRYABLE), and the refusal of the step when
// BATON_WORKFLOWS_DIR is not set. The C++ step (bank_check) runs in
// tests/e2e/common_custom_agents_test.cc.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "baton/agent.h"
#include "common/workflow/parser.h"
#include "tests/support/process.h"
#include "workers/executor.h"

namespace baton::worker {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string example_dir() {
  const std::string rel = "/examples/invoice-custom-agents";
  std::string dir = baton::testing::source_dir() + rel;
  if (std::ifstream(dir + "/workflow.yaml").good()) return dir;
  std::string here = __FILE__;  // <root>/tests/unit/worker_custom_agents_test.cc
  return here.substr(0, here.rfind("/tests/unit/")) + rel;
}

// An Executor for the example's `purchasing` role (the po_lookup step), built
// with BATON_WORKFLOWS_DIR = `dir` (unset when empty).
class PoLookup {
 public:
  explicit PoLookup(const std::string& dir) {
    if (dir.empty()) {
      unsetenv("BATON_WORKFLOWS_DIR");
    } else {
      setenv("BATON_WORKFLOWS_DIR", dir.c_str(), 1);
    }
    auto wf = workflow::parse_workflow_file(example_dir() + "/workflow.yaml");
    EXPECT_TRUE(wf.is_ok()) << wf.status().to_string();
    if (!wf) return;
    wf_ = *wf;
    auto reg = std::make_shared<workflow::Registry>();
    EXPECT_TRUE(reg->add(wf_).is_ok());
    agent::register_builtin_agents(agents_);
    exec_ = std::make_unique<Executor>(reg, agents_, "purchasing", "custom-agents-test");
  }

  // Runs po_lookup after an `extract` that read `invoice`.
  v1::StepResult run(const json& invoice, int attempt = 1) {
    v1::Task t;
    t.set_run_id("run-1");
    t.set_step_id("po_lookup");
    t.set_attempt(attempt);
    t.set_role("purchasing");
    t.mutable_workflow()->set_name(wf_->name);
    t.mutable_workflow()->set_version(wf_->version);
    t.set_input_json(json({{"invoice_id", "INV-T"}}).dump());
    t.set_context_json(json({{"extract", invoice}}).dump());
    return exec_->execute(t, RecordView{});
  }

  std::unique_ptr<Executor> exec_;

 private:
  workflow::WorkflowPtr wf_;
  agent::AgentRegistry agents_;
};

json output_of(const v1::StepResult& r) { return json::parse(r.output_json(), nullptr, false); }

json invoice(const std::string& supplier, double total, const std::string& po = "") {
  json j = {{"supplier", supplier}, {"invoice_no", "X-1"}, {"total", total}};
  if (!po.empty()) j["po_number"] = po;
  return j;
}

TEST(CustomAgentsExample, ThePythonStepAnswersFromThePurchaseOrderFile) {
  PoLookup step(example_dir());
  ASSERT_TRUE(step.exec_);
  ASSERT_EQ(step.exec_->broken_steps(), std::vector<std::string>());
  ASSERT_EQ(step.exec_->ready_steps(), 1u);

  // By the PO number on the invoice.
  auto r = step.run(invoice("Northwind Office Supplies BV", 1512.5, "PO-8101"));
  ASSERT_EQ(r.status(), v1::StepResult::OK) << r.error().code() << ": " << r.error().message();
  json out = output_of(r);
  EXPECT_EQ(out["found"], true);
  EXPECT_EQ(out["matched_by"], "po_number");
  EXPECT_EQ(out["po_number"], "PO-8101");
  EXPECT_EQ(out["amount"], 1512.5);
  EXPECT_EQ(out["vat_rate"], 0.21);
  EXPECT_EQ(out["status"], "open");
  EXPECT_EQ(out["supplier_matches"], true);
  EXPECT_EQ(out["iban"], "NL91 ABNA 0417 1643 00");

  // No PO reference: the supplier's only open order of that total.
  r = step.run(invoice("quayside  signage LTD", 1331.0));
  ASSERT_EQ(r.status(), v1::StepResult::OK) << r.error().message();
  out = output_of(r);
  EXPECT_EQ(out["found"], true);
  EXPECT_EQ(out["matched_by"], "supplier_and_amount");
  EXPECT_EQ(out["po_number"], "PO-8110");

  // Answers the route sends to the exception queue: still OK results.
  out = output_of(step.run(invoice("Polder Coffee Roasters", 250.0)));
  EXPECT_EQ(out["found"], false) << out.dump();
  EXPECT_NE(out.value("reason", "").find("no PO reference"), std::string::npos) << out.dump();
  out = output_of(step.run(invoice("Greenway Catering", 981.0, "PO-8199")));
  EXPECT_EQ(out, json({{"found", false}, {"reason", "no purchase order PO-8199"}}));
  out = output_of(step.run(invoice("Northwind Office Supplies BV", 981.0, "PO-8107")));
  EXPECT_EQ(out["found"], true);
  EXPECT_EQ(out["supplier_matches"], false) << out.dump();
  out = output_of(step.run(invoice("Harbor Print & Copy", 580.8, "PO-8105")));
  EXPECT_EQ(out["status"], "closed") << out.dump();
  EXPECT_EQ(out["reason"], "PO-8105 is closed");

  // A row the script cannot read: exit 1, FAILED, the script's stderr in the error.
  r = step.run(invoice("Delta Freight Logistics", 1016.4, "PO-8109"));
  EXPECT_EQ(r.status(), v1::StepResult::FAILED);
  EXPECT_EQ(r.error().code(), "exec_failed");
  EXPECT_NE(r.error().message().find("exited with 1"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("line 10 (PO-8109): amount 'TBD' is not a number"), std::string::npos)
      << r.error().message();
}

// A copy of the example (the script and the order file) where the test may
// lock and remove the export.
TEST(CustomAgentsExample, ThePythonStepIsRetryableWhileTheExportIsUnavailable) {
  const std::string dir = baton::testing::make_temp_dir("baton-custom-agents");
  fs::create_directories(dir + "/agents");
  fs::copy_file(example_dir() + "/agents/po_lookup.py", dir + "/agents/po_lookup.py");
  fs::copy_file(example_dir() + "/purchase_orders.csv", dir + "/purchase_orders.csv");
  PoLookup step(dir);
  ASSERT_TRUE(step.exec_);
  const json inv = invoice("Northwind Office Supplies BV", 1512.5, "PO-8101");
  ASSERT_EQ(step.run(inv).status(), v1::StepResult::OK);

  std::ofstream(dir + "/purchase_orders.csv.lock") << "export running\n";
  auto r = step.run(inv);
  EXPECT_EQ(r.status(), v1::StepResult::RETRYABLE);
  EXPECT_EQ(r.error().code(), "exec_failed");
  EXPECT_NE(r.error().message().find("exited with 75"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("is being exported"), std::string::npos) << r.error().message();
  fs::remove(dir + "/purchase_orders.csv.lock");

  fs::rename(dir + "/purchase_orders.csv", dir + "/orders.bak");
  r = step.run(inv, 2);
  EXPECT_EQ(r.status(), v1::StepResult::RETRYABLE);
  EXPECT_NE(r.error().message().find("cannot read"), std::string::npos) << r.error().message();
  fs::rename(dir + "/orders.bak", dir + "/purchase_orders.csv");

  r = step.run(inv, 3);
  EXPECT_EQ(r.status(), v1::StepResult::OK) << r.error().message();
  EXPECT_EQ(output_of(r)["po_number"], "PO-8101");
  baton::testing::remove_tree(dir);
}

TEST(CustomAgentsExample, WithoutBatonWorkflowsDirTheStepIsRefusedNamingTheKey) {
  PoLookup step("");
  ASSERT_TRUE(step.exec_);
  auto broken = step.exec_->broken_steps();
  ASSERT_EQ(broken.size(), 1u);
  EXPECT_NE(broken[0].find("po_lookup"), std::string::npos) << broken[0];
  EXPECT_NE(broken[0].find("exec: `command[1]`"), std::string::npos) << broken[0];
  EXPECT_NE(broken[0].find("BATON_WORKFLOWS_DIR"), std::string::npos) << broken[0];
  auto r = step.run(invoice("Northwind Office Supplies BV", 1512.5, "PO-8101"));
  EXPECT_EQ(r.status(), v1::StepResult::FAILED);
  EXPECT_EQ(r.error().code(), agent::errors::kBadAgentConfig);
}

}  // namespace
}  // namespace baton::worker
