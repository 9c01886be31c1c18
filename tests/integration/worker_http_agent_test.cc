// The `http` agent against a fake CRM (a real baton::http::Server on a
// loopback port that records every request): templated URL, query and body,
// header secrets (never in an error, an output or a log line), `expect`,
// output/writes by paths, the Idempotency-Key on every attempt, in-agent
// retries by the idempotency rule, Retry-After, timeouts, the task deadline,
// and config refusals. HttpTool with `args.` for the llm agent's tools.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http/http.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"
#include "workers/agents/http.h"

namespace baton::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Seen {
  http::Request req;
  int64_t steady_at = 0;
};

http::Response reply(int status, const json& body, std::map<std::string, std::string> headers = {}) {
  http::Response r;
  r.status = status;
  r.body = body.dump();
  r.headers = std::move(headers);
  return r;
}

// A fake CRM: records every request and answers with the current script
// (called with the request and its 1-based number).
class FakeCrm {
 public:
  using Script = std::function<http::Response(const http::Request&, int n)>;

  FakeCrm() {
    http::ServerOptions opts;
    opts.threads = 4;
    auto s = http::Server::start(opts, [this](const http::Request& r) {
      Script script;
      int n = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        seen_.push_back({r, steady_ms()});
        n = static_cast<int>(seen_.size());
        script = script_;
      }
      return script ? script(r, n) : reply(200, json::object());
    });
    EXPECT_TRUE(s.is_ok()) << s.status().message();
    if (s) server_ = std::move(s).value();
  }
  ~FakeCrm() {
    if (server_) server_->stop();
  }

  void respond(Script s) {
    std::lock_guard<std::mutex> lock(mu_);
    script_ = std::move(s);
  }
  std::vector<Seen> seen() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  std::size_t count() const { return seen().size(); }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server_ ? server_->port() : 0) + path;
  }

 private:
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
  Script script_;
  std::unique_ptr<http::Server> server_;
};

baton::v1::Task task(const std::string& key = "run-7:sync:3", int64_t deadline = 0) {
  baton::v1::Task t;
  t.set_run_id("run-7");
  t.set_step_id("sync");
  t.set_attempt(3);
  t.set_idempotency_key(key);
  t.set_deadline_unix_ms(deadline);
  return t;
}

AgentPtr make(const json& cfg) {
  auto a = make_http_agent(cfg);
  EXPECT_TRUE(a.is_ok()) << a.status().message();
  return a ? std::move(a).value() : nullptr;
}

AgentOutput run(Agent& a, const json& input = json::object(), const baton::v1::Task& t = task(),
                const json& record = json::object()) {
  OwnedInput in(t, input, json::object(), record);
  return a.execute(in.view());
}

std::string refusal(const json& cfg) {
  auto a = make_http_agent(cfg);
  EXPECT_FALSE(a.is_ok()) << "accepted: " << cfg.dump();
  if (a) return "";
  EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
  return a.status().message();
}

