#include "workers/agents/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include <spdlog/spdlog.h>

#include "common/util/json.h"
#include "common/util/limits.h"
#include "workers/agents/config.h"

extern char** environ;

namespace baton::agent {
namespace {

constexpr std::size_t kStderrTail = 2048;
constexpr int kExitRetryable = 75;  // EX_TEMPFAIL
constexpr int kKillGraceMs = 2000;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string tail(const std::string& s) {
  return s.size() <= kStderrTail ? s : "..." + s.substr(s.size() - kStderrTail);
}

class ExecAgent : public Agent {
 public:
  ExecAgent(std::vector<std::string> command, int64_t timeout_ms, std::map<std::string, std::string> env,
            std::string cwd)
      : command_(std::move(command)), timeout_ms_(timeout_ms), env_(std::move(env)), cwd_(std::move(cwd)) {}

  AgentOutput execute(const AgentInput& in) override {
    nlohmann::json task = {{"run_id", in.task.run_id()},
                           {"step", in.task.step_id()},
                           {"attempt", in.task.attempt()},
                           {"input", in.input},
                           {"record", in.record},
                           {"steps", in.context},
                           {"writes", nlohmann::json::array()}};
    for (const auto& w : in.task.writes()) task["writes"].push_back(w);
    std::string out, err;
    int status = 0;
    bool timed_out = false;
    if (Status s = run(task.dump(), out, err, status, timed_out); !s)
      return AgentOutput::fail(AgentOutput::kFailed, errors::kAgentError, s.message());
    // The stderr tail ends error messages: without its final newline(s).
    err.erase(std::min(err.size(), err.find_last_not_of("\r\n\t ") + 1));
    if (!err.empty()) spdlog::info("exec {} (run {} step {}) stderr: {}", command_[0], in.task.run_id(), in.task.step_id(), tail(err));
    if (timed_out) {
      return AgentOutput::fail(AgentOutput::kRetryable, "timeout",
                               command_[0] + " ran past " + std::to_string(timeout_ms_) + " ms and was killed" +
                                   (err.empty() ? "" : "; stderr: " + tail(err)));
    }
    if (WIFSIGNALED(status)) {
      return AgentOutput::fail(AgentOutput::kFailed, "exec_failed",
                               command_[0] + " was killed by signal " + std::to_string(WTERMSIG(status)) +
                                   (err.empty() ? "" : "; stderr: " + tail(err)));
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code != 0) {
      return AgentOutput::fail(code == kExitRetryable ? AgentOutput::kRetryable : AgentOutput::kFailed, "exec_failed",
                               command_[0] + " exited with " + std::to_string(code) +
                                   (err.empty() ? "" : "; stderr: " + tail(err)));
    }
    if (out.size() > limits::kMaxMessageBytes) {
      return AgentOutput::fail(AgentOutput::kFailed, errors::kOutputTooLarge,
                               command_[0] + " wrote more than " + std::to_string(limits::kMaxMessageBytes) + " bytes");
    }
    auto parsed = parse_json(out, limits::kMaxMessageBytes);
    if (!parsed || !parsed->is_object()) {
      return AgentOutput::fail(AgentOutput::kFailed, errors::kBadOutput,
                               command_[0] + " did not write one JSON object to stdout (" +
                                   (parsed ? std::string("got ") + parsed->type_name() : parsed.status().message()) + ")" +
                                   (err.empty() ? "" : "; stderr: " + tail(err)));
    }
    return AgentOutput::ok(std::move(parsed).value());
  }

