// baton-coordinator: owns runs (see coordinator/application.h).
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <thread>

#include "common/util/log.h"
#include "coordinator/application.h"

int main(int argc, char** argv) {
  CLI::App cli{"baton-coordinator: turns workflow runs into tasks and routes their results"};
  baton::coordinator::Options o;
  std::string log_level;
  bool version = false;
  cli.add_option("--brokers", o.brokers, "Kafka bootstrap servers (host:port)");
  cli.add_option("--redis", o.redis, "Redis host:port")->capture_default_str();
  cli.add_option("--namespace", o.ns, "topic and key prefix (dev, staging, prod)")->capture_default_str();
  cli.add_option("--workflows", o.workflows_dir, "directory of workflow YAML files");
  cli.add_option("--http", o.http, "control plane listen address host:port (port 0: ephemeral)")
      ->capture_default_str();
  cli.add_option("--http-port-file", o.http_port_file, "write the bound HTTP port to this file");
  cli.add_option("--fetch-wait-ms", o.fetch_wait_ms, "Kafka fetch.wait.max.ms (per-hop latency floor)")
      ->capture_default_str();
  cli.add_option("--linger-ms", o.linger_ms, "Kafka producer linger.ms")->capture_default_str();
  cli.add_option("--auth-tokens", o.auth_tokens, "bearer token file (docs/security.md); default: auth off");
  cli.add_option("--notify", o.notify, "webhooks file (docs/notifications.md); default: no notifications");
  cli.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  cli.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(cli, argc, argv);
  if (version) {
    std::printf("baton-coordinator 0.1.0\n");
    return 0;
  }
  if (o.brokers.empty() || o.workflows_dir.empty()) {
    std::fprintf(stderr, "baton-coordinator: --brokers and --workflows are required\n");
    return 2;
  }
  baton::init_logging("coordinator", log_level);

  // Signals are taken by one thread with sigwait; every other thread blocks them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  baton::coordinator::Application app(o);
  if (auto s = app.init(); !s) {
    spdlog::error("start-up failed: {}", s.to_string());
    std::fprintf(stderr, "baton-coordinator: %s\n", s.message().c_str());
    return s.code() == baton::Code::kInvalidArgument ? 2 : 1;
  }
  std::thread signals([&] {
    int sig = 0;
    sigwait(&set, &sig);
    spdlog::info("signal {}: stopping", sig);
    app.stop();
  });
  signals.detach();
  auto s = app.run();
  return s ? 0 : 1;
}
