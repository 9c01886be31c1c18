// The chaos suite's fleet: redis-server (AOF, appendfsync always),
// baton-broker with its fault-control API, coordinator replicas and workers,
// each a separate process started directly (not through `batonctl dev`, which
// stops everything when one child dies), on loopback, in one work directory.
//
// Faults act on members by name ("coordinator-0", "worker-booker-1"): SIGKILL
// and restart, SIGSTOP and SIGCONT; Redis is crashed (SIGKILL) or stopped
// (SIGTERM) and started again on the same port and data; the broker is driven
// through its control API (tools/broker/README.md). supervise() notices members
// that exited on their own (not killed by the suite), records how, and starts
// them again so the soak goes on.
//
// Threads: every method may be called from any thread (one mutex), but
// members must be *started* from one long-lived thread: children are killed
// with the thread that forked them (PR_SET_PDEATHSIG). The destructor stops
// everything (SIGCONT first, then SIGTERM, then SIGKILL).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/util/status.h"
#include "tests/support/process.h"

namespace baton::chaos {

struct ClusterOptions {
  std::string ns = "chaos";
  std::string workflows_dir;
  std::vector<std::string> roles;
  int workers_per_role = 2;
  int coordinators = 2;
  int partitions = 4;
  int brokers = 2;
  int fetch_wait_ms = 25;
  std::string sink_url;  // BATON_CHAOS_SINK for the workers' http agents
  std::string bin_dir;
  std::string dir;  // work dir: logs, redis data, files
  std::string log_level = "info";
};

// A member that exited without the suite asking it to.
struct Exit {
  std::string member;
  std::string how;  // "exit 1", "signal 11"
  int64_t at_ms = 0;
};

class Cluster {
 public:
  explicit Cluster(ClusterOptions o);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Starts Redis, the broker, the coordinators and the workers and waits until
  // every coordinator answers /readyz. Fails naming what did not start.
  Status start(std::chrono::milliseconds timeout);
  void stop_all();

  std::vector<std::string> workers() const;
  std::vector<std::string> coordinators() const;
  bool is_up(const std::string& member);  // running and not paused
  // SIGKILL and reap; the member stays down until restart().
  bool kill(const std::string& member);
  bool restart(const std::string& member);
  bool pause(const std::string& member);
  bool resume(const std::string& member);
  // Members that are down or paused (for the end of the soak).
  void heal();
  // Restarts members that exited on their own; returns what it found.
  std::vector<Exit> supervise();
  std::vector<Exit> exits() const;

  // Redis: crash (SIGKILL) or a clean stop (SIGTERM), then start again.
  bool redis_down(bool crash);
  bool redis_up();
  bool redis_is_up() const;
  std::string redis_address() const { return "127.0.0.1:" + std::to_string(redis_port_); }

  const std::string& bootstrap() const { return bootstrap_; }
  // POST to the broker's control API; the JSON answer or the error.
  Result<nlohmann::json> broker_control(const std::string& path, const nlohmann::json& body);
  int brokers() const { return opts_.brokers; }
  int partitions() const { return opts_.partitions; }

  // API URLs of the coordinators that are up (may be empty).
  std::vector<std::string> live_apis();
  std::vector<std::string> all_apis() const;

  const std::string& dir() const { return opts_.dir; }
  // The last `bytes` of every member's log, for a failure message.
  std::string log_tails(std::size_t bytes) const;

 private:
  struct Member {
    std::string name;
    std::vector<std::string> argv;
    std::string log;
    bool coordinator = false;
    std::string api;
    testing::Process proc;
    bool paused = false;
    bool down = false;  // killed by the suite, not yet restarted
  };
  bool start_member(Member& m);
  bool start_redis();
  Member* find(const std::string& name);

  ClusterOptions opts_;
  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Member>> members_;
  testing::Process redis_, broker_;
  int redis_port_ = 0;
  bool redis_down_ = false;
  std::string bootstrap_, control_;
  std::vector<Exit> exits_;
};

}  // namespace baton::chaos
