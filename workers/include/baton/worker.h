// Running a worker process: the entry points baton-worker's main() uses, so a
// custom worker binary (built on the agent SDK, baton/agent.h) is a registry
// plus one call. docs/agents.md "Writing an agent in C++".
#pragma once

#include <string>
#include <utility>

#include "baton/agent.h"

namespace baton::worker {

struct WorkerOptions {
  std::string role;                        // required: tasks of baton.<ns>.tasks.<role>
  std::string brokers = "127.0.0.1:9092";  // Kafka bootstrap servers
  std::string redis = "127.0.0.1:6379";    // host:port
  std::string ns = "dev";                  // namespace of topics and keys
  std::string workflows;                   // directory of workflow YAML files (the coordinator's)
  int concurrency = 8;                     // agent threads
  std::string worker_id;                   // default <hostname>-<pid>
  int fetch_wait_ms = 1;                   // Kafka fetch.wait.max.ms
  int max_batch = 256;                     // tasks per batch
  int poison_after = 3;                    // a task whose agent killed the worker this often fails (0: off)
  std::string log_level;                   // trace, debug, info, warn, error (default: env or info)
};

// Parses the baton-worker flags (--help lists them), sets up logging and calls
// run_worker. Returns the process exit code (0 after SIGTERM/SIGINT, 2 on bad
// flags or workflows, 1 on a runtime failure).
int worker_main(int argc, char** argv, agent::AgentRegistry agents);

// The same entry under the name the SDK documentation uses: a custom worker's
// main() is `return baton::worker::run(argc, argv, std::move(agents));`.
inline int run(int argc, char** argv, agent::AgentRegistry agents) {
  return worker_main(argc, argv, std::move(agents));
}

// Loads the workflows, builds the agents, connects Kafka and Redis (retrying
// Redis until it answers), serves until SIGTERM/SIGINT, then finishes the batch
// in flight, commits and returns 0. Blocks SIGTERM/SIGINT in the calling
// thread (and the threads it starts) and waits for them itself. Call once per process.
int run_worker(WorkerOptions options, agent::AgentRegistry agents);

}  // namespace baton::worker
