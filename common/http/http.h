// A small HTTP/1.1 server and a blocking client. Only server.cc and client.cc
// include Boost.Beast; everything else sees these plain structs.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/util/limits.h"
#include "common/util/status.h"

namespace baton::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path with query, e.g. "/v1/runs/abc?x=1"
  std::string path;    // path only, e.g. "/v1/runs/abc" (not percent-decoded)
  std::map<std::string, std::string> query;  // decoded query parameters ('+' is a space; last value wins)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

// Handlers run on the server's worker threads, concurrently; they must be
// thread-safe and must not throw (a throw becomes a 500 with a JSON error).
using Handler = std::function<Response(const Request&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: an ephemeral port (see Server::port())
  int threads = 2;
  std::size_t max_body_bytes = limits::kMaxJsonBodyBytes;  // larger bodies: 413 JSON error, unread
  int read_timeout_ms = 10000;
};

// Serves until stop(). Keep-alive connections; each request is handed to the
// handler. Bodies over max_body_bytes get 413 with {"error":{...}} without
// reaching the handler; malformed requests get 400, headers over 16 KiB get
// 431 (all three close the connection). `Expect: 100-continue` is answered.
// read_timeout_ms bounds reading one request and is the idle limit of a
// keep-alive connection.
class Server {
 public:
  static Result<std::unique_ptr<Server>> start(const ServerOptions& opts, Handler handler);
  virtual ~Server() = default;
  virtual int port() const = 0;
  // Stops accepting, closes connections, joins threads. Idempotent. Waits for
  // handlers already running; must not be called from a handler.
  virtual void stop() = 0;
};

// {"error":{"code":..., "message":...}} with the given status.
Response json_error(int status, std::string_view code, std::string_view message);

// Blocking client for one request (new connection each call). `url` like
// "http://127.0.0.1:8080/v1/runs". kUnavailable on connection errors or timeout
// (timeout_ms bounds the whole call: resolve, connect, write, read);
// kInvalidArgument for a bad URL, method, header or a timeout_ms <= 0. Never
// throws; safe to call from any thread. Content-Type application/json is sent
// when the body is non-empty (a Content-Type in `headers` wins).
struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};
Result<ClientResponse> request(std::string_view method, std::string_view url, std::string_view body = "",
                               int timeout_ms = 10000,
                               const std::map<std::string, std::string>& headers = {});

}  // namespace baton::http
