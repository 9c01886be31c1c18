// Writes the generated seeds of fuzz/corpus/ (run once; the output is committed):
//   fuzz_coordinator_event/  RunEvents for the fixed run states of run_states.h
//                            (starts, results of each pending task in every status,
//                            timers, operator actions, gate decisions, lock grants)
//   fuzz_worker_task/        the Tasks those states dispatched (pure workflows only)
//   fuzz_expression/         the conditions of the example workflows
// Usage: fuzz_make_seeds <corpus dir>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/workflow/expr.h"
#include "coordinator/engine.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/run_states.h"
#include "proto/baton/v1/baton.pb.h"

namespace {

using namespace baton;
namespace fs = std::filesystem;

int written = 0;

void write(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
  ++written;
}

std::string safe(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  return s;
}

bool pure(const workflow::Workflow& wf, const std::vector<workflow::WorkflowPtr>& pure_wfs) {
  for (const auto& p : pure_wfs)
    if (p->name == wf.name && p->version == wf.version) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  fuzz::quiet_logs();
  fs::path root = argv[1];
  workflow::Registry registry;
  for (auto& wf : fuzz::example_workflows(false)) (void)registry.add(wf);
  auto pure_wfs = fuzz::example_workflows(true);
  coordinator::Engine engine{coordinator::EngineOptions{"fuzz", true}};
  const fs::path events = root / "fuzz_coordinator_event";
  const fs::path tasks = root / "fuzz_worker_task";
  const fs::path exprs = root / "fuzz_expression";

  for (const auto& wf : registry.all()) {
    v1::RunEvent ev;
    ev.set_run_id("new-" + wf->name);
    ev.set_event_id("e-start");
    auto* s = ev.mutable_started();
    s->set_workflow(wf->name);
    s->set_version(wf->version);
    s->set_input_json(fuzz::sample_input(*wf).dump());
    s->set_dedupe_key("d-1");
    write(events, safe(wf->name) + "-start", ev.SerializeAsString());

    std::set<std::string> conditions;
    for (const auto& step : wf->steps) {
      for (const auto& r : step.route)
        if (r.when) conditions.insert(r.when->text());
      if (step.loop && step.loop->until) conditions.insert(step.loop->until->text());
      if (step.approval && step.approval->when) conditions.insert(step.approval->when->text());
    }
    int n = 0;
    for (const auto& c : conditions) write(exprs, safe(wf->name) + "-" + std::to_string(++n), c);
  }

  for (const auto& run : fuzz::fixed_runs(engine, registry, 3)) {
    const std::string base = safe(run.name);
    auto event = [&](const std::string& what) {
      v1::RunEvent ev;
      ev.set_run_id(run.name);
      ev.set_event_id("e-" + what);
      ev.set_produced_unix_ms(0);
      return ev;
    };
    for (const auto& task : run.pending) {
      const workflow::Step* step = run.wf->find_step(coordinator::step_of(task.step_id()));
      if (!step) continue;
      const std::string t = base + "-" + safe(task.step_id());
      if (pure(*run.wf, pure_wfs)) write(tasks, t, task.SerializeAsString());
      for (auto status : {v1::StepResult::OK, v1::StepResult::RETRYABLE, v1::StepResult::FAILED,
                          v1::StepResult::NEEDS_REVIEW}) {
        v1::RunEvent ev = event("result");
        auto* r = ev.mutable_step_result();
        r->set_step_id(task.step_id());
        r->set_attempt(task.attempt());
        r->set_status(status);
        nlohmann::json out = fuzz::synth_output(*step);
        r->set_output_json(out.dump());
        if (status == v1::StepResult::OK && !step->writes.empty()) {
          nlohmann::json w = nlohmann::json::object();
          for (const auto& f : step->writes) w[f] = out.value(f, nlohmann::json("x"));
          r->set_writes_json(w.dump());
        }
        if (status != v1::StepResult::OK) {
          r->mutable_error()->set_code("agent_error");
          r->mutable_error()->set_message("fuzz");
        }
        r->mutable_usage()->set_tokens_in(10);
        r->mutable_usage()->set_cost_micros(100);
        r->set_worker_id("w-1");
        write(events, t + "-" + v1::StepResult::Status_Name(status), ev.SerializeAsString());
      }
      for (auto kind : {v1::TimerFired::TIMEOUT, v1::TimerFired::RETRY}) {
        v1::RunEvent ev = event("timer");
        ev.set_produced_unix_ms(3600 * 1000);
        ev.mutable_timer()->set_kind(kind);
        ev.mutable_timer()->set_step_id(task.step_id());
        ev.mutable_timer()->set_attempt(task.attempt());
        write(events, t + "-" + v1::TimerFired::Kind_Name(kind), ev.SerializeAsString());
      }
      v1::RunEvent lock = event("lock");
      lock.mutable_lock_granted()->set_step(task.step_id());
      lock.mutable_lock_granted()->set_token(7);
      write(events, t + "-lock", lock.SerializeAsString());
    }
    for (const auto& [id, ss] : run.state.steps) {
      if (ss.status != coordinator::StepStatus::kAwaitingApproval) continue;
      for (bool approve : {true, false}) {
        v1::RunEvent ev = event("decision");
        ev.mutable_decision()->set_step(id);
        ev.mutable_decision()->set_approve(approve);
        ev.mutable_decision()->set_actor("ops");
        write(events, base + "-" + safe(id) + (approve ? "-approve" : "-reject"), ev.SerializeAsString());
      }
    }
    for (auto kind : {v1::OperatorAction::RETRY, v1::OperatorAction::RESOLVE, v1::OperatorAction::CANCEL,
                      v1::OperatorAction::REROUTE}) {
      v1::RunEvent ev = event("operator");
      auto* a = ev.mutable_operator_();
      a->set_kind(kind);
      a->set_step(run.wf->steps.front().id);
      a->set_actor("ops");
      if (kind == v1::OperatorAction::RESOLVE) a->set_output_json(fuzz::synth_output(run.wf->steps.front()).dump());
      write(events, base + "-op-" + v1::OperatorAction::Kind_Name(kind), ev.SerializeAsString());
    }
  }
  std::printf("fuzz_make_seeds: %d files under %s\n", written, root.c_str());
  return 0;
}
