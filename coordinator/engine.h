// The coordinator's engine: a pure state machine. (run state, event, now) ->
// (new run state, effects). No I/O, no clock, no randomness: everything it
// needs is an argument, so it is tested exhaustively without servers.
//
// The run store turns a Transition's effects into one atomic, fenced Redis
// call (baton_apply); the dispatcher publishes the tasks it lists.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/workflow/workflow.h"
#include "proto/baton/v1/baton.pb.h"

namespace baton::coordinator {

// kWaiting: started outside the workflow's window, waits for it to open.
// kCancelled: an operator cancelled it from the exception queue.
enum class RunStatus { kRunning, kCompleted, kException, kWaiting, kCancelled };
inline bool ended(RunStatus s) {
  return s == RunStatus::kCompleted || s == RunStatus::kException || s == RunStatus::kCancelled;
}
// kCancelled: a parallel branch the join no longer needs (`any`, `quorum`).
// kAwaitingApproval: a gate is open on it (an approval step, or a task's
// result held for an approval or a sampled review).
// kWaitingLock: a `lock: record` step waiting for the record's lease lock.
enum class StepStatus { kPending, kRunning, kRetryWait, kSucceeded, kFailed, kCancelled, kAwaitingApproval, kWaitingLock };

const char* to_string(RunStatus s);
const char* to_string(StepStatus s);

// Replaces, in place and at any depth, the value of every object member whose
// name is in `fields` with "[redacted]" (a workflow's sensitive record fields:
// they may appear in the input, outputs, record writes and audit details).
void redact_sensitive(nlohmann::json& j, const std::vector<std::string>& fields);
inline constexpr const char* kRedacted = "[redacted]";

// The state of one *instance* of a step. A step that runs more than once in a
// run (loop rounds, planner rounds, a route back to it, planned tasks) gets a
// new instance id each time, `<step>#<n>` or `<step>#<plan id>`, so each run of
// it has its own attempts, timers and idempotency keys. The first instance's
// id is the step id itself.
// An open gate on a step instance (StepStatus::kAwaitingApproval).
struct GateState {
  std::string kind;  // "approval" or "review"
  std::string group;
  int64_t opened_ms = 0;
  int64_t due_ms = 0;        // SLA deadline (0: none)
  uint32_t escalations = 0;  // times the SLA passed it on to another group
  // A task's result held until the decision (null output: an approval step).
  nlohmann::json output;
  nlohmann::json writes;  // the result's record writes (object; may be empty)
  int64_t version_read = 0;

  nlohmann::json to_json() const;
  static GateState from_json(const nlohmann::json& j);
};

struct StepState {
  StepStatus status = StepStatus::kPending;
  uint32_t attempt = 0;  // current attempt (0: never dispatched)
  int64_t dispatched_ms = 0;
  int64_t started_ms = 0;   // as reported by the worker
  int64_t finished_ms = 0;  // as reported by the worker
  std::string worker_id;
  std::string error_code;
  std::string error_message;
  std::string parent;  // instance id of the parallel, loop or planner that runs it ("" = top level)
  std::string key;     // context key of its output when not the step id (planned tasks)
  uint32_t round = 0;  // loops and planners: current round (1-based)
  uint32_t planned = 0;  // planners: tasks planned so far in this visit
  uint32_t seq = 0;      // tasks: order of first dispatch in the run (1-based); the run's path
  nlohmann::json input;  // planned tasks: their own input (null: the run's input)
  std::optional<GateState> gate;  // while kAwaitingApproval, and kept after the decision
  // `lock: record`: 0 none, 1 asked for (queued), 2 held with `fence` as token.
  uint8_t lock = 0;
  int64_t fence = 0;
  uint32_t asks = 0;  // lock requests so far (the re-ask timer's number)

  nlohmann::json to_json() const;
  static StepState from_json(const nlohmann::json& j);
};

struct RunState {
  std::string run_id;
  std::string workflow;
  uint32_t version = 0;
  RunStatus status = RunStatus::kRunning;
  std::string reason;  // exception reason code (empty unless kException)
  std::string reason_detail;
  std::string record_key;  // rendered from the workflow's record template ("" = none)
  std::string dedupe_key;
  int32_t partition = 0;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  int64_t ended_ms = 0;
  uint32_t steps_executed = 0;  // dispatches so far (bounded by workflow max_steps)
  std::map<std::string, StepState, std::less<>> steps;
  nlohmann::json input = nlohmann::json::object();
  nlohmann::json context = nlohmann::json::object();  // {"<step>": output}
  // Outputs of instances whose context entry a later round overwrote
  // ({"draft": round 1, "draft#2": round 2, ...}); ctx hash fields "hist:<instance>".
  nlohmann::json history = nlohmann::json::object();
  std::string ended_at;  // the step instance the run ended at ("" while running)
  // Usage reported by the agents (budgets, KPIs): run hash fields tokens, cost.
  uint64_t tokens = 0;
  uint64_t cost_micros = 0;
  bool fallback = false;  // the budget switched the run to the fallback models
  // Not stored: the workflow's spend today (UTC) before this event, set by the
  // caller for workflows with a daily budget.
  uint64_t daily_spent_micros = 0;

