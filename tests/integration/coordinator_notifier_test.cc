// Webhook notifications (coordinator/notifier.h): the config file, the Slack
// and generic bodies, the filters, and the delivery thread against a real
// redis-server and a local HTTP receiver (baton::http::Server on loopback):
// delivery and audit, retries on 5xx, Retry-After on 429, dead letters on 4xx
// and exhausted retries, a receiver that comes up late, the lease of a dead
// replica and of an orphaned claim, two replicas sharing the queue, Redis
// restarting under the notifier, and a prompt stop() that leaves the work in
// Redis. Time-dependent cases use a manual clock: they assert order and
// attempt counts, not timing.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/ids.h"
#include "common/util/keys.h"
#include "coordinator/notifier.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::coordinator {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using baton::testing::wait_until;

constexpr const char* kNs = "ntest";

// ---- config -------------------------------------------------------------------

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(NotifierConfigTest, ParsesAGoodFileAndExpandsTheEnvironment) {
  const std::string text =
      "webhooks:\n"
      "  - name: sales-slack\n"
      "    url: http://127.0.0.1:9999/hook/${HOOK_PATH}\n"
      "    format: slack\n"
      "    events: [gate_opened, gate_sla_near, exception]\n"
      "    groups: [sales-managers]\n"
      "    headers: { X-Token: \"${SLACK_TOKEN}\", X-Plain: \"a $${LITERAL} b\" }\n"
      "    console_url: http://localhost:8080/\n"
      "  - name: ops\n"
      "    url: http://ops.internal/notify\n"
      "    timeout_ms: 2500\n";
  auto r = parse_webhooks(text, "notify.yaml", fake_env({{"SLACK_TOKEN", "tok-123"}, {"HOOK_PATH", "T1/B2"}}));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  const WebhookConfig& s = (*r)[0];
  EXPECT_EQ(s.name, "sales-slack");
  EXPECT_EQ(s.url, "http://127.0.0.1:9999/hook/T1/B2");
  EXPECT_EQ(s.format, WebhookFormat::kSlack);
  EXPECT_EQ(s.events, (std::vector<std::string>{"gate_opened", "gate_sla_near", "exception"}));
  EXPECT_EQ(s.groups, (std::vector<std::string>{"sales-managers"}));
  EXPECT_EQ(s.headers.at("X-Token"), "tok-123");
  EXPECT_EQ(s.headers.at("X-Plain"), "a ${LITERAL} b");
  EXPECT_EQ(s.console_url, "http://localhost:8080");
  EXPECT_EQ(s.timeout_ms, 5000);
  const WebhookConfig& o = (*r)[1];
  EXPECT_EQ(o.format, WebhookFormat::kGeneric);
  EXPECT_TRUE(o.events.empty());
  EXPECT_TRUE(o.groups.empty());
  EXPECT_EQ(o.timeout_ms, 2500);
}

TEST(NotifierConfigTest, LoadsAFileFromDiskWithTheProcessEnvironment) {
  std::string dir = baton::testing::make_temp_dir("baton-notify-config");
  std::string path = dir + "/notify.yaml";
  {
    std::ofstream f(path);
    f << "webhooks:\n  - name: a\n    url: http://127.0.0.1:1/x\n    headers: {Authorization: \"Bearer ${BATON_TEST_NOTIFY_TOKEN}\"}\n";
  }
  ::setenv("BATON_TEST_NOTIFY_TOKEN", "from-env", 1);
  auto r = load_webhooks(path);
  ::unsetenv("BATON_TEST_NOTIFY_TOKEN");
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].headers.at("Authorization"), "Bearer from-env");

  auto missing = load_webhooks(dir + "/nope.yaml");
  EXPECT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("nope.yaml"), std::string::npos);
  baton::testing::remove_tree(dir);
}

