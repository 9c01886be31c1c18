// Test support: a real redis-server and a real baton-broker, each on a free
// loopback port with its own temp dir, stopped by the destructor.
#pragma once

#include <chrono>
#include <string>

#include "tests/support/process.h"

namespace baton::testing {

class RedisServer {
 public:
  // Starts `redis-server` (from PATH) on a free port; waits until it answers.
  // Fails the calling test (ADD_FAILURE) and leaves ok() false on error.
  // `aof`: appendonly yes, appendfsync always (what production runs with), so
  // a restart keeps every acknowledged write.
  explicit RedisServer(bool aof = false);
  ~RedisServer();
  bool ok() const { return ok_; }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Stops and starts again on the same port and dir (data kept when AOF is on).
  bool restart();
  // Stops it, waits `down`, starts it again on the same port and dir.
  bool restart(std::chrono::milliseconds down);

 private:
  bool start();
  Process proc_;
  std::string dir_;
  int port_ = 0;
  bool ok_ = false;
  bool aof_ = false;
};

class Broker {
 public:
  // Starts build/bin/baton-broker with `partitions` per topic for `namespace_`
  // and the given roles' task topics; waits for its bootstrap file.
  explicit Broker(int partitions = 4, const std::string& ns = "test",
                  const std::string& roles_csv = "");
  ~Broker();
  bool ok() const { return ok_; }
  const std::string& bootstrap() const { return bootstrap_; }
  Process& process() { return proc_; }

 private:
  Process proc_;
  std::string dir_;
  std::string bootstrap_;
  bool ok_ = false;
};

}  // namespace baton::testing
