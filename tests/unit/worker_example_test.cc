// examples/lead-to-meeting: runs the workflow's three agents in-process on
// every lead of leads.jsonl, carrying the shared record between the steps the
// way the coordinator does (writes applied, version bumped), and checks
// expected.jsonl, so the example and its expected outcomes cannot drift.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "baton/agent.h"
#include "common/workflow/expr.h"
#include "common/workflow/parser.h"
#include "tests/support/process.h"
#include "workers/executor.h"

namespace baton::worker {
namespace {

using nlohmann::json;

std::vector<json> read_jsonl(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    out.push_back(json::parse(line));
  }
  return out;
}

// BATON_SOURCE_DIR when set (and right), else the tree this file was compiled from.
std::string example_dir() {
  const std::string rel = "/examples/lead-to-meeting";
  std::string dir = baton::testing::source_dir() + rel;
  if (std::ifstream(dir + "/workflow.yaml").good()) return dir;
  std::string here = __FILE__;  // <root>/tests/unit/worker_example_test.cc
  return here.substr(0, here.rfind("/tests/unit/")) + rel;
}

struct Outcome {
  std::string outcome;  // completed | exception | awaiting_approval
  std::string step;     // where the run ended
  json record = json::object();
  json context = json::object();
  std::string error_code;
};

class LeadToMeeting : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = example_dir();
    auto wf = workflow::parse_workflow_file(dir_ + "/workflow.yaml");
    ASSERT_TRUE(wf.is_ok()) << wf.status().to_string();
    wf_ = *wf;
    auto reg = std::make_shared<workflow::Registry>();
    ASSERT_TRUE(reg->add(wf_).is_ok());
    agent::register_builtin_agents(agents_);
    exec_ = std::make_unique<Executor>(reg, agents_, /*role=*/"", "example-test");
    ASSERT_EQ(exec_->broken_steps(), std::vector<std::string>());
  }

  Outcome run(const json& lead) {
    Outcome o;
    int64_t version = 0;
    std::string step = wf_->steps.front().id;
    while (!step.empty()) {
      const auto* s = wf_->find_step(step);
      v1::Task t;
      t.set_run_id("run-" + lead.value("lead_id", std::string("?")));
      t.set_step_id(step);
      t.set_attempt(1);
      t.set_role(s->role);
      t.mutable_workflow()->set_name(wf_->name);
      t.mutable_workflow()->set_version(wf_->version);
      t.set_input_json(lead.dump());
      t.set_context_json(o.context.dump());
      t.mutable_record()->set_key("lead:" + lead.value("lead_id", std::string()));
      for (const auto& w : s->writes) t.add_writes(w);
      RecordView rec;
      rec.fields = o.record;
      rec.version = version;
      auto r = exec_->execute(t, rec);
      o.step = step;
      if (r.status() != v1::StepResult::OK) {
        o.outcome = "exception";
        o.error_code = r.error().code();
        return o;
      }
      json writes = json::parse(r.writes_json());
      for (auto& [k, v] : writes.items()) o.record[k] = v;
      ++version;
      o.context[step] = json::parse(r.output_json());
      if (s->approval) {
        // The coordinator holds a result that meets approve_when for a person
        // (coordinator_gates_test covers the gate itself).
        workflow::ExprScope scope;
        scope.input = &lead;
        scope.output = &o.context[step];
        if (!s->approval->when || s->approval->when->eval(scope)) {
          o.outcome = "awaiting_approval";
          return o;
        }
      }
      step = s->next;
    }
    o.outcome = "completed";
    return o;
  }

  std::string dir_;
  workflow::WorkflowPtr wf_;
  agent::AgentRegistry agents_;
  std::unique_ptr<Executor> exec_;
};