TEST(NotifierConfigTest, RefusesBadInputsWithFileLineAndColumn) {
  struct Case {
    std::string yaml;
    std::string want;  // the expected "file:line:col: ..." prefix and a word of the reason
    std::string reason;
  };
  const std::vector<Case> cases = {
      {"", "n.yaml:1:1:", "empty"},
      {"webhooks: [\n", "n.yaml:", "syntax"},
      {"hooks: []\n", "n.yaml:1:1:", "unknown key `hooks`"},
      {"webhooks: 3\n", "n.yaml:1:11:", "must be a list"},
      {"webhooks:\n  - name: a\n", "n.yaml:2:5:", "needs a `url`"},
      {"webhooks:\n  - url: http://x/\n", "n.yaml:2:5:", "needs a `name`"},
      {"webhooks:\n  - name: a\n    url: https://hooks.slack.com/services/T/B/C\n", "n.yaml:3:10:", "https"},
      {"webhooks:\n  - name: a\n    url: ftp://x/\n", "n.yaml:3:10:", "http:// URL"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    format: teams\n", "n.yaml:4:13:", "slack or generic"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    events: [gate_opened, gate_closed]\n", "n.yaml:4:27:",
       "unknown event `gate_closed`"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    events: []\n", "n.yaml:4:13:", "empty"},
      {"webhooks:\n  - name: a\n    url: http://x/\n  - name: a\n    url: http://y/\n", "n.yaml:4:5:",
       "duplicate webhook name `a` (first at line 2)"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    url: http://y/\n", "n.yaml:4:5:", "duplicate key `url`"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    colour: red\n", "n.yaml:4:5:", "unknown key `colour`"},
      {"webhooks:\n  - name: a\n    url: http://x/${NOPE}\n", "n.yaml:3:10:", "NOPE is not set"},
      {"webhooks:\n  - name: a\n    url: http://x/${OPEN\n", "n.yaml:3:10:", "unterminated"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    headers: {Content-Length: 3}\n", "n.yaml:4:15:",
       "`Content-Length`"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    headers: [a]\n", "n.yaml:4:14:", "must be a map"},
      {"webhooks:\n  - name: a\n    url: http://x/\n    timeout_ms: fast\n", "n.yaml:4:17:", "timeout_ms"},
      {"webhooks:\n  - name: a b\n    url: http://x/\n", "n.yaml:2:11:", "`name`"},
  };
  for (const auto& c : cases) {
    auto r = parse_webhooks(c.yaml, "n.yaml", fake_env({}));
    ASSERT_FALSE(r.is_ok()) << c.yaml;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    const std::string& m = r.status().message();
    EXPECT_EQ(m.rfind(c.want, 0), 0u) << "yaml:\n" << c.yaml << "message: " << m;
    EXPECT_NE(m.find(c.reason), std::string::npos) << "yaml:\n" << c.yaml << "message: " << m;
  }
}

TEST(NotifierConfigTest, ErrorsNeverQuoteAnExpandedSecret) {
  auto r = parse_webhooks("webhooks:\n  - name: a\n    url: ${HOOK}\n", "n.yaml",
                          fake_env({{"HOOK", "https://hooks.example/s3cr3t-path"}}));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message().find("s3cr3t"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("https is not supported"), std::string::npos);
}

// ---- rendering and filters ------------------------------------------------------------

json gate_item(const std::string& run, const std::string& event = "gate_opened",
               const std::string& group = "sales-managers") {
  return {{"id", run + ":" + event + ":approve_partial:1"},
          {"event", event},
          {"run_id", run},
          {"workflow", "lead-to-meeting"},
          {"version", 1},
          {"step", "approve_partial"},
          {"group", group},
          {"kind", "approval"},
          {"at_ms", 1763790000000},
          {"due_ms", 1763804400000},
          {"record_key", "lead:L-1"}};
}

json exception_item(const std::string& run) {
  return {{"id", run + ":exception:qualify:1"},
          {"event", "exception"},
          {"run_id", run},
          {"workflow", "lead-to-meeting"},
          {"version", 1},
          {"step", "qualify"},
          {"reason", "no_route"},
          {"detail", "score 0.2 < 0.4 & no <else>"},
          {"at_ms", 1763790000000}};
}

WebhookConfig hook(const std::string& name, const std::string& url, WebhookFormat f = WebhookFormat::kGeneric) {
  WebhookConfig w;
  w.name = name;
  w.url = url;
  w.format = f;
  w.timeout_ms = 2000;
  return w;
}

TEST(NotifierRenderTest, SlackBodyHasTextBlocksAndAConsoleLink) {
  WebhookConfig w = hook("s", "http://x/", WebhookFormat::kSlack);
  w.console_url = "http://localhost:8080";
  json body = json::parse(render_notification(w, gate_item("run-1")));
  ASSERT_TRUE(body.contains("text"));
  const std::string text = body["text"];
  EXPECT_NE(text.find("Approval needed"), std::string::npos) << text;
  EXPECT_NE(text.find("sales-managers"), std::string::npos) << text;
  EXPECT_NE(text.find("lead-to-meeting* v1"), std::string::npos) << text;
  EXPECT_NE(text.find("`approve_partial`"), std::string::npos) << text;
  EXPECT_NE(text.find("lead:L-1"), std::string::npos) << text;
  EXPECT_NE(text.find("<!date^1763804400^"), std::string::npos) << text;
  EXPECT_NE(text.find("2025-11-22 09:40 UTC"), std::string::npos) << text;
  EXPECT_NE(text.find("<http://localhost:8080/runs/run-1|Open the run>"), std::string::npos) << text;
  ASSERT_TRUE(body["blocks"].is_array());
  EXPECT_EQ(body["blocks"][0]["type"], "section");
  EXPECT_EQ(body["blocks"][0]["text"]["type"], "mrkdwn");
  EXPECT_EQ(body["blocks"][1]["elements"][0]["url"], "http://localhost:8080/runs/run-1");

  // Exceptions: reason and detail, with Slack's control characters escaped.
  json ex = json::parse(render_notification(w, exception_item("run-2")));
  const std::string et = ex["text"];
  EXPECT_NE(et.find("exception queue"), std::string::npos) << et;
  EXPECT_NE(et.find("`no_route`"), std::string::npos) << et;
  EXPECT_NE(et.find("0.2 &lt; 0.4 &amp; no &lt;else&gt;"), std::string::npos) << et;

  // A {run_id} placeholder in console_url is honoured; no console: no link.
  w.console_url = "http://console/#/run/{run_id}/timeline";
  json p = json::parse(render_notification(w, gate_item("r9", "gate_sla_near")));
  EXPECT_NE(p["text"].get<std::string>().find("<http://console/#/run/r9/timeline|"), std::string::npos);
  EXPECT_NE(p["text"].get<std::string>().find("SLA near"), std::string::npos);
  w.console_url.clear();
  json nl = json::parse(render_notification(w, gate_item("r9", "gate_escalated")));
  EXPECT_EQ(nl["text"].get<std::string>().find("Open the run"), std::string::npos);
  EXPECT_EQ(nl["blocks"].size(), 1u);
  EXPECT_NE(nl["text"].get<std::string>().find("escalated"), std::string::npos);
}

TEST(NotifierRenderTest, GenericBodyIsTheItemPlusTheWebhookName) {
  WebhookConfig w = hook("ops", "http://x/");
  json item = exception_item("run-3");
  json body = json::parse(render_notification(w, item));
  json want = item;
  want["webhook"] = "ops";
  EXPECT_EQ(body, want);
}

TEST(NotifierRenderTest, EventAndGroupFilters) {
  WebhookConfig all = hook("all", "http://x/");
  WebhookConfig gates = hook("gates", "http://x/");
  gates.events = {"gate_opened", "gate_escalated"};
  WebhookConfig sales = hook("sales", "http://x/");
  sales.groups = {"sales-managers"};

  EXPECT_TRUE(webhook_matches(all, gate_item("r")));
  EXPECT_TRUE(webhook_matches(all, exception_item("r")));
  EXPECT_TRUE(webhook_matches(gates, gate_item("r")));
  EXPECT_FALSE(webhook_matches(gates, gate_item("r", "gate_sla_near")));
  EXPECT_FALSE(webhook_matches(gates, exception_item("r")));
  EXPECT_TRUE(webhook_matches(sales, gate_item("r")));
  EXPECT_FALSE(webhook_matches(sales, gate_item("r", "gate_opened", "finance")));
  EXPECT_TRUE(webhook_matches(sales, exception_item("r")));  // groups filter gate events only
  json no_group = gate_item("r");
  no_group.erase("group");
  EXPECT_FALSE(webhook_matches(sales, no_group));
}

TEST(NotifierRenderTest, BackoffAndRetryAfter) {
  EXPECT_EQ(notify_backoff_ms(1, 1000, 300000, 0, 0.5), 1000);
  EXPECT_EQ(notify_backoff_ms(2, 1000, 300000, 0, 0.5), 2000);
  EXPECT_EQ(notify_backoff_ms(4, 1000, 300000, 0, 0.5), 8000);
  EXPECT_EQ(notify_backoff_ms(30, 1000, 300000, 0, 0.5), 300000);
  EXPECT_EQ(notify_backoff_ms(3, 1000, 300000, 0.2, 0.0), 3200);
  EXPECT_EQ(notify_backoff_ms(3, 1000, 300000, 0.2, 1.0), 4800);

  EXPECT_EQ(parse_retry_after_ms("1", 0), 1000);
  EXPECT_EQ(parse_retry_after_ms(" 120 ", 0), 120000);
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 s.
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111777000LL - 5000), 5000);
  EXPECT_EQ(parse_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", 784111777000LL + 5000), 0);
  EXPECT_FALSE(parse_retry_after_ms("soon", 0).has_value());
  EXPECT_FALSE(parse_retry_after_ms("", 0).has_value());
  EXPECT_FALSE(parse_retry_after_ms("-3", 0).has_value());
}

// ---- delivery -----------------------------------------------------------------------

// A local HTTP receiver: records every request; answers each path from a
// script (one response per request, then 200).
class Receiver {
 public:
  struct Got {
    std::string path;
    std::string body;
    std::map<std::string, std::string> headers;
    int answered = 0;
  };

  explicit Receiver(int port = 0) { EXPECT_TRUE(start(port)); }
  ~Receiver() { stop(); }

  bool start(int port) {
    http::ServerOptions so;
    so.port = port;
    auto s = http::Server::start(so, [this](const http::Request& req) { return handle(req); });
    if (!s) {
      ADD_FAILURE() << s.status().to_string();
      return false;
    }
    server_ = std::move(s).value();
    port_ = server_->port();
    return true;
  }
  void stop() {
    if (server_) server_->stop();
    server_.reset();
  }
  int port() const { return port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

  void script(const std::string& path, std::vector<http::Response> responses) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& r : responses) scripts_[path].push_back(std::move(r));
  }
  std::vector<Got> got(const std::string& path = "") const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Got> out;
    for (const auto& g : got_) {
      if (path.empty() || g.path == path) out.push_back(g);
    }
    return out;
  }
  std::size_t count(const std::string& path = "") const { return got(path).size(); }
  std::size_t ok_count(const std::string& path = "") const {
    std::size_t n = 0;
    for (const auto& g : got(path)) n += g.answered == 200;
    return n;
  }

 private:
  http::Response handle(const http::Request& req) {
    std::lock_guard<std::mutex> lock(mu_);
    http::Response resp;
    resp.body = "ok";
    resp.content_type = "text/plain";
    auto it = scripts_.find(req.path);
    if (it != scripts_.end() && !it->second.empty()) {
      resp = it->second.front();
      it->second.erase(it->second.begin());
    }
    got_.push_back({req.path, req.body, req.headers, resp.status});
    return resp;
  }

  mutable std::mutex mu_;
  std::map<std::string, std::vector<http::Response>> scripts_;
  std::vector<Got> got_;
  std::unique_ptr<http::Server> server_;
  int port_ = 0;
};

