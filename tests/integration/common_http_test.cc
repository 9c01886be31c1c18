// The HTTP server and client over real loopback sockets: round trips, query
// decoding, size limits, malformed input, handler failures, concurrency,
// keep-alive, 100-continue, read timeout, stop(), and client timeouts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/http/http.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace baton::http {
namespace {

using namespace std::chrono_literals;
using baton::testing::wait_until;

std::string url(int port, const std::string& target) {
  return "http://127.0.0.1:" + std::to_string(port) + target;
}

std::unique_ptr<Server> start_or_die(Handler h, ServerOptions opts = {}) {
  auto s = Server::start(opts, std::move(h));
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return s.is_ok() ? std::move(s).value() : nullptr;
}

// A raw TCP connection for what the client cannot do: garbage bytes,
// keep-alive, pipelining, partial requests. Every receive has a 5 s limit.
class RawConn {
 public:
  explicit RawConn(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }

  bool send_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // One response: status line + headers + Content-Length bytes of body. ""
  // when the connection closes or times out first.
  std::string read_response() {
    size_t header_end;
    while ((header_end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return "";
    }
    size_t body_len = 0;
    std::string head = buf_.substr(0, header_end);
    for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto p = head.find("\r\ncontent-length:"); p != std::string::npos) {
      body_len = std::stoul(head.substr(p + 17));
    }
    size_t total = header_end + 4 + body_len;
    while (buf_.size() < total) {
      if (!fill()) return "";
    }
    std::string out = buf_.substr(0, total);
    buf_.erase(0, total);
    return out;
  }

