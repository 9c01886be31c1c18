// The HTTP(S) client of the agents that call out (llm, http): libcurl, one
// easy handle per call, no shared state beyond curl's global init. Also the
// retry policy both agents share (jittered exponential backoff honouring
// Retry-After).
//
// Threads: send() is safe from any thread; it blocks for at most
// Request::timeout_ms. Never throws.
//
// Secrets: header values are never logged here; callers must not log them either.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>

#include "common/util/status.h"

namespace baton::net {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::map<std::string, std::string> headers;  // as given (curl sends them verbatim)
  std::string body;
  int64_t timeout_ms = 30000;        // the whole exchange
  std::size_t max_response_bytes = 8u << 20;  // larger bodies fail the call
};

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
};

// kTimeout when timeout_ms passes; kUnavailable for connection/TLS/DNS errors
// (the message has curl's text, never a header value); kTooLarge when the body
// is over max_response_bytes; kInvalidArgument for a bad URL, a URL scheme other
// than http/https, or timeout_ms <= 0. Any HTTP status is a success here.
Result<HttpResponse> send(const HttpRequest& request);

// Retry-After (seconds, or an HTTP-date) in milliseconds from now; nullopt when
// absent or unreadable. A date in the past is 0.
std::optional<int64_t> retry_after_ms(const HttpResponse& response, int64_t now_unix_ms);

// Full-jitter exponential backoff: a uniform delay in [base/2, min(cap, base *
// 2^(retry-1))] for retry = 1, 2, ...; a server's Retry-After wins when it is
// longer. Thread-safe (each caller passes its own generator).
int64_t backoff_ms(int retry, int64_t base_ms, int64_t cap_ms, std::optional<int64_t> retry_after,
                   std::mt19937_64& rng);

// True for 429 and 5xx except 501 (not implemented) and 505.
bool is_retryable_status(int status);

}  // namespace baton::net
