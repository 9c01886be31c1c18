// Bytes -> baton.v1.RunEvent -> the coordinator engine's pure apply path
// (coordinator/engine.h), as coordinator/application.cc drives it, against
// fixed run states (run_states.h: every example workflow, started and driven a
// few rounds). The event's run_id picks the state ("<workflow>-<round>", else a
// hash of it); a RunStarted starts a new run of the workflow it names.
// The event is applied twice (a redelivery), and a TimerFired also as each
// timer kind of the zset (window, SLA, lock). Bytes that are not a RunEvent are
// what the coordinator sends to the DLQ: nothing more to do.
// Contract checked: never crashes, throws or leaks; every dispatched task is
// serialized once in dispatch_bytes and parses back; a transition that
// changes nothing has no effects.
#include <cstdint>
#include <functional>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "coordinator/engine.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/run_states.h"
#include "proto/baton/v1/baton.pb.h"

namespace {

using namespace baton;
using coordinator::Engine;
using coordinator::RecordWriteOutcome;
using coordinator::RunState;
using coordinator::Transition;

struct Fixture {
  workflow::Registry registry;
  Engine engine{coordinator::EngineOptions{"fuzz", /*notify=*/true}};
  std::vector<fuzz::FixedRun> runs;

  Fixture() {
    for (auto& wf : fuzz::example_workflows(/*pure_only=*/false)) (void)registry.add(wf);
    runs = fuzz::fixed_runs(engine, registry, 3);
  }
};

// The record write outcome the caller would pass: chosen by the event's
// produced time, so the fuzzer reaches every kind.
RecordWriteOutcome outcome_for(const std::optional<coordinator::RecordWriteRequest>& req, int64_t pick) {
  RecordWriteOutcome w;
  if (!req) return w;
  using K = RecordWriteOutcome::Kind;
  static constexpr K kinds[] = {K::kApplied, K::kCollision, K::kForbidden, K::kFenced, K::kNone};
  w.kind = kinds[static_cast<uint64_t>(pick) % 5];
  w.version = req->version_read + (w.kind == K::kApplied ? 1 : 2);
  if (!req->fields.empty()) {
    w.field = req->fields.front().first;
    for (const auto& [f, v] : req->fields) w.changes.push_back({f, {"null", v}});
  }
  return w;
}

void check_transition(const Transition& t) {
  fuzz::check(t.dispatch.size() == t.dispatch_bytes.size(), "each dispatched task serialized once");
  for (std::size_t i = 0; i < t.dispatch.size(); ++i) {
    baton::v1::Task back;
    fuzz::check(back.ParseFromString(t.dispatch_bytes[i]), "dispatched task parses back");
    fuzz::check(back.step_id() == t.dispatch[i].step_id(), "dispatch_bytes match dispatch");
  }
  if (!t.changed)
    fuzz::check(t.dispatch.empty() && t.timers_add.empty() && t.audit.empty() && t.notify.empty(),
                "an unchanged transition has no effects");
}

Transition apply(const Fixture& fx, const workflow::Workflow& wf, RunState& st, const baton::v1::RunEvent& ev,
                 int64_t now) {
  const Engine& engine = fx.engine;
  Transition t;
  if (ev.has_step_result()) {
    auto req = engine.record_write_for(wf, st, ev.step_result());
    RecordWriteOutcome w = outcome_for(req, ev.produced_unix_ms());
    // Conditions reading `record.` get the record after the write.
    nlohmann::json record = {{"owner", "ada"}, {"stage", "new"}, {"score", 0.5}};
    t = engine.on_result(wf, st, ev.step_result(), w, now, Engine::reads_record(wf) ? &record : nullptr);
  } else if (ev.has_timer()) {
    coordinator::Timer tm{ev.timer().kind() == baton::v1::TimerFired::RETRY ? coordinator::TimerKind::kRetry
                                                                              : coordinator::TimerKind::kTimeout,
                          ev.timer().step_id(), ev.timer().attempt(), now};
    t = engine.on_timer(wf, st, tm, now);
  } else if (ev.has_operator_()) {
    RecordWriteOutcome w;
    if (auto req = engine.record_write_for_operator(wf, st, ev.operator_(), ev.event_id(), 3))
      w = outcome_for(req, ev.produced_unix_ms());
    t = engine.on_operator(wf, st, ev.operator_(), now, w);
  } else if (ev.has_decision()) {
    RecordWriteOutcome w;
    if (auto req = engine.record_write_for_decision(wf, st, ev.decision())) w = outcome_for(req, ev.produced_unix_ms());
    t = engine.on_decision(wf, st, ev.decision(), now, w);
  } else if (ev.has_lock_granted()) {
    t = engine.on_lock_granted(wf, st, ev.lock_granted(), now);
  } else {
    return t;
  }
  Engine::redact(wf, t);
  check_transition(t);
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" for every other input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture fx;
  baton::v1::RunEvent ev;
  if (!ev.ParseFromArray(data, static_cast<int>(size))) return 0;  // the coordinator's DLQ case
  // The clock: after the states' own times, moved by the event (timeouts, SLAs, backoff).
  const int64_t now = fuzz::kStartMs + 1000 + (ev.produced_unix_ms() & 0xffffffff);

  if (ev.has_started()) {
    const auto& s = ev.started();
    auto wf = fx.registry.find(s.workflow(), s.version());
    RunState st;
    Transition t = fx.engine.start(wf.get(), ev.run_id(), 0, s, now, st);
    check_transition(t);
    return 0;
  }

  const fuzz::FixedRun* run = nullptr;
  for (const auto& r : fx.runs)
    if (r.name == ev.run_id()) run = &r;
  if (!run) run = &fx.runs[std::hash<std::string>()(ev.run_id()) % fx.runs.size()];

  RunState st = run->state;
  apply(fx, *run->wf, st, ev, now);
  apply(fx, *run->wf, st, ev, now + 1);  // redelivered

  if (ev.has_timer()) {
    // The zset's other timer kinds, as parse_timer_member reads them.
    for (auto kind : {coordinator::TimerKind::kWindow, coordinator::TimerKind::kSla,
                      coordinator::TimerKind::kSlaNear, coordinator::TimerKind::kLock}) {
      std::string member = coordinator::timer_member(run->name, kind, ev.timer().step_id(), ev.timer().attempt());
      std::string run_id, step;
      coordinator::TimerKind parsed_kind;
      uint32_t attempt = 0;
      if (!coordinator::parse_timer_member(member, run_id, parsed_kind, step, attempt)) continue;
      RunState again = run->state;
      Transition t = fx.engine.on_timer(*run->wf, again, coordinator::Timer{parsed_kind, step, attempt, now}, now);
      check_transition(t);
    }
  }
  // Arbitrary timer members (the zset is outside data too).
  {
    std::string run_id, step;
    coordinator::TimerKind kind;
    uint32_t attempt = 0;
    (void)coordinator::parse_timer_member(ev.event_id(), run_id, kind, step, attempt);
  }
  return 0;
}