  // True when the server closes the connection (EOF or reset) within 5 s.
  bool closed_by_peer() {
    char c;
    for (int i = 0; i < 1000; ++i) {  // bounded: drains at most ~1000 stray bytes
      ssize_t n = ::recv(fd_, &c, 1, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
    }
    return false;
  }

 private:
  bool fill() {
    if (buf_.size() > (4u << 20)) return false;
    char tmp[4096];
    ssize_t n = ::recv(fd_, tmp, sizeof(tmp), 0);
    if (n <= 0) return false;
    buf_.append(tmp, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string buf_;
};

std::string body_of(const std::string& raw) {
  auto p = raw.find("\r\n\r\n");
  return p == std::string::npos ? "" : raw.substr(p + 4);
}

nlohmann::json parse(const std::string& s) { return nlohmann::json::parse(s, nullptr, false); }

// Echoes what it saw as JSON.
Response echo(const Request& r) {
  nlohmann::json j;
  j["method"] = r.method;
  j["target"] = r.target;
  j["path"] = r.path;
  j["query"] = r.query;
  j["headers"] = r.headers;
  j["body"] = r.body;
  Response resp;
  resp.body = j.dump();
  resp.headers["X-Echo"] = "yes";
  return resp;
}

TEST(HttpJsonError, HasCodeAndMessage) {
  Response r = json_error(404, "not_found", "no run \"x\"");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  auto j = parse(r.body);
  ASSERT_TRUE(j.is_object()) << r.body;
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_EQ(j["error"]["message"], "no run \"x\"");
  // Invalid UTF-8 in a message never throws.
  Response bad = json_error(400, "bad", std::string("\xff\xfe", 2));
  EXPECT_TRUE(parse(bad.body).is_object()) << bad.body;
}

TEST(HttpServer, GetAndPostRoundTrip) {
  auto server = start_or_die(echo);
  ASSERT_TRUE(server);
  ASSERT_GT(server->port(), 0);

  auto get = request("GET", url(server->port(), "/v1/runs/abc"), "", 5000, {{"X-Request-ID", "Req-1"}});
  ASSERT_TRUE(get.is_ok()) << get.status().to_string();
  EXPECT_EQ(get->status, 200);
  EXPECT_EQ(get->headers["content-type"], "application/json");
  EXPECT_EQ(get->headers["content-length"], std::to_string(get->body.size()));
  EXPECT_EQ(get->headers["x-echo"], "yes");
  auto g = parse(get->body);
  ASSERT_TRUE(g.is_object()) << get->body;
  EXPECT_EQ(g["method"], "GET");
  EXPECT_EQ(g["path"], "/v1/runs/abc");
  EXPECT_EQ(g["body"], "");
  EXPECT_EQ(g["headers"]["x-request-id"], "Req-1");  // names lower-cased, values kept
  EXPECT_EQ(g["headers"]["host"], "127.0.0.1:" + std::to_string(server->port()));

  std::string payload = R"({"workflow":"lead-to-meeting","input":{"lead_id":"42"}})";
  auto post = request("POST", url(server->port(), "/v1/runs"), payload, 5000);
  ASSERT_TRUE(post.is_ok()) << post.status().to_string();
  EXPECT_EQ(post->status, 200);
  auto p = parse(post->body);
  EXPECT_EQ(p["method"], "POST");
  EXPECT_EQ(p["body"], payload);
  EXPECT_EQ(p["headers"]["content-type"], "application/json");
  EXPECT_EQ(p["headers"]["content-length"], std::to_string(payload.size()));

  // Other methods and statuses pass through.
  auto status_server = start_or_die([](const Request& r) {
    Response resp;
    resp.status = r.method == "DELETE" ? 204 : 201;
    resp.content_type = "text/plain";
    if (resp.status == 201) resp.body = "created";
    return resp;
  });
  ASSERT_TRUE(status_server);
  auto del = request("DELETE", url(status_server->port(), "/x"), "", 5000);
  ASSERT_TRUE(del.is_ok()) << del.status().to_string();
  EXPECT_EQ(del->status, 204);
  auto put = request("PUT", url(status_server->port(), "/x"), "{}", 5000);
  ASSERT_TRUE(put.is_ok());
  EXPECT_EQ(put->status, 201);
  EXPECT_EQ(put->body, "created");
  EXPECT_EQ(put->headers["content-type"], "text/plain");
}

TEST(HttpServer, DecodesTheQuery) {
  auto server = start_or_die(echo);
  ASSERT_TRUE(server);
  auto r = request("GET", url(server->port(), "/v1/runs?workflow=lead%2Dto%2Dmeeting&q=hello%20big+world&empty=&flag"
                                              "&bad=%zz&utf=%C3%A9&a%26b=c%3Dd"),
                   "", 5000);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto j = parse(r->body);
  EXPECT_EQ(j["path"], "/v1/runs");
  EXPECT_EQ(j["target"].get<std::string>().rfind("/v1/runs?workflow=", 0), 0u);
  auto& q = j["query"];
  EXPECT_EQ(q["workflow"], "lead-to-meeting");
  EXPECT_EQ(q["q"], "hello big world");
  EXPECT_EQ(q["empty"], "");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["bad"], "%zz");
  EXPECT_EQ(q["utf"], "\xC3\xA9");
  EXPECT_EQ(q["a&b"], "c=d");
  EXPECT_EQ(q.size(), 7u);

  auto none = request("GET", url(server->port(), "/healthz"), "", 5000);
  ASSERT_TRUE(none.is_ok());
  auto n = parse(none->body);
  EXPECT_EQ(n["path"], "/healthz");
  EXPECT_TRUE(n["query"].empty());
}

TEST(HttpServer, OversizedBodyIs413AndTheServerKeepsServing) {
  std::atomic<int> calls{0};
  ServerOptions opts;
  opts.max_body_bytes = 1024;
  auto server = start_or_die(
      [&](const Request& r) {
        ++calls;
        return echo(r);
      },
      opts);
  ASSERT_TRUE(server);

  std::string big(64 * 1024, 'x');
  auto r = request("POST", url(server->port(), "/v1/runs"), big, 5000);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 413);
  auto j = parse(r->body);
  ASSERT_TRUE(j.is_object()) << r->body;
  EXPECT_EQ(j["error"]["code"], "too_large");
  EXPECT_EQ(calls.load(), 0);

  // Much larger than the socket buffers: still a 413, not a reset.
  auto huge = request("POST", url(server->port(), "/v1/runs"), std::string(8 << 20, 'z'), 10000);
  ASSERT_TRUE(huge.is_ok()) << huge.status().to_string();
  EXPECT_EQ(huge->status, 413);
  EXPECT_EQ(calls.load(), 0);

  // Exactly at the limit is fine.
  auto ok = request("POST", url(server->port(), "/v1/runs"), std::string(1024, 'y'), 5000);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(calls.load(), 1);

  // A declared length over the limit is refused from the header alone, and the
  // connection is closed.
  RawConn raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n"));
  std::string resp = raw.read_response();
  EXPECT_EQ(resp.rfind("HTTP/1.1 413", 0), 0u) << resp;
  EXPECT_EQ(parse(body_of(resp))["error"]["code"], "too_large");
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(calls.load(), 1);
}

TEST(HttpServer, GarbageBytesGet400) {
  std::atomic<int> calls{0};
  auto server = start_or_die([&](const Request& r) {
    ++calls;
    return echo(r);
  });
  ASSERT_TRUE(server);

  static constexpr char kTlsHello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n";
  for (std::string garbage : {std::string(kTlsHello, sizeof(kTlsHello) - 1),
                              std::string("GET /x HTTP/9.9.9\r\n\r\n"), std::string("GET /x HTTP/1.1\r\nBad Header\r\n\r\n"),
                              std::string("POST /x HTTP/1.1\r\nContent-Length: abc\r\n\r\n")}) {
    RawConn raw(server->port());
    ASSERT_TRUE(raw.connected());
    ASSERT_TRUE(raw.send_all(garbage));
    std::string resp = raw.read_response();
    EXPECT_EQ(resp.rfind("HTTP/1.1 400", 0), 0u) << "for " << garbage << " got: " << resp;
    auto j = parse(body_of(resp));
    EXPECT_EQ(j["error"]["code"], "bad_request") << resp;
    EXPECT_TRUE(raw.closed_by_peer());
  }
  EXPECT_EQ(calls.load(), 0);

  auto after = request("GET", url(server->port(), "/still-up"), "", 5000);
  ASSERT_TRUE(after.is_ok()) << after.status().to_string();
  EXPECT_EQ(after->status, 200);
}

TEST(HttpServer, OversizedHeaderIsRefused) {
  auto server = start_or_die(echo);
  ASSERT_TRUE(server);
  RawConn raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("GET / HTTP/1.1\r\nX-Big: " + std::string(64 * 1024, 'a') + "\r\n\r\n"));
  std::string resp = raw.read_response();
  EXPECT_EQ(resp.rfind("HTTP/1.1 431", 0), 0u) << resp.substr(0, 200);
}

TEST(HttpServer, ThrowingHandlerGives500Json) {
  auto server = start_or_die([](const Request& r) -> Response {
    if (r.path == "/int") throw 42;
    throw std::runtime_error("database on fire");
  });
  ASSERT_TRUE(server);
  for (const char* path : {"/boom", "/int"}) {
    auto r = request("GET", url(server->port(), path), "", 5000);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, 500) << path;
    EXPECT_EQ(r->headers["content-type"], "application/json");
    auto j = parse(r->body);
    ASSERT_TRUE(j.is_object()) << r->body;
    EXPECT_EQ(j["error"]["code"], "internal");
    EXPECT_EQ(r->body.find("database on fire"), std::string::npos) << "internal detail leaked: " << r->body;
  }
}

