#include "coordinator/engine.h"

#include <charconv>
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/workflow/expr.h"
#include "common/workflow/schedule.h"
#include "common/workflow/template.h"

namespace baton::coordinator {

namespace {

using nlohmann::json;

constexpr const char* kCoordinator = "coordinator";

json parse_object_or_empty(const std::string& text) {
  if (text.empty()) return json::object();
  auto r = parse_json(text, limits::kMaxMessageBytes);
  if (!r || !r->is_object()) return json::object();
  return std::move(r).value();
}

std::string_view status_name(baton::v1::StepResult::Status s) {
  switch (s) {
    case baton::v1::StepResult::OK: return "ok";
    case baton::v1::StepResult::RETRYABLE: return "retryable";
    case baton::v1::StepResult::FAILED: return "failed";
    case baton::v1::StepResult::NEEDS_REVIEW: return "needs_review";
    default: return "unspecified";
  }
}

int64_t to_i64(std::string_view s) {
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

const char* to_string(RunStatus s) {
  switch (s) {
    case RunStatus::kRunning: return "running";
    case RunStatus::kCompleted: return "completed";
    case RunStatus::kException: return "exception";
    case RunStatus::kWaiting: return "waiting";
    case RunStatus::kCancelled: return "cancelled";
  }
  return "unknown";
}

const char* to_string(StepStatus s) {
  switch (s) {
    case StepStatus::kPending: return "pending";
    case StepStatus::kRunning: return "running";
    case StepStatus::kRetryWait: return "retry_wait";
    case StepStatus::kSucceeded: return "succeeded";
    case StepStatus::kFailed: return "failed";
    case StepStatus::kCancelled: return "cancelled";
    case StepStatus::kAwaitingApproval: return "awaiting_approval";
    case StepStatus::kWaitingLock: return "waiting_lock";
  }
  return "unknown";
}

json GateState::to_json() const {
  json j = {{"k", kind}, {"g", group}, {"o", opened_ms}};
  if (due_ms) j["due"] = due_ms;
  if (escalations) j["e"] = escalations;
  if (!output.is_null()) {
    j["out"] = output;
    j["wr"] = writes;
    j["v"] = version_read;
  }
  return j;
}

GateState GateState::from_json(const json& j) {
  GateState g;
  if (!j.is_object()) return g;
  g.kind = j.value("k", "");
  g.group = j.value("g", "");
  g.opened_ms = j.value("o", int64_t{0});
  g.due_ms = j.value("due", int64_t{0});
  g.escalations = j.value("e", 0u);
  if (auto it = j.find("out"); it != j.end()) g.output = *it;
  if (auto it = j.find("wr"); it != j.end()) g.writes = *it;
  g.version_read = j.value("v", int64_t{0});
  return g;
}

json StepState::to_json() const {
  json j = {{"s", to_string(status)}, {"a", attempt}, {"d", dispatched_ms}};
  if (started_ms) j["st"] = started_ms;
  if (finished_ms) j["f"] = finished_ms;
  if (!worker_id.empty()) j["w"] = worker_id;
  if (!error_code.empty()) {
    j["ec"] = error_code;
    j["em"] = error_message;
  }
  if (!parent.empty()) j["p"] = parent;
  if (!key.empty()) j["k"] = key;
  if (round) j["r"] = round;
  if (planned) j["n"] = planned;
  if (seq) j["q"] = seq;
  if (!input.is_null()) j["in"] = input;
  if (gate) j["g"] = gate->to_json();
  if (lock) {
    j["lk"] = lock;
    j["fe"] = fence;
  }
  if (asks) j["ak"] = asks;
  return j;
}

StepState StepState::from_json(const json& j) {
  StepState s;
  if (!j.is_object()) return s;
  std::string st = j.value("s", "pending");
  for (auto c : {StepStatus::kPending, StepStatus::kRunning, StepStatus::kRetryWait, StepStatus::kSucceeded,
                 StepStatus::kFailed, StepStatus::kCancelled, StepStatus::kAwaitingApproval, StepStatus::kWaitingLock}) {
    if (st == to_string(c)) s.status = c;
  }
  s.attempt = j.value("a", 0u);
  s.dispatched_ms = j.value("d", int64_t{0});
  s.started_ms = j.value("st", int64_t{0});
  s.finished_ms = j.value("f", int64_t{0});
  s.worker_id = j.value("w", "");
  s.error_code = j.value("ec", "");
  s.error_message = j.value("em", "");
  s.parent = j.value("p", "");
  s.key = j.value("k", "");
  s.round = j.value("r", 0u);
  s.planned = j.value("n", 0u);
  s.seq = j.value("q", 0u);
  if (auto it = j.find("in"); it != j.end()) s.input = *it;
  if (auto it = j.find("g"); it != j.end()) s.gate = GateState::from_json(*it);
  s.lock = static_cast<uint8_t>(j.value("lk", 0u));
  s.fence = j.value("fe", int64_t{0});
  s.asks = j.value("ak", 0u);
  return s;
}

// The header fields a transition after the start can change (the others are
// fixed at the start): fewer arguments and writes on the hot path.
static void progress_fields(RunState& st, Transition& t) {
  // Locks of lock-step instances that finished (or of all, the run ended) are
  // handed back, and waiting ones leave the queue.
  const bool run_ended = st.status != RunStatus::kRunning && st.status != RunStatus::kWaiting;
  for (auto& [id, s] : st.steps) {
    if (s.lock == 0) continue;
    if (!run_ended && s.status != StepStatus::kSucceeded && s.status != StepStatus::kFailed &&
        s.status != StepStatus::kCancelled)
      continue;
    t.locks.push_back({"release", st.record_key, Engine::lock_holder(st.run_id, id), 0});
    if (s.lock == 2) t.audit.push_back({"lock_released", "coordinator", st.updated_ms, {{"step", id}, {"token", s.fence}}});
    s.lock = 0;
    t.run_fields.emplace_back(RunState::step_field(id), s.to_json().dump());
  }
  t.run_fields.emplace_back("status", to_string(st.status));
  t.run_fields.emplace_back("updated", std::to_string(st.updated_ms));
  t.run_fields.emplace_back("executed", std::to_string(st.steps_executed));
  if (st.tokens || st.cost_micros) {
    t.run_fields.emplace_back("tokens", std::to_string(st.tokens));
    t.run_fields.emplace_back("cost", std::to_string(st.cost_micros));
  }
  if (st.fallback) t.run_fields.emplace_back("fallback", "1");
  if (!t.ending.empty()) {
    t.run_fields.emplace_back("at", st.ended_at);
    t.run_fields.emplace_back("reason", st.reason);
    t.run_fields.emplace_back("detail", st.reason_detail);
    t.run_fields.emplace_back("ended", std::to_string(st.ended_ms));
  }
}

std::vector<std::pair<std::string, std::string>> RunState::header_fields() const {
  return {{"wf", workflow},
          {"ver", std::to_string(version)},
          {"status", to_string(status)},
          {"reason", reason},
          {"detail", reason_detail},
          {"record", record_key},
          {"dedupe", dedupe_key},
          {"partition", std::to_string(partition)},
          {"created", std::to_string(created_ms)},
          {"updated", std::to_string(updated_ms)},
          {"ended", std::to_string(ended_ms)},
          {"executed", std::to_string(steps_executed)},
          {"at", ended_at}};
}

bool RunState::from_hashes(std::string_view run_id,
                           const std::vector<std::pair<std::string, std::string>>& run_hash,
                           const std::vector<std::pair<std::string, std::string>>& ctx_hash, RunState& out) {
  out = RunState();
  out.run_id = std::string(run_id);
  bool has_wf = false;
  for (const auto& [k, v] : run_hash) {
    if (k == "wf") {
      out.workflow = v;
      has_wf = true;
    } else if (k == "ver") {
      out.version = static_cast<uint32_t>(to_i64(v));
    } else if (k == "status") {
      out.status = v == "completed"   ? RunStatus::kCompleted
                   : v == "exception" ? RunStatus::kException
                   : v == "waiting"   ? RunStatus::kWaiting
                   : v == "cancelled" ? RunStatus::kCancelled
                                      : RunStatus::kRunning;
    } else if (k == "reason") {
      out.reason = v;
    } else if (k == "detail") {
      out.reason_detail = v;
    } else if (k == "record") {
      out.record_key = v;
    } else if (k == "dedupe") {
      out.dedupe_key = v;
    } else if (k == "partition") {
      out.partition = static_cast<int32_t>(to_i64(v));
    } else if (k == "created") {
      out.created_ms = to_i64(v);
    } else if (k == "updated") {
      out.updated_ms = to_i64(v);
    } else if (k == "ended") {
      out.ended_ms = to_i64(v);
    } else if (k == "at") {
      out.ended_at = v;
    } else if (k == "executed") {
      out.steps_executed = static_cast<uint32_t>(to_i64(v));
    } else if (k == "tokens") {
      out.tokens = static_cast<uint64_t>(to_i64(v));
    } else if (k == "cost") {
      out.cost_micros = static_cast<uint64_t>(to_i64(v));
    } else if (k == "fallback") {
      out.fallback = v == "1";
    } else if (k.rfind("step:", 0) == 0) {
      auto j = parse_json(v, limits::kMaxMessageBytes);
      if (j) out.steps[k.substr(5)] = StepState::from_json(*j);
    }
  }
  for (const auto& [k, v] : ctx_hash) {
    if (k == "input") {
      out.input = parse_object_or_empty(v);
    } else if (k.rfind("hist:", 0) == 0) {
      auto j = parse_json(v, limits::kMaxMessageBytes);
      out.history[k.substr(5)] = j ? std::move(j).value() : json(nullptr);
    } else if (k.rfind("out:", 0) == 0) {
      auto j = parse_json(v, limits::kMaxMessageBytes);
      out.context[k.substr(4)] = j ? std::move(j).value() : json(nullptr);
    }
  }
  return has_wf;
}

std::string timer_member(std::string_view run_id, TimerKind kind, std::string_view step, uint32_t attempt) {
  std::string m;
  m.reserve(run_id.size() + step.size() + 16);
  const char* k = kind == TimerKind::kTimeout   ? "|timeout|"
                  : kind == TimerKind::kRetry   ? "|retry|"
                  : kind == TimerKind::kWindow  ? "|window|"
                  : kind == TimerKind::kSla     ? "|sla|"
                  : kind == TimerKind::kLock    ? "|lock|"
                                                : "|sla_near|";
  m.append(run_id).append(k).append(step);
  m.push_back('|');
  m.append(std::to_string(attempt));
  return m;
}

bool parse_timer_member(std::string_view member, std::string& run_id, TimerKind& kind, std::string& step,
                        uint32_t& attempt) {
  auto p1 = member.find('|');
  if (p1 == std::string_view::npos) return false;
  auto p2 = member.find('|', p1 + 1);
  if (p2 == std::string_view::npos) return false;
  auto p3 = member.rfind('|');
  if (p3 == p2) return false;
  run_id = std::string(member.substr(0, p1));
  auto k = member.substr(p1 + 1, p2 - p1 - 1);
  if (k == "timeout") {
    kind = TimerKind::kTimeout;
  } else if (k == "retry") {
    kind = TimerKind::kRetry;
  } else if (k == "window") {
    kind = TimerKind::kWindow;
  } else if (k == "sla") {
    kind = TimerKind::kSla;
  } else if (k == "sla_near") {
    kind = TimerKind::kSlaNear;
  } else if (k == "lock") {
    kind = TimerKind::kLock;
  } else {
    return false;
  }
  step = std::string(member.substr(p2 + 1, p3 - p2 - 1));
  auto a = member.substr(p3 + 1);
  uint32_t v = 0;
  auto [ptr, ec] = std::from_chars(a.data(), a.data() + a.size(), v);
  if (ec != std::errc() || ptr != a.data() + a.size() || run_id.empty() || step.empty()) return false;
  attempt = v;
  return true;
}

std::string outbox_field(std::string_view step_id, uint32_t attempt) {
  return std::string(step_id) + ":" + std::to_string(attempt);
}

void redact_sensitive(json& j, const std::vector<std::string>& fields) {
  if (fields.empty()) return;
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) {
      if (std::find(fields.begin(), fields.end(), k) != fields.end()) {
        v = kRedacted;
      } else {
        redact_sensitive(v, fields);
      }
    }
  } else if (j.is_array()) {
    for (auto& v : j) redact_sensitive(v, fields);
  }
}

void Engine::redact(const workflow::Workflow& wf, Transition& t) {
  auto fields = wf.sensitive_fields();
  if (fields.empty()) return;
  for (auto& a : t.audit) {
    redact_sensitive(a.detail, fields);
    // record_written: {fields: {<name>: {old, new}}}
    if (a.detail.contains("fields") && a.detail["fields"].is_object()) {
      for (auto& [k, v] : a.detail["fields"].items())
        if (std::find(fields.begin(), fields.end(), k) != fields.end()) v = {{"old", kRedacted}, {"new", kRedacted}};
    }
  }
}

std::string Engine::check_writes(const workflow::Workflow& wf, const json& writes) {
  if (wf.record_fields.empty() || !writes.is_object()) return "";
  for (const auto& [k, v] : writes.items()) {
    const workflow::RecordField* f = wf.find_record_field(k);
    if (f && !v.is_null() && !workflow::contract_type_ok(f->type, v))
      return "record field '" + k + "' should be " + f->type + ", got " + v.type_name();
  }
  return "";
}

std::string Engine::check_contract(const workflow::Step& step, const json& output) {
  return workflow::check_contract(step.output, output);
}

int64_t Engine::backoff_ms(const workflow::RetryPolicy& p, uint32_t next_attempt) {
  double d = static_cast<double>(p.backoff_ms);
  for (uint32_t i = 2; i < next_attempt; ++i) {
    d *= p.multiplier;
    if (d >= static_cast<double>(p.max_backoff_ms)) break;
  }
  int64_t v = static_cast<int64_t>(d);
  return v > p.max_backoff_ms ? p.max_backoff_ms : v;
}

std::string_view step_of(std::string_view instance) {
  auto hash = instance.find('#');
  return hash == std::string_view::npos ? instance : instance.substr(0, hash);
}

namespace {

// The next free instance id of a step: the step id, then "<id>#2", "#3", ...
std::string new_instance(const RunState& st, const std::string& step_id) {
  if (st.steps.find(step_id) == st.steps.end()) return step_id;
  for (uint32_t n = 2;; ++n) {
    std::string id = step_id + "#" + std::to_string(n);
    if (st.steps.find(id) == st.steps.end()) return id;
  }
}

// A planned task's id: it names the task's output in the run context.
bool is_plan_id(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  bool letter = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char ch = s[i];
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (i > 0 && (ch == '_' || ch == '-'));
    if (!ok) return false;
    if (!(ch >= '0' && ch <= '9')) letter = true;
  }
  return letter;  // all digits would look like a revisit ("step#2")
}

// The audit entry of an applied record write: each field old -> new.
AuditRecord record_written(const RecordWriteOutcome& write, const std::string& step, const std::string& record,
                           const std::string& actor, int64_t now) {
  json fields = json::object();
  for (const auto& [f, ov] : write.changes) {
    auto o = parse_json(ov.first, limits::kMaxMessageBytes);
    auto n = parse_json(ov.second, limits::kMaxMessageBytes);
    fields[f] = {{"old", o ? *o : json(ov.first)}, {"new", n ? *n : json(ov.second)}};
  }
  return {"record_written", actor, now,
          {{"step", step}, {"record", record}, {"version", write.version}, {"fields", std::move(fields)}}};
}

std::string join_names(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

struct Engine::Ctx {
  const workflow::Workflow& wf;
  RunState& st;
  Transition& t;
  int64_t now;
  const json* record;
  json run_scope;
  bool run_built = false;
  std::string at;  // the instance this transition is about (where the run ends, if it does)

  // `run.` in conditions: id, workflow, version, executed, steps (outputs by key).
  const json* run() {
    if (!run_built) {
      run_scope = {{"id", st.run_id},         {"workflow", st.workflow}, {"version", st.version},
                   {"executed", st.steps_executed}, {"steps", st.context}};
      run_built = true;
    }
    return &run_scope;
  }
  bool eval(const workflow::Condition& cond, const json& output) {
    workflow::ExprScope scope;
    scope.input = &st.input;
    scope.output = &output;
    scope.record = record;
    if (cond.reads("run")) scope.run = run();
    return cond.eval(scope);
  }
  // Stores a step's output in the run context (and the ctx hash).
  // `instance` produced it; when it overwrites an earlier instance's output
  // (the next round of a loop or planner, a route back), that one is kept in
  // the history first.
  void store(const std::string& key, const json& output, const std::string& instance = "") {
    if (!instance.empty() && st.context.contains(key)) {
      const StepState* prev = nullptr;
      std::string prev_id;
      for (const auto& [id, s] : st.steps) {
        if (id == instance || step_of(id) != step_of(instance) || s.status != StepStatus::kSucceeded ||
            st.history.contains(id) || (!s.key.empty() && s.key != key))
          continue;
        if (!prev || s.seq > prev->seq) {
          prev = &s;
          prev_id = id;
        }
      }
      if (prev) {
        t.ctx_fields.emplace_back("hist:" + prev_id, st.context[key].dump());
        st.history[prev_id] = st.context[key];
      }
    }
    t.ctx_fields.emplace_back(RunState::output_field(key), output.dump());
    st.context[key] = output;
    run_built = false;
  }
};

void Engine::touch_step(const RunState& st, std::string_view step_id, Transition& t) const {
  auto it = st.steps.find(step_id);
  if (it != st.steps.end()) t.run_fields.emplace_back(RunState::step_field(step_id), it->second.to_json().dump());
}

void Engine::end_run(RunState& st, RunStatus status, const std::string& reason, const std::string& detail,
                     int64_t now, Transition& t, const std::string& at) const {
  if (st.status != RunStatus::kRunning && st.status != RunStatus::kWaiting) return;  // already ended
  // Gates still open elsewhere in the run (a branch, a held result) close with it.
  for (auto& [id, s] : st.steps) {
    if (s.status == StepStatus::kWaitingLock) {
      s.status = StepStatus::kCancelled;
      touch_step(st, id, t);
    }
    if (s.status != StepStatus::kAwaitingApproval) continue;
    close_gate(st, id, t);
    s.status = StepStatus::kCancelled;
    touch_step(st, id, t);
  }
  st.status = status;
  st.ended_at = at;
  st.reason = reason;
  st.reason_detail = detail;
  st.ended_ms = now;
  t.ending = to_string(status);
  if (status == RunStatus::kException) {
    t.exception_reason = reason;
    t.audit.push_back({"run_exception", kCoordinator, now, {{"reason", reason}, {"detail", detail}}});
    notify(st, t, "exception", at, {{"reason", reason}, {"detail", detail}}, now);
  } else {
    t.audit.push_back({"run_completed", kCoordinator, now, {{"duration_ms", now - st.created_ms}}});
  }
}

void Engine::dispatch(Ctx& c, const workflow::Step& step, const std::string& instance, uint32_t attempt) const {
  RunState& st = c.st;
  Transition& t = c.t;
  if (st.steps_executed >= c.wf.max_steps) {
    end_run(st, RunStatus::kException, "max_steps", "the run reached max_steps=" + std::to_string(c.wf.max_steps),
            c.now, t, instance);
    return;
  }
  if (!within_budget(c, instance)) return;
  if (step.lock_record && !st.record_key.empty()) {
    StepState& ls = st.steps[instance];
    if (ls.lock != 2) {
      // First the record's lease lock: the grant comes back as a LockGranted event.
      ls.status = StepStatus::kWaitingLock;
      ls.lock = 1;
      ls.attempt = attempt - 1;
      ++ls.asks;
      touch_step(st, instance, c.t);
      c.t.locks.push_back({"acquire", st.record_key, lock_holder(st.run_id, instance), lock_lease_ms(step)});
      // Asks again after a lease if no grant came (a grant event can be lost).
      c.t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kLock, instance, ls.asks),
                                  c.now + lock_lease_ms(step));
      c.t.audit.push_back({"lock_requested", kCoordinator, c.now, {{"step", instance}, {"record", st.record_key}}});
      return;
    }
    if (attempt > 1)
      c.t.locks.push_back({"renew", st.record_key, lock_holder(st.run_id, instance), lock_lease_ms(step)});
  }
  ++st.steps_executed;
  StepState& ss = st.steps[instance];
  ss.status = StepStatus::kRunning;
  ss.attempt = attempt;
  if (attempt == 1) ss.seq = st.steps_executed;
  ss.dispatched_ms = c.now;
  ss.started_ms = 0;
  ss.finished_ms = 0;
  ss.worker_id.clear();
  touch_step(st, instance, t);

