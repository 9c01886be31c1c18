// baton-bench: pushes runs of a 3-step workflow (intake -> qualify -> book)
// through the real processes started by `batonctl dev`, and prints one JSON
// line: throughput, run and handoff latency percentiles, CPU and peak RSS per
// process, idle CPU per process.
//
// Phase 1: --runs runs submitted at once (Trigger messages on the triggers
// topic). Phase 2: --serial runs one at a time. Then --idle-seconds of idle.
// Everything is read back from Redis (the runs' own timestamps), so the
// figures are what the system recorded, not what this client guessed.
#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "common/util/log.h"
#include "proto/baton/v1/baton.pb.h"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string self_dir() {
  std::error_code ec;
  auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : p.parent_path().string();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct ProcStat {
  double cpu_s = 0;
  long hwm_kb = 0;
  long rss_kb = 0;
};

ProcStat proc_stat(int pid) {
  ProcStat s;
  std::string stat = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(stat.substr(close + 2));
    std::string f;
    std::vector<std::string> fields;
    while (in >> f) fields.push_back(f);
    // fields[0] is state (field 3); utime is field 14, stime 15.
    if (fields.size() > 13) {
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(fields[11]) + std::stod(fields[12])) / ticks;
    }
  }
  std::istringstream st(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(st, line)) {
    if (line.rfind("VmHWM:", 0) == 0) s.hwm_kb = std::stol(line.substr(6));
    if (line.rfind("VmRSS:", 0) == 0) s.rss_kb = std::stol(line.substr(6));
  }
  return s;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  std::size_t i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

struct RunTimes {
  bool ended = false;
  std::string status;
  int64_t created = 0;
  int64_t ended_ms = 0;
  std::vector<double> handoffs;  // next step's worker start - previous step's worker finish
};