  // Redis layout (docs/ARCHITECTURE.md §4): run hash fields and ctx hash fields.
  std::vector<std::pair<std::string, std::string>> header_fields() const;
  static std::string step_field(std::string_view step_id) { return "step:" + std::string(step_id); }
  static std::string output_field(std::string_view step_id) { return "out:" + std::string(step_id); }
  // Rebuilds a run from HGETALL replies of its run hash and ctx hash.
  // false when the run hash lacks the mandatory fields.
  static bool from_hashes(std::string_view run_id,
                          const std::vector<std::pair<std::string, std::string>>& run_hash,
                          const std::vector<std::pair<std::string, std::string>>& ctx_hash,
                          RunState& out);
};

// The step id an instance id belongs to: "draft#2" -> "draft".
std::string_view step_of(std::string_view instance);

// A timer in the partition's timers zset. Member "<run>|<kind>|<step>|<attempt>".
// kWindow: the workflow's window opens (step "-", attempt 0).
// kSla / kSlaNear: a gate's SLA passes / is near (attempt = the gate's escalations).
// kLock: a step still waiting for the record's lock asks again (attempt = its asks),
// in case a grant was lost.
enum class TimerKind { kTimeout, kRetry, kWindow, kSla, kSlaNear, kLock };
struct Timer {
  TimerKind kind;
  std::string step_id;
  uint32_t attempt = 0;
  int64_t due_ms = 0;
};
std::string timer_member(std::string_view run_id, TimerKind kind, std::string_view step, uint32_t attempt);
// Parses a member; false when malformed.
bool parse_timer_member(std::string_view member, std::string& run_id, TimerKind& kind,
                        std::string& step, uint32_t& attempt);

struct AuditRecord {
  std::string kind;   // run_started, task_dispatched, step_result, record_written, ...
  std::string actor;  // "coordinator", a worker id, a user
  int64_t at_ms = 0;
  nlohmann::json detail;
};

// The outcome of applying a result's record writes (baton_record_write).
struct RecordWriteOutcome {
  // kFenced: the step's lease lock expired and passed on; the write was refused.
  enum class Kind { kNone, kApplied, kCollision, kForbidden, kFenced } kind = Kind::kNone;
  int64_t version = 0;      // new version (applied) or current version (collision)
  std::string field;        // forbidden field
  // field -> {old JSON text, new JSON text}
  std::vector<std::pair<std::string, std::pair<std::string, std::string>>> changes;
};

// A write the engine asks for before it can decide a step result.
struct RecordWriteRequest {
  std::string record_key;
  std::string idempotency_key;  // "<run>:<step>:<attempt>"
  std::string writer;           // "<run>:<step>"
  int64_t version_read = 0;
  std::vector<std::string> allowed;
  std::vector<std::pair<std::string, std::string>> fields;  // field -> JSON text
  int64_t fence = 0;  // `lock: record`: the lease token the write must still hold (0: none)
};

// An operation on a record's lease lock (`lock: record`), run by the caller
// after the transition is stored (RunStore::lock): acquire, release, renew.
struct LockOp {
  std::string op;
  std::string record_key;
  std::string holder;  // "<run>|<instance>"
  int64_t lease_ms = 0;
};

// Everything a transition changes. Empty `run_fields` and no other effect
// means the event changed nothing (e.g. a late result was only recorded).
struct Transition {
  bool is_new = false;   // the run did not exist before (RunStarted)
  bool changed = false;  // something to write
  std::vector<std::pair<std::string, std::string>> run_fields;
  std::vector<std::pair<std::string, std::string>> ctx_fields;
  std::vector<baton::v1::Task> dispatch;  // to publish; also stored in the outbox
  std::vector<std::string> dispatch_bytes;  // dispatch[i] serialized once, for the outbox and Kafka
  std::vector<std::string> outbox_dels;   // "<step>:<attempt>"
  std::vector<std::pair<std::string, int64_t>> timers_add;  // member, due ms
  std::vector<std::string> timers_del;
  std::vector<AuditRecord> audit;
  // Open gates index (baton:<ns>:approvals): member "<run>|<instance>", score opened ms.
  std::vector<std::pair<std::string, int64_t>> gates_add;
  std::vector<std::string> gates_del;
  // Notifications for the notifier (baton:<ns>:notify), JSON objects; see docs/notifications.md.
  std::vector<std::string> notify;
  std::vector<LockOp> locks;  // record lease lock operations, run after the transition is stored
  uint64_t spent_micros = 0;     // cost this transition added (the workflow's daily spend)
  std::string ending;            // "" (running), "completed", "exception"
  std::string exception_reason;  // set when ending == "exception"
};

// Outbox field for a dispatched task.
std::string outbox_field(std::string_view step_id, uint32_t attempt);

struct EngineOptions {
  std::string ns = "dev";
  bool notify = false;  // emit Transition::notify items (a notifier is configured)
};

class Engine {
 public:
  explicit Engine(EngineOptions opts) : opts_(std::move(opts)) {}