TEST(HttpAgent, UrlValuesArePercentEncodedAndBodyLeavesKeepTheirTypes) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int) { return reply(201, {{"data", {{"id", "N-1"}}}}); });
  auto a = make({{"method", "post"},
                 {"url", crm.url("/v1/contacts/{{input.contact_id}}/notes")},
                 {"query", {{"source", "{{input.source}}"}, {"n", "{{input.n}}"}}},
                 {"headers", {{"X-Tenant", "acme-{{record.region}}"}}},
                 {"body",
                  {{"text", "Call {{input.name}} back"},
                   {"contact", "{{input.contact}}"},
                   {"amount", "{{ input.amount }}"},
                   {"tags", json::array({"{{input.tag}}", "fixed"})},
                   {"urgent", true},
                   {"owner", "{{record.owner}}"}}},
                 {"expect", "201"}});
  ASSERT_TRUE(a);
  json input = {{"contact_id", "a/b?c d#e"},
                {"source", "web & mail=1"},
                {"n", 3},
                {"name", "Ada"},
                {"contact", {{"email", "ada@example.com"}, {"id", 7}}},
                {"amount", 12.5},
                {"tag", "vip"}};
  AgentOutput out = run(*a, input, task(), {{"owner", "sam"}, {"region", "eu"}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_code << ": " << out.error_message;
  EXPECT_EQ(out.output, json({{"status", 201}, {"body", {{"data", {{"id", "N-1"}}}}}}));

  auto seen = crm.seen();
  ASSERT_EQ(seen.size(), 1u);
  const http::Request& r = seen[0].req;
  EXPECT_EQ(r.method, "POST");
  // '/', '?', ' ' and '#' stay inside the segment: the path keeps its shape.
  EXPECT_EQ(r.path, "/v1/contacts/a%2Fb%3Fc%20d%23e/notes");
  EXPECT_EQ(r.query.at("source"), "web & mail=1");
  EXPECT_EQ(r.query.at("n"), "3");
  EXPECT_NE(r.target.find("source=web%20%26%20mail%3D1"), std::string::npos) << r.target;
  EXPECT_EQ(r.headers.at("x-tenant"), "acme-eu");
  EXPECT_EQ(r.headers.at("idempotency-key"), "run-7:sync:3");
  EXPECT_EQ(r.headers.at("user-agent").rfind("baton/", 0), 0u) << r.headers.at("user-agent");
  EXPECT_EQ(r.headers.at("content-type"), "application/json");
  json body = json::parse(r.body);
  EXPECT_EQ(body, json({{"text", "Call Ada back"},
                        {"contact", {{"email", "ada@example.com"}, {"id", 7}}},
                        {"amount", 12.5},
                        {"tags", json::array({"vip", "fixed"})},
                        {"urgent", true},
                        {"owner", "sam"}}));
}

TEST(HttpAgent, AStringBodyIsSentAsRenderedAndATextAnswerIsKeptAsText) {
  FakeCrm crm;
  crm.respond([](const http::Request& r, int) {
    http::Response resp;
    resp.content_type = "text/plain";
    resp.body = "got: " + r.body;
    return resp;
  });
  auto a = make({{"method", "PUT"},
                 {"url", crm.url("/v1/memo")},
                 {"headers", {{"Content-Type", "text/plain"}}},
                 {"body", "memo for {{input.name}}"}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, {{"name", "Ada"}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, json({{"status", 200}, {"body", "got: memo for Ada"}}));
  ASSERT_EQ(crm.count(), 1u);
  EXPECT_EQ(crm.seen()[0].req.headers.at("content-type"), "text/plain");

  // A string body that is one {{path}} to an object: that object's JSON.
  auto whole = make({{"method", "POST"}, {"url", crm.url("/v1/raw")}, {"body", "{{input.payload}}"}});
  ASSERT_TRUE(whole);
  out = run(*whole, {{"payload", {{"a", 1}, {"b", json::array({true})}}}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  ASSERT_EQ(crm.count(), 2u);
  EXPECT_EQ(json::parse(crm.seen()[1].req.body), json({{"a", 1}, {"b", json::array({true})}}));
  EXPECT_EQ(crm.seen()[1].req.headers.at("content-type"), "application/json");
}

TEST(HttpAgent, OutputAndWritesAreMappedByPaths) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int) {
    return reply(201, {{"data", {{"id", "N-42"}, {"tags", json::array({"x", "y"})}, {"score", 0.75}}}},
                 {{"ETag", "\"v7\""}});
  });
  auto a = make({{"method", "POST"},
                 {"url", crm.url("/v1/notes")},
                 {"body", {{"text", "hi"}}},
                 {"output",
                  {{"id", "body.data.id"},
                   {"code", "status"},
                   {"etag", "headers.ETag"},
                   {"second_tag", "body.data.tags[1]"},
                   {"score", "body.data.score"}}},
                 {"writes", {{"crm_note_id", "body.data.id"}}}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output,
            json({{"id", "N-42"}, {"code", 201}, {"etag", "\"v7\""}, {"second_tag", "y"}, {"score", 0.75}}));
  EXPECT_EQ(out.writes, json({{"crm_note_id", "N-42"}}));

  // A path the answer does not have: bad_output naming it.
  auto missing = make({{"url", crm.url("/v1/notes")}, {"output", {{"id", "body.data.missing"}}}});
  ASSERT_TRUE(missing);
  out = run(*missing);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kBadOutput);
  EXPECT_NE(out.error_message.find("body.data.missing"), std::string::npos) << out.error_message;
  auto missing_write = make({{"url", crm.url("/v1/notes")}, {"writes", {{"id", "body.data.tags[5]"}}}});
  ASSERT_TRUE(missing_write);
  out = run(*missing_write);
  EXPECT_EQ(out.error_code, errors::kBadOutput);
  EXPECT_NE(out.error_message.find("body.data.tags[5]"), std::string::npos) << out.error_message;
}

TEST(HttpAgent, ExpectDecidesWhatSucceeds) {
  FakeCrm crm;
  crm.respond([](const http::Request& r, int) {
    return r.path == "/gone" ? reply(404, {{"error", "no such contact"}}) : reply(200, {{"ok", true}});
  });
  auto tolerant = make({{"method", "DELETE"}, {"url", crm.url("/gone")}, {"expect", json::array({200, "404"})}});
  ASSERT_TRUE(tolerant);
  AgentOutput out = run(*tolerant);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["status"], 404);

  auto strict = make({{"url", crm.url("/ok")}, {"expect", 201}});
  ASSERT_TRUE(strict);
  out = run(*strict);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "http_200");
}

