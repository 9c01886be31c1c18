// The chaos suite's effect sink: an external, idempotent tool (a calendar, an
// accounting package) on 127.0.0.1 that the chaos workflows' `http` steps POST
// their effects to, with `Idempotency-Key: <run>:<step>:<attempt>`.
//
// POST /v1/effects/<kind> with a JSON object body:
//   * every request is recorded (key, run, step, attempt, kind, body, status);
//   * the first request of a key applies the effect: it gets a new effect id
//     ("E-<n>") and the answer 201 {"effect_id", "applied": true, ...body};
//   * a later request of the same key applies nothing and gets the first
//     answer again with 200 and "applied": false (a duplicate delivery);
//   * a request without a well-formed key, or with a body that is not a JSON
//     object, gets 400 and is recorded as refused.
// fail_next(n) makes the next n requests answer 503 without applying anything
// (a flaky tool, one of the suite's faults); slow_next(n, ms) applies the next
// n requests as usual but answers them `ms` late (a tool whose answer is lost
// to the caller's timeout: the caller retries the same key). GET /v1/health
// answers 200.
//
// Thread-safe: handlers run on the server's threads; every accessor takes the
// same mutex and returns copies.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "common/util/status.h"

namespace baton::chaos {

// One request the sink received.
struct SinkRequest {
  std::string key;  // Idempotency-Key as sent ("" when missing)
  std::string run_id, step;
  uint32_t attempt = 0;
  std::string kind;  // <kind> of /v1/effects/<kind>
  std::string body;
  int status = 0;        // what the sink answered
  bool applied = false;  // this request applied the effect (first of its key)
  std::string effect_id;  // the key's effect ("" when refused or failed)
  int64_t at_ms = 0;
};

// Splits "<run>:<step>:<attempt>" (the step may hold ':' only if the run id
// does not; run ids are hex). False when malformed.
bool parse_idempotency_key(const std::string& key, std::string* run, std::string* step, uint32_t* attempt);

class EffectSink {
 public:
  EffectSink() = default;
  ~EffectSink();
  EffectSink(const EffectSink&) = delete;
  EffectSink& operator=(const EffectSink&) = delete;

  // Serves on 127.0.0.1:<ephemeral> with `threads` handler threads.
  Status start(int threads = 4);
  void stop();
  int port() const { return server_ ? server_->port() : 0; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }

  // The next `n` effect requests answer 503 (nothing applied, nothing recorded
  // as applied; the request is still recorded with status 503).
  void fail_next(int n);
  // The next `n` effect requests are answered `delay_ms` late (applied first).
  void slow_next(int n, int delay_ms);

  std::vector<SinkRequest> requests() const;
  std::size_t request_count() const;
  std::size_t applied_count() const;

  // The handler, public for tests that call it without a socket.
  http::Response handle(const http::Request& req);

 private:
  mutable std::mutex mu_;
  std::vector<SinkRequest> requests_;
  std::map<std::string, std::string> answers_;  // key -> first answer's JSON body
  std::map<std::string, std::string> effect_ids_;
  uint64_t next_effect_ = 1;
  std::size_t applied_ = 0;
  int fail_next_ = 0;
  int slow_next_ = 0;
  int slow_ms_ = 0;
  std::unique_ptr<http::Server> server_;
};

}  // namespace baton::chaos
