// `batonctl run` and `batonctl get` (docs: cli/README.md). Results go to
// stdout, diagnostics to stderr. Each returns the process exit code.
#pragma once

#include <cstdint>
#include <string>

namespace baton::cli {

inline constexpr int kExitOk = 0;         // completed (all completed / all as expected)
inline constexpr int kExitError = 1;      // usage, I/O, API error, timeout, mismatch
inline constexpr int kExitException = 3;  // a run (or some run of a batch) ended in exception

struct RunOptions {
  std::string api;            // resolved base URL
  std::string workflow;
  uint32_t version = 0;       // 0: latest
  std::string input_file;     // one JSON object
  std::string inputs_file;    // JSON lines, one object per line
  bool wait = false;
  int timeout_s = 120;        // bound on the wait (whole batch for --inputs)
  std::string dedupe;         // dedupe_key (single run only)
  std::string output = "text";  // text | json
  std::string expect_file;    // JSON lines of expected outcomes (batch only)
  int parallel = 8;           // threads submitting/polling a batch
};

// Single run: POST, print the run id; with wait, print each step transition
// and the final status. Exit 0 completed, 3 exception, 1 error or timeout.
// Batch (inputs_file): submit every line concurrently; with wait, wait for all
// (bounded) and print a summary (text or JSON). Exit 1 on any submission/poll
// error, unfinished run or expectation mismatch; else 3 when a run ended in
// exception and no expect_file was given; else 0.
int run_command(const RunOptions& opts);

// GET /v1/runs/{id}, pretty-printed. Exit 0, or 1 (not found, unreachable).
int get_command(const std::string& api, const std::string& run_id);

}  // namespace baton::cli
