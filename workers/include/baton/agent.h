// The Baton agent SDK: the one interface an agent implements, and the explicit
// registry (kind name -> factory) a worker is built from. docs/agents.md.
//
// A worker runs, for every task it consumes, the agent named by the step's
// `agent: { kind: ..., <config> }` (or, when a step has no `agent:`, the kind
// named like the step's role). Agents are constructed once per (workflow,
// version, step) with their config and then called concurrently from the
// worker's threads: execute() must be thread-safe and must not throw (a throw is
// caught and reported as FAILED `agent_error`, but it is a bug).
//
// Ownership: the AgentInput references live for the duration of one execute()
// call only; copy what you keep. The returned AgentOutput is moved by the worker.
//
// A custom worker in ~20 lines:
//
//   #include "baton/agent.h"
//   #include "baton/worker.h"
//   using namespace baton::agent;
//   class Greeter : public Agent {
//    public:
//     AgentOutput execute(const AgentInput& in) override {
//       AgentOutput out;
//       out.output["greeting"] = "hello " + in.input.value("name", std::string("there"));
//       return out;
//     }
//   };
//   int main(int argc, char** argv) {
//     AgentRegistry agents;
//     register_builtin_agents(agents);
//     (void)agents.add("greeter", [](const nlohmann::json&) -> FactoryResult {
//       return std::unique_ptr<Agent>(new Greeter());
//     });
//     return baton::worker::worker_main(argc, argv, std::move(agents));
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/util/status.h"
#include "proto/baton/v1/baton.pb.h"

namespace baton::agent {

// Error codes a worker or a built-in agent puts in StepResult.error.code.
namespace errors {
inline constexpr const char* kUnknownAgent = "unknown_agent";        // no workflow/step/kind for the task
inline constexpr const char* kBadAgentConfig = "bad_agent_config";   // the step's agent config was refused
inline constexpr const char* kForbiddenWrite = "forbidden_write";    // a write outside task.writes()
inline constexpr const char* kTemplateError = "template_error";      // a template path was missing
inline constexpr const char* kBadInput = "bad_input";                // task input/context is not JSON
inline constexpr const char* kBadRecord = "bad_record";              // the record hash could not be read
inline constexpr const char* kBadOutput = "bad_output";              // output/writes not JSON objects
inline constexpr const char* kOutputTooLarge = "output_too_large";   // result over limits::kMaxMessageBytes
inline constexpr const char* kAgentError = "agent_error";            // the agent threw
inline constexpr const char* kLowScore = "low_score";                // score agent thresholds
inline constexpr const char* kMissingField = "missing_field";        // extract/validate
inline constexpr const char* kCheckFailed = "check_failed";          // validate checks
inline constexpr const char* kPoisonTask = "poison_task";            // the agent killed its worker N times
}  // namespace errors

struct Usage {
  uint64_t tokens_in = 0;
  uint64_t tokens_out = 0;
  uint64_t cost_micros = 0;
  std::string model;         // the model that answered
  std::string model_reason;  // why it answered: "primary", "fallback: ...", "budget"
};

// What an agent sees. `scope` is {"input": input, "record": record, "steps":
// context}: the object templates and paths ("input.x", "record.y",
// "steps.respond.z") are resolved in; input/context/record refer into it.
struct AgentInput {
  const baton::v1::Task& task;
  const nlohmann::json& input;    // the run's input object
  const nlohmann::json& context;  // {"<step>": output} of the run's finished steps
  const nlohmann::json& record;   // the shared record's fields ({} when none)
  int64_t record_version;         // the record's `_v` when read (0: absent)
  const nlohmann::json& scope;    // {"input", "record", "steps"}
};

struct AgentOutput {
  enum Status { kOk, kRetryable, kFailed, kNeedsReview };
  Status status = kOk;
  nlohmann::json output = nlohmann::json::object();  // must stay an object
  nlohmann::json writes = nlohmann::json::object();  // record field -> value (only task.writes())
  Usage usage;
  std::string error_code;     // set for every status but kOk
  std::string error_message;