 private:
  // Spawns the command in its own process group, feeds `stdin_text`, collects
  // stdout and stderr until both close and the child exits, or the timeout.
  Status run(const std::string& stdin_text, std::string& out, std::string& err, int& status, bool& timed_out) {
    int in_pipe[2], out_pipe[2], err_pipe[2];
    if (pipe2(in_pipe, O_CLOEXEC) != 0) return internal(std::string("pipe: ") + std::strerror(errno));
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
      close(in_pipe[0]);
      close(in_pipe[1]);
      return internal(std::string("pipe: ") + std::strerror(errno));
    }
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
      for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1]}) close(fd);
      return internal(std::string("pipe: ") + std::strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    if (!cwd_.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd_.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills its children too
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);

    std::vector<std::string> env_store;
    for (char** e = environ; e && *e; ++e) {
      std::string kv = *e;
      if (env_.count(kv.substr(0, kv.find('=')))) continue;
      env_store.push_back(std::move(kv));
    }
    for (const auto& [k, v] : env_) env_store.push_back(k + "=" + v);
    std::vector<char*> envp, argv;
    for (auto& s : env_store) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = command_;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);

    pid_t pid = -1;
    int rc = posix_spawnp(&pid, args[0].c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in_pipe[0]);
    close(out_pipe[1]);
    close(err_pipe[1]);
    if (rc != 0) {
      for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]}) close(fd);
      return internal("cannot start " + command_[0] + ": " + std::strerror(rc));
    }
    for (int fd : {in_pipe[1], out_pipe[0], err_pipe[0]}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    // A command that exits without reading its stdin makes our write fail:
    // SIGPIPE is blocked on this thread for the exchange (write gets EPIPE)
    // and a pending one consumed afterwards, whatever the process's handler.
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    const int64_t deadline = now_ms() + timeout_ms_;
    int64_t kill_at = 0;  // SIGKILL time once SIGTERM was sent
    std::size_t written = 0;
    int fds[3] = {in_pipe[1], out_pipe[0], err_pipe[0]};
    bool exited = false;
    char buf[65536];
    while (true) {
      if (!exited) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) exited = true;
      }
      if (exited && fds[1] < 0 && fds[2] < 0) break;
      int64_t now = now_ms();
      if (!timed_out && now >= deadline) {
        timed_out = true;
        kill(-pid, SIGTERM);
        kill_at = now + kKillGraceMs;
      }
      if (kill_at && now >= kill_at) {
        kill(-pid, SIGKILL);
        kill_at = 0;
      }
      if (exited && timed_out) {
        // Its group may outlive it: make sure nothing is left behind.
        kill(-pid, SIGKILL);
        break;
      }
      pollfd p[3];
      int n = 0;
      int idx[3];
      if (fds[0] >= 0 && written < stdin_text.size()) {
        p[n] = {fds[0], POLLOUT, 0};
        idx[n++] = 0;
      } else if (fds[0] >= 0) {
        close(fds[0]);
        fds[0] = -1;
      }
      for (int k : {1, 2}) {
        if (fds[k] < 0) continue;
        p[n] = {fds[k], POLLIN, 0};
        idx[n++] = k;
      }
      if (n == 0) {
        if (!exited) usleep(2000);
        continue;
      }
      int64_t wait = (kill_at ? kill_at : timed_out ? now + 50 : deadline) - now;
      poll(p, n, static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(wait, 100))));
      for (int i = 0; i < n; ++i) {
        int k = idx[i];
        if (p[i].revents == 0) continue;
        if (k == 0) {
          ssize_t m = write(fds[0], stdin_text.data() + written, stdin_text.size() - written);
          if (m > 0) written += static_cast<std::size_t>(m);
          if (m < 0 && errno != EAGAIN) written = stdin_text.size();  // the command closed its stdin
          continue;
        }
        ssize_t m = read(fds[k], buf, sizeof buf);
        if (m > 0) {
          std::string& dst = k == 1 ? out : err;
          if (dst.size() < limits::kMaxMessageBytes + 1) dst.append(buf, static_cast<std::size_t>(m));
          if (k == 2 && err.size() > 4 * kStderrTail) err.erase(0, err.size() - 2 * kStderrTail);
        } else if (m == 0 || errno != EAGAIN) {
          close(fds[k]);
          fds[k] = -1;
        }
      }
    }
    for (int fd : fds)
      if (fd >= 0) close(fd);
    if (!exited) waitpid(pid, &status, 0);
    timespec zero{0, 0};
    while (sigtimedwait(&pipe_set, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return Status::ok();
  }

  std::vector<std::string> command_;
  int64_t timeout_ms_;
  std::map<std::string, std::string> env_;
  std::string cwd_;
};

}  // namespace

FactoryResult make_exec_agent(const nlohmann::json& cfg) {
  if (Status s = config::check_object(cfg, "exec", {"command", "timeout_ms", "env", "cwd"}); !s) return s;
  auto command = config::get_string_list(cfg, "exec", "command", true);
  if (!command) return command.status();
  // Deployment paths (`${BATON_WORKFLOWS_DIR}/agents/x.py`, `${AGENTS_HOME:-/opt/agents}`)
  // are the worker's business, resolved once here; task data never is.
  for (std::size_t i = 0; i < command->size(); ++i) {
    auto v = config::expand_env((*command)[i], "exec: `command[" + std::to_string(i) + "]`");
    if (!v) return v.status();
    (*command)[i] = std::move(v).value();
  }
  if (command->empty() || (*command)[0].empty()) return invalid("exec: `command` needs a program");
  auto timeout = config::get_number(cfg, "exec", "timeout_ms", 30000);
  if (!timeout) return timeout.status();
  if (*timeout < 1 || *timeout > 24 * 3600 * 1000.0) return invalid("exec: `timeout_ms` must be from 1 to 86400000");
  std::map<std::string, std::string> env;
  if (auto e = cfg.find("env"); e != cfg.end()) {
    if (!e->is_object()) return invalid("exec: `env` must be a map of NAME: value");
    for (const auto& [k, v] : e->items()) {
      auto text = config::as_text(v);
      if (k.empty() || k.find('=') != std::string::npos || !text) return invalid("exec: `env." + k + "` must be a scalar value");
      auto value = config::expand_env(*text, "exec: `env." + k + "`");
      if (!value) return value.status();
      env[k] = std::move(value).value();
    }
  }
  auto cwd_raw = config::get_string(cfg, "exec", "cwd", std::string());
  if (!cwd_raw) return cwd_raw.status();
  auto cwd = config::expand_env(*cwd_raw, "exec: `cwd`");
  if (!cwd) return cwd.status();
  return AgentPtr(new ExecAgent(std::move(command).value(), static_cast<int64_t>(*timeout), std::move(env),
                                std::move(cwd).value()));
}

}  // namespace baton::agent
