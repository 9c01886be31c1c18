#include "coordinator/engine.h"

#include <charconv>
#include <cmath>

#include "common/util/json.h"
#include "common/util/keys.h"
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
  }
  return "unknown";
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
  return j;
}

StepState StepState::from_json(const json& j) {
  StepState s;
  if (!j.is_object()) return s;
  std::string st = j.value("s", "pending");
  for (auto c : {StepStatus::kPending, StepStatus::kRunning, StepStatus::kRetryWait, StepStatus::kSucceeded,
                 StepStatus::kFailed}) {
    if (st == to_string(c)) s.status = c;
  }
  s.attempt = j.value("a", 0u);
  s.dispatched_ms = j.value("d", int64_t{0});
  s.started_ms = j.value("st", int64_t{0});
  s.finished_ms = j.value("f", int64_t{0});
  s.worker_id = j.value("w", "");
  s.error_code = j.value("ec", "");
  s.error_message = j.value("em", "");
  return s;
}

// The header fields a transition after the start can change (the others are
// fixed at the start): fewer arguments and writes on the hot path.
static void progress_fields(const RunState& st, Transition& t) {
  t.run_fields.emplace_back("status", to_string(st.status));
  t.run_fields.emplace_back("updated", std::to_string(st.updated_ms));
  t.run_fields.emplace_back("executed", std::to_string(st.steps_executed));
  if (!t.ending.empty()) {
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
          {"executed", std::to_string(steps_executed)}};
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
      out.status = v == "completed" ? RunStatus::kCompleted
                   : v == "exception" ? RunStatus::kException
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
    } else if (k == "executed") {
      out.steps_executed = static_cast<uint32_t>(to_i64(v));
    } else if (k.rfind("step:", 0) == 0) {
      auto j = parse_json(v, limits::kMaxMessageBytes);
      if (j) out.steps[k.substr(5)] = StepState::from_json(*j);
    }
  }
  for (const auto& [k, v] : ctx_hash) {
    if (k == "input") {
      out.input = parse_object_or_empty(v);
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
  m.append(run_id).append(kind == TimerKind::kTimeout ? "|timeout|" : "|retry|").append(step);
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

std::string Engine::check_contract(const workflow::Step& step, const json& output) {
  if (step.output.empty()) return "";
  if (!output.is_object()) return "output is not a JSON object";
  for (const auto& f : step.output) {
    auto it = output.find(f.name);
    if (it == output.end() || it->is_null()) {
      if (f.optional) continue;
      return "missing field '" + f.name + "' (" + f.type + ")";
    }
    const json& v = *it;
    bool ok = true;
    if (f.type == "string") ok = v.is_string();
    else if (f.type == "number") ok = v.is_number();
    else if (f.type == "integer") ok = v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
    else if (f.type == "boolean") ok = v.is_boolean();
    else if (f.type == "object") ok = v.is_object();
    else if (f.type == "array") ok = v.is_array();
    if (!ok) return "field '" + f.name + "' should be " + f.type + ", got " + v.type_name();
  }
  return "";
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

void Engine::touch_step(const RunState& st, std::string_view step_id, Transition& t) const {
  auto it = st.steps.find(step_id);
  if (it != st.steps.end()) t.run_fields.emplace_back(RunState::step_field(step_id), it->second.to_json().dump());
}

void Engine::end_run(RunState& st, RunStatus status, const std::string& reason, const std::string& detail,
                     int64_t now, Transition& t) const {
  st.status = status;
  st.reason = reason;
  st.reason_detail = detail;
  st.ended_ms = now;
  t.ending = to_string(status);
  if (status == RunStatus::kException) {
    t.exception_reason = reason;
    t.audit.push_back({"run_exception", kCoordinator, now, {{"reason", reason}, {"detail", detail}}});
  } else {
    t.audit.push_back({"run_completed", kCoordinator, now, {{"duration_ms", now - st.created_ms}}});
  }
}

void Engine::dispatch(const workflow::Workflow& wf, const workflow::Step& step, RunState& st, uint32_t attempt,
                      int64_t now, Transition& t) const {
  if (st.steps_executed >= wf.max_steps) {
    end_run(st, RunStatus::kException, "max_steps",
            "the run reached max_steps=" + std::to_string(wf.max_steps), now, t);
    return;
  }
  ++st.steps_executed;
  StepState& ss = st.steps[step.id];
  ss.status = StepStatus::kRunning;
  ss.attempt = attempt;
  ss.dispatched_ms = now;
  ss.started_ms = 0;
  ss.finished_ms = 0;
  ss.worker_id.clear();
  touch_step(st, step.id, t);

  baton::v1::Task task;
  task.set_run_id(st.run_id);
  task.set_step_id(step.id);
  task.set_attempt(attempt);
  task.set_role(step.role);
  task.set_namespace_(opts_.ns);
  task.mutable_workflow()->set_name(wf.name);
  task.mutable_workflow()->set_version(wf.version);
  task.set_input_json(st.input.dump());
  task.set_context_json(st.context.dump());
  if (!st.record_key.empty()) task.mutable_record()->set_key(st.record_key);
  for (const auto& w : step.writes) task.add_writes(w);
  task.set_deadline_unix_ms(now + step.timeout_ms);
  task.set_idempotency_key(st.run_id + ":" + step.id + ":" + std::to_string(attempt));
  task.set_dispatched_unix_ms(now);
  task.set_partition(static_cast<uint32_t>(st.partition));
  t.dispatch_bytes.push_back(task.SerializeAsString());
  t.dispatch.push_back(std::move(task));
  t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kTimeout, step.id, attempt), now + step.timeout_ms);
  t.audit.push_back({"task_dispatched", kCoordinator, now,
                     {{"step", step.id}, {"role", step.role}, {"attempt", attempt}}});
}

void Engine::fail_attempt(const workflow::Workflow& /*wf*/, const workflow::Step& step, RunState& st,
                          const std::string& code, const std::string& message, bool retryable, int64_t now,
                          Transition& t) const {
  StepState& ss = st.steps[step.id];
  ss.error_code = code;
  ss.error_message = message;
  if (retryable && ss.attempt < step.retry.max_attempts) {
    ss.status = StepStatus::kRetryWait;
    int64_t delay = backoff_ms(step.retry, ss.attempt + 1);
    t.timers_add.emplace_back(timer_member(st.run_id, TimerKind::kRetry, step.id, ss.attempt), now + delay);
    t.audit.push_back({"retry_scheduled", kCoordinator, now,
                       {{"step", step.id}, {"attempt", ss.attempt}, {"error", code}, {"delay_ms", delay}}});
    touch_step(st, step.id, t);
    return;
  }
  ss.status = StepStatus::kFailed;
  touch_step(st, step.id, t);
  std::string reason;
  if (!retryable) {
    reason = code == "needs_review" || code.empty() ? "needs_review" : "step_failed";
  } else {
    reason = code == "timeout" ? "timeout" : "retries_exhausted";
  }
  end_run(st, RunStatus::kException, reason, step.id + ": " + code + (message.empty() ? "" : ": " + message),
          now, t);
}

Transition Engine::start(const workflow::Workflow* wf, std::string_view run_id, int32_t partition,
                         const baton::v1::RunStarted& started, int64_t now, RunState& st) const {
  Transition t;
  t.is_new = true;
  t.changed = true;
  st = RunState();
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
            "workflow '" + started.workflow() + "' version " + std::to_string(started.version()) +
                " is not loaded",
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
    if (ok) dispatch(*wf, wf->steps.front(), st, 1, now, t);
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
  const workflow::Step* step = wf.find_step(r.step_id());
  if (!step) return std::nullopt;
  if (!check_contract(*step, parse_object_or_empty(r.output_json())).empty()) return std::nullopt;
  auto writes = parse_json(r.writes_json(), limits::kMaxMessageBytes);
  if (!writes || !writes->is_object() || writes->empty()) return std::nullopt;
  RecordWriteRequest req;
  req.record_key = st.record_key;
  req.idempotency_key = st.run_id + ":" + r.step_id() + ":" + std::to_string(r.attempt());
  req.writer = st.run_id + ":" + r.step_id();
  req.version_read = r.record_version_read();
  req.allowed = step->writes;
  for (auto& [k, v] : writes->items()) req.fields.emplace_back(k, v.dump());
  return req;
}

Transition Engine::on_result(const workflow::Workflow& wf, RunState& st, const baton::v1::StepResult& r,
                             const RecordWriteOutcome& write, int64_t now) const {
  Transition t;
  const workflow::Step* step = wf.find_step(r.step_id());
  auto it = st.steps.find(r.step_id());
  bool current = st.status == RunStatus::kRunning && step && it != st.steps.end() &&
                 it->second.status == StepStatus::kRunning && it->second.attempt == r.attempt();
  if (!current) {
    // A late or duplicate result: recorded, ignored.
    t.changed = true;
    t.audit.push_back({"stale_result", r.worker_id(), now,
                       {{"step", r.step_id()}, {"attempt", r.attempt()}, {"status", status_name(r.status())}}});
    return t;
  }
  t.changed = true;
  st.updated_ms = now;
  StepState& ss = it->second;
  ss.started_ms = r.started_ms();
  ss.finished_ms = r.finished_ms();
  ss.worker_id = r.worker_id();
  t.timers_del.push_back(timer_member(st.run_id, TimerKind::kTimeout, step->id, r.attempt()));
  t.outbox_dels.push_back(outbox_field(step->id, r.attempt()));
  json result_detail = {{"step", step->id},
                        {"attempt", r.attempt()},
                        {"status", status_name(r.status())},
                        {"worker", r.worker_id()},
                        {"duration_ms", r.finished_ms() - r.started_ms()}};
  if (r.has_usage() && (r.usage().tokens_in() || r.usage().tokens_out() || !r.usage().model().empty())) {
    result_detail["usage"] = {{"tokens_in", r.usage().tokens_in()},
                              {"tokens_out", r.usage().tokens_out()},
                              {"cost_micros", r.usage().cost_micros()},
                              {"model", r.usage().model()}};
  }
  if (r.has_error() && !r.error().code().empty()) result_detail["error"] = r.error().code();
  t.audit.push_back({"step_result", r.worker_id(), now, std::move(result_detail)});

  switch (r.status()) {
    case baton::v1::StepResult::OK: {
      json output = parse_object_or_empty(r.output_json());
      std::string violation = check_contract(*step, output);
      if (!violation.empty()) {
        fail_attempt(wf, *step, st, "contract_violation", violation, true, now, t);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kCollision) {
        t.audit.push_back({"collision", kCoordinator, now,
                           {{"step", step->id},
                            {"record", st.record_key},
                            {"version_read", r.record_version_read()},
                            {"version_now", write.version}}});
        fail_attempt(wf, *step, st, "collision",
                     "record " + st.record_key + " changed (read v" + std::to_string(r.record_version_read()) +
                         ", now v" + std::to_string(write.version) + ")",
                     true, now, t);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kForbidden) {
        fail_attempt(wf, *step, st, "forbidden_write",
                     "field '" + write.field + "' is not in the step's writes", false, now, t);
        break;
      }
      if (write.kind == RecordWriteOutcome::Kind::kApplied) {
        json fields = json::object();
        for (const auto& [f, ov] : write.changes) {
          auto o = parse_json(ov.first, limits::kMaxMessageBytes);
          auto n = parse_json(ov.second, limits::kMaxMessageBytes);
          fields[f] = {{"old", o ? *o : json(ov.first)}, {"new", n ? *n : json(ov.second)}};
        }
        t.audit.push_back({"record_written", kCoordinator, now,
                           {{"step", step->id}, {"record", st.record_key}, {"version", write.version},
                            {"fields", std::move(fields)}}});
      }
      ss.status = StepStatus::kSucceeded;
      ss.error_code.clear();
      ss.error_message.clear();
      touch_step(st, step->id, t);
      t.ctx_fields.emplace_back(RunState::output_field(step->id), output.dump());
      st.context[step->id] = std::move(output);
      if (!step->next.empty()) {
        const workflow::Step* next = wf.find_step(step->next);
        if (!next) {
          end_run(st, RunStatus::kException, "bad_workflow", "unknown next step " + step->next, now, t);
        } else {
          dispatch(wf, *next, st, 1, now, t);
        }
      } else {
        end_run(st, RunStatus::kCompleted, "", "", now, t);
      }
      break;
    }
    case baton::v1::StepResult::RETRYABLE:
      fail_attempt(wf, *step, st, r.error().code().empty() ? "retryable" : r.error().code(), r.error().message(),
                   true, now, t);
      break;
    case baton::v1::StepResult::NEEDS_REVIEW: {
      ss.status = StepStatus::kFailed;
      ss.error_code = r.error().code().empty() ? "needs_review" : r.error().code();
      ss.error_message = r.error().message();
      touch_step(st, step->id, t);
      // Keep what the agent said: the operator needs it to act.
      json output = parse_object_or_empty(r.output_json());
      t.ctx_fields.emplace_back(RunState::output_field(step->id), output.dump());
      st.context[step->id] = std::move(output);
      end_run(st, RunStatus::kException, "needs_review", step->id + ": " + ss.error_code +
                                                             (ss.error_message.empty() ? "" : ": " + ss.error_message),
              now, t);
      break;
    }
    default:
      fail_attempt(wf, *step, st, r.error().code().empty() ? "failed" : r.error().code(), r.error().message(),
                   false, now, t);
      break;
  }
  progress_fields(st, t);
  return t;
}

Transition Engine::on_timer(const workflow::Workflow& wf, RunState& st, const Timer& timer, int64_t now) const {
  Transition t;
  t.timers_del.push_back(timer_member(st.run_id, timer.kind, timer.step_id, timer.attempt));
  t.changed = true;
  const workflow::Step* step = wf.find_step(timer.step_id);
  auto it = st.steps.find(timer.step_id);
  if (st.status != RunStatus::kRunning || !step || it == st.steps.end() ||
      it->second.attempt != timer.attempt) {
    return t;  // stale timer: only removed
  }
  StepState& ss = it->second;
  if (timer.kind == TimerKind::kTimeout && ss.status == StepStatus::kRunning) {
    st.updated_ms = now;
    t.outbox_dels.push_back(outbox_field(step->id, timer.attempt));
    t.audit.push_back({"step_timeout", kCoordinator, now,
                       {{"step", step->id}, {"attempt", timer.attempt}, {"timeout_ms", step->timeout_ms}}});
    fail_attempt(wf, *step, st, "timeout",
                 "no result within " + std::to_string(step->timeout_ms) + " ms (attempt " +
                     std::to_string(timer.attempt) + ")",
                 true, now, t);
  } else if (timer.kind == TimerKind::kRetry && ss.status == StepStatus::kRetryWait) {
    st.updated_ms = now;
    dispatch(wf, *step, st, ss.attempt + 1, now, t);
  } else {
    return t;
  }
  progress_fields(st, t);
  return t;
}

}  // namespace baton::coordinator
