// Webhook notifications (docs/notifications.md): approval gates opened, near
// their SLA or escalated, and runs that land in the exception queue.
//
// The run transition (baton_apply) pushes one JSON item per notification onto
// the Redis list keys::notify_queue(ns), atomically with the transition. A
// Notifier is a background thread (one per coordinator process) that takes
// those items and POSTs them to the configured webhooks, at least once, never
// blocking a run:
//
//   notify ──LMOVE──▶ notify:claimed:<replica> ──POST──▶ 2xx: done
//      ▲                  │   ▲                    ├─ 5xx/429/conn error: notify:retry (zset, due ms)
//      │                  │   └──due: ZREM+RPUSH───┘
//      └── lease expired: LMOVE back (by any survivor)   4xx / attempts exhausted: notify:dead
//
// - A claimed item is first split into one delivery per matching webhook, so a
//   failing webhook never holds back (or re-sends to) the others.
// - Each replica keeps a lease in keys::notify_replicas(ns) (zset, score = lease
//   expiry ms) refreshed every poll; a survivor moves the claimed list of a
//   replica whose lease expired back to the head of the queue. A claimed list
//   with no lease entry at all is moved back once it has been seen orphaned for
//   a whole lease.
// - Each attempt's outcome is XADDed to the run's audit stream (kind
//   notification_sent | notification_failed, actor "notifier") in the same
//   MULTI as the state change it causes.
// - Header values and the webhook URL (Slack's holds its secret) are never
//   logged or audited; errors name the webhook only.
//
// Delivery is at least once: a crash after a POST and before its commit, or a
// replica that stalls longer than its lease, re-sends. Receivers can dedupe on
// the Idempotency-Key header (the item id).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/redis/client.h"
#include "common/util/status.h"

namespace baton::coordinator {

// The events an item may carry.
inline constexpr const char* kNotifyEvents[] = {"gate_opened", "gate_sla_near", "gate_escalated", "exception"};

enum class WebhookFormat {
  kGeneric,  // the item itself plus {"webhook": name}
  kSlack,    // Slack incoming-webhook JSON: {"text": ..., "blocks": [...]}
};

struct WebhookConfig {
  std::string name;  // unique; the only thing logs and the audit say about a webhook
  std::string url;   // http:// (${ENV} expanded; may hold a secret: never logged)
  WebhookFormat format = WebhookFormat::kGeneric;
  std::vector<std::string> events;  // empty: every event
  std::vector<std::string> groups;  // empty: no filter; else gate events of these groups only
  std::map<std::string, std::string> headers;  // ${ENV} expanded; never logged or audited
  std::string console_url;  // optional: links to the run ("{run_id}" is replaced, else /runs/<id> appended)
  int timeout_ms = 5000;    // one POST, connect to last byte
};

// Reads the notifications config (YAML, docs/notifications.md). Errors are
// kInvalidArgument "file:line:col: message" (never quoting an expanded
// value); an unset ${VAR} is an error. https:// URLs are refused (the
// built-in client speaks plain HTTP: put a TLS-terminating proxy in between).
Result<std::vector<WebhookConfig>> load_webhooks(const std::string& path);

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
// load_webhooks on text; `file` names it in errors; `env` defaults to getenv.
Result<std::vector<WebhookConfig>> parse_webhooks(std::string_view text, const std::string& file,
                                                  const EnvLookup& env = {});

// Whether `item` goes to `w`: its event is in w.events (or w.events is empty)
// and, for gate events, its group is in w.groups (or w.groups is empty).
// Exception items ignore the group filter. Pure; never throws.
bool webhook_matches(const WebhookConfig& w, const nlohmann::json& item);

// The request body for one item and webhook. Pure; never throws.
std::string render_notification(const WebhookConfig& w, const nlohmann::json& item);

// Delay before the next attempt after failed attempt `attempt` (1-based):
// base * 2^(attempt-1) capped at max_ms, scaled by `jitter_draw` in
// [1 - jitter, 1 + jitter] (jitter_draw is uniform in [0, 1)). Pure.
int64_t notify_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double jitter, double jitter_draw);

// A Retry-After header value (delta-seconds or an HTTP-date) in ms from
// `now_ms`; nullopt when absent or malformed. Never negative.
std::optional<int64_t> parse_retry_after_ms(std::string_view value, int64_t now_ms);

struct NotifierOptions {
  std::string ns;
  redis::Endpoint redis;
  std::string replica_id;  // unique per live process; empty: random. A stable id (the pod name) lets a
                           // restarted replica resume its own claimed list at once instead of after a lease.
  int poll_ms = 200;       // idle wait between polls
  int lease_ms = 60000;    // a replica silent this long is presumed dead; its claimed items are re-queued
  int max_attempts = 8;    // attempts per delivery before it is dead-lettered
  int64_t base_backoff_ms = 1000;
  int64_t max_backoff_ms = 300000;
  int64_t max_retry_after_ms = 3600000;  // a longer Retry-After is clamped to this
  double jitter = 0.2;                   // +-20% on each backoff (0: none)
  int batch = 32;                        // items claimed per poll
  std::function<int64_t()> clock;        // unix ms (due times, leases); empty: the system clock
};

struct NotifierStats {
  uint64_t sent = 0;              // 2xx answers
  uint64_t failed_attempts = 0;   // attempts that did not get a 2xx
  uint64_t retries_scheduled = 0;
  uint64_t dead = 0;              // entries pushed to notify:dead
  uint64_t recovered = 0;         // entries moved back from a dead or orphaned replica
  uint64_t polls = 0;             // loop iterations that reached Redis
  uint64_t redis_errors = 0;
};

class Notifier {
 public:
  Notifier(NotifierOptions opts, std::vector<WebhookConfig> webhooks);
  ~Notifier();  // stop()
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // Starts the delivery thread (it owns its own Redis connection, connecting
  // and reconnecting with backoff: Redis being away is not an error here).
  // kInvalidArgument for bad options or duplicate webhook names,
  // kAlreadyExists when started twice.
  Status start();
  // Asks the thread to stop and joins it. Returns after the POST in flight, if
  // any (bounded by its timeout_ms), and the Redis call in flight; then hands
  // the entries this replica had claimed back to the head of the queue and
  // drops its lease (three Redis calls, best effort: on failure the lease
  // expires instead). Undelivered items stay in Redis for this or another
  // replica. Idempotent; any thread but the delivery thread.
  void stop();

  const std::string& replica_id() const { return opts_.replica_id; }
  NotifierStats stats() const;

 private:
  struct Impl;
  void run();

  NotifierOptions opts_;
  std::vector<WebhookConfig> webhooks_;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool started_ = false;
};

}  // namespace baton::coordinator
