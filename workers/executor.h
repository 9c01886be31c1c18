// The worker's pure core: from a Task and the record it reads to the RunEvent
// that answers it. No Kafka, no Redis: the runtime (runtime.h) does the I/O.
//
// Agents are built once per (workflow, version, step) of the worker's role, at
// construction, from the step's `agent:` spec (kind + config) through the
// AgentRegistry; a step without `agent:` uses the kind named like its role.
// Workflows applied over the control plane after the worker started are
// learned at run time (learn(), fed by the runtime from the Redis hash
// baton:<ns>:workflows); the set of known steps only grows. Every public
// member is thread-safe (a shared_mutex guards the learned part) and never
// throws.
//
// A task's step_id may be an instance id "<step>#<suffix>" (loops and planners
// run one step several times, each run with its own id so idempotency keys
// differ): the step's definition and agent are looked up by the part before
// '#' (base_step_id); the result keeps the full instance id. Every failure becomes a StepResult with status
// FAILED and an error code from baton/agent.h (unknown_agent, bad_agent_config,
// forbidden_write, template_error, bad_input, bad_output, agent_error, ...).
//
// Per task, after the agent returned:
//   1. `set: {field: "template" | literal}` from the step's agent config is
//      rendered with scope {"input", "record", "steps", "output"} and added to
//      the output (only when the agent returned OK). A template that is exactly
//      one "{{path}}" keeps the JSON type of the value; a missing path ->
//      FAILED template_error.
//   2. Record writes (OK results only; other statuses carry no writes): the
//      agent's explicit writes, plus each field of task.writes() present in the
//      output and not already written. A write outside task.writes() -> FAILED
//      forbidden_write naming the fields.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "baton/agent.h"
#include "common/redis/client.h"
#include "common/util/status.h"
#include "common/workflow/parser.h"
#include "common/workflow/template.h"
#include "proto/baton/v1/baton.pb.h"

namespace baton::worker {

// A shared record as the agent sees it.
struct RecordView {
  nlohmann::json fields = nlohmann::json::object();
  int64_t version = 0;  // `_v`; 0 when the record does not exist
};

// Decodes an HGETALL reply: `_v` is the version, other fields starting with `_`
// are internal and skipped, values are JSON text (a value that does not parse
// is kept as the raw string). An empty array (no such key) is an empty record.
// kInvalidArgument for an error reply, a non-array, or a `_v` that is not an integer.
Result<RecordView> decode_record(const redis::Reply& reply);

// Applies the write mapping described above to `writes` (an object) and returns
// the fields written outside `allowed` (empty: all allowed).
std::vector<std::string> map_writes(const google::protobuf::RepeatedPtrField<std::string>& allowed,
                                    const nlohmann::json& output, nlohmann::json& writes);

// The step definition id of a task's step_id: the part before the first '#'
// ("qualify#2" -> "qualify"; "qualify" -> "qualify").
std::string_view base_step_id(std::string_view step_id);

// JSON text for the wire: invalid UTF-8 is replaced, never throws.
std::string dump_json(const nlohmann::json& j);

// A serialized RunEvent answering one task, and what it says (for logs and counters).
struct Answer {
  std::string bytes;
  v1::StepResult::Status status = v1::StepResult::STATUS_UNSPECIFIED;
  std::string error_code;
  std::string error_message;
};

class Executor {
 public:
  // `role`: build agents only for steps of this role (empty: every step).
  Executor(std::shared_ptr<const workflow::Registry> workflows, const agent::AgentRegistry& agents,
           std::string role, std::string worker_id);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The step result for `task` (status, output, writes, error, timings, worker_id).
  v1::StepResult execute(const v1::Task& task, RecordView record) const;
  // A whole RunEvent answering `task` (run_id, fresh event_id, produced time,
  // traceparent), serialized. A result over limits::kMaxMessageBytes is replaced
  // by FAILED output_too_large.
  Answer answer(const v1::Task& task, RecordView record) const;
  // A RunEvent with a FAILED StepResult for `task` without running its agent
  // (e.g. the record could not be read).
  Answer reject(const v1::Task& task, const char* code, std::string message) const;

  // Steps with a ready agent, and steps whose agent could not be built (with the reason).
  std::size_t ready_steps() const;
  std::vector<std::string> broken_steps() const;

  // Whether name@version is known (from the constructor's registry or learned).
  bool knows(std::string_view name, uint32_t version) const;
  // Rate limit of reloads for a missing name@version: true (and remembers
  // `now_ms`) when no claim for it was granted in the last `interval_ms`.
  bool claim_reload(std::string_view name, uint32_t version, int64_t now_ms, int64_t interval_ms = 1000) const;
  // Adds a workflow found after construction and builds the agents of its
  // steps of this role. Idempotent for equal content; kAlreadyExists when
  // name@version is known with different content (nothing changes then).
  Status learn(workflow::WorkflowPtr wf) const;

 private:
  struct SetField {
    std::string field;
    std::string whole_path;                   // set when the template is exactly "{{path}}"
    std::optional<workflow::Template> tmpl;   // a template string
    nlohmann::json literal;                   // a non-string value
  };
  struct Slot {
    std::string kind;
    agent::AgentPtr agent;
    std::vector<SetField> set;
    std::string error_code;  // non-empty: the step cannot run
    std::string error_message;
  };

  // Builds the slot of one step into slots_ (caller holds mu_ exclusively, or is the constructor).
  void build(const workflow::Workflow& wf, const workflow::Step& step) const;
  const Slot* find(const v1::Task& task, std::string& why) const;
  workflow::WorkflowPtr lookup(std::string_view name, uint32_t version) const;
  static std::string slot_key(std::string_view workflow, uint32_t version, std::string_view step);

  std::shared_ptr<const workflow::Registry> workflows_;
  agent::AgentRegistry agents_;  // a copy: learn() builds agents after construction
  std::string role_;
  std::string worker_id_;
  mutable workflow::Registry learned_;  // thread-safe on its own; written only by learn()
  // Slots are only ever added (node-based map: a Slot* stays valid).
  mutable std::shared_mutex mu_;
  mutable std::unordered_map<std::string, Slot> slots_;
  mutable std::unordered_map<std::string, int64_t> reload_claims_;  // name@version -> last claim (ms)
};

}  // namespace baton::worker
