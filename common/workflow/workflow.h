// The workflow model: what a parsed, validated workflow YAML file is.
// Built by parse_workflow() (parser.h); immutable afterwards and shared
// read-only between threads (std::shared_ptr<const Workflow>).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace baton::workflow {

// Where something came from in the YAML file, for messages "file:line:col: reason".
struct Mark {
  int line = 0;  // 1-based
  int col = 0;   // 1-based
};

// Output contract: field name -> type. Types: string, number, integer, boolean,
// object, array, any. A trailing '?' in YAML ("string?") makes the field optional.
struct FieldContract {
  std::string name;
  std::string type;
  bool optional = false;
};

struct RetryPolicy {
  uint32_t max_attempts = 3;       // total attempts including the first
  int64_t backoff_ms = 1000;       // first retry delay
  int64_t max_backoff_ms = 60000;  // cap of the exponential backoff
  double multiplier = 2.0;
};

// Agent configuration for a step: `agent: { kind: score, ... }`. Everything but
// `kind` is kept as JSON and interpreted by the agent of that kind.
struct AgentSpec {
  std::string kind;  // echo, template, rules, score, extract, validate, ...
  nlohmann::json config = nlohmann::json::object();
};

struct Step {
  std::string id;
  std::string role;                    // the worker role that runs this step
  std::optional<AgentSpec> agent;      // how workers of `role` run it (optional for SDK workers)
  std::vector<std::string> writes;     // record fields this step may write
  std::vector<FieldContract> output;   // empty: no contract
  std::string next;                    // next step id; empty: the run ends after this step
  int64_t timeout_ms = 30000;          // per attempt, measured from dispatch
  RetryPolicy retry;
  Mark mark;
};

struct Workflow {
  std::string name;
  uint32_t version = 1;
  std::string description;
  std::string record_template;  // e.g. "lead:{{input.lead_id}}"; empty: no shared record
  std::string dedupe_template;  // trigger.dedupe, e.g. "{{input.lead_id}}"; empty: none
  std::string trigger_topic;    // trigger.topic (informational for now)
  uint32_t max_steps = 100;     // bound on step executions per run (loops governed)
  std::vector<Step> steps;      // in file order; steps[0] is the entry step
  std::string source_path;      // file it was loaded from

  const Step* find_step(std::string_view id) const {
    for (const auto& s : steps)
      if (s.id == id) return &s;
    return nullptr;
  }
  // Roles used by the steps, sorted, without duplicates.
  std::vector<std::string> roles() const;
  // The model as JSON (every field but source_path and marks), with a fixed key
  // order: equal models give equal JSON whatever the YAML's layout, comments or
  // key order. Used by Registry to compare two files with the same (name,
  // version), and fit to serve over the control plane.
  nlohmann::json to_json() const;
};

using WorkflowPtr = std::shared_ptr<const Workflow>;

}  // namespace baton::workflow
