#include "tests/support/servers.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace baton::testing {
namespace {

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

}  // namespace

RedisServer::RedisServer(bool aof) : aof_(aof) {
  dir_ = make_temp_dir("baton-redis");
  port_ = free_port();
  ok_ = start();
  if (!ok_) ADD_FAILURE() << "redis-server did not start on port " << port_ << "; log:\n"
                          << read_file(dir_ + "/redis.log");
}

bool RedisServer::start() {
  std::vector<std::string> argv = {"redis-server", "--port", std::to_string(port_),
                                   "--bind", "127.0.0.1", "--dir", dir_,
                                   "--save", "", "--appendonly", aof_ ? "yes" : "no",
                                   "--daemonize", "no", "--logfile", dir_ + "/redis.log"};
  if (aof_) {
    argv.push_back("--appendfsync");
    argv.push_back("always");
  }
  if (!proc_.start(argv)) return false;
  return wait_for([&] { return proc_.running() && port_open(port_); }, std::chrono::seconds(10));
}

bool RedisServer::restart() { return restart(std::chrono::milliseconds(0)); }

bool RedisServer::restart(std::chrono::milliseconds down) {
  proc_.stop();
  if (down.count() > 0) std::this_thread::sleep_for(down);
  ok_ = start();
  return ok_;
}

RedisServer::~RedisServer() {
  proc_.stop();
  remove_tree(dir_);
}

Broker::Broker(int partitions, const std::string& ns, const std::string& roles_csv) {
  dir_ = make_temp_dir("baton-broker");
  std::string file = dir_ + "/bootstrap";
  std::vector<std::string> argv = {bin_dir() + "/baton-broker", "--partitions",
                                   std::to_string(partitions), "--namespace", ns,
                                   "--bootstrap-file", file};
  if (!roles_csv.empty()) {
    argv.push_back("--roles");
    argv.push_back(roles_csv);
  }
  if (!proc_.start(argv, dir_ + "/broker.log")) {
    ADD_FAILURE() << "cannot start baton-broker";
    return;
  }
  ok_ = wait_for([&] { return !read_file(file).empty(); }, std::chrono::seconds(15));
  if (!ok_) {
    ADD_FAILURE() << "baton-broker wrote no bootstrap file; log:\n" << read_file(dir_ + "/broker.log");
    return;
  }
  bootstrap_ = read_file(file);
  while (!bootstrap_.empty() && (bootstrap_.back() == '\n' || bootstrap_.back() == ' '))
    bootstrap_.pop_back();
}

Broker::~Broker() {
  proc_.stop();
  remove_tree(dir_);
}

}  // namespace baton::testing