  static AgentOutput ok(nlohmann::json output = nlohmann::json::object()) {
    AgentOutput o;
    o.output = std::move(output);
    return o;
  }
  static AgentOutput fail(Status status, std::string code, std::string message) {
    AgentOutput o;
    o.status = status;
    o.error_code = std::move(code);
    o.error_message = std::move(message);
    return o;
  }
};

const char* status_name(AgentOutput::Status s);

class Agent {
 public:
  virtual ~Agent() = default;
  Agent() = default;
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  // Called concurrently from several threads. Must not throw.
  virtual AgentOutput execute(const AgentInput& in) = 0;
};

using AgentPtr = std::unique_ptr<Agent>;
using FactoryResult = Result<AgentPtr>;
// Builds an agent from its config (the step's `agent:` map without `kind` and
// `set`). Refuses a bad config with kInvalidArgument and a reason that names the
// offending key. Called once per (workflow, version, step), at worker start.
using AgentFactory = std::function<FactoryResult(const nlohmann::json& config)>;

// What a step-aware factory learns about the step it builds for (the llm agent
// asks its model for the step's output contract).
struct StepInfo {
  std::string workflow;
  uint32_t version = 0;
  std::string step;
  // The step's `output:` contract as {field: type}, optional fields with a
  // trailing '?' ("string?"); types string, number, integer, boolean, object,
  // array, any. Empty object: no contract.
  nlohmann::json output = nlohmann::json::object();
  std::vector<std::string> writes;  // record fields the step may write
};
using StepAgentFactory = std::function<FactoryResult(const nlohmann::json& config, const StepInfo& step)>;

// Kind name -> factory. Filled at start-up, read-only afterwards (reads are
// thread-safe then).
class AgentRegistry {
 public:
  // kAlreadyExists when `kind` is registered; kInvalidArgument for an empty kind
  // or factory.
  Status add(std::string kind, AgentFactory factory);
  // The same for a factory that also reads the step it builds for.
  Status add_step_aware(std::string kind, StepAgentFactory factory);
  bool contains(std::string_view kind) const;
  // kNotFound for an unknown kind; the factory's refusal otherwise (a factory
  // that throws is reported as kInvalidArgument with the exception's text).
  FactoryResult create(std::string_view kind, const nlohmann::json& config, const StepInfo& step = {}) const;
  std::vector<std::string> kinds() const;  // sorted

 private:
  std::map<std::string, StepAgentFactory, std::less<>> factories_;
};

// Registers echo, template, rules, score, extract, validate, plan, exec, http (one line each).
void register_builtin_agents(AgentRegistry& registry);

// Owns everything an AgentInput refers to: for tests and for callers that run
// an agent outside the worker runtime.
class OwnedInput {
 public:
  OwnedInput(baton::v1::Task task, nlohmann::json input,
             nlohmann::json context = nlohmann::json::object(),
             nlohmann::json record = nlohmann::json::object(), int64_t record_version = 0)
      : task_(std::move(task)), version_(record_version) {
    scope_ = nlohmann::json::object();
    scope_["input"] = std::move(input);
    scope_["record"] = std::move(record);
    scope_["steps"] = std::move(context);
  }
  explicit OwnedInput(nlohmann::json input) : OwnedInput(baton::v1::Task(), std::move(input)) {}
  OwnedInput(const OwnedInput&) = delete;
  OwnedInput& operator=(const OwnedInput&) = delete;

  AgentInput view() const {
    return AgentInput{task_, scope_.at("input"), scope_.at("steps"), scope_.at("record"), version_,
                      scope_};
  }
  const nlohmann::json& scope() const { return scope_; }

 private:
  baton::v1::Task task_;
  nlohmann::json scope_;
  int64_t version_;
};

}  // namespace baton::agent
