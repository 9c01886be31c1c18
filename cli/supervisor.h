// Child-process supervision for `batonctl dev`.
//
// Contract:
// - Construct the Supervisor on the main thread before any other thread
//   exists: it blocks SIGINT, SIGTERM, SIGHUP and SIGCHLD in the calling thread (the
//   mask is inherited by threads created later) and collects them with
//   sigtimedwait() in wait_event(). The destructor stops every child still
//   running and restores the previous signal mask.
// - Every child is forked from the calling thread, gets
//   prctl(PR_SET_PDEATHSIG, SIGTERM) (it is told to stop when batonctl dies,
//   even by SIGKILL), its own process group (so a terminal's Ctrl-C reaches
//   batonctl only, which then stops the children in order), stdin from
//   /dev/null, stdout+stderr appended to its log file, default signal
//   dispositions and an empty signal mask.
// - Not thread-safe: one thread (the one that constructed it) uses it.
// - Nothing here throws; failures are Status values.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace baton::cli {

struct ChildSpec {
  std::string name;               // unique: "broker", "redis", "coordinator", "worker-qualifier"
  std::vector<std::string> argv;  // argv[0] is a path (or a name looked up in PATH)
  std::string log_path;           // stdout+stderr, truncated at start
};

struct ChildInfo {
  std::string name;
  pid_t pid = -1;
  std::string log_path;
  bool running = false;
  int wait_status = 0;  // as from waitpid, valid once !running
};

// What wait_event() saw.
struct Event {
  enum class Kind { kNone, kShutdown, kChildExited };
  Kind kind = Kind::kNone;
  int signal = 0;          // kShutdown: SIGINT, SIGTERM or SIGHUP
  std::string child;       // kChildExited: its name
  int wait_status = 0;     // kChildExited: as from waitpid
};

class Supervisor {
 public:
  Supervisor();
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Forks and execs. kInvalidArgument for a duplicate name; kInternal when
  // fork fails or the log cannot be opened; an exec failure shows up as the
  // child exiting with status 127 (and a line in its log).
  Result<pid_t> spawn(const ChildSpec& spec);

  // Waits up to `timeout` for SIGINT/SIGTERM/SIGHUP or a child's exit. A pending
  // shutdown signal wins over a child's exit (a child that dies of the same
  // Ctrl-C is not reported as a crash). Returns kNone on timeout.
  Event wait_event(std::chrono::milliseconds timeout);

  // Sends SIGTERM to every running child named in `names` at once, waits up to
  // `grace` for all of them, then SIGKILLs the rest and reaps them.
  void stop(const std::vector<std::string>& names,
            std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Stops every running child, newest first (one at a time).
  void stop_all(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Drops an exited child from children() so its name can be spawned again.
  // No effect on a running child.
  void forget(const std::string& name);

  const std::vector<ChildInfo>& children() const { return children_; }
  const ChildInfo* find(const std::string& name) const;
  bool running(const std::string& name);

 private:
  // Reaps exited children; returns the first newly exited one (or nullptr).
  ChildInfo* reap();
  std::vector<ChildInfo> children_;
  sigset_t old_mask_;
};

// "exited with status 3", "killed by signal 9 (Killed)".
std::string describe_wait_status(int wait_status);
// The last `lines` lines of a text file (reads at most the last 64 KiB).
std::string tail_file(const std::string& path, int lines = 20);
// Directory of the running executable (/proc/self/exe's directory).
std::string self_dir();
// A free TCP port on 127.0.0.1 (bind to 0, read back, close); -1 on error.
int free_loopback_port();
// True when a TCP connect to host:port succeeds within ~1 s.
bool tcp_connect_ok(const std::string& host, int port);

}  // namespace baton::cli