TEST(HttpAgent, A404IsFailedWithTheStartOfTheBody) {
  std::string long_tail(4000, 'z');
  FakeCrm crm;
  crm.respond([&](const http::Request&, int) { return reply(404, {{"error", "contact not found"}, {"pad", long_tail}}); });
  auto a = make({{"url", crm.url("/v1/contacts/{{input.id}}")}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, {{"id", "C-9"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "http_404");
  EXPECT_EQ(out.error_message.rfind("http: GET ", 0), 0u) << out.error_message;
  EXPECT_NE(out.error_message.find("/v1/contacts/C-9"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.find("contact not found"), std::string::npos) << out.error_message;
  EXPECT_LT(out.error_message.size(), 800u);  // 512 bytes of the body, not 4 KiB
  EXPECT_EQ(crm.count(), 1u);                // a 4xx is not retried
}

class HttpAgentSecrets : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("BATON_HTTP_TEST_TOKEN", kEnvSecret, 1);
    dir_ = baton::testing::make_temp_dir("baton-http-agent");
    file_ = dir_ + "/crm.key";
    std::ofstream(file_) << kFileSecret << "\n";
    capture_ = std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    capture_->set_level(spdlog::level::trace);
    previous_ = spdlog::default_logger();
    spdlog::set_default_logger(capture_);
  }
  void TearDown() override {
    spdlog::set_default_logger(previous_);
    ::unsetenv("BATON_HTTP_TEST_TOKEN");
    baton::testing::remove_tree(dir_);
  }

  json config(const std::string& url) const {
    return {{"url", url},
            {"retries", "2"},
            {"backoff_ms", 5},
            {"headers",
             {{"Authorization", {{"env", "BATON_HTTP_TEST_TOKEN"}, {"prefix", "Bearer "}}},
              {"X-Api-Key", {{"file", file_}}},
              {"X-Tenant", "acme"}}}};
  }

  static bool clean(const std::string& text) {
    return text.find(kEnvSecret) == std::string::npos && text.find(kFileSecret) == std::string::npos;
  }

  static constexpr const char* kEnvSecret = "env-s3cret-token-123";
  static constexpr const char* kFileSecret = "file-s3cret-key-456";
  std::string dir_, file_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> capture_, previous_;
};

// A server that echoes the request headers, as some do in their errors.
http::Response echo_headers(const http::Request& r, int status) {
  json h = json::object();
  for (const auto& [k, v] : r.headers) h[k] = v;
  return reply(status, {{"you_sent", h}, {"note", std::string("token ") + r.headers.at("authorization")}});
}

TEST_F(HttpAgentSecrets, HeaderSecretsAreSentAndNeverShown) {
  FakeCrm crm;
  crm.respond([](const http::Request& r, int n) {
    if (r.path == "/denied") return echo_headers(r, 400);
    return n == 1 ? echo_headers(r, 503) : echo_headers(r, 200);  // one retry: a log line
  });
  auto a = make(config(crm.url("/v1/me")));
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  auto seen = crm.seen();
  ASSERT_EQ(seen.size(), 2u);
  for (const auto& s : seen) {
    EXPECT_EQ(s.req.headers.at("authorization"), std::string("Bearer ") + kEnvSecret);
    EXPECT_EQ(s.req.headers.at("x-api-key"), kFileSecret);
    EXPECT_EQ(s.req.headers.at("x-tenant"), "acme");
  }
  std::string dumped = out.output.dump() + out.writes.dump();
  EXPECT_TRUE(clean(dumped)) << dumped;
  EXPECT_NE(dumped.find("[redacted]"), std::string::npos) << dumped;
  EXPECT_EQ(out.output["body"]["you_sent"]["authorization"], "Bearer [redacted]");

  auto denied = make(config(crm.url("/denied")));
  ASSERT_TRUE(denied);
  out = run(*denied);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "http_400");
  EXPECT_NE(out.error_message.find("you_sent"), std::string::npos) << out.error_message;
  EXPECT_TRUE(clean(out.error_message)) << out.error_message;

  // Mapped outputs are redacted too.
  auto mapped = make([&] {
    json c = config(crm.url("/v1/me"));
    c["output"] = {{"auth", "body.you_sent.authorization"}, {"key", "body.you_sent.x-api-key"}};
    c["writes"] = {{"note", "body.note"}};
    return c;
  }());
  ASSERT_TRUE(mapped);
  out = run(*mapped);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["key"], "[redacted]");
  EXPECT_TRUE(clean(out.output.dump() + out.writes.dump())) << out.output.dump() << out.writes.dump();

  capture_->flush();
  std::string logged = log_.str();
  EXPECT_NE(logged.find("retry 1 of 2"), std::string::npos) << logged;  // the retry was logged...
  EXPECT_TRUE(clean(logged)) << logged;                                   // ...without a secret
}