http::Response answer(int status, const std::string& body = "", std::map<std::string, std::string> headers = {}) {
  http::Response r;
  r.status = status;
  r.body = body;
  r.content_type = "text/plain";
  r.headers = std::move(headers);
  return r;
}

struct AuditEntry {
  std::string kind, actor, at;
  json detail;
};

class NotifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.ok());
    auto ep = redis::parse_endpoint(redis_.address());
    ASSERT_TRUE(ep.is_ok());
    ep_ = *ep;
    auto c = redis::Client::connect(ep_);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    client_ = std::move(c).value();
  }

  NotifierOptions options() {
    NotifierOptions o;
    o.ns = kNs;
    o.redis = ep_;
    o.poll_ms = 20;
    o.lease_ms = 60000;
    o.base_backoff_ms = 20;
    o.max_backoff_ms = 200;
    o.jitter = 0;
    return o;
  }
  NotifierOptions manual_options() {
    NotifierOptions o = options();
    o.clock = [this] { return clock_.load(); };
    return o;
  }

  void push(const json& item) {
    auto r = client_->command({"RPUSH", keys::notify_queue(kNs), item.dump()});
    ASSERT_TRUE(r.is_ok());
  }
  long long llen(const std::string& key) {
    auto r = client_->command({"LLEN", key});
    return r ? r->integer : -1;
  }
  long long zcard(const std::string& key) {
    auto r = client_->command({"ZCARD", key});
    return r ? r->integer : -1;
  }
  std::vector<std::string> lrange(const std::string& key) {
    std::vector<std::string> out;
    auto r = client_->command({"LRANGE", key, "0", "-1"});
    if (r) {
      for (const auto& e : r->elements) out.push_back(e.str);
    }
    return out;
  }
  std::vector<AuditEntry> audit(const std::string& run) {
    std::vector<AuditEntry> out;
    auto r = client_->command({"XRANGE", keys::run_audit(kNs, run), "-", "+"});
    if (!r) return out;
    for (const auto& e : r->elements) {
      AuditEntry a;
      const auto& f = e.elements[1].elements;
      for (std::size_t i = 0; i + 1 < f.size(); i += 2) {
        if (f[i].str == "kind") a.kind = f[i + 1].str;
        if (f[i].str == "actor") a.actor = f[i + 1].str;
        if (f[i].str == "at") a.at = f[i + 1].str;
        if (f[i].str == "detail") a.detail = json::parse(f[i + 1].str);
      }
      out.push_back(std::move(a));
    }
    return out;
  }
  std::string describe_audit(const std::string& run) {
    std::string s;
    for (const auto& a : audit(run)) s += a.kind + " " + a.detail.dump() + "; ";
    return s;
  }
  // Waits for `n` more completed polls of `n` (so a negative check has given
  // the notifier real chances to act).
  ::testing::AssertionResult polls_pass(Notifier& n, uint64_t more = 5) {
    uint64_t target = n.stats().polls + more;
    return wait_until([&] { return n.stats().polls >= target; }, 10s,
                      [&] { return "polls " + std::to_string(n.stats().polls); });
  }

  testing::RedisServer redis_;
  redis::Endpoint ep_;
  std::unique_ptr<redis::Client> client_;
  std::atomic<int64_t> clock_{1763790000000};
};