  baton::v1::Task task;
  task.set_run_id(st.run_id);
  task.set_step_id(instance);
  task.set_attempt(attempt);
  task.set_role(step.role);
  task.set_namespace_(opts_.ns);
  task.mutable_workflow()->set_name(c.wf.name);
  task.mutable_workflow()->set_version(c.wf.version);
  task.set_input_json(ss.input.is_null() ? st.input.dump() : ss.input.dump());
  task.set_context_json(st.context.dump());
  if (!st.record_key.empty()) task.mutable_record()->set_key(st.record_key);
  for (const auto& w : step.writes) task.add_writes(w);
  task.set_deadline_unix_ms(c.now + step.timeout_ms);
  task.set_idempotency_key(st.run_id + ":" + instance + ":" + std::to_string(attempt));
  task.set_dispatched_unix_ms(c.now);
  task.set_partition(static_cast<uint32_t>(st.partition));
  if (ss.lock == 2) task.set_fence(ss.fence);
  if (st.fallback && c.wf.budget)
    for (const auto& m : c.wf.budget->fallback_models) task.add_models(m);
  t.dispatch_bytes.push_back(task.SerializeAsString());
  t.dispatch.push_back(std::move(task));
  t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kTimeout, instance, attempt), c.now + step.timeout_ms);
  // What the agent was given, as a digest (FNV-1a 64 of the task's input and
  // context): two dispatches with the same digest saw the same data.
  uint64_t h = 1469598103934665603ull;
  for (const std::string* part : {&t.dispatch.back().input_json(), &t.dispatch.back().context_json()})
    for (unsigned char ch : *part) {
      h ^= ch;
      h *= 1099511628211ull;
    }
  char digest[17];
  std::snprintf(digest, sizeof digest, "%016llx", static_cast<unsigned long long>(h));
  json detail = {{"step", instance}, {"role", step.role}, {"attempt", attempt}, {"input_digest", digest}};
  if (step.agent) detail["agent"] = step.agent->kind;
  if (ss.lock == 2) detail["fence"] = ss.fence;
  t.audit.push_back({"task_dispatched", kCoordinator, c.now, std::move(detail)});
}

