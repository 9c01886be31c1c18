#include "tests/chaos/cluster.h"

#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <thread>

#include "common/http/http.h"
#include "common/util/ids.h"
#include "common/util/json.h"

namespace baton::chaos {

using nlohmann::json;
using std::chrono::milliseconds;
using testing::read_file;

namespace {

std::string how(int st) {
  if (WIFEXITED(st)) return "exit " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "signal " + std::to_string(WTERMSIG(st));
  return "status " + std::to_string(st);
}

bool poll_until(const std::function<bool()>& cond, milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(milliseconds(50));
  }
  return cond();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

std::string tail(const std::string& text, std::size_t bytes) {
  return text.size() <= bytes ? text : "..." + text.substr(text.size() - bytes);
}

}  // namespace

Cluster::Cluster(ClusterOptions o) : opts_(std::move(o)) {}

Cluster::~Cluster() { stop_all(); }

bool Cluster::start_redis() {
  // AOF with appendfsync always: a write Redis acknowledged survives a crash
  // (SIGKILL) of Redis, which the suite injects; everysec would lose up to a
  // second of acknowledged transitions, breaking the guarantees by
  // configuration rather than by a bug (docs/operations-reliability.md).
  std::vector<std::string> argv = {"redis-server", "--port", std::to_string(redis_port_), "--bind", "127.0.0.1",
                                   "--dir", opts_.dir + "/redis", "--save", "", "--appendonly", "yes",
                                   "--appendfsync", "always", "--daemonize", "no",
                                   "--logfile", opts_.dir + "/redis.log"};
  if (!redis_.start(argv)) return false;
  return poll_until([&] { return redis_.running() && testing::port_open(redis_port_); }, std::chrono::seconds(20));
}

bool Cluster::start_member(Member& m) {
  std::map<std::string, std::string> env = {{"BATON_CHAOS_SINK", opts_.sink_url}};
  m.paused = false;
  m.down = false;
  return m.proc.start(m.argv, m.log, env);
}

Status Cluster::start(milliseconds timeout) {
  std::lock_guard<std::mutex> lk(mu_);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(milliseconds(1000), std::chrono::duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now()));
  };
  std::filesystem::create_directories(opts_.dir + "/redis");
  redis_port_ = testing::free_port();
  if (!start_redis()) return unavailable("redis-server did not start: " + tail(read_file(opts_.dir + "/redis.log"), 2000));

  std::string roles;
  for (const auto& r : opts_.roles) roles += (roles.empty() ? "" : ",") + r;
  std::string bfile = opts_.dir + "/bootstrap", cfile = opts_.dir + "/control";
  if (!broker_.start({opts_.bin_dir + "/baton-broker", "--namespace", opts_.ns, "--roles", roles, "--partitions",
                      std::to_string(opts_.partitions), "--brokers", std::to_string(opts_.brokers), "--bootstrap-file",
                      bfile, "--control-file", cfile},
                     opts_.dir + "/broker.log"))
    return unavailable("cannot start baton-broker");
  if (!poll_until([&] { return !read_file(bfile).empty() && !read_file(cfile).empty(); }, std::chrono::seconds(20)))
    return unavailable("baton-broker wrote no bootstrap/control file: " + tail(read_file(opts_.dir + "/broker.log"), 2000));
  bootstrap_ = trim(read_file(bfile));
  control_ = "http://" + trim(read_file(cfile));

  const std::vector<std::string> common = {"--brokers", bootstrap_, "--redis", redis_address(), "--namespace",
                                           opts_.ns, "--workflows", opts_.workflows_dir, "--fetch-wait-ms",
                                           std::to_string(opts_.fetch_wait_ms), "--log-level", opts_.log_level};
  for (int i = 0; i < opts_.coordinators; ++i) {
    auto m = std::make_unique<Member>();
    m->name = "coordinator-" + std::to_string(i);
    m->coordinator = true;
    int port = testing::free_port();
    m->api = "http://127.0.0.1:" + std::to_string(port);
    m->argv = {opts_.bin_dir + "/baton-coordinator", "--http", "127.0.0.1:" + std::to_string(port)};
    m->argv.insert(m->argv.end(), common.begin(), common.end());
    m->log = opts_.dir + "/" + m->name + ".log";
    if (!start_member(*m)) return unavailable("cannot start " + m->name);
    members_.push_back(std::move(m));
  }
  for (const auto& role : opts_.roles) {
    for (int i = 0; i < opts_.workers_per_role; ++i) {
      auto m = std::make_unique<Member>();
      m->name = "worker-" + role + "-" + std::to_string(i);
      m->argv = {opts_.bin_dir + "/baton-worker", "--role", role, "--worker-id", m->name};
      m->argv.insert(m->argv.end(), common.begin(), common.end());
      m->log = opts_.dir + "/" + m->name + ".log";
      if (!start_member(*m)) return unavailable("cannot start " + m->name);
      members_.push_back(std::move(m));
    }
  }
  for (auto& m : members_) {
    if (!m->coordinator) continue;
    bool ready = poll_until(
        [&] {
          if (!m->proc.running()) return true;
          auto r = http::request("GET", m->api + "/readyz", "", 2000);
          return r && r->status == 200;
        },
        left());
    if (!ready || !m->proc.running())
      return unavailable(m->name + " is not ready: " + tail(read_file(m->log), 3000));
  }
  return Status::ok();
}

