// baton-worker: hosts one agent role with the built-in agents (docs/agents.md).
#include "baton/agent.h"
#include "baton/worker.h"

int main(int argc, char** argv) {
  baton::agent::AgentRegistry agents;
  baton::agent::register_builtin_agents(agents);
  return baton::worker::worker_main(argc, argv, std::move(agents));
}
