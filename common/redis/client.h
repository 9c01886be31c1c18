// A Redis connection (hiredis 0.14, which is not thread-safe: one client per
// thread). Only client.cc includes hiredis.h. Binary-safe arguments.
//
// Pipelining: append() queues commands locally; exec() sends them all in one
// write and reads every reply. command() is append()+exec() for one command.
// On a connection error the client reconnects on the next call (with backoff
// capped at 1 s between attempts); the failed call returns kUnavailable and
// the caller decides whether to retry. Replies are never lost silently: a
// pipeline either returns all its replies or kUnavailable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"

namespace baton::redis {

struct Reply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;  // kString, kStatus, kError
  std::vector<Reply> elements;

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
  bool is_string() const { return type == Type::kString || type == Type::kStatus; }
  bool is_array() const { return type == Type::kArray; }
};

struct Endpoint {
  std::string host = "127.0.0.1";
  int port = 6379;
  int connect_timeout_ms = 2000;  // <= 0: the OS default
  int command_timeout_ms = 5000;  // <= 0: none; a timed-out pipeline fails and reconnects
  std::string password;  // AUTH when non-empty
  std::string user;      // ACL user (AUTH user password) when non-empty
};

// Parses "host:port" (or "redis://host:port"); also "redis://[user]:password@host:port",
// "[::1]:port", and a bare "host" (port 6379). kInvalidArgument otherwise.
Result<Endpoint> parse_endpoint(std::string_view s);

class Client {
 public:
  static Result<std::unique_ptr<Client>> connect(const Endpoint& ep);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queue one command for the next exec().
  void append(const std::vector<std::string_view>& argv);
  void append(std::initializer_list<std::string_view> argv);
  std::size_t pending() const { return pending_; }
  // Sends the queued commands and reads all replies, in order. On kUnavailable
  // the queue is dropped (the caller re-appends to retry).
  Result<std::vector<Reply>> exec();
  // One command (any commands already queued are sent with it; their
  // replies are discarded and the last reply is returned).
  Result<Reply> command(const std::vector<std::string_view>& argv);
  Result<Reply> command(std::initializer_list<std::string_view> argv);

  const Endpoint& endpoint() const { return ep_; }

 private:
  explicit Client(Endpoint ep);
  Status ensure_connected();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Endpoint ep_;
  std::size_t pending_ = 0;
};

// The `baton` Redis Functions library (common/redis/baton.lua), loaded by the
// coordinator at start with FUNCTION LOAD REPLACE when the loaded version differs.
inline constexpr int kLibraryVersion = 4;
std::string_view library_source();
// Loads (or upgrades) the library; ok when it is already at kLibraryVersion.
// A loaded library of any other version (older or newer) is replaced.
// kUnavailable when Redis cannot be reached, kInternal when the load fails.
Status ensure_library(Client& c);

}  // namespace baton::redis
