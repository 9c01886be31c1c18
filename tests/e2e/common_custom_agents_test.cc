// End-to-end: examples/invoice-custom-agents with the real binaries. `batonctl
// dev --worker-bin treasury=<bin>/baton-example-worker` on the example's
// folder; the README's `batonctl run ... --inputs --wait --expect` must exit 0
// with every invoice at its expected outcome. Then, per run (GET /v1/runs):
// the Python step's output (exec agent, agents/po_lookup.py, found through
// BATON_WORKFLOWS_DIR) and the C++ agent's output (`bank_check`, served by the
// custom worker) are in the run's steps; the invoice whose order row the
// script cannot read is in the exception queue (GET /v1/exceptions) with the
// script's stderr in the error. Also: dev's refusals of bad --worker-bin values.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/util/json.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

const char* kExample = "invoice-custom-agents";

json get_json(const std::string& url) {
  auto r = http::request("GET", url, "", 5000);
  EXPECT_TRUE(r.is_ok()) << url << ": " << r.status().to_string();
  if (!r) return json();
  EXPECT_EQ(r->status, 200) << url << ": " << r->body;
  return json::parse(r->body, nullptr, false);
}

// The step of a run view with this id (null when absent).
json step_of(const json& run, const std::string& id) {
  if (run.contains("steps"))
    for (const auto& s : run["steps"])
      if (s.value("id", "") == id) return s;
  return json();
}

