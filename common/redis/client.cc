// hiredis 0.14 adapter. The only file that includes hiredis.h.
//
// Hot-path choices (the coordinator pipelines every batch of events through
// here):
// - append() encodes RESP straight into one reused buffer, so queuing needs no
//   connection and no per-command allocation once the buffer has grown;
// - exec() writes that buffer with send(MSG_NOSIGNAL) (no copy into hiredis's
//   output buffer, no SIGPIPE when the server has gone away);
// - hiredis's reader builds our Reply objects directly through its object
//   functions (no redisReply tree to copy and free), into a vector reserved
//   for the whole pipeline.
#include "common/redis/client.h"

#include <hiredis/hiredis.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <new>

namespace baton::redis {
namespace {

using Clock = std::chrono::steady_clock;

// Keep at most this much buffer capacity between pipelines.
constexpr std::size_t kMaxIdleBufferBytes = 4 << 20;

// --- Reply construction from hiredis's reader ---------------------------------
//
// The root of each reply is the Reply the caller placed in the reader's
// privdata before redisGetReply() (hiredis copies it into every read task);
// children live in their parent's `elements`, sized when the array header is
// read, so pointers to them stay valid. freeObject() is only ever called by
// hiredis on a root (partial reply on error, reader freed mid-reply): it
// clears it in place, since the caller owns the storage.

Reply* slot_for(const redisReadTask* task) {
  if (task->parent == nullptr) return static_cast<Reply*>(task->privdata);
  auto* parent = static_cast<Reply*>(task->parent->obj);
  if (parent == nullptr || task->idx < 0 || static_cast<std::size_t>(task->idx) >= parent->elements.size())
    return nullptr;
  return &parent->elements[static_cast<std::size_t>(task->idx)];
}

void* create_string(const redisReadTask* task, char* str, size_t len) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  switch (task->type) {
    case REDIS_REPLY_ERROR: r->type = Reply::Type::kError; break;
    case REDIS_REPLY_STATUS: r->type = Reply::Type::kStatus; break;
    default: r->type = Reply::Type::kString; break;
  }
  try {
    r->str.assign(str, len);
  } catch (...) {  // never unwind through hiredis (C); NULL means OOM to it
    return nullptr;
  }
  return r;
}

void* create_array(const redisReadTask* task, int elements) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = Reply::Type::kArray;
  try {
    r->elements.resize(static_cast<std::size_t>(std::max(elements, 0)));
  } catch (...) {
    return nullptr;
  }
  return r;
}

void* create_integer(const redisReadTask* task, long long value) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = Reply::Type::kInteger;
  r->integer = value;
  return r;
}

void* create_nil(const redisReadTask* task) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = Reply::Type::kNil;
  return r;
}

void free_object(void* obj) {
  if (obj != nullptr) *static_cast<Reply*>(obj) = Reply{};
}

redisReplyObjectFunctions kReplyFunctions = {create_string, create_array, create_integer, create_nil,
                                              free_object};

timeval to_timeval(int ms) {
  timeval tv{};
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  return tv;
}

// RESP encoding of one command, appended to `out`.
template <class It>
void encode_command(std::string& out, It first, std::size_t argc) {
  std::size_t need = 16;
  It it = first;
  for (std::size_t i = 0; i < argc; ++i, ++it) need += it->size() + 24;
  out.reserve(out.size() + need);  // libstdc++ grows geometrically

  char num[24];
  auto put_len = [&](char tag, std::size_t n) {
    out.push_back(tag);
    auto [end, ec] = std::to_chars(num, num + sizeof(num), n);
    (void)ec;
    out.append(num, static_cast<std::size_t>(end - num));
    out.append("\r\n", 2);
  };
  put_len('*', argc);
  it = first;
  for (std::size_t i = 0; i < argc; ++i, ++it) {
    put_len('$', it->size());
    out.append(it->data(), it->size());
    out.append("\r\n", 2);
  }
}

}  // namespace

struct Client::Impl {
  redisContext* ctx = nullptr;
  std::string out;  // RESP of the queued commands
  int failures = 0;  // consecutive failed connect attempts
  Clock::time_point next_attempt{};
  std::string last_error;

  ~Impl() { disconnect(); }