  // A new run. `wf` is null when the workflow/version is unknown: the run is
  // created directly in the exception state so the request is not lost.
  Transition start(const workflow::Workflow* wf, std::string_view run_id, int32_t partition,
                   const baton::v1::RunStarted& started, int64_t now_ms, RunState& state) const;

  // The record write a step result asks for, if any: only for the current
  // attempt of a running step, with status OK, a valid output contract and a
  // non-empty writes object. Otherwise nullopt (on_result then decides).
  std::optional<RecordWriteRequest> record_write_for(const workflow::Workflow& wf, const RunState& state,
                                                     const baton::v1::StepResult& r) const;

  // A step result. `write` is the outcome of record_write_for's request (kNone
  // when there was none).
  // `record` (nullable): the shared record's fields after the write, for
  // conditions that read `record.`; see reads_record().
  Transition on_result(const workflow::Workflow& wf, RunState& state, const baton::v1::StepResult& r,
                       const RecordWriteOutcome& write, int64_t now_ms,
                       const nlohmann::json* record = nullptr) const;
  // True when a condition of `wf` reads `record.`: the caller then passes the
  // record to on_result.
  static bool reads_record(const workflow::Workflow& wf);

  // An operator's action on a run in the exception queue: retry from a step,
  // resolve a step with a manual output and continue, or cancel. Refused
  // (audited, nothing else changes) when the run is not in the queue or the
  // step is not a top-level step of the workflow. The transition's ending is
  // "resumed" when the run goes on.
  // `write`: the outcome of record_write_for_operator's request (kNone when
  // there was none).
  Transition on_operator(const workflow::Workflow& wf, RunState& state, const baton::v1::OperatorAction& a,
                         int64_t now_ms, const RecordWriteOutcome& write = {}) const;
  // The record write a RESOLVE asks for: the manual output's fields that the
  // step may write, at the record's current version `version_now`, idempotent
  // by the event id. nullopt when there is nothing to write.
  std::optional<RecordWriteRequest> record_write_for_operator(const workflow::Workflow& wf, const RunState& state,
                                                              const baton::v1::OperatorAction& a,
                                                              const std::string& event_id, int64_t version_now) const;
  // The step an operator action is about: as given, else the top-level step
  // holding the instance where the run ended. Null when there is none.
  static const workflow::Step* operator_step(const workflow::Workflow& wf, const RunState& state,
                                             const baton::v1::OperatorAction& a);

  // A person's decision on an open gate (approve / reject; a review's
  // correction). Refused (audited, nothing else changes) when no gate is open
  // on that step instance. `write`: the outcome of record_write_for_decision.
  Transition on_decision(const workflow::Workflow& wf, RunState& state, const baton::v1::GateDecision& d,
                         int64_t now_ms, const RecordWriteOutcome& write = {}) const;
  // The held record write an approval releases (the task's writes, or for a
  // corrected review the correction's fields the step may write), at the
  // version the agent read. nullopt when there is nothing to write.
  std::optional<RecordWriteRequest> record_write_for_decision(const workflow::Workflow& wf, const RunState& state,
                                                              const baton::v1::GateDecision& d) const;
  // Whether a task's OK result is held at a gate: "approval" (approval on the
  // step and approve_when holds or is absent), "review" (sampled), or null.
  static const char* gate_for_result(const workflow::Step& step, const RunState& state, const nlohmann::json& output);
  // Deterministic sampling: true for a `share` (0..1) of run ids.
  static bool sampled(std::string_view run_id, std::string_view step_id, double share);
  // The gates index member of an instance.
  static std::string gate_member(std::string_view run_id, std::string_view instance) {
    return std::string(run_id) + "|" + std::string(instance);
  }