TEST_F(NotifierTest, DeliversToMatchingWebhooksAndAuditsEachAttempt) {
  Receiver rx;
  WebhookConfig slack = hook("sales-slack", rx.url("/slack"), WebhookFormat::kSlack);
  slack.groups = {"sales-managers"};
  slack.headers = {{"X-Token", "tok-very-secret"}};
  WebhookConfig ops = hook("ops", rx.url("/ops"));
  ops.events = {"exception"};
  ops.headers = {{"Host", "hooks.example"}};  // e.g. behind a TLS-terminating proxy
  Notifier n(options(), {slack, ops});
  ASSERT_TRUE(n.start().is_ok());

  push(gate_item("run-a"));                             // slack only
  push(gate_item("run-b", "gate_opened", "finance"));   // nobody (group filter; ops wants exceptions)
  push(exception_item("run-c"));                        // both

  ASSERT_TRUE(wait_until([&] { return rx.count("/slack") == 2 && rx.count("/ops") == 1; }, 10s,
                         [&] { return std::to_string(rx.count()) + " requests"; }));
  ASSERT_TRUE(wait_until([&] { return audit("run-c").size() == 2; }, 10s, [&] { return describe_audit("run-c"); }));

  auto slack_got = rx.got("/slack");
  EXPECT_EQ(slack_got[0].headers["x-token"], "tok-very-secret");
  EXPECT_EQ(slack_got[0].headers["idempotency-key"], gate_item("run-a")["id"]);
  EXPECT_EQ(slack_got[0].headers["x-baton-event"], "gate_opened");
  EXPECT_TRUE(json::parse(slack_got[0].body).contains("blocks"));
  json ops_body = json::parse(rx.got("/ops")[0].body);
  EXPECT_EQ(ops_body["webhook"], "ops");
  EXPECT_EQ(ops_body["run_id"], "run-c");
  EXPECT_EQ(rx.got("/ops")[0].headers["host"], "hooks.example");

  auto a = audit("run-a");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, "notification_sent");
  EXPECT_EQ(a[0].actor, "notifier");
  EXPECT_FALSE(a[0].at.empty());
  EXPECT_EQ(a[0].detail, (json{{"webhook", "sales-slack"}, {"event", "gate_opened"}, {"step", "approve_partial"},
                               {"attempt", 1}, {"status", 200}}));
  std::set<std::string> hooks_c;
  for (const auto& e : audit("run-c")) {
    EXPECT_EQ(e.kind, "notification_sent");
    hooks_c.insert(e.detail["webhook"]);
  }
  EXPECT_EQ(hooks_c, (std::set<std::string>{"sales-slack", "ops"}));
  EXPECT_TRUE(audit("run-b").empty());
  EXPECT_EQ(describe_audit("run-a").find("tok-very-secret"), std::string::npos);

  EXPECT_TRUE(wait_until([&] { return llen(keys::notify_claimed(kNs, n.replica_id())) == 0; }, 5s));
  EXPECT_EQ(llen(keys::notify_queue(kNs)), 0);
  EXPECT_EQ(zcard(keys::notify_retry(kNs)), 0);
  EXPECT_EQ(llen(keys::notify_dead(kNs)), 0);
  EXPECT_EQ(n.stats().sent, 3u);
}