std::string exe_of(int pid) {
  char buf[PATH_MAX] = {};
  ssize_t n = readlink(("/proc/" + std::to_string(pid) + "/exe").c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

TEST(CustomAgents, InvoiceExampleRunsThePythonAndTheCppAgent) {
  const std::string dir = example_dir(kExample);
  auto inputs = read_jsonl(dir + "/inputs.jsonl");
  auto expected = read_jsonl(dir + "/expected.jsonl");
  ASSERT_EQ(inputs.size(), 12u);
  ASSERT_EQ(inputs.size(), expected.size());

  DevFleet dev(dir, "cus");
  ASSERT_TRUE(dev.start({"--worker-bin", "treasury=" + bin_dir() + "/baton-example-worker"}));
  ASSERT_TRUE(dev.wait_ready());
  // The treasury role is served by the custom binary, the others by baton-worker.
  auto pids = dev.pids();
  ASSERT_TRUE(pids.count("worker-treasury") && pids.count("worker-purchasing")) << dev.env().dump();
  EXPECT_NE(exe_of(pids["worker-treasury"]).find("baton-example-worker"), std::string::npos);
  EXPECT_NE(exe_of(pids["worker-purchasing"]).find("/baton-worker"), std::string::npos);
  EXPECT_EQ(dev.env()["worker_bins"]["treasury"], bin_dir() + "/baton-example-worker") << dev.env().dump();

  auto r = run_cli({bin_dir() + "/batonctl", "run", kExample, "--api", dev.api(), "--inputs", dir + "/inputs.jsonl",
                    "--wait", "--timeout", "90", "-o", "json", "--expect", dir + "/expected.jsonl"},
                   seconds(120));
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      << exit_text(r.status) << "\n" << r.out << r.err << "\nbatonctl dev log:\n" << read_file(dev.log());
  auto summary = parse_json_object(r.out);
  ASSERT_TRUE(summary.is_ok()) << r.out << r.err;
  EXPECT_EQ((*summary)["total"], 12);
  EXPECT_EQ((*summary)["completed"], 4);
  EXPECT_EQ((*summary)["exceptions"], 8);
  EXPECT_EQ((*summary)["errors"], 0);
  EXPECT_EQ((*summary)["unfinished"], 0);
  EXPECT_TRUE((*summary)["mismatches"].empty()) << (*summary)["mismatches"].dump(2);

  std::map<std::string, json> run_of;  // invoice id -> run view
  for (const auto& line : (*summary)["runs"]) {
    json view = get_json(dev.api() + "/v1/runs/" + line.value("run_id", ""));
    ASSERT_TRUE(view.is_object());
    run_of[view["input"].value("invoice_id", "")] = view;
  }
  ASSERT_EQ(run_of.size(), 12u);

  // The Python step's answers.
  json po = step_of(run_of["INV-101"], "po_lookup");
  EXPECT_EQ(po.value("status", ""), "succeeded") << po.dump();
  EXPECT_EQ(po["output"]["matched_by"], "po_number") << po.dump();
  EXPECT_EQ(po["output"]["po_number"], "PO-8101");
  EXPECT_EQ(po["output"]["amount"], 1512.5);
  po = step_of(run_of["INV-110"], "po_lookup");
  EXPECT_EQ(po["output"]["matched_by"], "supplier_and_amount") << po.dump();
  EXPECT_EQ(po["output"]["po_number"], "PO-8110");
  EXPECT_EQ(step_of(run_of["INV-104"], "po_lookup")["output"]["found"], false);
  EXPECT_EQ(step_of(run_of["INV-112"], "po_lookup")["output"]["supplier_matches"], false);

  // The C++ agent's answers.
  json bank = step_of(run_of["INV-101"], "bank_check");
  EXPECT_EQ(bank.value("status", ""), "succeeded") << bank.dump();
  EXPECT_EQ(bank["output"]["ok"], true) << bank.dump();
  EXPECT_EQ(bank["output"]["iban"], "NL91ABNA0417164300");
  EXPECT_EQ(bank["output"]["iban_valid"], true);
  EXPECT_EQ(step_of(run_of["INV-101"], "post")["output"]["pay_to"], "NL91ABNA0417164300");
  bank = step_of(run_of["INV-102"], "bank_check");  // no bank details on the invoice
  EXPECT_EQ(bank["output"]["ok"], true) << bank.dump();
  EXPECT_EQ(bank["output"]["iban"], "");
  EXPECT_EQ(bank["output"]["on_file"], "DE89370400440532013000");
  bank = step_of(run_of["INV-107"], "bank_check");  // a valid IBAN, not the one on file
  EXPECT_EQ(bank["output"]["ok"], false) << bank.dump();
  EXPECT_EQ(bank["output"]["iban_valid"], true);
  EXPECT_EQ(bank["output"]["on_file"], "NL43RABO0312847561");
  bank = step_of(run_of["INV-108"], "bank_check");  // two digits swapped
  EXPECT_EQ(bank["output"]["ok"], false) << bank.dump();
  EXPECT_EQ(bank["output"]["iban_valid"], false);

  // The script's failure: FAILED exec_failed with its stderr, the run in the exception queue.
  const json& failed = run_of["INV-109"];
  EXPECT_EQ(failed.value("status", ""), "exception") << failed.dump();
  EXPECT_EQ(failed.value("reason", ""), "step_failed");
  json step = step_of(failed, "po_lookup");
  EXPECT_EQ(step.value("status", ""), "failed") << step.dump();
  EXPECT_EQ(step["error"].value("code", ""), "exec_failed") << step.dump();
  EXPECT_NE(step["error"].value("message", "").find("amount 'TBD' is not a number"), std::string::npos)
      << step.dump();
  json queue = get_json(dev.api() + "/v1/exceptions?workflow=" + std::string(kExample));
  ASSERT_TRUE(queue.is_object());
  EXPECT_EQ(queue["exceptions"].size(), 8u) << queue.dump();
  bool listed = false;
  for (const auto& e : queue["exceptions"]) {
    if (e.value("run_id", "") != failed.value("run_id", "")) continue;
    listed = true;
    EXPECT_EQ(e.value("reason", ""), "step_failed") << e.dump();
    EXPECT_EQ(e.value("step", ""), "po_lookup") << e.dump();
    EXPECT_NE(e.dump().find("po_lookup: purchase_orders.csv line 10 (PO-8109): amount 'TBD' is not a number"),
              std::string::npos)
        << e.dump();
  }
  EXPECT_TRUE(listed) << queue.dump();
}

TEST(CustomAgents, DevRefusesABadWorkerBin) {
  const std::string dir = example_dir(kExample);
  const std::string state = make_temp_dir("baton-e2e-workerbin");
  auto dev = [&](const std::string& spec) {
    return run_cli({bin_dir() + "/batonctl", "dev", "--workflows", dir, "--state-dir", state, "--http",
                    "127.0.0.1:0", "--worker-bin", spec},
                   seconds(30));
  };
  struct Case {
    std::string spec, says;
  };
  for (const Case& c : std::vector<Case>{
           {"treasury", "must be ROLE=PATH"},
           {"=" + bin_dir() + "/baton-example-worker", "must be ROLE=PATH"},
           {"cashier=" + bin_dir() + "/baton-example-worker", "no step of the workflows"},
           {"treasury=" + bin_dir() + "/no-such-worker", "is not an executable file"},
           {"treasury=" + bin_dir(), "is not an executable file"},
       }) {
    auto r = dev(c.spec);
    ASSERT_TRUE(r.exited) << c.spec;
    EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 2) << c.spec << ": " << exit_text(r.status) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << c.spec << ": " << r.err;
  }
  remove_tree(state);
}

}  // namespace
}  // namespace baton::testing