TEST_F(HttpAgentSecrets, UnreadableSecretsAreRefusedByName) {
  json cfg = config("http://127.0.0.1:1/x");
  cfg["headers"]["Authorization"]["env"] = "BATON_HTTP_TEST_UNSET_TOKEN";
  std::string msg = refusal(cfg);
  EXPECT_NE(msg.find("headers.Authorization"), std::string::npos) << msg;
  EXPECT_NE(msg.find("BATON_HTTP_TEST_UNSET_TOKEN"), std::string::npos) << msg;
  EXPECT_NE(msg.find("`env`"), std::string::npos) << msg;

  cfg = config("http://127.0.0.1:1/x");
  cfg["headers"]["X-Api-Key"]["file"] = dir_ + "/absent.key";
  msg = refusal(cfg);
  EXPECT_NE(msg.find("headers.X-Api-Key"), std::string::npos) << msg;
  EXPECT_NE(msg.find("absent.key"), std::string::npos) << msg;

  cfg = config("http://127.0.0.1:1/x");
  cfg["headers"]["X-Api-Key"] = {{"file", file_}, {"env", "BATON_HTTP_TEST_TOKEN"}};
  msg = refusal(cfg);
  EXPECT_NE(msg.find("headers.X-Api-Key"), std::string::npos) << msg;

  cfg = config("http://127.0.0.1:1/x");
  cfg["headers"]["X-Api-Key"] = {{"file", file_}, {"format", "raw"}};
  msg = refusal(cfg);
  EXPECT_NE(msg.find("format"), std::string::npos) << msg;
  EXPECT_TRUE(clean(msg)) << msg;
}

TEST(HttpAgent, TheIdempotencyKeyIsTheSameOnEveryAttempt) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int n) { return n < 3 ? reply(503, {{"error", "busy"}}) : reply(200, {{"ok", 1}}); });
  auto a = make({{"url", crm.url("/v1/sync")}, {"backoff_ms", 10}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, json::object(), task("run-7:sync:3"));
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  auto seen = crm.seen();
  ASSERT_EQ(seen.size(), 3u);
  for (const auto& s : seen) EXPECT_EQ(s.req.headers.at("idempotency-key"), "run-7:sync:3");

  // A task without a key: <run>:<step>:<attempt> from its fields.
  crm.respond([](const http::Request&, int) { return reply(200, json::object()); });
  out = run(*a, json::object(), task(""));
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  seen = crm.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[3].req.headers.at("idempotency-key"), "run-7:sync:3");
}