TEST_F(LeadToMeeting, WorkflowHasTheThreeHandoffs) {
  ASSERT_EQ(wf_->steps.size(), 3u);
  EXPECT_EQ(wf_->name, "lead-to-meeting");
  EXPECT_EQ(wf_->record_template, ("lead:{{input.lead_id}}"));
  EXPECT_EQ(wf_->dedupe_template, ("{{input.lead_id}}"));
  EXPECT_EQ(wf_->steps[0].role, "responder");
  EXPECT_EQ(wf_->steps[1].role, "qualifier");
  EXPECT_EQ(wf_->steps[2].role, "booker");
  EXPECT_EQ(wf_->steps[1].writes, (std::vector<std::string>{"score", "reason", "owner"}));
}

TEST_F(LeadToMeeting, EveryLeadEndsAsExpected) {
  auto leads = read_jsonl(dir_ + "/leads.jsonl");
  auto expected = read_jsonl(dir_ + "/expected.jsonl");
  ASSERT_EQ(leads.size(), 50u);
  ASSERT_EQ(expected.size(), leads.size());
  std::map<std::string, int> mix;
  for (std::size_t i = 0; i < leads.size(); ++i) {
    char id[32];
    std::snprintf(id, sizeof(id), "L-%03zu", i + 1);
    ASSERT_EQ(leads[i]["lead_id"], id);
    ASSERT_EQ(expected[i]["lead_id"], id);
    Outcome o = run(leads[i]);
    EXPECT_EQ(o.outcome, expected[i]["outcome"]) << id << " ended at " << o.step << " " << o.error_code;
    EXPECT_EQ(o.step, expected[i]["step"]) << id;
    mix[o.outcome + "@" + o.step]++;
    if (o.outcome == "exception" && o.step == "respond") {
      EXPECT_EQ(o.error_code, "missing_field") << id;
    }
    if (o.outcome == "awaiting_approval") {
      EXPECT_EQ(o.step, "qualify") << id;
      EXPECT_LT(o.context["qualify"]["score"].get<double>(), 0.5) << id;
    }
  }
  // The example exercises every path: booked, a missing field, a partial fit held for a person.
  EXPECT_GE(mix["completed@book"], 20);
  EXPECT_GE(mix["exception@respond"], 3);
  EXPECT_GE(mix["awaiting_approval@qualify"], 5);
  EXPECT_EQ(mix["completed@book"] + mix["exception@respond"] + mix["awaiting_approval@qualify"], 50);
}

TEST_F(LeadToMeeting, TheRecordCarriesTheHandoffs) {
  auto leads = read_jsonl(dir_ + "/leads.jsonl");
  ASSERT_FALSE(leads.empty());
  const json& lead = leads[0];  // L-001: a complete, good fit
  Outcome o = run(lead);
  ASSERT_EQ(o.outcome, "completed");
  // respond wrote the first touch...
  EXPECT_EQ(o.record["source"], lead["source"]);
  EXPECT_EQ(o.record["request"], lead["message"]);
  EXPECT_NE(o.record["first_touch"].get<std::string>().find(lead["name"].get<std::string>()), std::string::npos);
  // ...qualify wrote score, reason, owner...
  EXPECT_EQ(o.record["score"], 1.0);
  EXPECT_EQ(o.record["owner"], "sales-" + lead["region"].get<std::string>());
  EXPECT_EQ(o.record["reason"], "50+ employees; budget of $10k or more; buying this quarter; target industry");
  // ...and book read them from the record.
  EXPECT_EQ(o.record["meeting_at"], lead["preferred_slot"]);
  EXPECT_EQ(o.context["book"]["host"], o.record["owner"]);
  EXPECT_NE(o.context["book"]["invite"].get<std::string>().find("lead score 1"), std::string::npos)
      << o.context["book"]["invite"];
  // The qualify output meets its contract {score: number, reason: string, owner: string}.
  EXPECT_TRUE(o.context["qualify"]["score"].is_number());
  EXPECT_TRUE(o.context["qualify"]["reason"].is_string());
  EXPECT_TRUE(o.context["qualify"]["owner"].is_string());
}

}  // namespace
}  // namespace baton::worker