Transition Engine::on_lock_granted(const workflow::Workflow& wf, RunState& st, const baton::v1::LockGranted& g,
                                   int64_t now) const {
  Transition t;
  t.changed = true;
  auto it = st.steps.find(g.step());
  const workflow::Step* step = wf.find_step(step_of(g.step()));
  if (it != st.steps.end() && it->second.lock == 2 && it->second.fence == g.token()) return t;  // a duplicate
  if (st.status != RunStatus::kRunning || it == st.steps.end() || !step ||
      it->second.status != StepStatus::kWaitingLock) {
    // Nobody waits for it (the run ended, the branch was cancelled): hand it on.
    t.locks.push_back({"release", st.record_key, lock_holder(st.run_id, g.step()), 0});
    t.audit.push_back({"lock_returned", kCoordinator, now, {{"step", g.step()}, {"token", g.token()}}});
    return t;
  }
  Ctx c{wf, st, t, now, nullptr, json(), false, g.step()};
  st.updated_ms = now;
  StepState& ss = it->second;
  t.timers_del.push_back(timer_member(st.run_id, TimerKind::kLock, g.step(), ss.asks));
  ss.lock = 2;
  ss.fence = g.token();
  t.audit.push_back({"lock_acquired", kCoordinator, now,
                     {{"step", g.step()}, {"record", st.record_key}, {"token", g.token()}}});
  dispatch(c, *step, g.step(), ss.attempt + 1);
  progress_fields(st, t);
  return t;
}

bool Engine::within_budget(Ctx& c, const std::string& instance) const {
  if (!c.wf.budget) return true;
  const workflow::Budget& b = *c.wf.budget;
  RunState& st = c.st;
  // A fallback gives the run a second budget of the same size on the cheaper
  // models; past that it is an exception too.
  const uint64_t k = st.fallback ? 2 : 1;
  std::string limit;
  uint64_t value = 0, max = 0;
  if (b.run_max_cost_micros && st.cost_micros >= k * b.run_max_cost_micros) {
    limit = "run_cost", value = st.cost_micros, max = b.run_max_cost_micros;
  } else if (b.run_max_tokens && st.tokens >= k * b.run_max_tokens) {
    limit = "run_tokens", value = st.tokens, max = b.run_max_tokens;
  } else if (b.run_max_steps && st.steps_executed >= k * b.run_max_steps) {
    limit = "run_steps", value = st.steps_executed, max = b.run_max_steps;
  } else if (b.daily_max_cost_micros && st.daily_spent_micros >= k * b.daily_max_cost_micros) {
    limit = "daily_cost", value = st.daily_spent_micros, max = b.daily_max_cost_micros;
  }
  if (limit.empty()) return true;
  json detail = {{"step", instance}, {"limit", limit}, {"value", value}, {"max", max}};
  if (b.fallback && !st.fallback) {
    st.fallback = true;
    detail["models"] = b.fallback_models;
    c.t.audit.push_back({"budget_fallback", kCoordinator, c.now, detail});
    return true;
  }
  c.t.audit.push_back({"budget_exceeded", kCoordinator, c.now, detail});
  end_run(st, RunStatus::kException, "budget_exceeded",
          instance + ": " + limit + " " + std::to_string(value) + " reached the budget of " + std::to_string(max) +
              (st.fallback ? " (twice: after the fallback)" : ""),
          c.now, c.t, instance);
  return false;
}

void Engine::enter(Ctx& c, const workflow::Step& step, const std::string& parent, const std::string& key,
                   const json* input, uint32_t round, uint32_t planned) const {
  RunState& st = c.st;
  if (st.status != RunStatus::kRunning) return;  // ended meanwhile (e.g. max_steps during a fan-out)
  std::string instance = key.empty() ? new_instance(st, step.id) : step.id + "#" + key;
  StepState& ss = st.steps[instance];
  ss = StepState();
  ss.parent = parent;
  ss.key = key;
  if (input) ss.input = *input;
  switch (step.kind) {
    case workflow::StepKind::kTask:
      if (step.planner) {
        ss.round = round;
        ss.planned = planned;
      }
      dispatch(c, step, instance, 1);
      return;
    case workflow::StepKind::kParallel: {
      ss.status = StepStatus::kRunning;
      ss.dispatched_ms = c.now;
      touch_step(st, instance, c.t);
      json branches = json::array();
      for (const auto& b : step.parallel) branches.push_back(b.step);
      c.t.audit.push_back({"fan_out", kCoordinator, c.now, {{"step", instance}, {"branches", std::move(branches)}}});
      for (const auto& b : step.parallel) {
        if (const auto* bs = c.wf.find_step(b.step)) enter(c, *bs, instance);
      }
      return;
    }
    case workflow::StepKind::kApproval: {
      ss.dispatched_ms = c.now;
      const auto& a = *step.approval;
      open_gate(c, instance, "approval", a.group, a.sla_ms, nullptr);
      return;
    }
    case workflow::StepKind::kLoop: {
      ss.status = StepStatus::kRunning;
      ss.dispatched_ms = c.now;
      ss.round = 1;
      touch_step(st, instance, c.t);
      c.t.audit.push_back({"loop_round", kCoordinator, c.now, {{"step", instance}, {"round", 1}}});
      if (const auto* maker = c.wf.find_step(step.loop->maker)) enter(c, *maker, instance);
      return;
    }
  }
}