TEST(HttpAgent, PostIsRetriedOnlyWhenTheToolHonoursTheKey) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int n) { return n == 1 ? reply(503, {{"error", "busy"}}) : reply(201, {{"id", 5}}); });
  auto once = make({{"method", "POST"}, {"url", crm.url("/v1/notes")}, {"body", {{"t", "x"}}}, {"backoff_ms", 10}});
  ASSERT_TRUE(once);
  AgentOutput out = run(*once);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "http_503");
  EXPECT_EQ(crm.count(), 1u);  // not retried here: the coordinator's retry policy decides

  FakeCrm crm2;
  crm2.respond([](const http::Request&, int n) { return n == 1 ? reply(503, {{"error", "busy"}}) : reply(201, {{"id", 5}}); });
  auto honoured = make({{"method", "POST"},
                        {"url", crm2.url("/v1/notes")},
                        {"body", {{"t", "x"}}},
                        {"backoff_ms", 10},
                        {"idempotent", "true"}});
  ASSERT_TRUE(honoured);
  out = run(*honoured);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["body"]["id"], 5);
  auto seen = crm2.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].req.headers.at("idempotency-key"), seen[1].req.headers.at("idempotency-key"));
  EXPECT_EQ(seen[0].req.body, seen[1].req.body);
}

TEST(HttpAgent, RetriesRunOutAsRetryable) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int) { return reply(502, {{"error", "bad gateway"}}); });
  auto a = make({{"url", crm.url("/v1/x")}, {"retries", 2}, {"backoff_ms", 5}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "http_502");
  EXPECT_NE(out.error_message.find("3 calls"), std::string::npos) << out.error_message;
  EXPECT_EQ(crm.count(), 3u);
}

TEST(HttpAgent, RetryAfterIsHonoured) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int n) {
    return n == 1 ? reply(429, {{"error", "slow down"}}, {{"Retry-After", "1"}}) : reply(200, {{"ok", true}});
  });
  auto a = make({{"url", crm.url("/v1/x")}, {"backoff_ms", 10}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  auto seen = crm.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_GE(seen[1].steady_at - seen[0].steady_at, 1000);
}

TEST(HttpAgent, ASlowServerTimesOut) {
  FakeCrm crm;
  crm.respond([](const http::Request&, int) {
    std::this_thread::sleep_for(600ms);
    return reply(200, json::object());
  });
  auto a = make({{"url", crm.url("/slow")}, {"timeout_ms", "100"}, {"retries", 0}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "timeout");
  EXPECT_TRUE(baton::testing::wait_until([&] { return crm.count() >= 1u; }, 5000ms));
  EXPECT_EQ(crm.count(), 1u);  // retries: 0

  auto again = make({{"url", crm.url("/slow")}, {"timeout_ms", 100}, {"retries", 1}, {"backoff_ms", 5}});
  ASSERT_TRUE(again);
  out = run(*again);
  EXPECT_EQ(out.error_code, "timeout");
  EXPECT_TRUE(baton::testing::wait_until([&] { return crm.count() == 3u; }, 5000ms,
                                         [&] { return std::to_string(crm.count()) + " requests"; }));
}

TEST(HttpAgent, NobodyListeningIsUnavailable) {
  int port = 0;
  {
    FakeCrm gone;
    port = std::stoi(gone.url("").substr(std::string("http://127.0.0.1:").size()));
  }
  auto a = make({{"url", "http://127.0.0.1:" + std::to_string(port) + "/x"}, {"retries", 0}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "unavailable");
}

TEST(HttpAgent, RetriesStopBeforeTheDeadline) {
  // A Retry-After that would pass the deadline: no second call.
  FakeCrm crm;
  crm.respond([](const http::Request&, int) { return reply(503, {{"error", "busy"}}, {{"Retry-After", "2"}}); });
  auto a = make({{"url", crm.url("/v1/x")}, {"retries", 5}, {"backoff_ms", 10}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, json::object(), task("k", wall_ms() + 1000));
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "http_503");
  EXPECT_EQ(crm.count(), 1u);

  // Plain backoff: ten retries would wait at least 10 x 200 ms (the jitter's
  // floor is half the base), so a 1.2 s deadline stops them early.
  FakeCrm busy;
  busy.respond([](const http::Request&, int) { return reply(500, {{"error", "oops"}}); });
  auto b = make({{"url", busy.url("/v1/x")}, {"retries", 10}, {"backoff_ms", 400}});
  ASSERT_TRUE(b);
  out = run(*b, json::object(), task("k", wall_ms() + 1200));
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "http_500");
  EXPECT_GE(busy.count(), 1u);
  EXPECT_LT(busy.count(), 11u);

  // A call's own timeout is cut to the deadline.
  FakeCrm slow;
  slow.respond([](const http::Request&, int) {
    std::this_thread::sleep_for(1500ms);
    return reply(200, json::object());
  });
  auto c = make({{"url", slow.url("/slow")}, {"timeout_ms", 10000}, {"retries", 3}});
  ASSERT_TRUE(c);
  out = run(*c, json::object(), task("k", wall_ms() + 300));
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "timeout");  // not the 200 that comes after 1.5 s
  EXPECT_TRUE(baton::testing::wait_until([&] { return slow.count() >= 1u; }, 5000ms));
  EXPECT_EQ(slow.count(), 1u);  // no retry: the deadline has passed

  // A deadline already past: nothing is sent.
  FakeCrm idle;
  auto d = make({{"url", idle.url("/x")}});
  ASSERT_TRUE(d);
  out = run(*d, json::object(), task("k", wall_ms() - 10));
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "timeout");
  EXPECT_EQ(idle.count(), 0u);
}

