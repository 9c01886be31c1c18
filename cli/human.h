// batonctl commands over the human-control read side of the API: the audit
// trail of a run and the exception queue (docs: cli/README.md). Each returns a
// process exit code (kExitOk, kExitError); JSON or text on stdout, errors on
// stderr.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace baton::cli {

// `batonctl audit RUN_ID`: the run's audit trail as a timeline (text) or the
// API's JSON (`-o json`).
int audit_command(const std::string& api, const std::string& run_id, const std::string& output);

// `batonctl exceptions list [--workflow W] [--limit N]`.
int exceptions_list(const std::string& api, const std::string& workflow, int limit, const std::string& output);
// `batonctl exceptions show RUN_ID`: the run's reason, where it ended, and
// the last decisions of its audit trail.
int exceptions_show(const std::string& api, const std::string& run_id, const std::string& output);

// `batonctl exceptions retry|resolve|reroute|cancel RUN_ID`: POST /v1/exceptions/{id}
// with {"action", "step", "input" (retry), "output" (resolve), "comment"}.
// `input_file` / `output_file`: a JSON object file, or "" for none.
int exceptions_act(const std::string& api, const std::string& action, const std::string& run_id,
                   const std::string& step, const std::string& input_file, const std::string& output_file,
                   const std::string& comment);

// `batonctl approvals list [--group G] [--limit N]`: open gates (approvals and
// sampled reviews) the caller may decide, oldest first.
int approvals_list(const std::string& api, const std::string& group, int limit, const std::string& output);
// `batonctl approvals approve|reject RUN_ID STEP [--comment C] [--output FILE]`:
// POST /v1/approvals/{run}/{step}. `output_file` (approve only): a corrected
// output, a JSON object file, or "".
int approvals_decide(const std::string& api, const std::string& decision, const std::string& run_id,
                     const std::string& step, const std::string& comment, const std::string& output_file);

// `batonctl stats [--workflow W] [--since-hours H]`: GET /v1/stats as a
// readable report per workflow and version (or the API's JSON).
int stats_command(const std::string& api, const std::string& workflow, int since_hours, const std::string& output);

// One audit entry as a timeline line: "+1.234s  routed         qualify: output.score >= 0.7 -> book".
// `t0_ms` is the run's first entry time. Pure; exposed for tests.
std::string timeline_line(const nlohmann::json& entry, int64_t t0_ms);

}  // namespace baton::cli
