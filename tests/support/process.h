// Test support: child processes that a test starts and always stops.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace baton::testing {

// A child process. The destructor stops it (SIGTERM, then SIGKILL after 5 s).
// stdout and stderr go to `log_path` when set, else are inherited.
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  ~Process();

  // Starts argv[0] (a path) with the given args. The child dies with the
  // test process (PR_SET_PDEATHSIG). Returns false when fork/exec fails.
  bool start(const std::vector<std::string>& argv, const std::string& log_path = "",
             const std::map<std::string, std::string>& env = {});
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` (no wait).
  void signal(int sig);
  // SIGTERM, waits up to `grace`, then SIGKILL. Returns the exit status as
  // from waitpid (or -1 if it was not running).
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));
  // SIGKILL and reap.
  void kill();
  // Waits up to `timeout` for exit; returns true and sets `status` if it exited.
  bool wait_exit(std::chrono::milliseconds timeout, int* status = nullptr);

 private:
  pid_t pid_ = -1;
};

// A free TCP port on 127.0.0.1 (bind to port 0, read it back, close).
int free_port();
// A fresh temporary directory (removed by remove_tree).
std::string make_temp_dir(const std::string& prefix = "baton-test");
void remove_tree(const std::string& path);
// Reads a whole file ("" when missing).
std::string read_file(const std::string& path);
// Directory holding the built binaries (BATON_BIN_DIR, set by CMake).
std::string bin_dir();
// Source tree root (BATON_SOURCE_DIR, set by CMake).
std::string source_dir();
// True when a TCP connect to 127.0.0.1:port succeeds.
bool port_open(int port);

}  // namespace baton::testing