void Cluster::stop_all() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& m : members_) m->proc.signal(SIGCONT);
  for (auto& m : members_) m->proc.signal(SIGTERM);
  for (auto& m : members_) m->proc.stop(std::chrono::seconds(10));
  members_.clear();
  broker_.stop();
  redis_.stop();
}

std::vector<std::string> Cluster::workers() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& m : members_)
    if (!m->coordinator) out.push_back(m->name);
  return out;
}

std::vector<std::string> Cluster::coordinators() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& m : members_)
    if (m->coordinator) out.push_back(m->name);
  return out;
}

Cluster::Member* Cluster::find(const std::string& name) {
  for (auto& m : members_)
    if (m->name == name) return m.get();
  return nullptr;
}

bool Cluster::is_up(const std::string& member) {
  std::lock_guard<std::mutex> lk(mu_);
  Member* m = find(member);
  return m && !m->down && !m->paused && m->proc.pid() > 0;
}

bool Cluster::kill(const std::string& member) {
  std::lock_guard<std::mutex> lk(mu_);
  Member* m = find(member);
  if (!m || m->down) return false;
  m->proc.kill();
  m->down = true;
  m->paused = false;
  return true;
}

bool Cluster::restart(const std::string& member) {
  std::lock_guard<std::mutex> lk(mu_);
  Member* m = find(member);
  if (!m || !m->down) return false;
  return start_member(*m);
}

bool Cluster::pause(const std::string& member) {
  std::lock_guard<std::mutex> lk(mu_);
  Member* m = find(member);
  if (!m || m->down || m->paused || m->proc.pid() <= 0) return false;
  m->proc.signal(SIGSTOP);
  m->paused = true;
  return true;
}

bool Cluster::resume(const std::string& member) {
  std::lock_guard<std::mutex> lk(mu_);
  Member* m = find(member);
  if (!m || !m->paused) return false;
  m->proc.signal(SIGCONT);
  m->paused = false;
  return true;
}

void Cluster::heal() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& m : members_) {
    if (m->paused) {
      m->proc.signal(SIGCONT);
      m->paused = false;
    }
    if (m->down) start_member(*m);
  }
}

std::vector<Exit> Cluster::supervise() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<Exit> found;
  for (auto& m : members_) {
    if (m->down || m->proc.pid() <= 0) continue;
    int st = 0;
    if (!m->proc.wait_exit(milliseconds(0), &st)) continue;
    Exit e{m->name, how(st), now_unix_ms()};
    found.push_back(e);
    exits_.push_back(e);
    start_member(*m);
  }
  return found;
}

std::vector<Exit> Cluster::exits() const {
  std::lock_guard<std::mutex> lk(mu_);
  return exits_;
}

bool Cluster::redis_down(bool crash) {
  std::lock_guard<std::mutex> lk(mu_);
  if (redis_down_) return false;
  if (crash) {
    redis_.kill();
  } else {
    redis_.stop(std::chrono::seconds(10));
  }
  redis_down_ = true;
  return true;
}

bool Cluster::redis_up() {
  std::lock_guard<std::mutex> lk(mu_);
  if (!redis_down_) return false;
  redis_down_ = false;
  return start_redis();
}

bool Cluster::redis_is_up() const {
  std::lock_guard<std::mutex> lk(mu_);
  return !redis_down_;
}

Result<json> Cluster::broker_control(const std::string& path, const json& body) {
  auto r = http::request("POST", control_ + path, body.dump(), 5000);
  if (!r) return r.status();
  auto j = parse_json(r->body);
  if (r->status != 200) return unavailable("broker control " + path + ": " + std::to_string(r->status) + " " + r->body);
  if (!j) return j.status();
  return *j;
}

std::vector<std::string> Cluster::live_apis() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& m : members_)
    if (m->coordinator && !m->down && !m->paused) out.push_back(m->api);
  return out;
}

std::vector<std::string> Cluster::all_apis() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::string> out;
  for (const auto& m : members_)
    if (m->coordinator) out.push_back(m->api);
  return out;
}

std::string Cluster::log_tails(std::size_t bytes) const {
  std::lock_guard<std::mutex> lk(mu_);
  std::string out;
  for (const auto& m : members_) out += "---- " + m->name + " ----\n" + tail(read_file(m->log), bytes) + "\n";
  out += "---- broker ----\n" + tail(read_file(opts_.dir + "/broker.log"), bytes) + "\n";
  out += "---- redis ----\n" + tail(read_file(opts_.dir + "/redis.log"), bytes) + "\n";
  return out;
}

}  // namespace baton::chaos
