// `exec` agent: runs a configured command for each task, in any language.
// docs/agents.md#exec.
//
// Config: `command: [program, args...]` (required; a program without '/' is
// looked up in PATH), `timeout_ms` (default 30000), `env: {NAME: value}`
// (added to the worker's environment), `cwd` (default: the worker's).
// Each `command` element, each `env` value and `cwd` may name the worker's
// environment variables, `${NAME}` or `${NAME:-default}` (`$$` is a literal
// `$`: write `$$$$` for a shell's own `$$`), expanded once when the agent is
// built (config::expand_env); an unset variable without a default refuses the
// config with a message naming the key (exec: `command[1]`).
//
// The task goes to the command's stdin as one JSON object {run_id, step,
// attempt, input, record, steps, writes}; the command writes one JSON object
// to stdout: the step's output (fields the step lists under `writes:` are
// written to the record by the worker, as for every agent). stderr is logged.
// Exit 0 with a JSON object: OK. Exit 75 (EX_TEMPFAIL): RETRYABLE. Any other
// exit, a signal, or stdout that is not one JSON object: FAILED with the
// stderr tail. Past the timeout the command's process group gets SIGTERM,
// then SIGKILL 2 s later; the step is RETRYABLE `timeout`. No process is left
// behind. Output over limits::kMaxMessageBytes is refused.
#pragma once

#include "baton/agent.h"

namespace baton::agent {
FactoryResult make_exec_agent(const nlohmann::json& config);
}  // namespace baton::agent
