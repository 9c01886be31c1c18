#include "workers/net/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <memory>
#include <mutex>

namespace baton::net {
namespace {

struct Sink {
  std::string* body;
  std::size_t max;
  bool overflow = false;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  std::size_t len = size * n;
  if (sink->body->size() + len > sink->max) {
    sink->overflow = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  sink->body->append(data, len);
  return len;
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* headers = static_cast<std::map<std::string, std::string>*>(user);
  std::string_view line(data, size * n);
  // A new status line (redirects are not followed, but 100-continue is) starts a new header block.
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  (*headers)[name] = std::string(value);
  return size * n;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct EasyDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct ListDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

Result<HttpResponse> send(const HttpRequest& req) {
  if (req.timeout_ms <= 0) return invalid("http: timeout must be positive");
  if (req.url.rfind("http://", 0) != 0 && req.url.rfind("https://", 0) != 0)
    return invalid("http: URL must start with http:// or https://: " + req.url);
  if (req.method.empty()) return invalid("http: empty method");
  global_init();
  std::unique_ptr<CURL, EasyDeleter> curl(curl_easy_init());
  if (!curl) return internal("http: curl_easy_init failed");
  HttpResponse resp;
  Sink sink{&resp.body, req.max_response_bytes};
  std::unique_ptr<curl_slist, ListDeleter> headers;
  for (const auto& [k, v] : req.headers) {
    std::string line = k + ": " + v;
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (!next) return internal("http: out of memory");
    (void)headers.release();
    headers.reset(next);
  }
  if (!req.body.empty() && !req.headers.count("Content-Type") && !req.headers.count("content-type")) {
    curl_slist* next = curl_slist_append(headers.get(), "Content-Type: application/json");
    (void)headers.release();
    headers.reset(next);
  }
  // No "Expect: 100-continue" round trip for larger bodies.
  curl_slist* next = curl_slist_append(headers.get(), "Expect:");
  (void)headers.release();
  headers.reset(next);

  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(std::min<int64_t>(req.timeout_ms, 10000)));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &resp.headers);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // whatever curl can decode
  if (req.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (!req.body.empty() || req.method == "POST" || req.method == "PUT" || req.method == "PATCH") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
  }
  CURLcode rc = curl_easy_perform(c);
  if (sink.overflow)
    return Status(Code::kTooLarge, "http: response body over " + std::to_string(req.max_response_bytes) + " bytes");
  if (rc == CURLE_OPERATION_TIMEDOUT)
    return Status(Code::kTimeout, "http: no complete answer within " + std::to_string(req.timeout_ms) + " ms");
  if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
    return invalid(std::string("http: ") + curl_easy_strerror(rc));
  if (rc != CURLE_OK) return unavailable(std::string("http: ") + curl_easy_strerror(rc));
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  resp.status = static_cast<int>(status);
  return resp;
}

std::optional<int64_t> retry_after_ms(const HttpResponse& response, int64_t now_unix_ms) {
  auto it = response.headers.find("retry-after");
  if (it == response.headers.end() || it->second.empty()) return std::nullopt;
  const std::string& v = it->second;
  if (std::all_of(v.begin(), v.end(), [](unsigned char c) { return std::isdigit(c) || c == '.'; })) {
    try {
      double seconds = std::stod(v);
      if (seconds < 0 || seconds > 86400.0 * 7) return std::nullopt;
      return static_cast<int64_t>(seconds * 1000.0);
    } catch (...) {
      return std::nullopt;
    }
  }
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  std::tm tm{};
  const char* end = strptime(v.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end) return std::nullopt;
  int64_t at_ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  return std::max<int64_t>(0, at_ms - now_unix_ms);
}

int64_t backoff_ms(int retry, int64_t base_ms, int64_t cap_ms, std::optional<int64_t> retry_after,
                   std::mt19937_64& rng) {
  if (retry < 1) retry = 1;
  int64_t ceiling = base_ms;
  for (int i = 1; i < retry && ceiling < cap_ms; ++i) ceiling *= 2;
  ceiling = std::min(ceiling, cap_ms);
  int64_t floor = std::min(base_ms / 2, ceiling);
  std::uniform_int_distribution<int64_t> dist(floor, std::max(floor, ceiling));
  int64_t d = dist(rng);
  if (retry_after && *retry_after > d) d = *retry_after;
  return d;
}

bool is_retryable_status(int status) { return status == 429 || (status >= 500 && status != 501 && status != 505); }

}  // namespace baton::net
