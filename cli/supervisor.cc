#include "cli/supervisor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace baton::cli {
namespace {

sigset_t managed_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  return set;
}

// Only async-signal-safe calls between fork() and exec().
[[noreturn]] void exec_child(const std::vector<char*>& args, int log_fd, pid_t parent) {
  // Told to stop when batonctl goes away, however it goes.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(126);  // the parent died before prctl took effect
  setpgid(0, 0);
  for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGPIPE, SIGHUP, SIGQUIT}) signal(sig, SIG_DFL);
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) {
    dup2(devnull, STDIN_FILENO);
    if (devnull != STDIN_FILENO) close(devnull);
  }
  dup2(log_fd, STDOUT_FILENO);
  dup2(log_fd, STDERR_FILENO);
  if (log_fd > STDERR_FILENO) close(log_fd);
  execvp(args[0], args.data());
  const char* msg = "batonctl: exec failed: ";
  (void)!write(STDERR_FILENO, msg, strlen(msg));
  const char* err = strerror(errno);
  (void)!write(STDERR_FILENO, err, strlen(err));
  (void)!write(STDERR_FILENO, "\n", 1);
  _exit(127);
}

}  // namespace

Supervisor::Supervisor() {
  sigset_t set = managed_signals();
  // Dispositions must not be SIG_IGN (a shell's `cmd &` ignores SIGINT), or the
  // signal could be discarded instead of queued for sigtimedwait.
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  signal(SIGCHLD, SIG_DFL);
  pthread_sigmask(SIG_BLOCK, &set, &old_mask_);
}

Supervisor::~Supervisor() {
  stop_all();
  // Drop signals still pending from our children before unblocking.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  timespec zero{0, 0};
  while (sigtimedwait(&chld, nullptr, &zero) > 0) {
  }
  pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
}

Result<pid_t> Supervisor::spawn(const ChildSpec& spec) {
  if (spec.argv.empty()) return invalid("no argv for " + spec.name);
  if (find(spec.name) != nullptr) return invalid("duplicate child name " + spec.name);
  int log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return internal("cannot open " + spec.log_path + ": " + strerror(errno));
  std::vector<char*> args;
  args.reserve(spec.argv.size() + 1);
  for (const auto& a : spec.argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(log_fd);
    return internal(std::string("fork failed: ") + strerror(e));
  }
  if (pid == 0) {
    // O_CLOEXEC is cleared by dup2 onto 1 and 2; the original fd closes at exec.
    exec_child(args, log_fd, parent);
  }
  close(log_fd);
  setpgid(pid, pid);  // also from the parent, so the group exists before we signal it
  children_.push_back(ChildInfo{spec.name, pid, spec.log_path, true, 0});
  return pid;
}

const ChildInfo* Supervisor::find(const std::string& name) const {
  for (const auto& c : children_)
    if (c.name == name) return &c;
  return nullptr;
}

void Supervisor::forget(const std::string& name) {
  reap();
  std::erase_if(children_, [&](const ChildInfo& c) { return c.name == name && !c.running; });
}

bool Supervisor::running(const std::string& name) {
  reap();
  const ChildInfo* c = find(name);
  return c != nullptr && c->running;
}

ChildInfo* Supervisor::reap() {
  ChildInfo* first = nullptr;
  for (auto& c : children_) {
    if (!c.running) continue;
    int st = 0;
    pid_t r = waitpid(c.pid, &st, WNOHANG);
    if (r == c.pid || (r < 0 && errno == ECHILD)) {
      c.running = false;
      c.wait_status = st;
      if (first == nullptr) first = &c;
    }
  }
  return first;
}

Event Supervisor::wait_event(std::chrono::milliseconds timeout) {
  sigset_t set = managed_signals();
  sigset_t shutdown;
  sigemptyset(&shutdown);
  sigaddset(&shutdown, SIGINT);
  sigaddset(&shutdown, SIGTERM);
  sigaddset(&shutdown, SIGHUP);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    // A shutdown request first: children dying of the same Ctrl-C are not crashes.
    timespec zero{0, 0};
    int sig = sigtimedwait(&shutdown, nullptr, &zero);
    if (sig > 0) return Event{Event::Kind::kShutdown, sig, "", 0};
    if (ChildInfo* c = reap()) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGINT) || sigismember(&pending, SIGTERM) || sigismember(&pending, SIGHUP)) {
        int s = sigtimedwait(&shutdown, nullptr, &zero);
        return Event{Event::Kind::kShutdown, s > 0 ? s : SIGTERM, "", 0};
      }
      return Event{Event::Kind::kChildExited, 0, c->name, c->wait_status};
    }
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Event{};
    auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now);
    // Wake at least every 200 ms to re-check children (SIGCHLDs coalesce).
    left = std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(200));
    timespec ts{static_cast<time_t>(left.count() / 1000000000),
                static_cast<long>(left.count() % 1000000000)};
    sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) return Event{Event::Kind::kShutdown, sig, "", 0};
    // SIGCHLD, a timeout or EINTR: loop and reap.
  }
}

void Supervisor::stop(const std::vector<std::string>& names, std::chrono::milliseconds grace) {
  reap();
  std::vector<ChildInfo*> targets;
  for (auto& c : children_) {
    if (!c.running) continue;
    for (const auto& n : names) {
      if (c.name == n) targets.push_back(&c);
    }
  }
  if (targets.empty()) return;
  for (ChildInfo* c : targets) {
    kill(c->pid, SIGCONT);  // a stopped child cannot act on SIGTERM
    kill(c->pid, SIGTERM);
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  auto all_done = [&] {
    for (ChildInfo* c : targets)
      if (c->running) return false;
    return true;
  };
  while (true) {
    reap();
    if (all_done() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (ChildInfo* c : targets) {
    if (!c->running) continue;
    kill(c->pid, SIGKILL);
    int st = 0;
    while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
    }
    c->running = false;
    c->wait_status = st;
  }
}

void Supervisor::stop_all(std::chrono::milliseconds grace) {
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    if (it->running) stop({it->name}, grace);
  }
}

std::string describe_wait_status(int st) {
  if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) {
    return "killed by signal " + std::to_string(WTERMSIG(st)) + " (" + strsignal(WTERMSIG(st)) + ")";
  }
  return "ended (wait status " + std::to_string(st) + ")";
}

std::string tail_file(const std::string& path, int lines) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  std::streamoff size = in.tellg();
  std::streamoff start = size > 65536 ? size - 65536 : 0;
  in.seekg(start);
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!data.empty() && data.back() == '\n') data.pop_back();
  std::size_t pos = data.size();
  for (int n = 0; n < lines; ++n) {
    std::size_t nl = pos == 0 ? std::string::npos : data.rfind('\n', pos - 1);
    if (nl == std::string::npos) return data;
    pos = nl;
  }
  return data.substr(pos + 1);
}

std::string self_dir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<std::size_t>(n));
  auto slash = p.rfind('/');
  return slash == std::string::npos ? "." : p.substr(0, slash);
}

int free_loopback_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    socklen_t len = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

bool tcp_connect_ok(const std::string& host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return false;
  }
  bool ok = false;
  int r = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (r == 0) {
    ok = true;
  } else if (errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 1000) == 1) {
      int err = 0;
      socklen_t len = sizeof err;
      ok = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    }
  }
  close(fd);
  return ok;
}

}  // namespace baton::cli