TEST_F(NotifierTest, RetriesAfter500sAndDeliversOnceWithoutResendingToOtherWebhooks) {
  Receiver rx;
  rx.script("/flaky", {answer(500, "boom"), answer(502)});
  Notifier n(options(), {hook("flaky", rx.url("/flaky")), hook("steady", rx.url("/steady"))});
  ASSERT_TRUE(n.start().is_ok());
  push(exception_item("run-r"));

  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/flaky") == 1; }, 10s,
                         [&] { return std::to_string(rx.count("/flaky")) + " attempts"; }));
  ASSERT_TRUE(wait_until([&] { return audit("run-r").size() == 4; }, 10s, [&] { return describe_audit("run-r"); }));
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count("/flaky"), 3u);
  EXPECT_EQ(rx.count("/steady"), 1u);  // not re-sent while the other webhook retried

  std::vector<AuditEntry> flaky;
  for (auto& e : audit("run-r")) {
    if (e.detail["webhook"] == "flaky") flaky.push_back(e);
  }
  ASSERT_EQ(flaky.size(), 3u);
  EXPECT_EQ(flaky[0].kind, "notification_failed");
  EXPECT_EQ(flaky[0].detail["attempt"], 1);
  EXPECT_EQ(flaky[0].detail["status"], 500);
  EXPECT_EQ(flaky[0].detail["error"], "HTTP 500: boom");
  EXPECT_TRUE(flaky[0].detail.contains("retry_at_ms"));
  EXPECT_EQ(flaky[1].kind, "notification_failed");
  EXPECT_EQ(flaky[1].detail["attempt"], 2);
  EXPECT_EQ(flaky[1].detail["status"], 502);
  EXPECT_EQ(flaky[2].kind, "notification_sent");
  EXPECT_EQ(flaky[2].detail["attempt"], 3);
  EXPECT_EQ(flaky[2].detail["status"], 200);
  EXPECT_EQ(rx.got("/flaky")[2].headers["x-baton-attempt"], "3");
  EXPECT_EQ(zcard(keys::notify_retry(kNs)), 0);
  EXPECT_EQ(llen(keys::notify_dead(kNs)), 0);
}

