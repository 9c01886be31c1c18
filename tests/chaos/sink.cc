#include "tests/chaos/sink.h"

#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/util/ids.h"
#include "common/util/json.h"

namespace baton::chaos {

using nlohmann::json;

bool parse_idempotency_key(const std::string& key, std::string* run, std::string* step, uint32_t* attempt) {
  auto first = key.find(':');
  auto last = key.rfind(':');
  if (first == std::string::npos || last == first || first == 0 || last + 1 >= key.size()) return false;
  uint64_t a = 0;
  for (std::size_t i = last + 1; i < key.size(); ++i) {
    char c = key[i];
    if (c < '0' || c > '9' || a > 100000000) return false;
    a = a * 10 + static_cast<uint64_t>(c - '0');
  }
  if (a == 0) return false;
  *run = key.substr(0, first);
  *step = key.substr(first + 1, last - first - 1);
  *attempt = static_cast<uint32_t>(a);
  return !step->empty();
}

EffectSink::~EffectSink() { stop(); }

Status EffectSink::start(int threads) {
  http::ServerOptions so;
  so.host = "127.0.0.1";
  so.port = 0;
  so.threads = threads;
  auto s = http::Server::start(so, [this](const http::Request& req) { return handle(req); });
  if (!s) return s.status();
  server_ = std::move(s).value();
  return Status::ok();
}

void EffectSink::stop() {
  if (server_) server_->stop();
}

void EffectSink::fail_next(int n) {
  std::lock_guard<std::mutex> lk(mu_);
  fail_next_ += n;
}

void EffectSink::slow_next(int n, int delay_ms) {
  std::lock_guard<std::mutex> lk(mu_);
  slow_next_ += n;
  slow_ms_ = delay_ms;
}

std::vector<SinkRequest> EffectSink::requests() const {
  std::lock_guard<std::mutex> lk(mu_);
  return requests_;
}

std::size_t EffectSink::request_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return requests_.size();
}

std::size_t EffectSink::applied_count() const {
  std::lock_guard<std::mutex> lk(mu_);
  return applied_;
}

http::Response EffectSink::handle(const http::Request& req) {
  if (req.path == "/v1/health") return {200, "application/json", R"({"ok":true})", {}};
  constexpr std::string_view kPrefix = "/v1/effects/";
  if (req.path.rfind(kPrefix, 0) != 0 || req.path.size() == kPrefix.size())
    return http::json_error(404, "not_found", "unknown path " + req.path);
  if (req.method != "POST") return http::json_error(405, "method_not_allowed", "use POST");

  SinkRequest r;
  r.kind = req.path.substr(kPrefix.size());
  r.body = req.body;
  r.at_ms = now_unix_ms();
  auto k = req.headers.find("idempotency-key");
  if (k != req.headers.end()) r.key = k->second;
  auto body = parse_json_object(req.body);

  int delay_ms = 0;
  http::Response answer = [&] {
    std::lock_guard<std::mutex> lk(mu_);
    auto refuse = [&](int status, const std::string& code, const std::string& why) {
      r.status = status;
      requests_.push_back(r);
      return http::json_error(status, code, why);
    };
    if (!parse_idempotency_key(r.key, &r.run_id, &r.step, &r.attempt))
      return refuse(400, "bad_key", "Idempotency-Key must be <run>:<step>:<attempt>");
    if (!body) return refuse(400, "bad_body", "body must be a JSON object");
    if (fail_next_ > 0) {
      --fail_next_;
      return refuse(503, "unavailable", "the sink is failing on purpose (chaos)");
    }
    if (slow_next_ > 0) {
      --slow_next_;
      delay_ms = slow_ms_;
    }
    if (auto a = answers_.find(r.key); a != answers_.end()) {
      r.status = 200;
      r.effect_id = effect_ids_[r.key];
      requests_.push_back(r);
      json again = json::parse(a->second);
      again["applied"] = false;
      return http::Response{200, "application/json", again.dump(), {}};
    }
    r.status = 201;
    r.applied = true;
    r.effect_id = "E-" + std::to_string(next_effect_++);
    ++applied_;
    json out = *body;
    out["effect_id"] = r.effect_id;
    out["applied"] = true;
    answers_[r.key] = out.dump();
    effect_ids_[r.key] = r.effect_id;
    requests_.push_back(r);
    return http::Response{201, "application/json", out.dump(), {}};
  }();
  // Outside the lock: other requests go on while this answer is late.
  if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  return answer;
}

}  // namespace baton::chaos
