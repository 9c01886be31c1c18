// Pure helpers over the coordinator's run JSON (GET /v1/runs/{id}) used by
// `batonctl run`: where a run ended, step transitions, batch summaries and the
// comparison with an expected-outcomes file. No I/O; never throws (fields of
// the wrong type read as absent).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace baton::cli {

// The facts batonctl reads from a run.
struct RunView {
  std::string run_id;
  std::string status;      // running | completed | exception ("" when the body has none)
  std::string ended_step;  // the step dispatched last (where the run is or ended); "" if none
  std::string code;        // for an exception: the ended step's error code, else the run's reason
  std::string message;     // the matching error message / reason_detail
  std::string reason;      // the run's reason (exception reason code)
  std::vector<std::string> path;  // step instances in the order they were first dispatched
  int64_t created_ms = 0;
  int64_t ended_ms = 0;
  // The run needs nothing more from Baton: it ended, or it waits for a person
  // (status "awaiting_approval": a gate is open and no task is in flight).
  bool ended() const { return status == "completed" || status == "exception" || status == "awaiting_approval"; }
};
RunView view_run(const nlohmann::json& run);

// One step as last seen; a change of (status, attempts) is a transition.
struct StepSeen {
  std::string status;
  int64_t attempts = 0;
};
// Lines describing what changed between `before` (updated in place) and `run`:
// "  qualify     succeeded   attempt 1   412 ms" (error code and message when set).
std::vector<std::string> step_transitions(const nlohmann::json& run, std::map<std::string, StepSeen>& before);

// One submitted input of a batch and what became of it.
struct BatchItem {
  std::size_t line = 0;          // 1-based line in the .jsonl file
  nlohmann::json input;          // the parsed line
  std::string run_id;            // empty when submission failed
  std::string error;             // submission/poll error ("" when none)
  nlohmann::json last;           // last GET body (null before the first)
  RunView view;
};

struct Summary {
  std::size_t total = 0;
  std::size_t completed = 0;
  std::size_t exceptions = 0;
  std::size_t errors = 0;     // not submitted, or unreadable
  std::size_t unfinished = 0; // still running at the deadline
  std::size_t awaiting = 0;   // waiting for a person at a gate
  // (step, code) -> count, for exceptions.
  std::map<std::pair<std::string, std::string>, std::size_t> exceptions_by;
  int64_t p50_ms = 0, p99_ms = 0, max_ms = 0;  // ended_ms - created_ms of ended runs
  int64_t wall_ms = 0;
};
Summary summarize(const std::vector<BatchItem>& items, int64_t wall_ms);
// Nearest-rank percentile (q in [0,1]) of unsorted values; 0 when empty.
int64_t percentile(std::vector<int64_t> values, double q);

// "lead_id" when the input has it, else the input's first key; "" when none.
std::string identity_key(const nlohmann::json& input);

std::string summary_text(const Summary& s);
// {"total","completed","exceptions","errors","unfinished","exceptions_by":[{step,code,count}],
//  "latency_ms":{"p50","p99","max"},"wall_ms","runs":[{run_id,line,input:{key:value},status,step,code,error}]}
nlohmann::json summary_json(const Summary& s, const std::vector<BatchItem>& items);

// An expected outcome: the identity fields it names (all but "outcome",
// "status" and "step") select the input; "outcome" (or "status") is compared
// with the run's status and "step" with the step where it ended.
struct Mismatch {
  std::string what;  // one line, human readable
};
std::vector<Mismatch> compare_expected(const std::vector<nlohmann::json>& expected,
                                       const std::vector<BatchItem>& items);

}  // namespace baton::cli