  void disconnect() {
    if (ctx != nullptr) {
      redisFree(ctx);
      ctx = nullptr;
    }
  }

  std::string where(const Endpoint& ep) const { return "redis " + ep.host + ":" + std::to_string(ep.port); }

  Status write_all(const Endpoint& ep, const char* p, std::size_t n) {
    while (n > 0) {
      ssize_t w = ::send(ctx->fd, p, n, MSG_NOSIGNAL);
      if (w < 0) {
        if (errno == EINTR) continue;
        const char* why = (errno == EAGAIN || errno == EWOULDBLOCK) ? "write timed out" : std::strerror(errno);
        return unavailable(where(ep) + ": " + why);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    return Status::ok();
  }

  // Writes `n_cmds` RESP-encoded commands and reads their replies into `replies`
  // (appended). On any I/O or protocol error the connection is dropped.
  Status roundtrip(const Endpoint& ep, const std::string& cmds, std::size_t n_cmds, std::vector<Reply>& replies) {
    Status st = write_all(ep, cmds.data(), cmds.size());
    if (!st) {
      disconnect();
      return st;
    }
    for (std::size_t i = 0; i < n_cmds; ++i) {
      Reply& target = replies.emplace_back();
      ctx->reader->privdata = &target;
      void* got = nullptr;
      if (redisGetReply(ctx, &got) != REDIS_OK || got != &target) {
        std::string why = ctx->err != 0 ? ctx->errstr : "unexpected reply object";
        if (ctx->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK)) why = "read timed out";
        // Free while `replies` is alive: the reader may hold a partial root in it.
        disconnect();
        return unavailable(where(ep) + ": " + why);
      }
    }
    return Status::ok();
  }

  Status open(const Endpoint& ep) {
    redisContext* c = ep.connect_timeout_ms > 0
                          ? redisConnectWithTimeout(ep.host.c_str(), ep.port, to_timeval(ep.connect_timeout_ms))
                          : redisConnect(ep.host.c_str(), ep.port);
    if (c == nullptr) return unavailable(where(ep) + ": cannot allocate a context");
    if (c->err != 0) {
      std::string why = c->errstr;
      redisFree(c);
      return unavailable(where(ep) + ": connect: " + why);
    }
    if (ep.command_timeout_ms > 0 && redisSetTimeout(c, to_timeval(ep.command_timeout_ms)) != REDIS_OK) {
      std::string why = c->errstr;
      redisFree(c);
      return unavailable(where(ep) + ": set timeout: " + why);
    }
    (void)redisEnableKeepAlive(c);  // best effort: notices a dead peer on idle connections
    c->reader->fn = &kReplyFunctions;
    ctx = c;

    if (!ep.password.empty()) {
      std::string cmd;
      if (ep.user.empty()) {
        std::string_view argv[] = {"AUTH", ep.password};
        encode_command(cmd, std::begin(argv), 2);
      } else {
        std::string_view argv[] = {"AUTH", ep.user, ep.password};
        encode_command(cmd, std::begin(argv), 3);
      }
      std::vector<Reply> replies;
      replies.reserve(1);
      Status st = roundtrip(ep, cmd, 1, replies);
      if (!st) return st;
      if (replies[0].is_error()) {
        disconnect();
        return unavailable(where(ep) + ": AUTH: " + replies[0].str);
      }
    }
    return Status::ok();
  }
};

Client::Client(Endpoint ep) : impl_(std::make_unique<Impl>()), ep_(std::move(ep)) {}

Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::connect(const Endpoint& ep) {
  std::unique_ptr<Client> c(new Client(ep));
  Status st = c->ensure_connected();
  if (!st) return st;
  return c;
}

Status Client::ensure_connected() {
  if (impl_->ctx != nullptr) return Status::ok();
  auto now = Clock::now();
  if (impl_->failures > 0 && now < impl_->next_attempt) {
    return unavailable(impl_->where(ep_) + ": reconnect backoff (last error: " + impl_->last_error + ")");
  }
  Status st = impl_->open(ep_);
  if (!st) {
    ++impl_->failures;
    // At most one attempt per min(1 s, 50 ms * 2^failures).
    int shift = std::min(impl_->failures, 5);
    auto delay = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(1000),
                                                     std::chrono::milliseconds(50LL << shift));
    impl_->next_attempt = now + delay;
    impl_->last_error = st.message();
    return st;
  }
  impl_->failures = 0;
  return Status::ok();
}