TEST(HttpServer, AnswersConcurrentClients) {
  std::atomic<int> calls{0};
  ServerOptions opts;
  opts.threads = 2;
  auto server = start_or_die(
      [&](const Request& r) {
        ++calls;
        Response resp;
        resp.body = r.body;
        return resp;
      },
      opts);
  ASSERT_TRUE(server);

  constexpr int kThreads = 8;
  constexpr int kPerThread = 50;
  std::atomic<int> good{0};
  std::mutex mu;
  std::vector<std::string> errors;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string body = R"({"t":)" + std::to_string(t) + R"(,"i":)" + std::to_string(i) + "}";
        auto r = request("POST", url(server->port(), "/echo"), body, 10000);
        if (r.is_ok() && r->status == 200 && r->body == body) {
          ++good;
        } else {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back(r.is_ok() ? std::to_string(r->status) + " " + r->body : r.status().to_string());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), kThreads * kPerThread) << (errors.empty() ? "" : errors.front());
  EXPECT_EQ(calls.load(), kThreads * kPerThread);
}

TEST(HttpServer, KeepsConnectionsAlive) {
  std::atomic<int> calls{0};
  auto server = start_or_die([&](const Request& r) {
    ++calls;
    Response resp;
    resp.body = r.path;
    return resp;
  });
  ASSERT_TRUE(server);

  RawConn raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string first = raw.read_response();
  EXPECT_EQ(first.rfind("HTTP/1.1 200", 0), 0u) << first;
  EXPECT_EQ(body_of(first), "/one");

  ASSERT_TRUE(raw.send_all("GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(body_of(raw.read_response()), "/two");

  // Pipelined: two requests in one write, answered in order.
  ASSERT_TRUE(raw.send_all("POST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                           "GET /four HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_EQ(body_of(raw.read_response()), "/three");
  EXPECT_EQ(body_of(raw.read_response()), "/four");

  // Connection: close is honoured.
  ASSERT_TRUE(raw.send_all("GET /five HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  std::string last = raw.read_response();
  EXPECT_EQ(body_of(last), "/five");
  EXPECT_TRUE(raw.closed_by_peer());
  EXPECT_EQ(calls.load(), 5);
}

TEST(HttpServer, AnswersExpectContinue) {
  auto server = start_or_die(echo);
  ASSERT_TRUE(server);
  RawConn raw(server->port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.send_all("POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n"));
  std::string cont = raw.read_response();
  EXPECT_EQ(cont.rfind("HTTP/1.1 100 Continue", 0), 0u) << cont;
  ASSERT_TRUE(raw.send_all("{\"a\":1}"));
  std::string resp = raw.read_response();
  EXPECT_EQ(resp.rfind("HTTP/1.1 200", 0), 0u) << resp;
  EXPECT_EQ(parse(body_of(resp))["body"], "{\"a\":1}");
}

TEST(HttpServer, ClosesIdleConnectionsAfterTheReadTimeout) {
  ServerOptions opts;
  opts.read_timeout_ms = 200;
  auto server = start_or_die(echo, opts);
  ASSERT_TRUE(server);
  RawConn idle(server->port());
  ASSERT_TRUE(idle.connected());
  EXPECT_TRUE(idle.closed_by_peer());

  RawConn slow(server->port());  // half a request, never finished
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send_all("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\n{\"a\""));
  EXPECT_TRUE(slow.closed_by_peer());

  auto ok = request("GET", url(server->port(), "/"), "", 5000);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->status, 200);
}

TEST(HttpServer, StopWithConnectedClientsReturnsPromptly) {
  ServerOptions opts;
  opts.read_timeout_ms = 120000;  // a stop() that waited for reads would hang the test
  auto server = start_or_die(echo, opts);
  ASSERT_TRUE(server);
  int port = server->port();

  RawConn idle(port);
  ASSERT_TRUE(idle.connected());
  RawConn partial(port);
  ASSERT_TRUE(partial.connected());
  ASSERT_TRUE(partial.send_all("GET /half HTTP/1.1\r\nHost"));
  RawConn kept(port);  // served once, now idle in keep-alive
  ASSERT_TRUE(kept.connected());
  ASSERT_TRUE(kept.send_all("GET /k HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_FALSE(kept.read_response().empty());

  auto stopped = std::async(std::launch::async, [&] { server->stop(); });
  ASSERT_EQ(stopped.wait_for(30s), std::future_status::ready) << "stop() blocked on connected clients";
  EXPECT_TRUE(idle.closed_by_peer());
  EXPECT_TRUE(partial.closed_by_peer());
  EXPECT_TRUE(kept.closed_by_peer());
  EXPECT_FALSE(baton::testing::port_open(port));

  server->stop();  // idempotent
  auto after = request("GET", url(port, "/"), "", 2000);
  ASSERT_FALSE(after.is_ok());
  EXPECT_EQ(after.status().code(), Code::kUnavailable);
}

TEST(HttpServer, StartFailsOnAPortInUse) {
  auto first = start_or_die(echo);
  ASSERT_TRUE(first);
  ServerOptions opts;
  opts.port = first->port();
  auto second = Server::start(opts, echo);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);

  auto no_handler = Server::start({}, Handler{});
  ASSERT_FALSE(no_handler.is_ok());
  EXPECT_EQ(no_handler.status().code(), Code::kInvalidArgument);
}

TEST(HttpClient, TimesOutAgainstAServerThatNeverAnswers) {
  // A listening socket that never accepts: the kernel completes the handshake,
  // nobody ever reads or replies.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  int port = ntohs(addr.sin_port);

  auto r = request("POST", url(port, "/v1/chat"), R"({"prompt":"hi"})", 300);
  ::close(fd);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
}

TEST(HttpClient, ReportsRefusedConnectionsAndBadUrls) {
  int port = baton::testing::free_port();
  auto refused = request("GET", url(port, "/"), "", 2000);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
  EXPECT_NE(refused.status().message().find("connect"), std::string::npos) << refused.status().message();

  for (const char* bad : {"https://example.com/", "ftp://x/", "http://", "http://host:99999/", "http://:80/"}) {
    auto r = request("GET", bad, "", 1000);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad << ": " << r.status().to_string();
  }
  auto crlf = request("GET", "http://127.0.0.1:1/", "", 1000, {{"X-Evil", "a\r\nInjected: 1"}});
  ASSERT_FALSE(crlf.is_ok());
  EXPECT_EQ(crlf.status().code(), Code::kInvalidArgument);
}

TEST(HttpClient, ResolvesHostNamesAndDefaultsThePath) {
  auto server = start_or_die(echo);
  ASSERT_TRUE(server);
  auto r = request("GET", "http://localhost:" + std::to_string(server->port()) + "?x=1", "", 5000);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  auto j = parse(r->body);
  EXPECT_EQ(j["path"], "/");
  EXPECT_EQ(j["query"]["x"], "1");
}

}  // namespace
}  // namespace baton::http
