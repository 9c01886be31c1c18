// baton-broker: a development Kafka-protocol broker on 127.0.0.1, built on
// librdkafka's mock cluster (rdkafka_mock.h). It creates the project's topics
// up front, prints `bootstrap=<host:port>` on stdout, optionally writes the
// address to a file (atomically), and serves until SIGTERM or SIGINT, then
// exits 0. Everything is in memory; see tools/broker/README.md for the limits.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>
#include <signal.h>
#include <syslog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "common/util/keys.h"
#include "common/util/log.h"

namespace {

struct Options {
  int partitions = 8;
  std::string ns = "dev";
  std::vector<std::string> roles;
  std::vector<std::string> topics;
  int brokers = 1;
  std::string bootstrap_file;
  std::string log_level;
};

// Kafka's rule for topic names: [a-zA-Z0-9._-], 1..249 characters.
bool valid_topic(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

void log_to_spdlog(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  spdlog::level::level_enum lvl = spdlog::level::debug;
  if (std::strcmp(fac, "CONFWARN") == 0 && std::strstr(buf, "bootstrap.servers") != nullptr) {
    lvl = spdlog::level::debug;  // the hosting handle has no brokers by design
  } else if (level <= LOG_CRIT) {
    lvl = spdlog::level::critical;
  } else if (level == LOG_ERR) {
    lvl = spdlog::level::err;
  } else if (level == LOG_WARNING) {
    lvl = spdlog::level::warn;
  } else if (level <= LOG_INFO) {
    lvl = spdlog::level::info;
  }
  spdlog::log(lvl, "librdkafka {}: {}", fac, buf);
}

// Every listener of the mock cluster must be on the loopback address.
bool loopback_only(const std::string& bootstraps) {
  std::stringstream ss(bootstraps);
  std::string addr;
  int n = 0;
  while (std::getline(ss, addr, ',')) {
    if (addr.rfind("127.0.0.1:", 0) != 0) return false;
    ++n;
  }
  return n > 0;
}

// Temp file in the same directory, then rename: readers see all or nothing.
bool write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return false;
    out << content;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

int run(const Options& opt) {
  std::vector<std::string> topics = {baton::keys::events_topic(opt.ns), baton::keys::triggers_topic(opt.ns),
                                     baton::keys::audit_topic(opt.ns), baton::keys::dlq_topic(opt.ns)};
  for (const auto& role : opt.roles) {
    if (role.empty()) {
      spdlog::error("--roles contains an empty role name");
      return 2;
    }
    topics.push_back(baton::keys::tasks_topic(opt.ns, role));
  }
  for (const auto& t : opt.topics) topics.push_back(t);
  // A name given twice (a role that is also in --topics) is created once.
  std::vector<std::string> unique;
  for (const auto& t : topics) {
    if (std::find(unique.begin(), unique.end(), t) == unique.end()) unique.push_back(t);
  }
  topics.swap(unique);
  for (const auto& t : topics) {
    if (!valid_topic(t)) {
      spdlog::error("invalid topic name '{}' (allowed: a-z A-Z 0-9 . _ -, at most 249 chars)", t);
      return 2;
    }
  }

  // Signals are taken synchronously by sigwait() below; block them before any
  // librdkafka thread starts so that every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  // The mock cluster needs a client handle to host it; this producer never
  // produces and has no bootstrap servers of its own.
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_to_spdlog);
  (void)rd_kafka_conf_set(conf, "client.id", "baton-broker", errstr, sizeof errstr);
  if (spdlog::get_level() <= spdlog::level::trace &&
      rd_kafka_conf_set(conf, "debug", "mock", errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    spdlog::warn("cannot enable mock debug logs: {}", errstr);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    spdlog::error("cannot create the host client: {}", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, opt.brokers);
  if (cluster == nullptr) {
    spdlog::error("cannot create the mock cluster ({} broker(s))", opt.brokers);
    rd_kafka_destroy(rk);
    return 1;
  }
  auto shutdown = [&] {
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
  };

  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  if (!loopback_only(bootstrap)) {
    spdlog::error("mock cluster listens on {}, not on 127.0.0.1 only; refusing to serve", bootstrap);
    shutdown();
    return 1;
  }

  for (const auto& t : topics) {
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(cluster, t.c_str(), opt.partitions, 1);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      spdlog::error("cannot create topic {}: {}", t, rd_kafka_err2str(err));
      shutdown();
      return 1;
    }
    spdlog::info("topic {} ({} partitions)", t, opt.partitions);
  }

  if (!opt.bootstrap_file.empty() && !write_atomically(opt.bootstrap_file, bootstrap + "\n")) {
    spdlog::error("cannot write bootstrap file {}: {}", opt.bootstrap_file, std::strerror(errno));
    shutdown();
    return 1;
  }
  std::cout << "bootstrap=" << bootstrap << std::endl;  // endl flushes: scripts wait for this line
  spdlog::info("serving {} broker(s) on {}; topics not listed above are auto-created with 4 partitions",
               opt.brokers, bootstrap);

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0) {
  }
  spdlog::info("signal {} received, shutting down", sig);
  shutdown();
  // The address is dead now; a stale file would mislead the next reader.
  if (!opt.bootstrap_file.empty()) std::remove(opt.bootstrap_file.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  CLI::App app{"baton-broker: in-memory Kafka-protocol broker on 127.0.0.1 for development and tests"};
  app.add_option("--partitions", opt.partitions, "partitions per created topic")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--namespace", opt.ns, "topic namespace: baton.<ns>.*")->capture_default_str();
  app.add_option("--roles", opt.roles, "agent roles; creates baton.<ns>.tasks.<role> for each")->delimiter(',');
  app.add_option("--topics", opt.topics, "extra topic names to create")->delimiter(',');
  app.add_option("--brokers", opt.brokers, "number of mock brokers")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--bootstrap-file", opt.bootstrap_file,
                 "write the bootstrap address and a newline here (atomically) once serving");
  app.add_option("--log-level", opt.log_level, "trace, debug, info, warn, error (default: BATON_LOG_LEVEL or info)");
  CLI11_PARSE(app, argc, argv);

  baton::init_logging("broker", opt.log_level);
  if (opt.ns.empty()) {
    spdlog::error("--namespace must not be empty");
    return 2;
  }
  try {
    return run(opt);
  } catch (const std::exception& e) {
    spdlog::critical("baton-broker: {}", e.what());
    return 1;
  }
}