TEST_F(NotifierTest, HonoursRetryAfterOn429) {
  Receiver rx;
  rx.script("/h", {answer(429, "slow down", {{"Retry-After", "1"}})});
  Notifier n(manual_options(), {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  const int64_t t0 = clock_.load();
  push(gate_item("run-429"));

  ASSERT_TRUE(wait_until([&] { return zcard(keys::notify_retry(kNs)) == 1; }, 10s));
  auto a = audit("run-429");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, "notification_failed");
  EXPECT_EQ(a[0].detail["status"], 429);
  EXPECT_EQ(a[0].detail["retry_at_ms"], t0 + 1000);  // Retry-After, not the 20 ms backoff

  clock_ += 999;
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count("/h"), 1u);  // still waiting

  clock_ += 1;
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 1; }, 10s));
  ASSERT_TRUE(wait_until([&] { return audit("run-429").size() == 2; }, 10s));
  a = audit("run-429");
  EXPECT_EQ(a[1].kind, "notification_sent");
  EXPECT_EQ(a[1].detail["attempt"], 2);
  EXPECT_EQ(rx.count("/h"), 2u);
}

TEST_F(NotifierTest, DeadLettersA400WithoutRetrying) {
  Receiver rx;
  rx.script("/h", {answer(400, "invalid_payload")});
  Notifier n(options(), {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  push(gate_item("run-400"));

  ASSERT_TRUE(wait_until([&] { return llen(keys::notify_dead(kNs)) == 1; }, 10s));
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count("/h"), 1u);
  EXPECT_EQ(zcard(keys::notify_retry(kNs)), 0);
  json dead = json::parse(lrange(keys::notify_dead(kNs))[0]);
  EXPECT_EQ(dead["webhook"], "h");
  EXPECT_EQ(dead["status"], 400);
  EXPECT_EQ(dead["attempts"], 1);
  EXPECT_EQ(dead["item"]["run_id"], "run-400");
  auto a = audit("run-400");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, "notification_failed");
  EXPECT_EQ(a[0].detail["dead"], true);
  EXPECT_EQ(a[0].detail["error"], "HTTP 400: invalid_payload");
}

TEST_F(NotifierTest, ExhaustedRetriesAndBadItemsGoToTheDeadList) {
  Receiver rx;
  rx.script("/h", {answer(503), answer(503), answer(503), answer(503)});
  NotifierOptions o = options();
  o.max_attempts = 3;
  Notifier n(o, {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  push(exception_item("run-x"));
  ASSERT_TRUE(client_->command({"RPUSH", keys::notify_queue(kNs), "not json"}).is_ok());
  push(json{{"id", "x"}, {"event", "exception"}});  // no run_id

  ASSERT_TRUE(wait_until([&] { return llen(keys::notify_dead(kNs)) == 3; }, 10s,
                         [&] { return std::to_string(llen(keys::notify_dead(kNs))) + " dead"; }));
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count("/h"), 3u);
  auto a = audit("run-x");
  ASSERT_EQ(a.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a[i].kind, "notification_failed");
    EXPECT_EQ(a[i].detail["attempt"], i + 1);
  }
  EXPECT_EQ(a[2].detail["dead"], true);
  std::string all;
  for (const auto& d : lrange(keys::notify_dead(kNs))) all += d + "\n";
  EXPECT_NE(all.find("unreadable item"), std::string::npos) << all;
  EXPECT_NE(all.find("no `run_id`"), std::string::npos) << all;
  EXPECT_NE(all.find("\"attempts\":3"), std::string::npos) << all;
}