  // The record's lease lock granted to a waiting step instance: dispatches
  // it with the fencing token. A grant nobody waits for is handed back.
  Transition on_lock_granted(const workflow::Workflow& wf, RunState& state, const baton::v1::LockGranted& g,
                             int64_t now_ms) const;
  // The lock holder string of an instance.
  static std::string lock_holder(std::string_view run_id, std::string_view instance) {
    return std::string(run_id) + "|" + std::string(instance);
  }
  // The lease of a `lock: record` step: its timeout plus a margin.
  static int64_t lock_lease_ms(const workflow::Step& step) { return step.timeout_ms + 30000; }

  // A due timer of this run.
  Transition on_timer(const workflow::Workflow& wf, RunState& state, const Timer& t, int64_t now_ms) const;

  // Redacts the workflow's sensitive fields in a transition's audit details
  // (called before it is stored).
  static void redact(const workflow::Workflow& wf, Transition& t);
  // Checks a result's record writes against the workflow's record schema
  // (field types): "" when valid, else the reason.
  static std::string check_writes(const workflow::Workflow& wf, const nlohmann::json& writes);
  // Checks `output` against a step's contract: "" when valid, else the reason.
  static std::string check_contract(const workflow::Step& step, const nlohmann::json& output);
  // Delay before attempt `next_attempt` (2..n): backoff * multiplier^(n-2), capped.
  static int64_t backoff_ms(const workflow::RetryPolicy& p, uint32_t next_attempt);

 private:
  struct Ctx;  // one transition's inputs: workflow, state, now, record, output
  void dispatch(Ctx& c, const workflow::Step& step, const std::string& instance, uint32_t attempt) const;
  // Starts a new instance of `step` (a task, a parallel or a loop) under `parent`.
  void enter(Ctx& c, const workflow::Step& step, const std::string& parent, const std::string& key = "",
             const nlohmann::json* input = nullptr, uint32_t round = 1, uint32_t planned = 0) const;
  void fail_attempt(Ctx& c, const workflow::Step& step, const std::string& instance, const std::string& code,
                    const std::string& message, bool retryable, const char* reason_override = nullptr) const;
  void succeeded(Ctx& c, const workflow::Step& step, const std::string& instance, const nlohmann::json& output) const;
  // Follows a finished top-level step's way out: handoff, route, next, or the end.
  void leave(Ctx& c, const workflow::Step& step, const nlohmann::json& output) const;
  void go_to(Ctx& c, const workflow::Step& from, const std::string& target, const std::string& reason,
             const std::string& detail) const;
  void child_done(Ctx& c, const std::string& parent, const std::string& child) const;
  void check_join(Ctx& c, const workflow::Step& par, const std::string& instance) const;
  void on_plan(Ctx& c, const workflow::Step& step, const std::string& instance, const nlohmann::json& output) const;
  void end_run(RunState& st, RunStatus status, const std::string& reason, const std::string& detail,
               int64_t now, Transition& t, const std::string& at = "") const;
  void touch_step(const RunState& st, std::string_view step_id, Transition& t) const;
  void cancel(Ctx& c, const std::string& instance) const;
  // Opens a gate on `instance` (status kAwaitingApproval): index, SLA timers,
  // audit, notification. `held`: a task's result waiting for the decision.
  void open_gate(Ctx& c, const std::string& instance, const std::string& kind, const std::string& group,
                 int64_t sla_ms, const GateState* held) const;
  // A gate's SLA passed (escalate or exception) or is near (notify).
  void on_sla(Ctx& c, const workflow::Step& step, const std::string& instance, bool near) const;
  // Removes an instance's gate from the index and its SLA timers.
  void close_gate(RunState& st, const std::string& instance, Transition& t) const;
  // Whether a dispatch may go ahead under the workflow's budget: switches to
  // the fallback models (audited once) or ends the run (false).
  bool within_budget(Ctx& c, const std::string& instance) const;
  void notify(const RunState& st, Transition& t, const std::string& event, const std::string& instance,
              nlohmann::json extra, int64_t now) const;

  EngineOptions opts_;
};

}  // namespace baton::coordinator
