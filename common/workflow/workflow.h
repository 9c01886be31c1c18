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

class Condition;     // common/workflow/expr.h
class CronSchedule;  // common/workflow/schedule.h
class TimeWindow;    // common/workflow/schedule.h

// Built-in targets of `route`, `on_exhausted`: end the run completed, or send it
// to the exception queue. No step may be named like them.
inline constexpr const char* kTargetEnd = "end";
inline constexpr const char* kTargetException = "exception";

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

// One rule of `route:`. `when` null: the `else` rule (always last).
struct RouteRule {
  std::shared_ptr<const Condition> when;
  std::string to;  // a step id, kTargetEnd or kTargetException
};

// `handoff: { from_output: specialist, allowed: [billing, general] }`: the
// agent's output field names the next step, which must be in `allowed`.
struct Handoff {
  std::string from_output;
  std::vector<std::string> allowed;  // step ids
};

// A branch of `parallel:`. A branch's failure fails the join unless
// `on_failure: ignore` (then it only counts as not succeeded).
struct Branch {
  std::string step;
  bool ignore_failure = false;
};

enum class JoinMode { kAll, kAny, kQuorum };
struct Join {
  JoinMode mode = JoinMode::kAll;
  uint32_t quorum = 0;  // kQuorum: successes needed
};

// `loop: { maker, checker, until, max_rounds, on_exhausted }` (maker-checker).
struct Loop {
  std::string maker;
  std::string checker;
  std::shared_ptr<const Condition> until;  // over the checker's output
  uint32_t max_rounds = 0;
  std::string on_exhausted = kTargetException;  // step id, end or exception
};

// `planner: { allowed: [..], max_steps, max_rounds, on_exhausted }` on a task
// step: its agent's output is a plan of steps drawn from `allowed`.
struct Planner {
  std::vector<std::string> allowed;  // step ids
  uint32_t max_steps = 0;            // planned tasks per visit of the planner
  uint32_t max_rounds = 10;          // planner runs per visit
  std::string on_exhausted = kTargetException;
};

// `approval: { group, sla, on_timeout, on_reject }`: a person decides. On a
// step without `role` it is the whole step (a gate step, StepKind::kApproval:
// its output is {approved, by, comment}); on a task step it holds the step's
// result (output and record writes) until someone approves it: always, or
// only when `approve_when` holds over the output.
struct Approval {
  std::string group;             // approver group that sees and decides it
  int64_t sla_ms = 0;            // 0: no SLA
  std::string escalate_to;       // on_timeout {escalate: group}: the next group ("": exception)
  int64_t escalate_sla_ms = 0;   // the escalated gate's SLA (0: sla_ms again)
  std::string on_reject = kTargetException;  // step id, end or exception
  std::shared_ptr<const Condition> when;     // approve_when (task steps); null: always
};

// `review_sample: 0.05` (+ optional `review: {group, sla}`): that share of the
// step's results, chosen from the run id, wait for a person who confirms or
// corrects them before the run goes on (the seeds' sampled QA).
struct Review {
  double sample = 0;  // 0..1
  std::string group = "reviewers";
  int64_t sla_ms = 0;
};

// `budget:` what a run (and the workflow per UTC day) may spend. Costs in
// micro-USD; 0: no limit. On exceeding: the run goes to the exception queue
// (`budget_exceeded`), or (`fallback`) its remaining steps are dispatched with
// the workflow's cheaper `fallback_models` (once a fallback is spent too, the
// exception).
struct Budget {
  uint64_t run_max_cost_micros = 0;
  uint64_t run_max_tokens = 0;
  uint32_t run_max_steps = 0;
  uint64_t daily_max_cost_micros = 0;
  bool fallback = false;  // on_exceeded: fallback (else exception)
  std::vector<std::string> fallback_models;
};

// One field of the shared record's schema (`record: {key, fields}`).
struct RecordField {
  std::string name;
  std::string type = "any";          // string, number, integer, boolean, object, array, any
  bool sensitive = false;            // redacted in the audit trail, logs and API answers
  std::vector<std::string> writers;  // steps that may write it (empty: any step listing it in `writes`)
};

