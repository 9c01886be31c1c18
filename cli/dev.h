// `batonctl dev`: the whole fleet on one machine (docs: cli/README.md).
#pragma once

#include <string>
#include <vector>

namespace baton::cli {

struct DevOptions {
  std::string workflows = "examples/lead-to-meeting";
  std::string ns = "dev";
  std::string http = "127.0.0.1:8080";  // port 0: the coordinator picks one (read back from its port file)
  int partitions = 8;
  std::string state_dir = ".baton/dev";
  int concurrency = 8;
  std::string log_level;  // passed to the coordinator and the workers when set
  std::string auth_tokens;  // coordinator --auth-tokens (docs/security.md); empty: auth off
  std::string notify;       // coordinator --notify (docs/notifications.md); empty: none
  // "ROLE=PATH": start PATH instead of baton-worker for ROLE (a custom worker
  // built on the SDK; it gets the same flags). ROLE must be a role of the
  // workflows and PATH an executable, else run_dev returns kDevBadConfig.
  std::vector<std::string> worker_bins;
};

// Exit codes of run_dev.
inline constexpr int kDevOk = 0;        // stopped by SIGINT/SIGTERM, everything cleaned up
inline constexpr int kDevFailed = 1;    // a child failed to start or died; everything stopped
inline constexpr int kDevBadConfig = 2; // the workflows could not be loaded (file:line:col printed)

// Loads the workflows, starts baton-broker, redis-server, baton-coordinator and
// one baton-worker per role (siblings of this executable; redis-server from
// PATH; a role's --worker-bin instead of baton-worker), each worker with
// BATON_WORKFLOWS_DIR=<absolute workflows dir> in its environment (so an exec
// agent can name a script next to the workflow), waits until each is ready,
// writes <state_dir>/env.json and supervises
// until SIGINT/SIGTERM or a child's unexpected exit. Must be called from the
// main thread before any other thread is started (it takes over SIGINT,
// SIGTERM and SIGCHLD). Always stops and reaps every child it started and
// removes its temp dir and env.json before returning.
int run_dev(const DevOptions& opts);

}  // namespace baton::cli
