// workers/net/http_client against a real baton::http::Server on a loopback
// port: round trips with headers, Retry-After (seconds and HTTP-date), the
// timeout, a refused connection, the response size cap, bad URLs, and the
// backoff's bounds.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http/http.h"
#include "workers/net/http_client.h"

namespace baton::net {
namespace {

using nlohmann::json;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string http_date(int64_t unix_s) {
  std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// Echoes the request as JSON; /slow sleeps, /big sends 64 KiB, /busy is a 503
// with Retry-After: 3.
class HttpClientEcho : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = http::Server::start({}, [](const http::Request& r) {
      http::Response resp;
      if (r.path == "/slow") {
        std::this_thread::sleep_for(std::chrono::milliseconds(800));
        resp.body = "{}";
        return resp;
      }
      if (r.path == "/big") {
        resp.content_type = "text/plain";
        resp.body = std::string(64 << 10, 'x');
        return resp;
      }
      if (r.path == "/busy") {
        resp.status = 503;
        resp.headers["Retry-After"] = "3";
        resp.body = R"({"error":"busy"})";
        return resp;
      }
      json headers = json::object();
      for (const auto& [k, v] : r.headers) headers[k] = v;
      resp.status = r.method == "POST" ? 201 : 200;
      resp.headers["X-Reply"] = "yes";
      resp.body = json{{"method", r.method}, {"target", r.target}, {"headers", headers}, {"body", r.body}}.dump();
      return resp;
    });
    ASSERT_TRUE(s.is_ok()) << s.status().message();
    server_ = std::move(s).value();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  std::unique_ptr<http::Server> server_;
  std::string base_;
};

TEST_F(HttpClientEcho, GetRoundTripWithHeaders) {
  HttpRequest req;
  req.url = base_ + "/v1/contacts?x=1";
  req.headers = {{"Authorization", "Bearer t0k"}, {"X-Trace", "abc"}};
  req.timeout_ms = 5000;
  auto resp = send(req);
  ASSERT_TRUE(resp.is_ok()) << resp.status().message();
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(resp->headers["x-reply"], "yes");  // names lower-case
  json got = json::parse(resp->body);
  EXPECT_EQ(got["method"], "GET");
  EXPECT_EQ(got["target"], "/v1/contacts?x=1");
  EXPECT_EQ(got["headers"]["authorization"], "Bearer t0k");
  EXPECT_EQ(got["headers"]["x-trace"], "abc");
  EXPECT_EQ(got["body"], "");
}

TEST_F(HttpClientEcho, PostSendsTheBodyAsJsonByDefault) {
  HttpRequest req;
  req.method = "POST";
  req.url = base_ + "/v1/notes";
  req.body = R"({"text":"hello"})";
  req.timeout_ms = 5000;
  auto resp = send(req);
  ASSERT_TRUE(resp.is_ok()) << resp.status().message();
  EXPECT_EQ(resp->status, 201);
  json got = json::parse(resp->body);
  EXPECT_EQ(got["method"], "POST");
  EXPECT_EQ(got["body"], R"({"text":"hello"})");
  EXPECT_EQ(got["headers"]["content-type"], "application/json");

  // A Content-Type of the caller's wins; other methods carry their body too.
  req.method = "PATCH";
  req.body = "plain words";
  req.headers["Content-Type"] = "text/plain";
  resp = send(req);
  ASSERT_TRUE(resp.is_ok()) << resp.status().message();
  got = json::parse(resp->body);
  EXPECT_EQ(got["method"], "PATCH");
  EXPECT_EQ(got["body"], "plain words");
  EXPECT_EQ(got["headers"]["content-type"], "text/plain");
}

TEST_F(HttpClientEcho, RetryAfterFromAServerInSecondsAndAsAnHttpDate) {
  HttpRequest req;
  req.url = base_ + "/busy";
  req.timeout_ms = 5000;
  auto resp = send(req);
  ASSERT_TRUE(resp.is_ok()) << resp.status().message();
  EXPECT_EQ(resp->status, 503);
  EXPECT_TRUE(is_retryable_status(resp->status));
  EXPECT_EQ(retry_after_ms(*resp, wall_ms()), 3000);

  HttpResponse dated;
  int64_t now = wall_ms();
  dated.headers["retry-after"] = http_date(now / 1000 + 20);
  auto ms = retry_after_ms(dated, now);
  ASSERT_TRUE(ms.has_value());
  EXPECT_GT(*ms, 18000);  // whole seconds: 19-20 s from now
  EXPECT_LE(*ms, 20000);
  dated.headers["retry-after"] = http_date(now / 1000 - 60);
  EXPECT_EQ(retry_after_ms(dated, now), 0);  // in the past
  dated.headers["retry-after"] = "soon";
  EXPECT_EQ(retry_after_ms(dated, now), std::nullopt);
  dated.headers.erase("retry-after");
  EXPECT_EQ(retry_after_ms(dated, now), std::nullopt);
  dated.headers["retry-after"] = "0.5";
  EXPECT_EQ(retry_after_ms(dated, now), 500);
}

TEST_F(HttpClientEcho, AHandlerSlowerThanTheTimeoutIsATimeout) {
  HttpRequest req;
  req.url = base_ + "/slow";
  req.timeout_ms = 150;
  auto resp = send(req);
  ASSERT_FALSE(resp.is_ok());
  EXPECT_EQ(resp.status().code(), Code::kTimeout) << resp.status().message();
}

TEST_F(HttpClientEcho, ABodyOverTheCapIsTooLarge) {
  HttpRequest req;
  req.url = base_ + "/big";
  req.timeout_ms = 5000;
  req.max_response_bytes = 1024;
  auto resp = send(req);
  ASSERT_FALSE(resp.is_ok());
  EXPECT_EQ(resp.status().code(), Code::kTooLarge) << resp.status().message();
  req.max_response_bytes = 64 << 10;  // exactly the body: fine
  resp = send(req);
  ASSERT_TRUE(resp.is_ok()) << resp.status().message();
  EXPECT_EQ(resp->body.size(), std::size_t{64 << 10});
}

TEST(HttpClient, ARefusedConnectionIsUnavailable) {
  // A port a server just gave back: nothing listens there.
  auto s = http::Server::start({}, [](const http::Request&) { return http::Response{}; });
  ASSERT_TRUE(s.is_ok()) << s.status().message();
  int port = (*s)->port();
  (*s)->stop();
  HttpRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port) + "/";
  req.timeout_ms = 5000;
  auto resp = send(req);
  ASSERT_FALSE(resp.is_ok());
  EXPECT_EQ(resp.status().code(), Code::kUnavailable) << resp.status().message();
}

TEST(HttpClient, BadSchemeUrlAndTimeoutAreInvalidArguments) {
  HttpRequest req;
  req.url = "ftp://127.0.0.1/file";
  EXPECT_EQ(send(req).status().code(), Code::kInvalidArgument);
  req.url = "file:///etc/passwd";
  EXPECT_EQ(send(req).status().code(), Code::kInvalidArgument);
  req.url = "http://127.0.0.1:1/";
  req.timeout_ms = 0;
  EXPECT_EQ(send(req).status().code(), Code::kInvalidArgument);
  req.timeout_ms = 1000;
  req.method = "";
  EXPECT_EQ(send(req).status().code(), Code::kInvalidArgument);
}

TEST(HttpClient, BackoffStaysWithinItsBoundsAndRetryAfterWins) {
  std::mt19937_64 rng(42);
  for (int retry = 1; retry <= 12; ++retry) {
    int64_t ceiling = std::min<int64_t>(1000, int64_t{100} << (retry - 1));
    for (int i = 0; i < 200; ++i) {
      int64_t d = backoff_ms(retry, 100, 1000, std::nullopt, rng);
      EXPECT_GE(d, 50) << "retry " << retry;
      EXPECT_LE(d, ceiling) << "retry " << retry;
    }
  }
  EXPECT_EQ(backoff_ms(1, 100, 1000, 5000, rng), 5000);  // a longer Retry-After wins
  int64_t d = backoff_ms(3, 100, 1000, 1, rng);         // a shorter one does not
  EXPECT_GE(d, 50);
  EXPECT_LE(d, 400);
  EXPECT_GE(backoff_ms(0, 100, 1000, std::nullopt, rng), 50);  // retry < 1 counts as 1

  EXPECT_TRUE(is_retryable_status(429));
  EXPECT_TRUE(is_retryable_status(500));
  EXPECT_TRUE(is_retryable_status(502));
  EXPECT_TRUE(is_retryable_status(503));
  EXPECT_TRUE(is_retryable_status(504));
  EXPECT_FALSE(is_retryable_status(501));
  EXPECT_FALSE(is_retryable_status(505));
  EXPECT_FALSE(is_retryable_status(404));
  EXPECT_FALSE(is_retryable_status(400));
  EXPECT_FALSE(is_retryable_status(200));
}

}  // namespace
}  // namespace baton::net