// What a step is: a task run by a role's worker, a control node the
// coordinator runs itself, or a person's decision.
enum class StepKind { kTask, kParallel, kLoop, kApproval };

struct Step {
  std::string id;
  StepKind kind = StepKind::kTask;
  std::string role;                    // the worker role that runs this step
  std::optional<AgentSpec> agent;      // how workers of `role` run it (optional for SDK workers)
  std::vector<std::string> writes;     // record fields this step may write
  std::vector<FieldContract> output;   // empty: no contract
  std::string next;                    // next step id; empty: the run ends after this step
  std::vector<RouteRule> route;        // first match wins (exclusive with next and handoff)
  std::optional<Handoff> handoff;
  std::vector<Branch> parallel;        // kParallel
  Join join;                           // kParallel
  std::optional<Loop> loop;            // kLoop
  std::optional<Planner> planner;      // a kTask whose output is a plan
  std::optional<Approval> approval;    // kApproval, or a gate on a task's result
  std::optional<Review> review;        // sampled human review of a task's results
  bool collision_is_exception = false; // on_collision: exception (default retry)
  bool lock_record = false;            // lock: record (the record's lease lock before dispatch)
  int64_t timeout_ms = 30000;          // per attempt, measured from dispatch
  RetryPolicy retry;
  Mark mark;
};

struct Workflow {
  std::string name;
  uint32_t version = 1;
  std::string description;
  std::string record_template;  // e.g. "lead:{{input.lead_id}}"; empty: no shared record
  // `record: {key, fields}`: the record's schema (empty: none; steps write what their `writes` list).
  std::vector<RecordField> record_fields;
  std::optional<Budget> budget;
  std::string dedupe_template;  // trigger.dedupe, e.g. "{{input.lead_id}}"; empty: none
  std::string trigger_topic;    // trigger.topic (informational for now)
  uint32_t max_steps = 100;     // bound on step executions per run (loops governed)
  // `schedule:` starts a run at each fire time with `schedule_input`.
  std::shared_ptr<const CronSchedule> schedule;
  nlohmann::json schedule_input = nlohmann::json::object();
  // `window:` holds runs started while it is closed until it opens.
  std::shared_ptr<const TimeWindow> window;
  nlohmann::json window_json;  // the window as written (for to_json)
  std::vector<Step> steps;      // in file order; steps[0] is the entry step
  std::string source_path;      // file it was loaded from

  const Step* find_step(std::string_view id) const {
    for (const auto& s : steps)
      if (s.id == id) return &s;
    return nullptr;
  }
  // Steps that run as parts of another (parallel branches, loop maker and
  // checker, planner's allowed steps): they end where their parent resumes.
  bool is_sub_step(std::string_view id) const;
  const RecordField* find_record_field(std::string_view name) const {
    for (const auto& f : record_fields)
      if (f.name == name) return &f;
    return nullptr;
  }
  // Names of the record fields marked `sensitive`.
  std::vector<std::string> sensitive_fields() const;
  // Roles used by the steps, sorted, without duplicates.
  std::vector<std::string> roles() const;
  // The model as JSON (every field but source_path and marks), with a fixed key
  // order: equal models give equal JSON whatever the YAML's layout, comments or
  // key order. Used by Registry to compare two files with the same (name,
  // version), and fit to serve over the control plane.
  nlohmann::json to_json() const;
};

using WorkflowPtr = std::shared_ptr<const Workflow>;

// Whether `v` has contract type `type` (an integer-valued float is an integer;
// "any" and unknown types accept everything).
bool contract_type_ok(const std::string& type, const nlohmann::json& v);
// "" when `output` satisfies `contract`, else the first problem ("missing field
// 'x' (string)", "field 'x' should be number, got string"). Shared by the
// coordinator (every result) and the llm agent (its repair round).
std::string check_contract(const std::vector<FieldContract>& contract, const nlohmann::json& output);

}  // namespace baton::workflow