void Client::append(const std::vector<std::string_view>& argv) {
  if (argv.empty()) return;
  encode_command(impl_->out, argv.begin(), argv.size());
  ++pending_;
}

void Client::append(std::initializer_list<std::string_view> argv) {
  if (argv.size() == 0) return;
  encode_command(impl_->out, argv.begin(), argv.size());
  ++pending_;
}

Result<std::vector<Reply>> Client::exec() {
  std::vector<Reply> replies;
  std::size_t n = pending_;
  pending_ = 0;
  if (n == 0) return replies;

  struct ClearQueue {  // the queue is consumed whatever happens
    std::string& out;
    ~ClearQueue() {
      out.clear();
      if (out.capacity() > kMaxIdleBufferBytes) std::string().swap(out);
    }
  } clear{impl_->out};

  Status st = ensure_connected();
  if (!st) return st;
  replies.reserve(n);
  st = impl_->roundtrip(ep_, impl_->out, n, replies);
  if (!st) return st;
  return replies;
}

Result<Reply> Client::command(const std::vector<std::string_view>& argv) {
  append(argv);
  auto r = exec();
  if (!r) return r.status();
  if (r->empty()) return invalid("redis: empty command");
  return std::move(r->back());
}

Result<Reply> Client::command(std::initializer_list<std::string_view> argv) {
  append(argv);
  auto r = exec();
  if (!r) return r.status();
  if (r->empty()) return invalid("redis: empty command");
  return std::move(r->back());
}

Result<Endpoint> parse_endpoint(std::string_view s) {
  Endpoint ep;
  std::string_view rest = s;
  if (rest.substr(0, 8) == "redis://") rest.remove_prefix(8);
  while (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  // Optional credentials: [user]:password@ (redis://:secret@host:6379).
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) {
      ep.user = std::string(cred.substr(0, colon));
      ep.password = std::string(cred.substr(colon + 1));
    } else {
      ep.password = std::string(cred);
    }
  }
  std::string_view host = rest;
  std::string_view port;
  bool has_port = false;
  if (!rest.empty() && rest.front() == '[') {  // [::1]:6379
    auto close = rest.find(']');
    if (close == std::string_view::npos) return invalid("redis endpoint: unclosed '[' in '" + std::string(s) + "'");
    host = rest.substr(1, close - 1);
    std::string_view tail = rest.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':') return invalid("redis endpoint: expected ':' after ']' in '" + std::string(s) + "'");
      port = tail.substr(1);
      has_port = true;
    }
  } else if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    has_port = true;
  }
  if (host.empty()) return invalid("redis endpoint: no host in '" + std::string(s) + "'");
  ep.host = std::string(host);
  if (has_port) {
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535)
      return invalid("redis endpoint: bad port in '" + std::string(s) + "'");
    ep.port = p;
  }
  return ep;
}

namespace {

Result<int64_t> library_version(Client& c) {
  auto r = c.command({"FCALL", "baton_version", "0"});
  if (!r) return r.status();
  if (r->is_error()) return not_found(r->str);  // typically "ERR Function not found"
  if (r->type != Reply::Type::kInteger) return internal("baton_version returned a non-integer");
  return r->integer;
}

}  // namespace

Status ensure_library(Client& c) {
  auto v = library_version(c);
  if (v.is_ok() && *v == kLibraryVersion) return Status::ok();
  if (!v.is_ok() && v.status().code() == Code::kUnavailable) return v.status();

  auto loaded = c.command({"FUNCTION", "LOAD", "REPLACE", library_source()});
  if (!loaded) return loaded.status();
  if (loaded->is_error()) return internal("FUNCTION LOAD baton: " + loaded->str);

  v = library_version(c);
  if (!v) return v.status().code() == Code::kUnavailable ? v.status()
                                                          : internal("baton library after load: " + v.status().message());
  if (*v != kLibraryVersion) {
    return internal("baton library reports version " + std::to_string(*v) + " after load, expected " +
                    std::to_string(kLibraryVersion));
  }
  return Status::ok();
}

}  // namespace baton::redis