void Engine::fail_attempt(Ctx& c, const workflow::Step& step, const std::string& instance, const std::string& code,
                          const std::string& message, bool retryable, const char* reason_override) const {
  RunState& st = c.st;
  Transition& t = c.t;
  StepState& ss = st.steps[instance];
  ss.error_code = code;
  ss.error_message = message;
  if (retryable && ss.attempt < step.retry.max_attempts) {
    ss.status = StepStatus::kRetryWait;
    int64_t delay = backoff_ms(step.retry, ss.attempt + 1);
    t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kRetry, instance, ss.attempt), c.now + delay);
    t.audit.push_back({"retry_scheduled", kCoordinator, c.now,
                       {{"step", instance}, {"attempt", ss.attempt}, {"error", code}, {"delay_ms", delay}}});
    touch_step(st, instance, t);
    return;
  }
  ss.status = StepStatus::kFailed;
  touch_step(st, instance, t);
  if (!ss.parent.empty()) {
    const workflow::Step* par = c.wf.find_step(step_of(ss.parent));
    if (par && par->kind == workflow::StepKind::kParallel) {
      bool ignore = false;
      for (const auto& b : par->parallel)
        if (b.step == step.id) ignore = b.ignore_failure;
      if (ignore) {
        t.audit.push_back({"branch_failed", kCoordinator, c.now,
                           {{"step", instance}, {"parallel", ss.parent}, {"error", code}}});
        std::string parent = ss.parent;
        check_join(c, *par, parent);
        return;
      }
    }
  }
  std::string reason;
  if (reason_override) {
    reason = reason_override;
  } else if (code == "contract_violation" || code == "collision" || code == "forbidden_write" || code == "timeout") {
    reason = code;  // typed: the operator's first question is which contract broke
  } else if (!retryable) {
    reason = code == "needs_review" || code.empty() ? "needs_review" : "step_failed";
  } else {
    reason = "retries_exhausted";
  }
  end_run(st, RunStatus::kException, reason, instance + ": " + code + (message.empty() ? "" : ": " + message), c.now,
          t, instance);
}

void Engine::succeeded(Ctx& c, const workflow::Step& step, const std::string& instance, const json& output) const {
  if (step.planner) {
    on_plan(c, step, instance, output);
    return;
  }
  std::string parent = c.st.steps[instance].parent;
  if (parent.empty()) {
    leave(c, step, output);
  } else {
    child_done(c, parent, instance);
  }
}

void Engine::go_to(Ctx& c, const workflow::Step& from, const std::string& target, const std::string& reason,
                   const std::string& detail) const {
  if (target == workflow::kTargetEnd) {
    end_run(c.st, RunStatus::kCompleted, "", "", c.now, c.t, c.at);
  } else if (target == workflow::kTargetException) {
    end_run(c.st, RunStatus::kException, reason, detail, c.now, c.t, c.at);
  } else if (const auto* next = c.wf.find_step(target)) {
    enter(c, *next, "");
  } else {
    end_run(c.st, RunStatus::kException, "bad_workflow", from.id + ": unknown target " + target, c.now, c.t, c.at);
  }
}

void Engine::leave(Ctx& c, const workflow::Step& step, const json& output) const {
  if (step.handoff) {
    const auto& h = *step.handoff;
    auto it = output.is_object() ? output.find(h.from_output) : output.end();
    std::string target = (it != output.end() && it->is_string()) ? it->get<std::string>() : std::string();
    bool allowed = std::find(h.allowed.begin(), h.allowed.end(), target) != h.allowed.end();
    if (!allowed) {
      std::string named = it == output.end() ? "no `" + h.from_output + "`" : "`" + h.from_output + "` = " + it->dump();
      c.t.audit.push_back({"handoff_refused", kCoordinator, c.now,
                           {{"step", step.id}, {"named", it == output.end() ? json(nullptr) : *it},
                            {"allowed", h.allowed}}});
      end_run(c.st, RunStatus::kException, "handoff_not_allowed",
              step.id + ": output has " + named + ", not one of the allowed steps (" + join_names(h.allowed) + ")",
              c.now, c.t, c.at);
      return;
    }
    c.t.audit.push_back({"handoff", kCoordinator, c.now, {{"step", step.id}, {"to", target}}});
    enter(c, *c.wf.find_step(target), "");
    return;
  }
  if (!step.route.empty()) {
    for (const auto& rule : step.route) {
      if (rule.when && !c.eval(*rule.when, output)) continue;
      std::string cond = rule.when ? rule.when->text() : std::string("else");
      c.t.audit.push_back({"routed", kCoordinator, c.now, {{"step", step.id}, {"when", cond}, {"to", rule.to}}});
      go_to(c, step, rule.to, "routed_to_exception", step.id + ": route `" + cond + "` -> exception");
      return;
    }
    c.t.audit.push_back({"no_route", kCoordinator, c.now, {{"step", step.id}}});
    end_run(c.st, RunStatus::kException, "no_route", step.id + ": no `route` condition matched and no `else`", c.now,
            c.t, c.at);
    return;
  }
  if (!step.next.empty()) {
    go_to(c, step, step.next, "", "");
    return;
  }
  end_run(c.st, RunStatus::kCompleted, "", "", c.now, c.t, c.at);
}

void Engine::cancel(Ctx& c, const std::string& instance) const {
  StepState& ss = c.st.steps[instance];
  if (ss.status == StepStatus::kRunning) {
    c.t.timers_del.push_back(timer_member(c.st.run_id, TimerKind::kTimeout, instance, ss.attempt));
    c.t.outbox_dels.push_back(outbox_field(instance, ss.attempt));
  } else if (ss.status == StepStatus::kRetryWait) {
    c.t.timers_del.push_back(timer_member(c.st.run_id, TimerKind::kRetry, instance, ss.attempt));
  } else if (ss.status == StepStatus::kAwaitingApproval) {
    close_gate(c.st, instance, c.t);
  } else if (ss.status != StepStatus::kWaitingLock) {
    return;
  }
  ss.status = StepStatus::kCancelled;
  touch_step(c.st, instance, c.t);
  c.t.audit.push_back({"branch_cancelled", kCoordinator, c.now, {{"step", instance}, {"attempt", ss.attempt}}});
}

void Engine::notify(const RunState& st, Transition& t, const std::string& event, const std::string& instance,
                    json extra, int64_t now) const {
  if (!opts_.notify) return;
  json n = std::move(extra);
  n["event"] = event;
  n["run_id"] = st.run_id;
  n["workflow"] = st.workflow;
  n["version"] = st.version;
  if (!instance.empty()) n["step"] = instance;
  if (!st.record_key.empty()) n["record_key"] = st.record_key;
  n["at_ms"] = now;
  n["id"] = st.run_id + ":" + event + ":" + (instance.empty() ? "-" : instance) + ":" + std::to_string(now);
  t.notify.push_back(n.dump());
}

void Engine::open_gate(Ctx& c, const std::string& instance, const std::string& kind, const std::string& group,
                       int64_t sla_ms, const GateState* held) const {
  StepState& ss = c.st.steps[instance];
  GateState g = held ? *held : GateState();
  g.kind = kind;
  g.group = group;
  g.opened_ms = c.now;
  g.escalations = 0;
  g.due_ms = sla_ms > 0 ? c.now + sla_ms : 0;
  ss.status = StepStatus::kAwaitingApproval;
  ss.gate = std::move(g);
  touch_step(c.st, instance, c.t);
  c.t.gates_add.emplace_back(gate_member(c.st.run_id, instance), c.now);
  if (sla_ms > 0) {
    c.t.timers_add.emplace_back(timer_member(c.st.run_id, TimerKind::kSla, instance, 0), c.now + sla_ms);
    c.t.timers_add.emplace_back(timer_member(c.st.run_id, TimerKind::kSlaNear, instance, 0), c.now + sla_ms * 4 / 5);
  }
  json detail = {{"step", instance}, {"kind", kind}, {"group", group}, {"due_ms", ss.gate->due_ms}};
  c.t.audit.push_back({"gate_opened", kCoordinator, c.now, detail});
  notify(c.st, c.t, "gate_opened", instance, {{"kind", kind}, {"group", group}, {"due_ms", ss.gate->due_ms}}, c.now);
}

void Engine::close_gate(RunState& st, const std::string& instance, Transition& t) const {
  auto it = st.steps.find(instance);
  if (it == st.steps.end() || !it->second.gate) return;
  const GateState& g = *it->second.gate;
  t.gates_del.push_back(gate_member(st.run_id, instance));
  if (g.due_ms) {
    t.timers_del.push_back(timer_member(st.run_id, TimerKind::kSla, instance, g.escalations));
    t.timers_del.push_back(timer_member(st.run_id, TimerKind::kSlaNear, instance, g.escalations));
  }
}

void Engine::check_join(Ctx& c, const workflow::Step& par, const std::string& instance) const {
  c.at = instance;
  auto pit = c.st.steps.find(instance);
  if (pit == c.st.steps.end() || pit->second.status != StepStatus::kRunning) return;
  std::vector<std::string> ok, failed, open;
  for (const auto& [id, s] : c.st.steps) {
    if (s.parent != instance) continue;
    if (s.status == StepStatus::kSucceeded) ok.push_back(id);
    else if (s.status == StepStatus::kFailed) failed.push_back(id);
    else if (s.status == StepStatus::kRunning || s.status == StepStatus::kRetryWait) open.push_back(id);
  }
  std::size_t need = par.join.mode == workflow::JoinMode::kAll   ? par.parallel.size() - failed.size()
                     : par.join.mode == workflow::JoinMode::kAny ? 1
                                                                 : par.join.quorum;
  bool complete = par.join.mode == workflow::JoinMode::kAll ? open.empty() : ok.size() >= need;
  if (!complete) {
    if (ok.size() + open.size() < need || (open.empty() && ok.size() < need)) {
      c.t.audit.push_back({"join_failed", kCoordinator, c.now,
                           {{"step", instance}, {"succeeded", ok}, {"failed", failed}}});
      end_run(c.st, RunStatus::kException, "join_failed",
              instance + ": needs " + std::to_string(need) + " successful branches, got " + std::to_string(ok.size()) +
                  " (failed: " + join_names(failed) + ")",
              c.now, c.t, c.at);
    }
    return;
  }
  for (const auto& id : open) cancel(c, id);
  json merged = json::object();
  for (const auto& id : ok) {
    std::string key(step_of(id));
    auto it = c.st.context.find(key);
    merged[key] = it == c.st.context.end() ? json(nullptr) : *it;
  }
  StepState& ps = c.st.steps[instance];
  ps.status = StepStatus::kSucceeded;
  touch_step(c.st, instance, c.t);
  const char* mode = par.join.mode == workflow::JoinMode::kAll   ? "all"
                     : par.join.mode == workflow::JoinMode::kAny ? "any"
                                                                 : "quorum";
  c.t.audit.push_back({"joined", kCoordinator, c.now,
                       {{"step", instance}, {"mode", mode}, {"succeeded", ok}, {"failed", failed}, {"cancelled", open}}});
  c.store(par.id, merged);
  c.at = instance;
  if (ps.parent.empty()) leave(c, par, merged);
}