TEST(HttpAgent, AMissingTemplatePathSendsNothing) {
  FakeCrm crm;
  auto a = make({{"method", "POST"},
                 {"url", crm.url("/v1/contacts/{{input.id}}")},
                 {"body", {{"email", "{{input.email}}"}}}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, {{"id", "C-1"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("input.email"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.find("body.email"), std::string::npos) << out.error_message;
  out = run(*a, {{"email", "a@b.c"}});
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("input.id"), std::string::npos) << out.error_message;
  EXPECT_EQ(crm.count(), 0u);
}

TEST(HttpAgent, TaskDataCannotAddHeaders) {
  FakeCrm crm;
  auto a = make({{"url", crm.url("/v1/x")}, {"headers", {{"X-Name", "{{input.name}}"}}}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a, {{"name", "Ada\r\nX-Admin: yes"}});
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kTemplateError);
  EXPECT_NE(out.error_message.find("headers.X-Name"), std::string::npos) << out.error_message;
  EXPECT_EQ(crm.count(), 0u);
}

TEST(HttpAgent, ConfigRefusalsNameTheKey) {
  const std::string url = "http://127.0.0.1:1/v1/x";
  std::string m = refusal({{"url", url}, {"verb", "GET"}});
  EXPECT_NE(m.find("unknown key `verb`"), std::string::npos) << m;
  m = refusal({{"url", url}, {"method", "FETCH"}});
  EXPECT_NE(m.find("`method`"), std::string::npos) << m;
  m = refusal({{"url", "ftp://files.example.com/x"}});
  EXPECT_NE(m.find("`url`"), std::string::npos) << m;
  EXPECT_NE(m.find("http://"), std::string::npos) << m;
  m = refusal(json::object());
  EXPECT_NE(m.find("`url` is required"), std::string::npos) << m;
  ::unsetenv("BATON_HTTP_TEST_UNSET_BASE");
  m = refusal({{"url", "${BATON_HTTP_TEST_UNSET_BASE}/v1/x"}});
  EXPECT_NE(m.find("`url`"), std::string::npos) << m;
  EXPECT_NE(m.find("BATON_HTTP_TEST_UNSET_BASE"), std::string::npos) << m;
  m = refusal({{"url", "https://{{input.host}}/v1/x"}});
  EXPECT_NE(m.find("host"), std::string::npos) << m;
  m = refusal({{"url", "http://127.0.0.1:1/{{output.id}}"}});
  EXPECT_NE(m.find("output.id"), std::string::npos) << m;
  m = refusal({{"url", url}, {"headers", {{"Idempotency-Key", "mine"}}}});
  EXPECT_NE(m.find("headers.Idempotency-Key"), std::string::npos) << m;
  m = refusal({{"url", url}, {"headers", {{"Bad Header", "x"}}}});
  EXPECT_NE(m.find("headers.Bad Header"), std::string::npos) << m;
  m = refusal({{"url", url}, {"headers", {{"X-Version", "${BATON_HTTP_TEST_UNSET_BASE}"}}}});
  EXPECT_NE(m.find("headers.X-Version"), std::string::npos) << m;
  m = refusal({{"method", "POST"}, {"url", url}, {"body", {{"a", "{{nowhere.x}}"}}}});
  EXPECT_NE(m.find("body.a"), std::string::npos) << m;
  m = refusal({{"method", "PUT"}, {"url", url}, {"body", {{"a", "{{args.x}}"}}}});  // args. only for tools
  EXPECT_NE(m.find("args.x"), std::string::npos) << m;
  m = refusal({{"url", url}, {"expect", json::array({200, 42})}});
  EXPECT_NE(m.find("`expect`"), std::string::npos) << m;
  m = refusal({{"url", url}, {"output", {{"id", "reply.id"}}}});
  EXPECT_NE(m.find("output.id"), std::string::npos) << m;
  m = refusal({{"url", url}, {"writes", {{"id", "body..id"}}}});
  EXPECT_NE(m.find("writes.id"), std::string::npos) << m;
  m = refusal({{"url", url}, {"timeout_ms", 0}});
  EXPECT_NE(m.find("`timeout_ms`"), std::string::npos) << m;
  m = refusal({{"url", url}, {"retries", "many"}});
  EXPECT_NE(m.find("`retries`"), std::string::npos) << m;
  m = refusal({{"url", url}, {"idempotent", "perhaps"}});
  EXPECT_NE(m.find("`idempotent`"), std::string::npos) << m;
  m = refusal({{"url", url}, {"body", {{"q", "x"}}}});  // GET: no body
  EXPECT_NE(m.find("`body`"), std::string::npos) << m;
  m = refusal({{"url", "http://127.0.0.1:1/a b"}});
  EXPECT_NE(m.find("`url`"), std::string::npos) << m;

  // ${VAR} with a default, and scalars given as strings, are fine.
  ::setenv("BATON_HTTP_TEST_BASE", "http://127.0.0.1:1", 1);
  EXPECT_TRUE(make_http_agent({{"url", "${BATON_HTTP_TEST_BASE}/v1/{{input.id}}"},
                               {"headers", {{"X-Region", "${BATON_HTTP_TEST_REGION:-eu}"}}},
                               {"timeout_ms", "2500"},
                               {"retries", "0"},
                               {"expect", "204"}})
                  .is_ok());
  ::unsetenv("BATON_HTTP_TEST_BASE");
}

TEST(HttpAgent, IsABuiltInKind) {
  AgentRegistry r;
  register_builtin_agents(r);
  EXPECT_TRUE(r.contains("http"));
  EXPECT_TRUE(r.create("http", {{"url", "http://127.0.0.1:1/x"}}).is_ok());
  auto bad = r.create("http", {{"url", "gopher://x"}});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("`url`"), std::string::npos) << bad.status().message();
}

TEST(HttpTool, ToolTemplatesMayReadArgs) {
  FakeCrm crm;
  crm.respond([](const http::Request& r, int) {
    if (r.path.find("missing") != std::string::npos) return reply(404, {{"error", "no order"}});
    return reply(200, {{"order", {{"status", "shipped"}, {"id", r.query.at("id")}}}});
  });
  json cfg = {{"url", crm.url("/orders/{{args.order_id}}")},
              {"query", {{"id", "{{args.order_id}}"}, {"who", "{{input.customer}}"}}},
              {"output", {{"status", "body.order.status"}}}};
  auto refused = HttpTool::create(cfg, "llm: tools.lookup_order");
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("llm: tools.lookup_order: `url`"), std::string::npos)
      << refused.status().message();

  auto tool = HttpTool::create(cfg, "llm: tools.lookup_order", true);
  ASSERT_TRUE(tool.is_ok()) << tool.status().message();
  json scope = {{"input", {{"customer", "Ada"}}}, {"record", json::object()}, {"steps", json::object()},
                {"args", {{"order_id", "O 17"}}}};
  AgentOutput out = (*tool)->call(scope, "run-1:answer:1", 0);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, json({{"status", "shipped"}}));
  auto seen = crm.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].req.path, "/orders/O%2017");
  EXPECT_EQ(seen[0].req.query.at("id"), "O 17");
  EXPECT_EQ(seen[0].req.query.at("who"), "Ada");
  EXPECT_EQ(seen[0].req.headers.at("idempotency-key"), "run-1:answer:1");

  scope["args"]["order_id"] = "missing";
  out = (*tool)->call(scope, "run-1:answer:1", 0);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "http_404");
  EXPECT_EQ(out.error_message.rfind("llm: tools.lookup_order: GET ", 0), 0u) << out.error_message;

  // Called from several threads at once.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      json s = scope;
      s["args"]["order_id"] = "T" + std::to_string(i);
      if ((*tool)->call(s, "k" + std::to_string(i), 0).status == AgentOutput::kOk) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 4);
}

}  // namespace
}  // namespace baton::agent
