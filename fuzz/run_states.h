// Fixed run states for the coordinator fuzz target and the seed generator:
// every example workflow started with its first sample input, then driven
// forward a few rounds by answering each dispatched task OK with an output
// that meets the step's contract. Pure (coordinator/engine.h only).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/workflow/registry.h"
#include "coordinator/engine.h"

namespace baton::fuzz {

inline constexpr int64_t kStartMs = 1'000'000;  // the fixed clock of every state

struct FixedRun {
  std::string name;  // "<workflow>-<round>": also the run id, so an event names its state
  workflow::WorkflowPtr wf;
  coordinator::RunState state;
  std::vector<baton::v1::Task> pending;  // tasks dispatched and not answered in this state
};

// An output object that meets `step`'s contract (a value of each field's type)
// and carries a value for each field the step writes.
nlohmann::json synth_output(const workflow::Step& step);
// The first JSON object line of the example's *.jsonl inputs ({} when none).
nlohmann::json sample_input(const workflow::Workflow& wf);

// The states described above, for every workflow of `registry` (rounds 0..max_rounds).
std::vector<FixedRun> fixed_runs(const coordinator::Engine& engine, const workflow::Registry& registry,
                                 int max_rounds);

}  // namespace baton::fuzz