void Engine::child_done(Ctx& c, const std::string& parent, const std::string& child) const {
  auto pit = c.st.steps.find(parent);
  const workflow::Step* par = c.wf.find_step(step_of(parent));
  if (pit == c.st.steps.end() || !par || c.st.status != RunStatus::kRunning) return;
  StepState& ps = pit->second;
  c.at = parent;
  if (par->kind == workflow::StepKind::kParallel) {
    check_join(c, *par, parent);
    return;
  }
  if (par->kind == workflow::StepKind::kLoop) {
    if (ps.status != StepStatus::kRunning) return;
    const auto& loop = *par->loop;
    std::string_view done = step_of(child);
    if (done == loop.maker) {
      enter(c, *c.wf.find_step(loop.checker), parent);
      return;
    }
    const json& verdict = c.st.context[loop.checker];
    auto summary = [&] {
      return json{{"rounds", ps.round}, {"maker", c.st.context[loop.maker]}, {"checker", verdict}};
    };
    if (c.eval(*loop.until, verdict)) {
      ps.status = StepStatus::kSucceeded;
      touch_step(c.st, parent, c.t);
      c.t.audit.push_back({"loop_done", kCoordinator, c.now,
                           {{"step", parent}, {"rounds", ps.round}, {"until", loop.until->text()}}});
      json out = summary();
      c.store(par->id, out);
      leave(c, *par, out);
    } else if (ps.round < loop.max_rounds) {
      ++ps.round;
      touch_step(c.st, parent, c.t);
      c.t.audit.push_back({"loop_round", kCoordinator, c.now, {{"step", parent}, {"round", ps.round}}});
      enter(c, *c.wf.find_step(loop.maker), parent);
    } else {
      ps.status = StepStatus::kSucceeded;
      ps.error_code = "exhausted";
      touch_step(c.st, parent, c.t);
      c.t.audit.push_back({"loop_exhausted", kCoordinator, c.now,
                           {{"step", parent}, {"rounds", ps.round}, {"to", loop.on_exhausted}}});
      c.store(par->id, summary());
      go_to(c, *par, loop.on_exhausted, "loop_exhausted",
            par->id + ": `" + loop.until->text() + "` still false after " + std::to_string(ps.round) + " rounds");
    }
    return;
  }
  if (par->planner) {
    for (const auto& [id, s] : c.st.steps)
      if (s.parent == parent && s.status != StepStatus::kSucceeded) return;  // the plan is not finished
    const auto& pl = *par->planner;
    if (ps.round >= pl.max_rounds) {
      c.t.audit.push_back({"planner_exhausted", kCoordinator, c.now,
                           {{"step", parent}, {"rounds", ps.round}, {"to", pl.on_exhausted}}});
      go_to(c, *par, pl.on_exhausted, "planner_exhausted",
            par->id + ": not done after max_rounds=" + std::to_string(pl.max_rounds));
      return;
    }
    enter(c, *par, "", "", nullptr, ps.round + 1, ps.planned);
  }
}

void Engine::on_plan(Ctx& c, const workflow::Step& step, const std::string& instance, const json& output) const {
  const auto& pl = *step.planner;
  uint32_t round = c.st.steps[instance].round;
  uint32_t planned = c.st.steps[instance].planned;
  c.t.audit.push_back({"plan", kCoordinator, c.now, {{"step", instance}, {"round", round}, {"plan", output}}});
  auto invalid = [&](const std::string& why) {
    end_run(c.st, RunStatus::kException, "invalid_plan", instance + ": " + why, c.now, c.t, c.at);
  };
  auto done = output.find("done");
  if (done != output.end() && !done->is_boolean()) return invalid("`done` must be true or false");
  if (done != output.end() && done->get<bool>()) {
    leave(c, step, output);
    return;
  }
  auto steps = output.find("steps");
  if (steps == output.end() || !steps->is_array() || steps->empty()) {
    return invalid("the plan is not done and has no `steps` (a non-empty list)");
  }
  struct Planned {
    const workflow::Step* step;
    std::string id;
    const json* input;
  };
  std::vector<Planned> tasks;
  for (std::size_t i = 0; i < steps->size(); ++i) {
    const json& e = (*steps)[i];
    std::string at = "steps[" + std::to_string(i) + "]";
    if (!e.is_object()) return invalid(at + " must be an object {step, id, input}");
    const workflow::Step* def = nullptr;
    if (auto s = e.find("step"); s != e.end()) {
      if (!s->is_string()) return invalid(at + ".step must be a string");
      std::string name = s->get<std::string>();
      if (std::find(pl.allowed.begin(), pl.allowed.end(), name) == pl.allowed.end()) {
        return invalid(at + ".step `" + name + "` is not allowed (allowed: " + join_names(pl.allowed) + ")");
      }
      def = c.wf.find_step(name);
    } else if (auto r = e.find("role"); r != e.end() && r->is_string()) {
      std::string role = r->get<std::string>();
      for (const auto& a : pl.allowed) {
        const auto* s2 = c.wf.find_step(a);
        if (s2 && s2->role == role) {
          if (def) return invalid(at + ".role `" + role + "` matches several allowed steps; name the `step`");
          def = s2;
        }
      }
      if (!def) return invalid(at + ".role `" + role + "` is not the role of an allowed step");
    } else {
      return invalid(at + " needs `step` (one of: " + join_names(pl.allowed) + ")");
    }
    std::string id;
    if (auto idj = e.find("id"); idj != e.end()) {
      if (!idj->is_string() || !is_plan_id(idj->get<std::string>())) {
        return invalid(at + ".id must match [a-z0-9][a-z0-9_-]* with a letter, at most 64 characters");
      }
      id = idj->get<std::string>();
    } else {
      id = def->id + "-" + std::to_string(planned + i + 1);
    }
    bool taken = c.wf.find_step(id) != nullptr || c.st.context.contains(id) ||
                 c.st.steps.count(def->id + "#" + id) > 0 ||
                 std::any_of(tasks.begin(), tasks.end(), [&](const Planned& p) { return p.id == id; });
    if (taken) return invalid(at + ".id `" + id + "` is already used in this run");
    const json* input = nullptr;
    if (auto in = e.find("input"); in != e.end()) {
      if (!in->is_object()) return invalid(at + ".input must be an object");
      input = &*in;
    }
    tasks.push_back({def, id, input});
  }
  if (planned + tasks.size() > pl.max_steps) {
    c.t.audit.push_back({"planner_exhausted", kCoordinator, c.now,
                         {{"step", instance}, {"planned", planned}, {"asked", tasks.size()}, {"to", pl.on_exhausted}}});
    go_to(c, step, pl.on_exhausted, "planner_exhausted",
          instance + ": the plan would exceed max_steps=" + std::to_string(pl.max_steps));
    return;
  }
  c.st.steps[instance].planned = planned + static_cast<uint32_t>(tasks.size());
  touch_step(c.st, instance, c.t);
  for (const auto& p : tasks) enter(c, *p.step, instance, p.id, p.input);
}

bool Engine::reads_record(const workflow::Workflow& wf) {
  for (const auto& s : wf.steps) {
    for (const auto& r : s.route)
      if (r.when && r.when->reads("record")) return true;
    if (s.loop && s.loop->until && s.loop->until->reads("record")) return true;
  }
  return false;
}

Transition Engine::start(const workflow::Workflow* wf, std::string_view run_id, int32_t partition,
                         const baton::v1::RunStarted& started, int64_t now, RunState& st) const {
  Transition t;
  t.is_new = true;
  t.changed = true;
  const uint64_t daily = st.daily_spent_micros;  // set by the caller for daily budgets
  st = RunState();
  st.daily_spent_micros = daily;
  st.run_id = std::string(run_id);
  st.workflow = started.workflow();
  st.version = wf ? wf->version : started.version();
  st.partition = partition;
  st.created_ms = now;
  st.updated_ms = now;
  st.dedupe_key = started.dedupe_key();
  st.input = parse_object_or_empty(started.input_json());
  t.audit.push_back({"run_started", started.requested_by().empty() ? "api" : started.requested_by(), now,
                     {{"workflow", st.workflow}, {"version", st.version}, {"dedupe_key", st.dedupe_key}}});
  if (!wf) {
    end_run(st, RunStatus::kException, "unknown_workflow",
            "workflow '" + started.workflow() + "' version " + std::to_string(started.version()) + " is not loaded",
            now, t);
  } else if (wf->steps.empty()) {
    end_run(st, RunStatus::kCompleted, "", "", now, t);
  } else {
    bool ok = true;
    if (!wf->record_template.empty()) {
      auto tmpl = workflow::Template::parse(wf->record_template);
      json scope = {{"input", st.input}};
      auto key = tmpl ? tmpl->render(scope) : Result<std::string>(tmpl.status());
      if (!key) {
        ok = false;
        end_run(st, RunStatus::kException, "bad_record_key", key.status().message(), now, t);
      } else {
        st.record_key = std::move(key).value();
      }
    }
    if (ok && wf->window && !wf->window->is_open(now)) {
      int64_t opens = wf->window->next_open(now);
      if (opens < 0) {
        end_run(st, RunStatus::kException, "window_never_opens", "the workflow's window never opens", now, t);
      } else {
        st.status = RunStatus::kWaiting;
        t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kWindow, "-", 0), opens);
        t.audit.push_back({"run_waiting", kCoordinator, now, {{"until_ms", opens}}});
      }
    } else if (ok) {
      Ctx c{*wf, st, t, now, nullptr, json(), false, ""};
      enter(c, wf->steps.front(), "");
    }
  }
  for (const auto& h : st.header_fields()) t.run_fields.push_back(h);
  t.ctx_fields.emplace_back("input", st.input.dump());
  return t;
}

