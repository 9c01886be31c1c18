#include "fuzz/run_states.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "common/util/json.h"

namespace baton::fuzz {

using nlohmann::json;

json synth_output(const workflow::Step& step) {
  json out = json::object();
  auto value_of = [](const std::string& type) -> json {
    if (type == "string") return "text";
    if (type == "number") return 0.75;
    if (type == "integer") return 2;
    if (type == "boolean") return true;
    if (type == "object") return json::object();
    if (type == "array") return json::array();
    return "any";
  };
  for (const auto& f : step.output) out[f.name] = value_of(f.type);
  for (const auto& w : step.writes)
    if (!out.contains(w)) out[w] = "written";
  return out;
}

json sample_input(const workflow::Workflow& wf) {
  namespace fs = std::filesystem;
  fs::path dir = fs::path(wf.source_path).parent_path();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".jsonl" || e.path().filename() == "expected.jsonl") continue;
    std::ifstream in(e.path());
    std::string line;
    while (std::getline(in, line)) {
      auto j = parse_json_object(line);
      if (j) return std::move(j).value();
    }
  }
  return json::object();
}

std::vector<FixedRun> fixed_runs(const coordinator::Engine& engine, const workflow::Registry& registry,
                                 int max_rounds) {
  std::vector<FixedRun> out;
  for (const auto& wf : registry.all()) {
    baton::v1::RunStarted started;
    started.set_workflow(wf->name);
    started.set_version(wf->version);
    started.set_input_json(sample_input(*wf).dump());
    started.set_dedupe_key("fuzz");
    started.set_requested_by("fuzz");
    coordinator::RunState st;
    std::string run_id = wf->name + "-0";
    coordinator::Transition t = engine.start(wf.get(), run_id, 0, started, kStartMs, st);
    std::vector<baton::v1::Task> pending(t.dispatch.begin(), t.dispatch.end());
    for (int round = 0;; ++round) {
      // The run id is part of the state: each round's copy is renamed so an
      // event's run_id names the state it is meant for.
      FixedRun fr{wf->name + "-" + std::to_string(round), wf, st, pending};
      fr.state.run_id = fr.name;
      for (auto& task : fr.pending) task.set_run_id(fr.name);
      out.push_back(std::move(fr));
      if (round == max_rounds || pending.empty() || coordinator::ended(st.status)) break;
      std::vector<baton::v1::Task> next;
      for (const auto& task : pending) {
        const workflow::Step* step = wf->find_step(coordinator::step_of(task.step_id()));
        if (!step) continue;
        baton::v1::StepResult r;
        r.set_step_id(task.step_id());
        r.set_attempt(task.attempt());
        r.set_status(baton::v1::StepResult::OK);
        r.set_output_json(synth_output(*step).dump());
        r.set_worker_id("fuzz-worker");
        r.set_started_ms(kStartMs);
        r.set_finished_ms(kStartMs + 1);
        coordinator::RecordWriteOutcome w;
        if (auto req = engine.record_write_for(*wf, st, r)) {
          w.kind = coordinator::RecordWriteOutcome::Kind::kApplied;
          w.version = req->version_read + 1;
        }
        coordinator::Transition rt = engine.on_result(*wf, st, r, w, kStartMs + 10 * (round + 1));
        next.insert(next.end(), rt.dispatch.begin(), rt.dispatch.end());
      }
      pending = std::move(next);
    }
  }
  return out;
}

}  // namespace baton::fuzz
