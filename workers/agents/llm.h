// The `llm` agent: a chat model behind an OpenAI-compatible
// /v1/chat/completions (OpenAI, Ollama, vLLM, llama.cpp server, LM Studio) or
// Anthropic /v1/messages. docs/agents.md#llm.
//
// Per task: renders the system prompt and the user prompt (templates over
// input./record./steps.), asks the first model of the chain, and
//   - when the step has an `output:` contract, asks for a JSON object
//     (response_format json_schema on OpenAI-compatible servers, the schema in the
//     system prompt for every API), parses it and checks it against the contract;
//     a reply that breaks it is sent back once with the error (one repair round)
//     before the step fails with `contract_violation`;
//   - without a contract, the reply text is the output field `text`;
//   - runs the tool calls the model makes (the agent's `tools`, each an `http`
//     tool whose templates also read `args.`), at most `max_tool_calls`;
//   - retries 429 and 5xx (and timeouts, connection errors) with jittered
//     exponential backoff honouring Retry-After, never past the task deadline;
//   - moves to the next model of the chain (`models:`) when one fails; the run's
//     budget may replace the chain (Task.models). Usage.model and
//     Usage.model_reason say which model answered and why.
// Usage (prompt/completion tokens from the provider) and cost (from the price
// table, USD per million tokens) are reported in every result, failures too.
//
// Secrets: the API key comes from `api_key_env` or `api_key_file`, is read once
// at construction, and is sent only in the Authorization / x-api-key header;
// it is never logged and never part of an output or error message.
//
// Threads: execute() is thread-safe (the agent is immutable after
// construction); it blocks for up to the task's deadline.
#pragma once

#include <nlohmann/json.hpp>

#include "baton/agent.h"

namespace baton::agent {

// kInvalidArgument naming the key for a bad config.
FactoryResult make_llm_agent(const nlohmann::json& config, const StepInfo& step);

}  // namespace baton::agent
