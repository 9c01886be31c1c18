// Bytes -> baton.v1.Task -> workers/executor.h Executor::answer with the
// built-in agents that do no I/O (echo, template, rules, score, extract,
// validate, plan) over the example workflows whose agents are all of those
// (fuzz_support.h: no exec, http or llm agent is ever built, so nothing is
// started or called over the network). The record is a fixed one, or the
// HGETALL-like reply decoded from the task's record key.
// Contract checked: never crashes, throws or leaks; the answer is a RunEvent
// within limits::kMaxMessageBytes that parses back, names the task's run, step
// and attempt, and a FAILED answer has an error code.
#include <cstdint>
#include <memory>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "baton/agent.h"
#include "common/util/limits.h"
#include "fuzz/fuzz_support.h"
#include "proto/baton/v1/baton.pb.h"
#include "workers/agents/echo.h"
#include "workers/agents/extract.h"
#include "workers/agents/plan.h"
#include "workers/agents/rules.h"
#include "workers/agents/score.h"
#include "workers/agents/template.h"
#include "workers/agents/validate.h"
#include "workers/executor.h"

namespace {

using namespace baton;

struct Fixture {
  std::unique_ptr<worker::Executor> executor;
  worker::RecordView record;

  Fixture() {
    auto reg = std::make_shared<workflow::Registry>();
    for (auto& wf : fuzz::example_workflows(/*pure_only=*/true)) (void)reg->add(wf);
    agent::AgentRegistry agents;
    (void)agents.add("echo", agent::make_echo_agent);
    (void)agents.add("template", agent::make_template_agent);
    (void)agents.add("rules", agent::make_rules_agent);
    (void)agents.add("score", agent::make_score_agent);
    (void)agents.add("extract", agent::make_extract_agent);
    (void)agents.add("validate", agent::make_validate_agent);
    (void)agents.add("plan", agent::make_plan_agent);
    executor = std::make_unique<worker::Executor>(reg, agents, "", "fuzz-worker");
    record.fields = {{"owner", "ada"}, {"stage", "new"}, {"score", 0.5}, {"tags", {"a", "b"}}};
    record.version = 3;
  }
};

// A record hash as Redis would return it, from text: "k=v;k=v" pairs.
redis::Reply reply_of(std::string_view text) {
  redis::Reply r;
  r.type = redis::Reply::Type::kArray;
  while (!text.empty() && r.elements.size() < 64) {
    auto semi = text.find(';');
    std::string_view pair = text.substr(0, semi);
    text = semi == std::string_view::npos ? std::string_view() : text.substr(semi + 1);
    auto eq = pair.find('=');
    for (std::string_view part : {pair.substr(0, eq), eq == std::string_view::npos ? "" : pair.substr(eq + 1)}) {
      redis::Reply s;
      s.type = redis::Reply::Type::kString;
      s.str = std::string(part);
      r.elements.push_back(std::move(s));
    }
  }
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8" for every other input
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Fixture fx;
  v1::Task task;
  if (!task.ParseFromArray(data, static_cast<int>(size))) return 0;  // the worker's DLQ case
  worker::RecordView record = fx.record;
  if (task.record().key().find('=') != std::string::npos) {
    auto decoded = worker::decode_record(reply_of(task.record().key()));
    if (!decoded) return 0;  // the runtime answers bad_record without running the agent
    record = std::move(decoded).value();
  }
  worker::Answer a = fx.executor->answer(task, record);
  fuzz::check(a.bytes.size() <= limits::kMaxMessageBytes, "answer within the message cap");
  v1::RunEvent ev;
  fuzz::check(ev.ParseFromString(a.bytes), "answer parses as a RunEvent");
  fuzz::check(ev.has_step_result(), "answer is a step result");
  fuzz::check(ev.run_id() == task.run_id(), "answer names the task's run", ev.run_id());
  fuzz::check(ev.step_result().step_id() == task.step_id() && ev.step_result().attempt() == task.attempt(),
              "answer names the task's step and attempt", ev.step_result().step_id());
  if (a.status == v1::StepResult::FAILED)
    fuzz::check(!ev.step_result().error().code().empty(), "a failure has an error code");
  worker::Answer rejected = fx.executor->reject(task, agent::errors::kBadRecord, "fuzz");
  fuzz::check(rejected.status == v1::StepResult::FAILED, "reject fails the task");
  return 0;
}
