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

#include <nlohmann/json.hpp>
#include <memory>

#include "common/http/http.h"
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
  int control_port = -1;  // -1: no control interface; 0: an ephemeral port
  std::string control_file;
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

// ---- fault control (loopback HTTP/JSON; see README "Fault control") ----
using baton::http::json_error;
using baton::http::Request;
using baton::http::Response;

Response ok_json(nlohmann::json j) {
  Response r;
  r.body = j.dump();
  return r;
}

Response mock_result(rd_kafka_resp_err_t err, nlohmann::json ok) {
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return json_error(400, "mock_rejected", rd_kafka_err2str(err));
  return ok_json(std::move(ok));
}

// Parses the body as a JSON object; nullopt-like: sets `bad` on failure.
bool parse_object(const Request& req, nlohmann::json* out, Response* bad) {
  *out = nlohmann::json::parse(req.body.empty() ? std::string("{}") : req.body, nullptr, false);
  if (out->is_discarded() || !out->is_object()) {
    *bad = json_error(400, "bad_json", "body must be a JSON object");
    return false;
  }
  return true;
}

bool get_int(const nlohmann::json& j, const char* key, long min, long max, long* out, Response* bad) {
  if (!j.contains(key) || !j[key].is_number_integer()) {
    *bad = json_error(400, "bad_field", std::string("'") + key + "' must be an integer");
    return false;
  }
  long v = j[key].get<long>();
  if (v < min || v > max) {
    *bad = json_error(400, "bad_field", std::string("'") + key + "' out of range [" + std::to_string(min) + ", " +
                                            std::to_string(max) + "]");
    return false;
  }
  *out = v;
  return true;
}

Response control(rd_kafka_mock_cluster_t* cluster, int brokers, const Request& req) {
  if (req.path == "/v1/health") {
    if (req.method != "GET") return json_error(405, "method_not_allowed", "use GET");
    return ok_json({{"ok", true}, {"brokers", brokers}});
  }
  static const char* kPost[] = {"/v1/broker/down", "/v1/broker/up", "/v1/broker/rtt", "/v1/errors",
                                "/v1/partition/leader"};
  bool known = false;
  for (const char* p : kPost) known = known || req.path == p;
  if (!known) return json_error(404, "not_found", "unknown path " + req.path);
  if (req.method != "POST") return json_error(405, "method_not_allowed", "use POST");
  nlohmann::json j;
  Response bad;
  if (!parse_object(req, &j, &bad)) return bad;
  long broker = 0;
  if (req.path == "/v1/broker/down" || req.path == "/v1/broker/up") {
    if (!get_int(j, "broker", 1, brokers, &broker, &bad)) return bad;
    bool down = req.path == "/v1/broker/down";
    auto err = down ? rd_kafka_mock_broker_set_down(cluster, static_cast<int32_t>(broker))
                    : rd_kafka_mock_broker_set_up(cluster, static_cast<int32_t>(broker));
    spdlog::warn("control: broker {} {}", broker, down ? "down" : "up");
    return mock_result(err, {{"ok", true}, {"broker", broker}, {"state", down ? "down" : "up"}});
  }
  if (req.path == "/v1/broker/rtt") {
    long rtt = 0;
    if (!get_int(j, "broker", 1, brokers, &broker, &bad)) return bad;
    if (!get_int(j, "rtt_ms", 0, 600000, &rtt, &bad)) return bad;
    spdlog::warn("control: broker {} rtt {} ms", broker, rtt);
    return mock_result(rd_kafka_mock_broker_set_rtt(cluster, static_cast<int32_t>(broker), static_cast<int>(rtt)),
                       {{"ok", true}, {"broker", broker}, {"rtt_ms", rtt}});
  }
  if (req.path == "/v1/errors") {
    long api_key = 0;
    if (!get_int(j, "api_key", 0, 32767, &api_key, &bad)) return bad;
    if (!j.contains("errors") || !j["errors"].is_array() || j["errors"].empty() || j["errors"].size() > 10000) {
      return json_error(400, "bad_field", "'errors' must be a non-empty array (at most 10000) of error codes");
    }
    std::vector<rd_kafka_resp_err_t> errs;
    for (const auto& e : j["errors"]) {
      if (!e.is_number_integer()) return json_error(400, "bad_field", "'errors' must hold integer error codes");
      long code = e.get<long>();
      if (code < -200 || code > 1000) return json_error(400, "bad_field", "error code out of range");
      errs.push_back(static_cast<rd_kafka_resp_err_t>(code));
    }
    rd_kafka_mock_push_request_errors_array(cluster, static_cast<int16_t>(api_key), errs.size(), errs.data());
    spdlog::warn("control: pushed {} error(s) for api key {}", errs.size(), api_key);
    return ok_json({{"ok", true}, {"api_key", api_key}, {"count", errs.size()}});
  }
  // /v1/partition/leader
  if (!j.contains("topic") || !j["topic"].is_string() || !valid_topic(j["topic"].get<std::string>())) {
    return json_error(400, "bad_field", "'topic' must be a valid topic name");
  }
  long partition = 0;
  if (!get_int(j, "partition", 0, 1000000, &partition, &bad)) return bad;
  if (!get_int(j, "broker", -1, brokers, &broker, &bad)) return bad;
  if (broker == 0) return json_error(400, "bad_field", "'broker' must be 1..brokers, or -1 for no leader");
  const std::string topic = j["topic"].get<std::string>();
  spdlog::warn("control: {} [{}] leader -> {}", topic, partition, broker);
  return mock_result(rd_kafka_mock_partition_set_leader(cluster, topic.c_str(), static_cast<int32_t>(partition),
                                                        static_cast<int32_t>(broker)),
                     {{"ok", true}, {"topic", topic}, {"partition", partition}, {"broker", broker}});
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

  std::unique_ptr<baton::http::Server> control_server;
  if (opt.control_port >= 0 || !opt.control_file.empty()) {
    baton::http::ServerOptions so;
    so.host = "127.0.0.1";
    so.port = opt.control_port < 0 ? 0 : opt.control_port;
    so.threads = 1;
    so.max_body_bytes = 1 << 20;
    const int brokers = opt.brokers;
    auto started = baton::http::Server::start(so, [cluster, brokers](const baton::http::Request& req) {
      try {
        return control(cluster, brokers, req);
      } catch (const std::exception& e) {
        return baton::http::json_error(400, "bad_request", e.what());
      }
    });
    if (!started.is_ok()) {
      spdlog::error("cannot start the control server on 127.0.0.1:{}: {}", so.port, started.status().message());
      shutdown();
      return 1;
    }
    control_server = std::move(started.value());
    const std::string caddr = "127.0.0.1:" + std::to_string(control_server->port());
    if (!opt.control_file.empty() && !write_atomically(opt.control_file, caddr + "\n")) {
      spdlog::error("cannot write control file {}: {}", opt.control_file, std::strerror(errno));
      control_server->stop();
      shutdown();
      return 1;
    }
    std::cout << "control=" << caddr << std::endl;
    spdlog::info("fault control on http://{}", caddr);
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
  if (control_server) control_server->stop();  // handlers use the cluster: stop them first
  shutdown();
  if (!opt.control_file.empty()) std::remove(opt.control_file.c_str());
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
  app.add_option("--control-port", opt.control_port,
                 "serve the fault-control HTTP API on 127.0.0.1:PORT (0: ephemeral); off by default")
      ->check(CLI::Range(0, 65535));
  app.add_option("--control-file", opt.control_file,
                 "write the control address (127.0.0.1:PORT) and a newline here; implies the control API");
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