std::optional<RecordWriteRequest> Engine::record_write_for(const workflow::Workflow& wf, const RunState& st,
                                                           const baton::v1::StepResult& r) const {
  if (st.status != RunStatus::kRunning || st.record_key.empty()) return std::nullopt;
  if (r.status() != baton::v1::StepResult::OK || r.writes_json().empty()) return std::nullopt;
  auto it = st.steps.find(r.step_id());
  if (it == st.steps.end() || it->second.status != StepStatus::kRunning || it->second.attempt != r.attempt())
    return std::nullopt;
  const workflow::Step* step = wf.find_step(step_of(r.step_id()));
  if (!step) return std::nullopt;
  if (!check_contract(*step, parse_object_or_empty(r.output_json())).empty()) return std::nullopt;
  auto writes = parse_json(r.writes_json(), limits::kMaxMessageBytes);
  if (!writes || !writes->is_object() || writes->empty()) return std::nullopt;
  if (!check_writes(wf, *writes).empty()) return std::nullopt;  // on_result fails the attempt
  // A result held at a gate writes when (and if) someone approves it.
  // (The output is parsed again only for steps that can hold a result.)
  if ((step->approval || step->review) && gate_for_result(*step, st, parse_object_or_empty(r.output_json())))
    return std::nullopt;
  RecordWriteRequest req;
  req.record_key = st.record_key;
  req.idempotency_key = st.run_id + ":" + r.step_id() + ":" + std::to_string(r.attempt());
  req.writer = st.run_id + ":" + r.step_id();
  req.version_read = r.record_version_read();
  req.allowed = step->writes;
  if (it->second.lock == 2) req.fence = it->second.fence;
  for (auto& [k, v] : writes->items()) req.fields.emplace_back(k, v.dump());
  return req;
}

Transition Engine::on_result(const workflow::Workflow& wf, RunState& st, const baton::v1::StepResult& r,
                             const RecordWriteOutcome& write, int64_t now, const json* record) const {
  Transition t;
  const std::string& instance = r.step_id();
  const workflow::Step* step = wf.find_step(step_of(instance));
  auto it = st.steps.find(instance);
  bool current = st.status == RunStatus::kRunning && step && step->kind == workflow::StepKind::kTask &&
                 it != st.steps.end() && it->second.status == StepStatus::kRunning &&
                 it->second.attempt == r.attempt();
  if (!current) {
    // A late or duplicate result (or one for a cancelled branch): recorded, ignored.
    t.changed = true;
    t.audit.push_back({"stale_result", r.worker_id(), now,
                       {{"step", instance}, {"attempt", r.attempt()}, {"status", status_name(r.status())}}});
    return t;
  }
  Ctx c{wf, st, t, now, record, json(), false, instance};
  t.changed = true;
  st.updated_ms = now;
  if (r.has_usage()) {
    st.tokens += r.usage().tokens_in() + r.usage().tokens_out();
    st.cost_micros += r.usage().cost_micros();
    st.daily_spent_micros += r.usage().cost_micros();
    t.spent_micros += r.usage().cost_micros();
  }
  StepState& ss = it->second;
  ss.started_ms = r.started_ms();
  ss.finished_ms = r.finished_ms();
  ss.worker_id = r.worker_id();
  t.timers_del.push_back(timer_member(st.run_id, TimerKind::kTimeout, instance, r.attempt()));
  t.outbox_dels.push_back(outbox_field(instance, r.attempt()));
  json result_detail = {{"step", instance},
                        {"attempt", r.attempt()},
                        {"status", status_name(r.status())},
                        {"worker", r.worker_id()},
                        {"duration_ms", r.finished_ms() - r.started_ms()}};
  if (r.has_usage() && (r.usage().tokens_in() || r.usage().tokens_out() || !r.usage().model().empty())) {
    result_detail["usage"] = {{"tokens_in", r.usage().tokens_in()},
                              {"tokens_out", r.usage().tokens_out()},
                              {"cost_micros", r.usage().cost_micros()},
                              {"model", r.usage().model()}};
    if (!r.usage().model_reason().empty()) result_detail["usage"]["model_reason"] = r.usage().model_reason();
  }
  if (r.has_error() && !r.error().code().empty()) result_detail["error"] = r.error().code();
  if (step->agent) result_detail["agent"] = step->agent->kind;
  result_detail["record_version_read"] = r.record_version_read();
  t.audit.push_back({"step_result", r.worker_id(), now, std::move(result_detail)});
  const std::string key = ss.key.empty() ? step->id : ss.key;

  switch (r.status()) {
    case baton::v1::StepResult::OK: {
      json output = parse_object_or_empty(r.output_json());
      std::string violation = check_contract(*step, output);
      if (!violation.empty()) {
        fail_attempt(c, *step, instance, "contract_violation", violation, true);
        break;
      }
      if (!r.writes_json().empty()) {
        auto w = parse_json(r.writes_json(), limits::kMaxMessageBytes);
        if (std::string bad = w ? check_writes(wf, *w) : std::string(); !bad.empty()) {
          fail_attempt(c, *step, instance, "contract_violation", bad, true);
          break;
        }
      }
      if (write.kind == RecordWriteOutcome::Kind::kNone) {
        if (const char* kind = gate_for_result(*step, st, output)) {
          GateState held;
          held.output = output;
          auto w = parse_json(r.writes_json().empty() ? "{}" : r.writes_json(), limits::kMaxMessageBytes);
          held.writes = w && w->is_object() ? std::move(w).value() : json::object();
          held.version_read = r.record_version_read();
          bool review = std::string_view(kind) == "review";
          open_gate(c, instance, kind, review ? step->review->group : step->approval->group,
                    review ? step->review->sla_ms : step->approval->sla_ms, &held);
          break;
        }
      }
      if (write.kind == RecordWriteOutcome::Kind::kCollision) {
        t.audit.push_back({"collision", kCoordinator, now,
                           {{"step", instance},
                            {"record", st.record_key},
                            {"version_read", r.record_version_read()},
                            {"version_now", write.version}}});
        fail_attempt(c, *step, instance, "collision",
                     "record " + st.record_key + " changed (read v" + std::to_string(r.record_version_read()) +
                         ", now v" + std::to_string(write.version) + ")",
                     !step->collision_is_exception);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kForbidden) {
        fail_attempt(c, *step, instance, "forbidden_write", "field '" + write.field + "' is not in the step's writes",
                     false);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kFenced) {
        // The lease expired and another run holds the lock now: nothing was
        // written; ask for the lock again and run the step once more.
        t.audit.push_back({"write_fenced", kCoordinator, now,
                           {{"step", instance}, {"record", st.record_key}, {"token", ss.fence}, {"holder_token", write.version}}});
        ss.lock = 0;
        ss.fence = 0;
        dispatch(c, *step, instance, ss.attempt + 1);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kApplied)
        t.audit.push_back(record_written(write, instance, st.record_key, kCoordinator, now));
      ss.status = StepStatus::kSucceeded;
      ss.error_code.clear();
      ss.error_message.clear();
      touch_step(st, instance, t);
      c.store(key, output, instance);
      succeeded(c, *step, instance, output);
      break;
    }
    case baton::v1::StepResult::RETRYABLE:
      fail_attempt(c, *step, instance, r.error().code().empty() ? "retryable" : r.error().code(), r.error().message(),
                   true);
      break;
    case baton::v1::StepResult::NEEDS_REVIEW: {
      // Keep what the agent said: the operator needs it to act. Not retried;
      // an ignored parallel branch only counts as not succeeded.
      c.store(key, parse_object_or_empty(r.output_json()), instance);
      fail_attempt(c, *step, instance, r.error().code().empty() ? "needs_review" : r.error().code(),
                   r.error().message(), false, "needs_review");
      break;
    }
    default:
      fail_attempt(c, *step, instance, r.error().code().empty() ? "failed" : r.error().code(), r.error().message(),
                   false);
      break;
  }
  progress_fields(st, t);
  return t;
}

const workflow::Step* Engine::operator_step(const workflow::Workflow& wf, const RunState& st,
                                            const baton::v1::OperatorAction& a) {
  // As given, else the top-level step where the run ended (a branch, maker or
  // planned task belongs to its parent).
  std::string step_id = a.step();
  if (step_id.empty()) {
    std::string at = st.ended_at;
    for (int guard = 0; guard < 4 && !at.empty(); ++guard) {
      auto it = st.steps.find(at);
      if (it == st.steps.end() || it->second.parent.empty()) break;
      at = it->second.parent;
    }
    step_id = std::string(step_of(at));
  }
  return step_id.empty() ? nullptr : wf.find_step(step_id);
}