// Reads one run's hash; fills `out` when it has ended.
bool parse_run(const baton::redis::Reply& r, const std::vector<std::string>& steps, RunTimes& out) {
  std::map<std::string, std::string> h;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) h[r.elements[i].str] = r.elements[i + 1].str;
  auto st = h.find("status");
  if (st == h.end() || st->second == "running") return false;
  out.ended = true;
  out.status = st->second;
  out.created = std::stoll(h["created"]);
  out.ended_ms = std::stoll(h["ended"]);
  int64_t prev_finish = 0;
  for (const auto& s : steps) {
    auto it = h.find("step:" + s);
    if (it == h.end()) break;
    json j = json::parse(it->second, nullptr, false);
    if (j.is_discarded()) break;
    int64_t started = j.value("st", int64_t{0});
    int64_t finished = j.value("f", int64_t{0});
    if (prev_finish && started) out.handoffs.push_back(static_cast<double>(started - prev_finish));
    prev_finish = finished;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"baton-bench: throughput and latency of the whole fleet on this machine"};
  int runs = 5000;
  int serial = 300;
  int partitions = 8;
  int payload = 300;
  int idle_seconds = 5;
  int timeout_s = 600;
  std::string bin_dir = self_dir();
  std::string workflows = std::string(BATON_SOURCE_DIR) + "/bench/workflows";
  std::string extra_dev_args;
  bool keep = false;
  cli.add_option("--runs", runs, "runs submitted at once")->capture_default_str();
  cli.add_option("--serial", serial, "runs submitted one at a time afterwards")->capture_default_str();
  cli.add_option("--partitions", partitions, "partitions per topic")->capture_default_str();
  cli.add_option("--payload-bytes", payload, "size of each run's input payload")->capture_default_str();
  cli.add_option("--idle-seconds", idle_seconds, "idle period measured at the end")->capture_default_str();
  cli.add_option("--timeout", timeout_s, "give up after this many seconds")->capture_default_str();
  cli.add_option("--bin-dir", bin_dir, "where batonctl and the binaries are")->capture_default_str();
  cli.add_option("--workflows", workflows, "workflow dir (must define workflow 'bench')")->capture_default_str();
  cli.add_flag("--keep", keep, "keep the state dir (logs) afterwards");
  CLI11_PARSE(cli, argc, argv);
  baton::init_logging("bench", "warn");  // stderr: stdout carries only the JSON line

  char tmpl[] = "/tmp/baton-bench-XXXXXX";
  std::string state = mkdtemp(tmpl);
  pid_t dev = fork();
  if (dev == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int fd = open((state + "/batonctl.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string ctl = bin_dir + "/batonctl";
    execl(ctl.c_str(), ctl.c_str(), "dev", "--workflows", workflows.c_str(), "--state-dir", state.c_str(),
          "--namespace", "bench", "--http", "127.0.0.1:0", "--partitions", std::to_string(partitions).c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "baton-bench: %s (logs in %s)\n", why.c_str(), state.c_str());
    kill(dev, SIGTERM);
    waitpid(dev, nullptr, 0);
    return 1;
  };
  json env;
  for (int i = 0; i < 600; ++i) {
    std::string text = slurp(state + "/env.json");
    if (!text.empty()) {
      env = json::parse(text, nullptr, false);
      if (!env.is_discarded()) break;
    }
    int st = 0;
    if (waitpid(dev, &st, WNOHANG) == dev) return fail("batonctl dev exited early");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!env.is_object()) return fail("batonctl dev did not become ready");
  std::string ns = env.value("namespace", "bench");
  std::map<std::string, int> pids;
  for (auto& [k, v] : env["pids"].items()) pids[k] = v.get<int>();

  baton::kafka::KafkaConfig kc;
  kc.brokers = env["brokers"].get<std::string>();
  kc.client_id = "baton-bench";
  auto producer = baton::kafka::make_producer(kc, true);
  if (!producer) return fail(producer.status().to_string());
  auto ep = baton::redis::parse_endpoint(env["redis"].get<std::string>());
  auto redis = baton::redis::Client::connect(*ep);
  if (!redis) return fail(redis.status().to_string());
  auto& rc = **redis;
  const std::vector<std::string> steps = {"intake", "qualify", "book"};
  const std::string bench_id = baton::random_id().substr(0, 8);
  const std::string pad(static_cast<std::size_t>(std::max(0, payload - 120)), 'x');

  auto trigger = [&](int i) {
    baton::v1::Trigger t;
    t.set_workflow("bench");
    std::string id = bench_id + "-" + std::to_string(i);
    t.set_dedupe_key(id);
    t.set_input_json(json{{"id", id}, {"company", "Acme Ltd"}, {"email", "buyer@example.com"}, {"note", pad}}.dump());
    t.set_source("bench");
    return std::make_pair(baton::run_id_for_dedupe("bench", id), t.SerializeAsString());
  };
  auto produce_trigger = [&](int i) {
    auto [run_id, bytes] = trigger(i);
    for (int tries = 0; tries < 100; ++tries) {
      if ((*producer)->produce(baton::keys::triggers_topic(ns), bench_id + "-" + std::to_string(i), bytes)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return run_id;
  };

  // Warm-up: one run end to end (consumer groups joined, connections open).
  {
    std::string id = produce_trigger(-1);
    (void)(*producer)->flush(10000);
    bool done = false;
    for (int i = 0; i < 6000 && !done; ++i) {
      auto r = rc.command({"HGET", baton::keys::run(ns, id), "status"});
      done = r && r->is_string() && r->str != "running";
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!done) return fail("warm-up run did not finish within 60 s");
  }

  std::map<std::string, ProcStat> before;
  for (auto& [name, pid] : pids) before[name] = proc_stat(pid);

  // Phase 1: everything at once.
  const int64_t t0 = baton::now_unix_ms();
  std::vector<std::string> ids;
  ids.reserve(runs);
  for (int i = 0; i < runs; ++i) ids.push_back(produce_trigger(i));
  (void)(*producer)->flush(30000);
  std::vector<RunTimes> times(ids.size());
  std::vector<std::size_t> pending(ids.size());
  for (std::size_t i = 0; i < ids.size(); ++i) pending[i] = i;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  // Poll cheaply (one HGET per unfinished run every 500 ms) so the bench's own
  // reads stay a small share of Redis' time; read the timings once at the end.
  while (!pending.empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (std::size_t i : pending) rc.append({"HGET", baton::keys::run(ns, ids[i]), "status"});
    auto replies = rc.exec();
    if (!replies) continue;
    std::vector<std::size_t> still;
    for (std::size_t k = 0; k < pending.size(); ++k) {
      const auto& r = (*replies)[k];
      if (!r.is_string() || r.str == "running") still.push_back(pending[k]);
    }
    pending.swap(still);
  }
  if (!pending.empty()) return fail(std::to_string(pending.size()) + " runs did not finish in time");
  for (std::size_t i = 0; i < ids.size(); ++i) rc.append({"HGETALL", baton::keys::run(ns, ids[i])});
  auto all = rc.exec();
  if (!all) return fail("reading runs: " + all.status().to_string());
  for (std::size_t i = 0; i < ids.size(); ++i) parse_run((*all)[i], steps, times[i]);
  int64_t last_end = 0;
  std::vector<double> run_lat, handoffs;
  int completed = 0;
  for (const auto& t : times) {
    last_end = std::max(last_end, t.ended_ms);
    run_lat.push_back(static_cast<double>(t.ended_ms - t.created));
    handoffs.insert(handoffs.end(), t.handoffs.begin(), t.handoffs.end());
    completed += t.status == "completed";
  }
  double wall_s = static_cast<double>(last_end - t0) / 1000.0;

  // Phase 2: one at a time.
  std::vector<double> serial_lat, serial_handoffs, serial_client;
  for (int i = 0; i < serial; ++i) {
    auto start = Clock::now();
    std::string id = produce_trigger(runs + i);
    (void)(*producer)->flush(10000);
    RunTimes rt;
    for (int k = 0; k < 200000 && !rt.ended; ++k) {
      auto r = rc.command({"HGETALL", baton::keys::run(ns, id)});
      if (r && parse_run(*r, steps, rt)) break;
      std::this_thread::sleep_for(std::chrono::microseconds(250));
    }
    if (!rt.ended) return fail("serial run " + std::to_string(i) + " did not finish");
    serial_client.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    serial_lat.push_back(static_cast<double>(rt.ended_ms - rt.created));
    serial_handoffs.insert(serial_handoffs.end(), rt.handoffs.begin(), rt.handoffs.end());
  }

  auto cmdstats = rc.command({"INFO", "commandstats"});
  std::map<std::string, ProcStat> after;
  for (auto& [name, pid] : pids) after[name] = proc_stat(pid);
  std::this_thread::sleep_for(std::chrono::seconds(idle_seconds));
  std::map<std::string, ProcStat> idle;
  for (auto& [name, pid] : pids) idle[name] = proc_stat(pid);

  json out;
  out["runs"] = runs;
  out["completed"] = completed;
  out["wall_s"] = wall_s;
  out["runs_per_s"] = runs / wall_s;
  out["steps_per_s"] = 3.0 * runs / wall_s;
  out["run_latency_ms"] = {{"p50", pct(run_lat, 50)}, {"p99", pct(run_lat, 99)}};
  out["handoff_ms"] = {{"p50", pct(handoffs, 50)}, {"p99", pct(handoffs, 99)}};
  out["serial"] = {{"runs", serial},
                   {"run_latency_ms", {{"p50", pct(serial_lat, 50)}, {"p99", pct(serial_lat, 99)}}},
                   {"client_latency_ms", {{"p50", pct(serial_client, 50)}, {"p99", pct(serial_client, 99)}}},
                   {"handoff_ms", {{"p50", pct(serial_handoffs, 50)}, {"p99", pct(serial_handoffs, 99)}}}};
  json procs = json::object();
  for (auto& [name, pid] : pids) {
    procs[name] = {{"cpu_s", after[name].cpu_s - before[name].cpu_s},
                   {"peak_rss_mb", static_cast<double>(after[name].hwm_kb) / 1024.0},
                   {"idle_cpu_pct", 100.0 * (idle[name].cpu_s - after[name].cpu_s) / idle_seconds}};
  }
  out["processes"] = procs;
  if (std::getenv("BATON_BENCH_REDIS_STATS") && cmdstats && cmdstats->is_string())
    std::fprintf(stderr, "%s\n", cmdstats->str.c_str());
  std::printf("%s\n", out.dump().c_str());
  std::fflush(stdout);

  kill(dev, SIGTERM);
  int st = 0;
  waitpid(dev, &st, 0);
  if (!keep) std::filesystem::remove_all(state);
  return 0;
}