TEST_F(NotifierTest, AcceptsJobsOnTheQueueAndDeadLettersOnesForAWebhookNoLongerConfigured) {
  Receiver rx;
  Notifier n(options(), {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  // What a recovery hands back (or an operator replays from the dead list):
  // a delivery job, for a configured webhook and for one removed since.
  json item = exception_item("run-job");
  push(json{{"job", item["id"].get<std::string>() + "|h"}, {"item", item}, {"webhook", "h"}, {"attempt", 2}});
  push(json{{"job", item["id"].get<std::string>() + "|gone"}, {"item", item}, {"webhook", "gone"}, {"attempt", 0}});

  ASSERT_TRUE(wait_until([&] { return audit("run-job").size() == 2; }, 10s, [&] { return describe_audit("run-job"); }));
  EXPECT_EQ(rx.count("/h"), 1u);
  EXPECT_EQ(rx.got("/h")[0].headers["x-baton-attempt"], "3");
  std::map<std::string, AuditEntry> by_hook;
  for (auto& e : audit("run-job")) by_hook[e.detail["webhook"]] = e;
  EXPECT_EQ(by_hook["h"].kind, "notification_sent");
  EXPECT_EQ(by_hook["h"].detail["attempt"], 3);
  EXPECT_EQ(by_hook["gone"].kind, "notification_failed");
  EXPECT_EQ(by_hook["gone"].detail["dead"], true);
  ASSERT_EQ(llen(keys::notify_dead(kNs)), 1);
  EXPECT_EQ(json::parse(lrange(keys::notify_dead(kNs))[0])["webhook"], "gone");
}

TEST_F(NotifierTest, KeepsItemsWhileTheReceiverIsDownAndDeliversWhenItComesUp) {
  const int port = baton::testing::free_port();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/h";
  Notifier n(manual_options(), {hook("h", url)});
  ASSERT_TRUE(n.start().is_ok());
  for (int i = 0; i < 3; ++i) push(gate_item("run-down-" + std::to_string(i)));

  ASSERT_TRUE(wait_until([&] { return zcard(keys::notify_retry(kNs)) == 3; }, 10s));
  auto a = audit("run-down-0");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].kind, "notification_failed");
  EXPECT_EQ(a[0].detail["status"], 0);
  // The error names the webhook, never its URL (which may hold a secret).
  EXPECT_EQ(a[0].detail["error"].get<std::string>().find(url), std::string::npos) << a[0].detail;

  Receiver rx(port);
  clock_ += 1000;
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 3; }, 10s));
  EXPECT_EQ(llen(keys::notify_dead(kNs)), 0);
  ASSERT_TRUE(wait_until([&] { return zcard(keys::notify_retry(kNs)) == 0; }, 5s));
}

TEST_F(NotifierTest, RedeliversTheClaimOfAReplicaWhoseLeaseExpired) {
  Receiver rx;
  // A replica "fake" claimed an item (the documented protocol: lease entry,
  // then LMOVE into its claimed list) and died without acknowledging it.
  const int64_t lease = 1000;
  ASSERT_TRUE(client_->command({"ZADD", keys::notify_replicas(kNs), std::to_string(clock_.load() + lease), "fake"}).is_ok());
  push(gate_item("run-lease"));
  auto moved = client_->command({"LMOVE", keys::notify_queue(kNs), keys::notify_claimed(kNs, "fake"), "LEFT", "RIGHT"});
  ASSERT_TRUE(moved.is_ok() && moved->is_string());

  NotifierOptions o = manual_options();
  o.lease_ms = lease;
  Notifier n(o, {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count(), 0u);  // the lease still runs
  EXPECT_EQ(llen(keys::notify_claimed(kNs, "fake")), 1);

  clock_ += lease;
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 1; }, 10s));
  EXPECT_EQ(llen(keys::notify_claimed(kNs, "fake")), 0);
  EXPECT_EQ(n.stats().recovered, 1u);
  ASSERT_TRUE(wait_until(
      [&] { return client_->command({"ZSCORE", keys::notify_replicas(kNs), "fake"})->is_nil(); }, 5s));
  ASSERT_TRUE(wait_until([&] { return audit("run-lease").size() == 1; }, 5s));
  EXPECT_EQ(audit("run-lease")[0].kind, "notification_sent");
}

TEST_F(NotifierTest, RedeliversAnOrphanedClaimAfterALease) {
  Receiver rx;
  // A claim with no lease entry at all (e.g. "claim it with a fake replica id
  // and never ack").
  push(gate_item("run-orphan"));
  ASSERT_TRUE(client_->command({"LMOVE", keys::notify_queue(kNs), keys::notify_claimed(kNs, "ghost"), "LEFT", "RIGHT"})
                  .is_ok());
  NotifierOptions o = manual_options();
  o.lease_ms = 300;
  Notifier n(o, {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  EXPECT_TRUE(polls_pass(n));
  EXPECT_EQ(rx.count(), 0u);  // first seen orphaned now; it gets a whole lease
  EXPECT_EQ(llen(keys::notify_claimed(kNs, "ghost")), 1);

  clock_ += 300;
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 1; }, 10s));
  EXPECT_EQ(llen(keys::notify_claimed(kNs, "ghost")), 0);
  EXPECT_EQ(n.stats().recovered, 1u);
}

