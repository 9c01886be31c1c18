#include "cli/dev.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sstream>
#include <vector>

#include "cli/supervisor.h"
#include "common/http/http.h"
#include "common/util/json.h"
#include "common/workflow/parser.h"

namespace baton::cli {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

bool split_host_port(const std::string& s, std::string* host, int* port) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= s.size()) return false;
  *host = s.substr(0, colon);
  char* end = nullptr;
  long p = std::strtol(s.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535) return false;
  *port = static_cast<int>(p);
  return true;
}

// Sends PING on a fresh connection; true on "+PONG" (not while loading the AOF).
bool redis_ping(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
    pollfd p{fd, POLLIN, 0};
    char buf[64] = {};
    if (poll(&p, 1, 1000) == 1) {
      ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
      ok = n >= 5 && std::string(buf, static_cast<std::size_t>(n)).rfind("+PONG", 0) == 0;
    }
  }
  close(fd);
  return ok;
}

bool executable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

bool pid_alive(pid_t pid) {
  if (pid <= 0) return false;
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  auto close_paren = stat.rfind(')');
  return close_paren != std::string::npos && close_paren + 2 < stat.size() && stat[close_paren + 2] != 'Z';
}

class DevSession {
 public:
  explicit DevSession(const DevOptions& o) : o_(o) {}
  int run();

 private:
  enum class Wait { kReady, kShutdown, kChildDied, kTimeout };
  Wait wait_ready(const std::string& what, const std::function<bool()>& ready, milliseconds timeout);
  int fail(const std::string& child, const std::string& why);
  int shutdown(int code);
  Status write_env(const std::string& api, const std::string& brokers, const std::string& redis);
  std::string log_path(const std::string& name) const { return logs_dir_ + "/" + name + ".log"; }
  std::vector<std::string> common_flags() const;

  DevOptions o_;
  Supervisor sup_;
  std::string state_dir_, logs_dir_, env_path_, temp_dir_, workflows_dir_;
  std::vector<std::string> roles_;
  std::map<std::string, std::string> worker_bins_;  // role -> custom worker binary (--worker-bin)
  Event last_event_;
  bool env_written_ = false;
};

DevSession::Wait DevSession::wait_ready(const std::string& what, const std::function<bool()>& ready,
                                        milliseconds timeout) {
  spdlog::info("waiting for {} (up to {} s)", what, timeout.count() / 1000);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (ready()) return Wait::kReady;
    last_event_ = sup_.wait_event(milliseconds(100));
    if (last_event_.kind == Event::Kind::kShutdown) return Wait::kShutdown;
    if (last_event_.kind == Event::Kind::kChildExited) return Wait::kChildDied;
    if (std::chrono::steady_clock::now() >= deadline) return ready() ? Wait::kReady : Wait::kTimeout;
  }
}

int DevSession::fail(const std::string& child, const std::string& why) {
  const ChildInfo* c = sup_.find(child);
  std::string log = c ? c->log_path : "";
  std::fprintf(stderr, "batonctl dev: %s%s %s\n", child.c_str(),
               c ? (" (pid " + std::to_string(c->pid) + ")").c_str() : "", why.c_str());
  if (!log.empty()) {
    std::string tail = tail_file(log, 20);
    std::fprintf(stderr, "--- last lines of %s ---\n%s\n--- end of %s ---\n", log.c_str(),
                 tail.empty() ? "(empty)" : tail.c_str(), log.c_str());
  }
  std::fprintf(stderr, "batonctl dev: stopping everything\n");
  return shutdown(kDevFailed);
}

int DevSession::shutdown(int code) {
  std::vector<std::string> workers;
  for (const auto& r : roles_) workers.push_back("worker-" + r);
  spdlog::info("stopping workers");
  sup_.stop(workers);
  spdlog::info("stopping coordinator");
  sup_.stop({"coordinator"});
  spdlog::info("stopping redis and broker");
  sup_.stop({"redis", "broker"});
  sup_.stop_all();
  std::error_code ec;
  if (!temp_dir_.empty()) fs::remove_all(temp_dir_, ec);
  if (env_written_) fs::remove(env_path_, ec);
  spdlog::info("stopped; logs kept in {}", logs_dir_);
  return code;
}

std::vector<std::string> DevSession::common_flags() const {
  std::vector<std::string> f;
  if (!o_.log_level.empty()) {
    f.push_back("--log-level");
    f.push_back(o_.log_level);
  }
  return f;
}