std::optional<RecordWriteRequest> Engine::record_write_for_operator(const workflow::Workflow& wf, const RunState& st,
                                                                    const baton::v1::OperatorAction& a,
                                                                    const std::string& event_id,
                                                                    int64_t version_now) const {
  if (a.kind() != baton::v1::OperatorAction::RESOLVE || st.status != RunStatus::kException || st.record_key.empty())
    return std::nullopt;
  const workflow::Step* step = operator_step(wf, st, a);
  if (!step || step->writes.empty() || wf.is_sub_step(step->id)) return std::nullopt;
  auto output = parse_json(a.output_json(), limits::kMaxMessageBytes);
  if (!output || !output->is_object() || !check_contract(*step, *output).empty()) return std::nullopt;
  RecordWriteRequest req;
  for (const auto& f : step->writes) {
    auto it = output->find(f);
    if (it != output->end()) req.fields.emplace_back(f, it->dump());
  }
  if (req.fields.empty()) return std::nullopt;
  req.record_key = st.record_key;
  req.idempotency_key = st.run_id + ":" + step->id + ":op-" + event_id;
  req.writer = st.run_id + ":" + step->id + ":operator";
  req.version_read = version_now;
  req.allowed = step->writes;
  return req;
}

Transition Engine::on_operator(const workflow::Workflow& wf, RunState& st, const baton::v1::OperatorAction& a,
                               int64_t now, const RecordWriteOutcome& write) const {
  Transition t;
  t.changed = true;
  const char* action = a.kind() == baton::v1::OperatorAction::RETRY     ? "retry"
                       : a.kind() == baton::v1::OperatorAction::RESOLVE ? "resolve"
                       : a.kind() == baton::v1::OperatorAction::CANCEL  ? "cancel"
                       : a.kind() == baton::v1::OperatorAction::REROUTE ? "reroute"
                                                                        : "unknown";
  const std::string actor = a.actor().empty() ? "operator" : a.actor();
  json detail = {{"action", action}, {"comment", a.comment()}};
  auto refuse = [&](const std::string& why) {
    detail["refused"] = why;
    t.audit.push_back({"operator_refused", actor, now, detail});
    return t;
  };
  if (st.status != RunStatus::kException) return refuse("the run is not in the exception queue");
  if (a.kind() == baton::v1::OperatorAction::CANCEL) {
    st.status = RunStatus::kCancelled;
    st.updated_ms = now;
    st.ended_ms = now;
    t.audit.push_back({"operator_action", actor, now, detail});
    t.ending = to_string(RunStatus::kCancelled);
    progress_fields(st, t);
    return t;
  }
  const bool reroute = a.kind() == baton::v1::OperatorAction::REROUTE;
  if (a.kind() != baton::v1::OperatorAction::RETRY && a.kind() != baton::v1::OperatorAction::RESOLVE && !reroute)
    return refuse("unknown action");
  if (reroute && a.step().empty()) return refuse("reroute needs the step to go on at");
  const workflow::Step* step = operator_step(wf, st, a);
  if (!step) return refuse(a.step().empty() ? "no step to act on (give one)" : "unknown step " + a.step());
  if (wf.is_sub_step(step->id)) return refuse("step " + step->id + " runs inside another step; act on that one");
  detail["step"] = step->id;
  json output;
  if (a.kind() == baton::v1::OperatorAction::RESOLVE) {
    auto parsed = parse_json(a.output_json().empty() ? "{}" : a.output_json(), limits::kMaxMessageBytes);
    if (!parsed || !parsed->is_object()) return refuse("the manual output must be a JSON object");
    output = std::move(parsed).value();
    if (std::string v = check_contract(*step, output); !v.empty()) return refuse("the manual output breaks the contract: " + v);
    if (write.kind == RecordWriteOutcome::Kind::kCollision)
      return refuse("record " + st.record_key + " changed while resolving; act again");
    if (write.kind == RecordWriteOutcome::Kind::kForbidden) return refuse("field " + write.field + " may not be written");
    detail["output"] = output;
  } else if (!a.input_json().empty()) {  // retry and reroute may replace the input
    auto parsed = parse_json(a.input_json(), limits::kMaxMessageBytes);
    if (!parsed || !parsed->is_object()) return refuse("the new input must be a JSON object");
    detail["input"] = {{"old", st.input}, {"new", *parsed}};
    st.input = std::move(parsed).value();
    t.ctx_fields.emplace_back("input", st.input.dump());
  }
  t.audit.push_back({"operator_action", actor, now, detail});
  if (write.kind == RecordWriteOutcome::Kind::kApplied)
    t.audit.push_back(record_written(write, step->id, st.record_key, actor, now));
  st.status = RunStatus::kRunning;
  st.reason.clear();
  st.reason_detail.clear();
  st.ended_at.clear();
  st.ended_ms = 0;
  st.updated_ms = now;
  t.ending = "resumed";
  Ctx c{wf, st, t, now, nullptr, json(), false, step->id};
  if (a.kind() != baton::v1::OperatorAction::RESOLVE) {
    enter(c, *step, "");  // retry: the step again; reroute: another step
  } else {
    // Recorded as a new instance of the step that an operator completed.
    std::string instance = new_instance(st, step->id);
    StepState& ss = st.steps[instance];
    ss = StepState();
    ss.status = StepStatus::kSucceeded;
    ss.dispatched_ms = now;
    ss.worker_id = actor;
    touch_step(st, instance, t);
    c.store(step->id, output, instance);
    leave(c, *step, output);
  }
  progress_fields(st, t);  // with an ending ("resumed" too): also reason, detail, at, ended
  return t;
}

bool Engine::sampled(std::string_view run_id, std::string_view step_id, double share) {
  if (share <= 0) return false;
  if (share >= 1) return true;
  // FNV-1a 64 of "<run>:<step>": the same run is always (not) sampled, on every replica.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ull;
    }
  };
  mix(run_id);
  mix(":");
  mix(step_id);
  return static_cast<double>(h % 1000000u) < share * 1000000.0;
}

const char* Engine::gate_for_result(const workflow::Step& step, const RunState& st, const json& output) {
  if (step.kind != workflow::StepKind::kTask) return nullptr;
  if (step.approval) {
    if (!step.approval->when) return "approval";
    workflow::ExprScope scope;
    scope.input = &st.input;
    scope.output = &output;
    json run;
    if (step.approval->when->reads("run")) {
      run = {{"id", st.run_id},
             {"workflow", st.workflow},
             {"version", st.version},
             {"executed", st.steps_executed},
             {"steps", st.context}};
      scope.run = &run;
    }
    if (step.approval->when->eval(scope)) return "approval";
  }
  if (step.review && sampled(st.run_id, step.id, step.review->sample)) return "review";
  return nullptr;
}

void Engine::on_sla(Ctx& c, const workflow::Step& step, const std::string& instance, bool near) const {
  StepState& ss = c.st.steps[instance];
  GateState& g = *ss.gate;
  if (near) {
    c.t.audit.push_back({"gate_sla_near", kCoordinator, c.now, {{"step", instance}, {"group", g.group}, {"due_ms", g.due_ms}}});
    notify(c.st, c.t, "gate_sla_near", instance, {{"kind", g.kind}, {"group", g.group}, {"due_ms", g.due_ms}}, c.now);
    return;
  }
  c.st.updated_ms = c.now;
  const std::string escalate_to = g.kind == "approval" && step.approval ? step.approval->escalate_to : "";
  if (!escalate_to.empty() && g.escalations == 0) {
    c.t.timers_del.push_back(timer_member(c.st.run_id, TimerKind::kSlaNear, instance, 0));
    int64_t sla = step.approval->escalate_sla_ms ? step.approval->escalate_sla_ms : step.approval->sla_ms;
    std::string from = g.group;
    g.escalations = 1;
    g.group = escalate_to;
    g.due_ms = c.now + sla;
    c.t.timers_add.emplace_back(timer_member(c.st.run_id, TimerKind::kSla, instance, 1), g.due_ms);
    c.t.timers_add.emplace_back(timer_member(c.st.run_id, TimerKind::kSlaNear, instance, 1), c.now + sla * 4 / 5);
    touch_step(c.st, instance, c.t);
    c.t.audit.push_back({"gate_escalated", kCoordinator, c.now,
                         {{"step", instance}, {"from", from}, {"to", g.group}, {"due_ms", g.due_ms}}});
    notify(c.st, c.t, "gate_escalated", instance,
           {{"kind", g.kind}, {"group", g.group}, {"from", from}, {"due_ms", g.due_ms}}, c.now);
    return;
  }
  std::string group = g.group;
  close_gate(c.st, instance, c.t);
  c.t.audit.push_back({"gate_timeout", kCoordinator, c.now, {{"step", instance}, {"group", group}}});
  std::string why = "no decision from " + group + " within the SLA";
  if (!ss.parent.empty()) {
    ss.status = StepStatus::kRunning;  // fail_attempt decides the final state (not retried)
    fail_attempt(c, step, instance, "approval_timeout", why, false, "approval_timeout");
    return;
  }
  ss.status = StepStatus::kFailed;
  ss.error_code = "approval_timeout";
  ss.error_message = why;
  touch_step(c.st, instance, c.t);
  end_run(c.st, RunStatus::kException, "approval_timeout", instance + ": " + why, c.now, c.t, instance);
}