TEST_F(NotifierTest, TwoReplicasShareTheQueueAndDeliverEachItemOnce) {
  Receiver rx;
  std::vector<WebhookConfig> hooks = {hook("h", rx.url("/h"))};
  NotifierOptions o1 = options(), o2 = options();
  o1.replica_id = "r1";
  o2.replica_id = "r2";
  o1.batch = o2.batch = 4;
  Notifier n1(o1, hooks), n2(o2, hooks);
  ASSERT_TRUE(n1.start().is_ok());
  ASSERT_TRUE(n2.start().is_ok());
  constexpr int kItems = 60;
  for (int i = 0; i < kItems; ++i) push(exception_item("run-" + std::to_string(i)));

  ASSERT_TRUE(wait_until([&] { return rx.count("/h") >= kItems; }, 20s,
                         [&] { return std::to_string(rx.count("/h")) + " delivered"; }));
  EXPECT_TRUE(polls_pass(n1));
  std::set<std::string> runs;
  for (const auto& g : rx.got("/h")) runs.insert(json::parse(g.body)["run_id"]);
  EXPECT_EQ(runs.size(), static_cast<std::size_t>(kItems));
  EXPECT_EQ(rx.count("/h"), static_cast<std::size_t>(kItems));  // no lease expired: nothing sent twice
  EXPECT_EQ(n1.stats().sent + n2.stats().sent, static_cast<uint64_t>(kItems));
}

TEST_F(NotifierTest, ReconnectsWhenRedisRestarts) {
  Receiver rx;
  Notifier n(options(), {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n.start().is_ok());
  push(gate_item("run-before"));
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 1; }, 10s));

  ASSERT_TRUE(redis_.restart());
  auto c = redis::Client::connect(ep_);
  ASSERT_TRUE(c.is_ok());
  client_ = std::move(c).value();
  push(gate_item("run-after"));
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == 2; }, 15s));
  EXPECT_GE(n.stats().redis_errors, 1u);
  ASSERT_TRUE(wait_until([&] { return audit("run-after").size() == 1; }, 5s));
}

TEST_F(NotifierTest, StopReturnsPromptlyAndLeavesPendingItemsInRedis) {
  const int port = baton::testing::free_port();  // nobody listens: every POST is refused
  NotifierOptions o = options();
  o.base_backoff_ms = 600000;
  o.max_backoff_ms = 600000;
  o.batch = 4;
  auto n = std::make_unique<Notifier>(o, std::vector<WebhookConfig>{
                                             hook("h", "http://127.0.0.1:" + std::to_string(port) + "/h")});
  const std::string replica = n->replica_id();
  ASSERT_TRUE(n->start().is_ok());
  constexpr int kItems = 40;
  for (int i = 0; i < kItems; ++i) push(gate_item("run-stop-" + std::to_string(i)));
  ASSERT_TRUE(wait_until([&] { return n->stats().failed_attempts >= 1; }, 10s));

  auto stopped = std::async(std::launch::async, [&] { n->stop(); });
  ASSERT_TRUE(wait_until([&] { return stopped.wait_for(0ms) == std::future_status::ready; }, 10s,
                         [] { return std::string("stop() still running"); }));
  stopped.get();
  // Everything is still in Redis: waiting for a retry, or back in the queue
  // (raw or already split), nothing dead, nothing left in the claimed list.
  EXPECT_EQ(llen(keys::notify_claimed(kNs, replica)), 0);
  EXPECT_EQ(llen(keys::notify_dead(kNs)), 0);
  EXPECT_EQ(llen(keys::notify_queue(kNs)) + zcard(keys::notify_retry(kNs)), kItems);
  EXPECT_TRUE(client_->command({"ZSCORE", keys::notify_replicas(kNs), replica})->is_nil());
  n.reset();

  // A new replica delivers them all once the receiver is up (the retries once due).
  Receiver rx(port);
  NotifierOptions o2 = options();
  o2.clock = [] { return now_unix_ms() + 3600 * 1000; };  // an hour later: every retry is due
  Notifier n2(o2, {hook("h", rx.url("/h"))});
  ASSERT_TRUE(n2.start().is_ok());
  ASSERT_TRUE(wait_until([&] { return rx.ok_count("/h") == static_cast<std::size_t>(kItems); }, 20s,
                         [&] { return std::to_string(rx.ok_count("/h")) + " delivered"; }));
}

TEST_F(NotifierTest, StartRefusesBadOptionsAndASecondStart) {
  NotifierOptions o = options();
  o.ns.clear();
  EXPECT_EQ(Notifier(o, {}).start().code(), Code::kInvalidArgument);
  EXPECT_EQ(Notifier(options(), {hook("a", "http://x/"), hook("a", "http://y/")}).start().code(),
            Code::kInvalidArgument);
  Notifier n(options(), {});
  ASSERT_TRUE(n.start().is_ok());
  EXPECT_EQ(n.start().code(), Code::kAlreadyExists);
  n.stop();
  n.stop();  // idempotent
}

}  // namespace
}  // namespace baton::coordinator
