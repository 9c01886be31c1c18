// Test support for unit tests of the worker's agents: the built-in registry,
// an agent made from a config, a refused config's message, and one execution
// of an agent on an input. Header-only: it needs baton::worker_lib, which only
// the worker_* test binaries link.
//
// make() and refusal() report an unexpected outcome with EXPECT in the calling
// test; nothing throws. For one test thread (builtins() is safe to share).
#pragma once

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <utility>

#include "baton/agent.h"

namespace baton::testing {

// A registry holding every built-in agent kind, built once.
inline const agent::AgentRegistry& builtins() {
  static const agent::AgentRegistry r = [] {
    agent::AgentRegistry reg;
    agent::register_builtin_agents(reg);
    return reg;
  }();
  return r;
}

// The built-in agent `kind` made from `cfg`; null (and a test failure) when
// the config is refused.
inline agent::AgentPtr make(const std::string& kind, const nlohmann::json& cfg) {
  auto a = builtins().create(kind, cfg);
  EXPECT_TRUE(a.is_ok()) << kind << ": " << a.status().to_string();
  if (!a) return nullptr;
  return std::move(a).value();
}

// The message refusing `cfg` for `kind` ("" when the config is accepted); a
// refusal must be kInvalidArgument (else a test failure).
inline std::string refusal(const std::string& kind, const nlohmann::json& cfg) {
  auto a = builtins().create(kind, cfg);
  if (a) return "";
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument) << a.status().to_string();
  return a.status().message();
}

// Executes `a` once on `input`, with `steps` as the earlier steps' outputs
// (`steps.` paths) and `record` as the run's record (`record.` paths).
inline agent::AgentOutput run(agent::Agent& a, nlohmann::json input, nlohmann::json steps = nlohmann::json::object(),
                              nlohmann::json record = nlohmann::json::object()) {
  agent::OwnedInput in(v1::Task(), std::move(input), std::move(steps), std::move(record), 1);
  return a.execute(in.view());
}

}  // namespace baton::testing