std::optional<RecordWriteRequest> Engine::record_write_for_decision(const workflow::Workflow& wf, const RunState& st,
                                                                    const baton::v1::GateDecision& d) const {
  if (!d.approve() || st.status != RunStatus::kRunning || st.record_key.empty()) return std::nullopt;
  auto it = st.steps.find(d.step());
  if (it == st.steps.end() || it->second.status != StepStatus::kAwaitingApproval || !it->second.gate ||
      it->second.gate->output.is_null())
    return std::nullopt;
  const workflow::Step* step = wf.find_step(step_of(d.step()));
  if (!step || step->writes.empty()) return std::nullopt;
  const GateState& g = *it->second.gate;
  std::vector<std::pair<std::string, std::string>> fields;
  if (g.writes.is_object())
    for (auto& [k, v] : g.writes.items()) fields.emplace_back(k, v.dump());
  if (!d.output_json().empty()) {
    // A correction: its fields the step may write replace the agent's.
    auto corrected = parse_json(d.output_json(), limits::kMaxMessageBytes);
    if (!corrected || !corrected->is_object() || !check_contract(*step, *corrected).empty()) return std::nullopt;
    for (const auto& f : step->writes) {
      auto c = corrected->find(f);
      if (c == corrected->end()) continue;
      auto same = std::find_if(fields.begin(), fields.end(), [&](const auto& p) { return p.first == f; });
      if (same != fields.end()) {
        same->second = c->dump();
      } else {
        fields.emplace_back(f, c->dump());
      }
    }
  }
  if (fields.empty()) return std::nullopt;
  RecordWriteRequest req;
  req.record_key = st.record_key;
  req.idempotency_key = st.run_id + ":" + d.step() + ":" + std::to_string(it->second.attempt);
  req.writer = st.run_id + ":" + d.step();
  req.version_read = g.version_read;
  req.allowed = step->writes;
  req.fields = std::move(fields);
  if (it->second.lock == 2) req.fence = it->second.fence;
  return req;
}

Transition Engine::on_decision(const workflow::Workflow& wf, RunState& st, const baton::v1::GateDecision& d,
                               int64_t now, const RecordWriteOutcome& write) const {
  Transition t;
  t.changed = true;
  const std::string actor = d.actor().empty() ? "approver" : d.actor();
  const std::string& instance = d.step();
  json detail = {{"step", instance}, {"decision", d.approve() ? "approved" : "rejected"}, {"comment", d.comment()}};
  auto refuse = [&](const std::string& why) {
    detail["refused"] = why;
    t.audit.push_back({"decision_refused", actor, now, detail});
    return t;
  };
  if (st.status != RunStatus::kRunning) return refuse("the run is not running");
  auto it = st.steps.find(instance);
  const workflow::Step* step = wf.find_step(step_of(instance));
  if (it == st.steps.end() || !step || it->second.status != StepStatus::kAwaitingApproval || !it->second.gate)
    return refuse("no open gate on step " + instance);
  StepState& ss = it->second;
  const GateState g = *ss.gate;
  const bool held = !g.output.is_null();
  detail["kind"] = g.kind;
  detail["group"] = g.group;
  detail["waited_ms"] = now - g.opened_ms;
  json corrected;
  if (!d.output_json().empty()) {
    if (!held) return refuse("an approval step takes no output");
    if (!d.approve()) return refuse("a rejection takes no corrected output");
    auto parsed = parse_json(d.output_json(), limits::kMaxMessageBytes);
    if (!parsed || !parsed->is_object()) return refuse("the corrected output must be a JSON object");
    if (std::string v = check_contract(*step, *parsed); !v.empty())
      return refuse("the corrected output breaks the contract: " + v);
    corrected = std::move(parsed).value();
    if (corrected != g.output) {
      detail["decision"] = "corrected";
      detail["original"] = g.output;
      detail["corrected"] = corrected;
    }
  }
  // Overturned: the person did not take the agent's result as it was (the
  // agent's measured accuracy at this step; GET /v1/stats).
  detail["overturned"] = held && (!d.approve() || detail["decision"] == "corrected");
  Ctx c{wf, st, t, now, nullptr, json(), false, instance};
  st.updated_ms = now;
  close_gate(st, instance, t);
  t.audit.push_back({"gate_decided", actor, now, detail});
  const std::string key = ss.key.empty() ? step->id : ss.key;
  if (d.approve()) {
    json out;
    if (held) {
      ss.status = StepStatus::kRunning;  // the held result is decided now
      if (write.kind == RecordWriteOutcome::Kind::kCollision) {
        t.audit.push_back({"collision", kCoordinator, now,
                           {{"step", instance},
                            {"record", st.record_key},
                            {"version_read", g.version_read},
                            {"version_now", write.version}}});
        fail_attempt(c, *step, instance, "collision",
                     "record " + st.record_key + " changed while the result waited for approval (read v" +
                         std::to_string(g.version_read) + ", now v" + std::to_string(write.version) + ")",
                     !step->collision_is_exception);
        progress_fields(st, t);
        return t;
      }
      if (write.kind == RecordWriteOutcome::Kind::kForbidden) {
        fail_attempt(c, *step, instance, "forbidden_write", "field '" + write.field + "' is not in the step's writes",
                     false);
        progress_fields(st, t);
        return t;
      }
      if (write.kind == RecordWriteOutcome::Kind::kApplied)
        t.audit.push_back(record_written(write, instance, st.record_key, actor, now));
      out = corrected.is_null() ? g.output : corrected;
    } else {
      out = {{"approved", true}, {"by", actor}, {"comment", d.comment()}};
    }
    ss.status = StepStatus::kSucceeded;
    ss.error_code.clear();
    ss.error_message.clear();
    touch_step(st, instance, t);
    c.store(key, out, instance);
    succeeded(c, *step, instance, out);
  } else {
    const bool review = g.kind == "review";
    const std::string code = review ? "review_rejected" : "approval_rejected";
    std::string why = "rejected by " + actor + (d.comment().empty() ? "" : ": " + d.comment());
    if (!held) c.store(key, {{"approved", false}, {"by", actor}, {"comment", d.comment()}}, instance);
    if (!ss.parent.empty()) {
      ss.status = StepStatus::kRunning;  // fail_attempt decides the final state (not retried)
      fail_attempt(c, *step, instance, code, why, false, code.c_str());
    } else {
      ss.status = StepStatus::kFailed;
      ss.error_code = code;
      ss.error_message = why;
      touch_step(st, instance, t);
      std::string target = review || !step->approval ? std::string(workflow::kTargetException) : step->approval->on_reject;
      t.audit.push_back({"routed", kCoordinator, now, {{"step", instance}, {"when", "rejected"}, {"to", target}}});
      go_to(c, *step, target, code, instance + ": " + why);
    }
  }
  progress_fields(st, t);
  return t;
}

Transition Engine::on_timer(const workflow::Workflow& wf, RunState& st, const Timer& timer, int64_t now) const {
  Transition t;
  t.timers_del.push_back(timer_member(st.run_id, timer.kind, timer.step_id, timer.attempt));
  t.changed = true;
  Ctx c{wf, st, t, now, nullptr, json(), false, timer.step_id};
  if (timer.kind == TimerKind::kWindow) {
    if (st.status != RunStatus::kWaiting || wf.steps.empty()) return t;
    st.status = RunStatus::kRunning;
    st.updated_ms = now;
    t.audit.push_back({"window_opened", kCoordinator, now, json::object()});
    enter(c, wf.steps.front(), "");
    progress_fields(st, t);
    return t;
  }
  const workflow::Step* step = wf.find_step(step_of(timer.step_id));
  auto it = st.steps.find(timer.step_id);
  if (timer.kind == TimerKind::kLock) {
    if (st.status != RunStatus::kRunning || !step || it == st.steps.end() ||
        it->second.status != StepStatus::kWaitingLock || it->second.asks != timer.attempt)
      return t;  // granted meanwhile: only removed
    StepState& ss = it->second;
    ++ss.asks;
    touch_step(st, timer.step_id, t);
    t.locks.push_back({"acquire", st.record_key, lock_holder(st.run_id, timer.step_id), lock_lease_ms(*step)});
    t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kLock, timer.step_id, ss.asks),
                              now + lock_lease_ms(*step));
    t.audit.push_back({"lock_asked_again", kCoordinator, now, {{"step", timer.step_id}, {"asks", ss.asks}}});
    return t;
  }
  if (timer.kind == TimerKind::kSla || timer.kind == TimerKind::kSlaNear) {
    if (st.status != RunStatus::kRunning || !step || it == st.steps.end() ||
        it->second.status != StepStatus::kAwaitingApproval || !it->second.gate ||
        it->second.gate->escalations != timer.attempt)
      return t;  // decided meanwhile: only removed
    on_sla(c, *step, timer.step_id, timer.kind == TimerKind::kSlaNear);
    progress_fields(st, t);
    return t;
  }
  if (st.status != RunStatus::kRunning || !step || it == st.steps.end() || it->second.attempt != timer.attempt) {
    return t;  // stale timer: only removed
  }
  StepState& ss = it->second;
  if (timer.kind == TimerKind::kTimeout && ss.status == StepStatus::kRunning) {
    st.updated_ms = now;
    t.outbox_dels.push_back(outbox_field(timer.step_id, timer.attempt));
    t.audit.push_back({"step_timeout", kCoordinator, now,
                       {{"step", timer.step_id}, {"attempt", timer.attempt}, {"timeout_ms", step->timeout_ms}}});
    fail_attempt(c, *step, timer.step_id,
                 "timeout",
                 "no result within " + std::to_string(step->timeout_ms) + " ms (attempt " +
                     std::to_string(timer.attempt) + ")",
                 true);
  } else if (timer.kind == TimerKind::kRetry && ss.status == StepStatus::kRetryWait) {
    st.updated_ms = now;
    dispatch(c, *step, timer.step_id, ss.attempt + 1);
  } else {
    return t;
  }
  progress_fields(st, t);
  return t;
}

}  // namespace baton::coordinator