Status DevSession::write_env(const std::string& api, const std::string& brokers, const std::string& redis) {
  nlohmann::json pids = nlohmann::json::object();
  nlohmann::json logs = nlohmann::json::object();
  pids["batonctl"] = getpid();
  for (const auto& c : sup_.children()) {
    pids[c.name] = c.pid;
    logs[c.name] = c.log_path;
  }
  nlohmann::json env = {{"api", api},
                        {"brokers", brokers},
                        {"redis", redis},
                        {"namespace", o_.ns},
                        {"workflows", workflows_dir_},
                        {"roles", roles_},
                        {"worker_bins", worker_bins_},
                        {"pids", pids},
                        {"logs", logs},
                        {"temp_dir", temp_dir_},
                        {"state_dir", state_dir_}};
  // Written whole then renamed, so a reader never sees half a file.
  std::string tmp = env_path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << env.dump(2) << "\n";
    if (!out) return internal("cannot write " + tmp);
  }
  std::error_code ec;
  fs::rename(tmp, env_path_, ec);
  if (ec) return internal("cannot rename " + tmp + ": " + ec.message());
  env_written_ = true;
  return Status::ok();
}

int DevSession::run() {
  // 1. Workflows: refuse bad ones with the parser's file:line:col message.
  std::error_code ec;
  workflows_dir_ = fs::absolute(o_.workflows, ec).lexically_normal().string();
  if (!fs::is_directory(workflows_dir_, ec)) {
    std::fprintf(stderr, "batonctl dev: %s: not a directory\n", o_.workflows.c_str());
    return kDevBadConfig;
  }
  workflow::Registry registry;
  if (Status s = registry.load_dir(workflows_dir_); !s) {
    std::fprintf(stderr, "batonctl dev: invalid workflow: %s\n", s.message().c_str());
    return kDevBadConfig;
  }
  roles_ = registry.roles();
  if (registry.all().empty()) {
    std::fprintf(stderr, "batonctl dev: no workflow (*.yaml, *.yml) in %s\n", workflows_dir_.c_str());
    return kDevBadConfig;
  }
  if (o_.partitions < 1 || o_.concurrency < 1) {
    std::fprintf(stderr, "batonctl dev: --partitions and --concurrency must be >= 1\n");
    return kDevBadConfig;
  }
  // --worker-bin ROLE=PATH: a custom worker (SDK) for a role of these workflows.
  for (const auto& spec : o_.worker_bins) {
    auto eq = spec.find('=');
    std::string role = eq == std::string::npos ? "" : spec.substr(0, eq);
    std::string path = eq == std::string::npos ? "" : spec.substr(eq + 1);
    if (role.empty() || path.empty()) {
      std::fprintf(stderr, "batonctl dev: --worker-bin must be ROLE=PATH, got '%s'\n", spec.c_str());
      return kDevBadConfig;
    }
    if (std::find(roles_.begin(), roles_.end(), role) == roles_.end()) {
      std::fprintf(stderr, "batonctl dev: --worker-bin %s: no step of the workflows in %s has role '%s' (roles: %s)\n",
                   spec.c_str(), workflows_dir_.c_str(), role.c_str(), join(roles_, ", ").c_str());
      return kDevBadConfig;
    }
    if (worker_bins_.count(role)) {
      std::fprintf(stderr, "batonctl dev: --worker-bin given twice for role '%s'\n", role.c_str());
      return kDevBadConfig;
    }
    // A bare name is a path relative to the cwd (like ./x), not looked up in PATH.
    std::string abs = fs::absolute(path, ec).lexically_normal().string();
    if (ec || fs::is_directory(abs, ec) || !executable(abs)) {
      std::fprintf(stderr, "batonctl dev: --worker-bin %s: %s is not an executable file\n", spec.c_str(),
                   abs.c_str());
      return kDevBadConfig;
    }
    worker_bins_[role] = abs;
  }
  std::string http_host;
  int http_port = 0;
  if (!split_host_port(o_.http, &http_host, &http_port)) {
    std::fprintf(stderr, "batonctl dev: --http must be HOST:PORT, got '%s'\n", o_.http.c_str());
    return kDevBadConfig;
  }
  std::string api_host = (http_host == "0.0.0.0" || http_host == "*") ? "127.0.0.1" : http_host;
  if (http_port != 0 && tcp_connect_ok(api_host, http_port)) {
    std::fprintf(stderr,
                 "batonctl dev: %s is already in use (another batonctl dev?); pass --http 127.0.0.1:0 "
                 "for a free port\n",
                 o_.http.c_str());
    return kDevFailed;
  }

  // 2. Binaries, next to this one.
  std::string bin = self_dir();
  std::string broker_bin = bin + "/baton-broker";
  std::string coord_bin = bin + "/baton-coordinator";
  std::string worker_bin = bin + "/baton-worker";
  for (const auto& b : {broker_bin, coord_bin, worker_bin}) {
    if (!executable(b)) {
      std::fprintf(stderr, "batonctl dev: %s is missing; build all targets (scripts/build.sh)\n", b.c_str());
      return kDevFailed;
    }
  }

  // 3. State dir, logs, stale env.json.
  state_dir_ = fs::absolute(o_.state_dir, ec).lexically_normal().string();
  logs_dir_ = state_dir_ + "/logs";
  env_path_ = state_dir_ + "/env.json";
  fs::create_directories(logs_dir_, ec);
  if (ec) {
    std::fprintf(stderr, "batonctl dev: cannot create %s: %s\n", logs_dir_.c_str(), ec.message().c_str());
    return kDevFailed;
  }
  if (std::string old = read_text(env_path_); !old.empty()) {
    auto j = parse_json_object(old);
    if (j && j->contains("pids") && (*j)["pids"].is_object()) {
      auto it = (*j)["pids"].find("batonctl");
      if (it != (*j)["pids"].end() && it->is_number_integer() && pid_alive(it->get<pid_t>()) &&
          it->get<pid_t>() != getpid()) {
        std::fprintf(stderr, "batonctl dev: already running in %s (pid %d); stop it first\n",
                     state_dir_.c_str(), it->get<int>());
        return kDevFailed;
      }
    }
    fs::remove(env_path_, ec);  // stale, from a batonctl that was killed
  }
  std::string tmpl = (fs::temp_directory_path(ec) / "baton-dev-XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::fprintf(stderr, "batonctl dev: cannot create a temp dir from %s\n", tmpl.c_str());
    return kDevFailed;
  }
  temp_dir_ = buf.data();

  auto outcome = [&](Wait w, const std::string& child, const std::string& what) -> int {
    switch (w) {
      case Wait::kReady:
        return -1;
      case Wait::kShutdown:
        std::fprintf(stderr, "batonctl dev: interrupted while starting; stopping\n");
        return shutdown(kDevOk);
      case Wait::kChildDied: {
        const ChildInfo* c = sup_.find(last_event_.child);
        return fail(last_event_.child, describe_wait_status(c ? c->wait_status : 0) + " while starting");
      }
      case Wait::kTimeout:
        return fail(child, "was not ready in time (" + what + ")");
    }
    return -1;
  };

  // 4. Broker.
  std::string bootstrap_file = temp_dir_ + "/bootstrap";
  std::vector<std::string> argv = {broker_bin, "--partitions", std::to_string(o_.partitions),
                                   "--namespace", o_.ns, "--bootstrap-file", bootstrap_file};
  if (!roles_.empty()) {
    argv.push_back("--roles");
    argv.push_back(join(roles_, ","));
  }
  if (auto r = sup_.spawn({"broker", argv, log_path("broker")}); !r) return fail("broker", r.status().message());
  if (int rc = outcome(wait_ready("broker", [&] { return !trim(read_text(bootstrap_file)).empty(); },
                                  seconds(20)),
                       "broker", "no bootstrap file");
      rc >= 0)
    return rc;
  std::string brokers = trim(read_text(bootstrap_file));

  // 5. Redis, on a free loopback port, data in the temp dir. The port is free
  // when picked but may be taken before redis binds it: then another port.
  int redis_port = 0;
  std::string redis_dir = temp_dir_ + "/redis";
  fs::create_directories(redis_dir, ec);
  for (int attempt = 1;; ++attempt) {
    redis_port = free_loopback_port();
    argv = {"redis-server", "--port", std::to_string(redis_port), "--bind", "127.0.0.1", "--dir", redis_dir,
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--logfile", ""};
    if (auto r = sup_.spawn({"redis", argv, log_path("redis")}); !r) return fail("redis", r.status().message());
    Wait w = wait_ready("redis", [&] { return sup_.running("redis") && redis_ping(redis_port); }, seconds(15));
    if (w == Wait::kChildDied && last_event_.child == "redis" && attempt < 3) {
      spdlog::warn("redis-server exited on port {} ({}); trying another port", redis_port,
                   describe_wait_status(last_event_.wait_status));
      sup_.forget("redis");
      continue;
    }
    if (int rc = outcome(w, "redis", "no PONG on port " + std::to_string(redis_port)); rc >= 0) return rc;
    break;
  }
  std::string redis = "127.0.0.1:" + std::to_string(redis_port);

  // 6. Coordinator; ready when GET /healthz answers 200.
  std::string port_file = temp_dir_ + "/coordinator.port";
  argv = {coord_bin, "--brokers", brokers, "--redis", redis, "--namespace", o_.ns, "--workflows",
          workflows_dir_, "--http", o_.http, "--http-port-file", port_file};
  for (auto& f : common_flags()) argv.push_back(f);
  std::error_code abs_ec;
  if (!o_.auth_tokens.empty()) {
    argv.push_back("--auth-tokens");
    argv.push_back(std::filesystem::absolute(o_.auth_tokens, abs_ec).string());
  }
  if (!o_.notify.empty()) {
    argv.push_back("--notify");
    argv.push_back(std::filesystem::absolute(o_.notify, abs_ec).string());
  }
  if (auto r = sup_.spawn({"coordinator", argv, log_path("coordinator")}); !r)
    return fail("coordinator", r.status().message());
  std::string api;
  auto coordinator_ready = [&] {
    int port = http_port;
    if (port == 0) {
      std::string text = trim(read_text(port_file));
      if (text.empty()) return false;
      port = std::atoi(text.c_str());
      if (port <= 0) return false;
    }
    std::string base = "http://" + api_host + ":" + std::to_string(port);
    auto r = http::request("GET", base + "/healthz", "", 1000);
    if (!r || r->status != 200) return false;
    api = base;
    return true;
  };
  if (int rc = outcome(wait_ready("coordinator", coordinator_ready, seconds(30)), "coordinator",
                       "GET /healthz did not answer 200");
      rc >= 0)
    return rc;

  // 7. One worker per role (a --worker-bin's binary for its role, with the
  // same flags). A worker has no health endpoint: it is taken as started when
  // it is still running after a short settle time (below).
  // The workers inherit BATON_WORKFLOWS_DIR: an exec agent's config names a
  // script shipped next to the workflow as ${BATON_WORKFLOWS_DIR}/agents/x.py.
  // Workflows are read from the top level of that directory only, so it is
  // the directory of every workflow file dev loaded.
  if (setenv("BATON_WORKFLOWS_DIR", workflows_dir_.c_str(), 1) != 0) {
    std::fprintf(stderr, "batonctl dev: cannot set BATON_WORKFLOWS_DIR\n");
    return shutdown(kDevFailed);
  }
  for (const auto& role : roles_) {
    auto custom = worker_bins_.find(role);
    argv = {custom == worker_bins_.end() ? worker_bin : custom->second, "--role", role, "--brokers", brokers,
            "--redis", redis, "--namespace", o_.ns, "--workflows", workflows_dir_, "--concurrency",
            std::to_string(o_.concurrency)};
    for (auto& f : common_flags()) argv.push_back(f);
    std::string name = "worker-" + role;
    if (auto r = sup_.spawn({name, argv, log_path(name)}); !r) return fail(name, r.status().message());
  }
  // The workers join their consumer groups while the coordinator joins its
  // own: GET /readyz answers 200 once the coordinator owns its partitions (a
  // coordinator without /readyz, answering 404, is taken as ready).
  auto coordinator_owns_partitions = [&] {
    auto r = http::request("GET", api + "/readyz", "", 1000);
    return r && (r->status == 200 || r->status == 404);
  };
  if (int rc = outcome(wait_ready("coordinator to join its consumer group", coordinator_owns_partitions,
                                  seconds(60)),
                       "coordinator", "GET /readyz did not answer 200");
      rc >= 0)
    return rc;
  auto settle_until = std::chrono::steady_clock::now() + milliseconds(1000);
  if (int rc = outcome(wait_ready("workers", [&] { return std::chrono::steady_clock::now() >= settle_until; },
                                  seconds(5)),
                       "workers", "settle");
      rc >= 0)
    return rc;

  if (Status s = write_env(api, brokers, redis); !s) {
    std::fprintf(stderr, "batonctl dev: %s\n", s.message().c_str());
    return shutdown(kDevFailed);
  }

  // 8. Where everything is.
  std::printf("baton dev is up (namespace %s, workflows %s)\n", o_.ns.c_str(), workflows_dir_.c_str());
  std::printf("  api      %s\n", api.c_str());
  std::printf("  brokers  %s\n", brokers.c_str());
  std::printf("  redis    %s\n", redis.c_str());
  std::printf("  env      %s\n", env_path_.c_str());
  std::printf("  processes:\n");
  for (const auto& c : sup_.children()) {
    std::printf("    %-22s pid %-8d log %s\n", c.name.c_str(), static_cast<int>(c.pid), c.log_path.c_str());
  }
  std::printf("Try: batonctl run <workflow> --input FILE.json --wait   (Ctrl-C stops everything)\n");
  std::fflush(stdout);

  // 9. Supervise.
  while (true) {
    Event ev = sup_.wait_event(seconds(1));
    if (ev.kind == Event::Kind::kShutdown) {
      spdlog::info("got {}; stopping", ev.signal == SIGINT ? "SIGINT" : ev.signal == SIGHUP ? "SIGHUP" : "SIGTERM");
      return shutdown(kDevOk);
    }
    if (ev.kind == Event::Kind::kChildExited) {
      return fail(ev.child, "exited unexpectedly: " + describe_wait_status(ev.wait_status));
    }
  }
}

}  // namespace

int run_dev(const DevOptions& opts) {
  DevSession session(opts);
  return session.run();
}

}  // namespace baton::cli
