#include "workers/agents/http.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "common/util/json.h"
#include "common/workflow/template.h"
#include "workers/agents/config.h"
#include "workers/net/http_client.h"

#ifndef BATON_VERSION
#define BATON_VERSION "dev"
#endif

namespace baton::agent {
namespace {

using nlohmann::json;
using workflow::Template;

constexpr std::size_t kMaxResponseBytes = 4u << 20;
constexpr std::size_t kExcerptBytes = 512;
constexpr int64_t kBackoffCapMs = 30000;
// A Retry-After (or backoff) longer than this is not waited for here: the step
// is RETRYABLE and the coordinator's retry policy takes over.
constexpr int64_t kMaxWaitMs = 30000;
// No call is started with less than this left before the task's deadline.
constexpr int64_t kMinCallMs = 20;
constexpr const char* kRedacted = "[redacted]";
constexpr const char* kUserAgent = "baton/" BATON_VERSION;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool iequal(std::string_view a, std::string_view b) { return config::lower(a) == config::lower(b); }

// Everything but RFC 3986 unreserved characters is encoded: a rendered value
// with '/', '?', '#', '&', '=', ':', '@' or a space stays inside its segment.
std::string percent_encode(std::string_view s) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Valid UTF-8 kept, every other byte replaced by '?': error messages travel in
// protobuf string fields.
std::string utf8_clean(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && (c >= 0x20 || c == '\n' || c == '\t')) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

// The first kExcerptBytes of a body, cut back to a UTF-8 boundary.
std::string excerpt(std::string_view body) {
  if (body.size() <= kExcerptBytes) return utf8_clean(body);
  std::size_t n = kExcerptBytes;
  while (n > 0 && (static_cast<unsigned char>(body[n]) & 0xC0) == 0x80) --n;
  return utf8_clean(body.substr(0, n)) + "...";
}

// "{{ path }}" and nothing else -> the path; "" otherwise.
std::string whole_path(std::string_view source) {
  std::string_view s = trim(source);
  if (s.size() < 5 || s.substr(0, 2) != "{{" || s.find("}}") != s.size() - 2) return {};
  std::string_view inner = trim(s.substr(2, s.size() - 4));
  if (inner.find("{{") != std::string_view::npos) return {};
  return std::string(inner);
}

Status check_path(std::string_view path, const std::string& w, bool allow_args) {
  if (allow_args && path.substr(0, path.find_first_of(".[")) == "args") return Status::ok();
  Status s = config::check_scope_path(path, w);
  if (!s && allow_args) return invalid(w + ": path `" + std::string(path) + "` must start with input., record., steps. or args.");
  return s;
}

Result<Template> parse_template(const json& v, const std::string& w, bool allow_args) {
  auto text = config::as_text(v);
  if (!text) return invalid(w + " must be a template string, got " + std::string(v.type_name()));
  auto t = Template::parse(*text);
  if (!t) return invalid(w + ": " + t.status().message());
  for (const auto& p : t->paths())
    if (Status s = check_path(p, w, allow_args); !s) return s;
  return t;
}

// A response path: status | headers[.name] | body[.a.b[0]...]. Header names are
// matched lower-case.
Result<std::string> parse_response_path(const json& v, const std::string& w) {
  if (!v.is_string()) return invalid(w + " must be a path such as body.data.id, got " + std::string(v.type_name()));
  std::string path(trim(v.get_ref<const std::string&>()));
  auto t = Template::parse("{{" + path + "}}");
  if (!t || t->paths().size() != 1 || path.find("{{") != std::string::npos)
    return invalid(w + ": `" + path + "` is not a path (names joined by dots, with optional [index])");
  std::string root = path.substr(0, path.find_first_of(".["));
  if (root == "status" && path == "status") return path;
  if (root == "headers") {
    if (path.size() > 8 && path[7] == '.') return "headers." + config::lower(path.substr(8));
    if (path == "headers") return path;
  }
  if (root == "body") return path;
  return invalid(w + ": path `" + path + "` must be status, headers.<name> or body[.<path>]");
}

struct UrlPart {
  bool is_path = false;
  std::string text;  // literal text or the path
  Template value;    // "{{path}}": renders the value's text form
};

struct HeaderSpec {
  std::string name;
  bool secret = false;
  std::string value;  // the secret (prefix included)
  Template tmpl;
};

// A body value compiled once: literals, templates (string leaves) and typed
// whole-path leaves, with their location for messages.
struct BodyNode {
  enum Kind { kLiteral, kTemplate, kWhole, kArray, kObject } kind = kLiteral;
  std::string where;
  json literal;
  Template tmpl;
  std::string path;
  // key ("" for arrays) -> node. Held by pointer: a std::pair of the
  // still-incomplete BodyNode is ill-formed (clang + libstdc++ refuse it).
  std::vector<std::pair<std::string, std::shared_ptr<const BodyNode>>> children;
};

Result<BodyNode> compile_body(const json& v, const std::string& where, const std::string& what, bool allow_args) {
  BodyNode n;
  n.where = where;
  if (v.is_string()) {
    std::string w = what + ": `" + where + "`";
    auto t = parse_template(v, w, allow_args);
    if (!t) return t.status();
    if (t->paths().empty()) {
      n.kind = BodyNode::kLiteral;
      n.literal = v;
    } else if (std::string p = whole_path(t->source()); !p.empty()) {
      n.kind = BodyNode::kWhole;
      n.path = std::move(p);
    } else {
      n.kind = BodyNode::kTemplate;
      n.tmpl = std::move(t).value();
    }
    return n;
  }
  if (v.is_array()) {
    n.kind = BodyNode::kArray;
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto c = compile_body(v[i], where + "[" + std::to_string(i) + "]", what, allow_args);
      if (!c) return c.status();
      n.children.emplace_back(std::string(), std::make_shared<const BodyNode>(std::move(c).value()));
    }
    return n;
  }
  if (v.is_object()) {
    n.kind = BodyNode::kObject;
    for (auto it = v.begin(); it != v.end(); ++it) {
      auto c = compile_body(it.value(), where + "." + it.key(), what, allow_args);
      if (!c) return c.status();
      n.children.emplace_back(it.key(), std::make_shared<const BodyNode>(std::move(c).value()));
    }
    return n;
  }
  n.literal = v;
  return n;
}

Result<json> render_body(const BodyNode& n, const json& scope) {
  switch (n.kind) {
    case BodyNode::kLiteral:
      return n.literal;
    case BodyNode::kWhole: {
      const json* v = json_path(scope, n.path);
      if (v == nullptr || v->is_null()) return not_found(n.where + ": missing value for {{" + n.path + "}}");
      return *v;
    }
    case BodyNode::kTemplate: {
      auto text = n.tmpl.render(scope);
      if (!text) return not_found(n.where + ": " + text.status().message());
      return json(std::move(text).value());
    }
    case BodyNode::kArray: {
      json out = json::array();
      for (const auto& [k, c] : n.children) {
        auto v = render_body(*c, scope);
        if (!v) return v;
        out.push_back(std::move(v).value());
      }
      return out;
    }
    case BodyNode::kObject: {
      json out = json::object();
      for (const auto& [k, c] : n.children) {
        auto v = render_body(*c, scope);
        if (!v) return v;
        out[k] = std::move(v).value();
      }
      return out;
    }
  }
  return n.literal;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool has_line_break(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos || s.find('\0') != std::string_view::npos; }

Result<int64_t> get_int(const json& cfg, const std::string& what, const char* key, double def, double lo, double hi) {
  auto n = config::get_number(cfg, what, key, def);
  if (!n) return n.status();
  if (*n < lo || *n > hi || *n != std::floor(*n)) {
    return invalid(what + ": `" + key + "` must be an integer from " + std::to_string(static_cast<int64_t>(lo)) +
                   " to " + std::to_string(static_cast<int64_t>(hi)));
  }
  return static_cast<int64_t>(*n);
}

}  // namespace

struct HttpTool::Impl {
  std::string what;
  std::string method;
  bool retry_allowed = false;
  std::vector<UrlPart> url;
  std::vector<std::pair<std::string, Template>> query;  // encoded name -> value
  std::vector<HeaderSpec> headers;
  bool has_user_agent = false;
  std::optional<BodyNode> body;
  bool body_is_text = false;
  std::vector<int> expect;  // empty: any 2xx
  bool has_output = false;
  std::vector<std::pair<std::string, std::string>> output;  // field -> response path
  std::vector<std::pair<std::string, std::string>> writes;
  int64_t timeout_ms = 10000;
  int retries = 2;
  int64_t backoff_ms = 200;
  std::vector<std::string> secrets;  // longest first

  void redact(std::string& s) const {
    for (const auto& secret : secrets) {
      for (std::size_t pos = s.find(secret); pos != std::string::npos; pos = s.find(secret, pos + std::strlen(kRedacted)))
        s.replace(pos, secret.size(), kRedacted);
    }
  }

  void redact(json& j) const {
    if (secrets.empty()) return;
    if (j.is_string()) {
      redact(j.get_ref<std::string&>());
    } else if (j.is_array()) {
      for (auto& e : j) redact(e);
    } else if (j.is_object()) {
      json out = json::object();
      for (auto it = j.begin(); it != j.end(); ++it) {
        std::string key = it.key();
        redact(key);
        out[key] = std::move(it.value());
        redact(out[key]);
      }
      j = std::move(out);
    }
  }

  AgentOutput fail(AgentOutput::Status status, std::string code, std::string message) const {
    redact(message);
    return AgentOutput::fail(status, std::move(code), what + ": " + utf8_clean(message));
  }

  bool expected(int status) const {
    if (expect.empty()) return status >= 200 && status <= 299;
    return std::find(expect.begin(), expect.end(), status) != expect.end();
  }

  // The URL for messages and logs: no query, no user info.
  static std::string display_url(const std::string& url) {
    std::string u = url.substr(0, url.find_first_of("?#"));
    auto scheme = u.find("://");
    if (scheme != std::string::npos) {
      auto at = u.find('@', scheme + 3);
      auto slash = u.find('/', scheme + 3);
      if (at != std::string::npos && (slash == std::string::npos || at < slash)) u.erase(scheme + 3, at - scheme - 2);
    }
    return u.size() > 200 ? u.substr(0, 200) + "..." : u;
  }

  AgentOutput call(const json& scope, const std::string& key, int64_t deadline) const {
    // Render everything before the first call: a template error sends nothing.
    net::HttpRequest req;
    req.method = method;
    req.max_response_bytes = kMaxResponseBytes;
    for (const auto& p : url) {
      if (!p.is_path) {
        req.url += p.text;
        continue;
      }
      auto v = p.value.render(scope);
      if (!v) return fail(AgentOutput::kFailed, errors::kTemplateError, "url: " + v.status().message());
      req.url += percent_encode(*v);
    }
    std::string shown = display_url(req.url);
    char sep = req.url.find('?') == std::string::npos ? '?' : '&';
    for (const auto& [name, tmpl] : query) {
      auto v = tmpl.render(scope);
      if (!v) return fail(AgentOutput::kFailed, errors::kTemplateError, "query." + name + ": " + v.status().message());
      req.url += sep;
      req.url += name + "=" + percent_encode(*v);
      sep = '&';
    }
    for (const auto& h : headers) {
      if (h.secret) {
        req.headers[h.name] = h.value;
        continue;
      }
      auto v = h.tmpl.render(scope);
      if (!v) return fail(AgentOutput::kFailed, errors::kTemplateError, "headers." + h.name + ": " + v.status().message());
      if (has_line_break(*v))
        return fail(AgentOutput::kFailed, errors::kTemplateError, "headers." + h.name + ": the rendered value has a line break");
      req.headers[h.name] = std::move(v).value();
    }
    req.headers["Idempotency-Key"] = key;
    if (!has_user_agent) req.headers["User-Agent"] = kUserAgent;
    if (body) {
      auto b = render_body(*body, scope);
      if (!b) return fail(AgentOutput::kFailed, errors::kTemplateError, b.status().message());
      if (body_is_text && b->is_string()) {
        req.body = b->get<std::string>();
      } else {  // a JSON body, or a text body that is one {{path}} to a non-string: its JSON
        req.body = b->dump(-1, ' ', false, json::error_handler_t::replace);
      }
    }

    thread_local std::mt19937_64 rng{std::random_device{}()};
    AgentOutput last;
    for (int attempt = 1;; ++attempt) {
      req.timeout_ms = timeout_ms;
      if (deadline > 0) {
        int64_t left = deadline - wall_ms();
        if (left < kMinCallMs) {
          if (attempt > 1) return last;
          return fail(AgentOutput::kRetryable, "timeout",
                      method + " " + shown + ": the task's deadline passed before the call");
        }
        req.timeout_ms = std::min(req.timeout_ms, left);
      }
      auto resp = net::send(req);
      std::optional<int64_t> retry_after;
      std::string calls = attempt > 1 ? " (" + std::to_string(attempt) + " calls)" : "";
      if (!resp) {
        switch (resp.status().code()) {
          case Code::kTimeout:
            last = fail(AgentOutput::kRetryable, "timeout",
                        method + " " + shown + ": no answer within " + std::to_string(req.timeout_ms) + " ms" + calls);
            break;
          case Code::kUnavailable:
            last = fail(AgentOutput::kRetryable, "unavailable", method + " " + shown + ": " + resp.status().message() + calls);
            break;
          case Code::kTooLarge:
            return fail(AgentOutput::kFailed, "response_too_large", method + " " + shown + ": " + resp.status().message());
          case Code::kInvalidArgument:
            return fail(AgentOutput::kFailed, "bad_request", method + " " + shown + ": " + resp.status().message());
          default:
            return fail(AgentOutput::kFailed, errors::kAgentError, method + " " + shown + ": " + resp.status().message());
        }
      } else if (expected(resp->status)) {
        return success(*resp);
      } else {
        std::string text = resp->body;
        redact(text);  // before cutting: a secret across the cut is not half-shown
        std::string msg = method + " " + shown + " answered " + std::to_string(resp->status) + calls +
                          (text.empty() ? std::string() : ": " + excerpt(text));
        std::string code = "http_" + std::to_string(resp->status);
        if (!net::is_retryable_status(resp->status)) return fail(AgentOutput::kFailed, code, msg);
        last = fail(AgentOutput::kRetryable, code, msg);
        retry_after = net::retry_after_ms(*resp, wall_ms());
      }
      if (!retry_allowed || attempt > retries) return last;
      int64_t delay = net::backoff_ms(attempt, backoff_ms, kBackoffCapMs, retry_after, rng);
      if (delay > kMaxWaitMs) return last;
      if (deadline > 0 && wall_ms() + delay + kMinCallMs >= deadline) return last;
      spdlog::info("{}: {} {} failed ({}); retry {} of {} in {} ms", what, method, shown, last.error_code, attempt,
                   retries, delay);
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
  }

  AgentOutput success(const net::HttpResponse& resp) const {
    json r = json::object();
    r["status"] = resp.status;
    r["headers"] = json::object();
    for (const auto& [k, v] : resp.headers) r["headers"][k] = utf8_clean(v);
    r["body"] = resp.body;
    if (!resp.body.empty()) {
      if (auto parsed = parse_json(resp.body, kMaxResponseBytes)) r["body"] = std::move(parsed).value();
    }
    AgentOutput out;
    if (!has_output) {
      out.output = {{"status", resp.status}, {"body", std::move(r["body"])}};
    } else {
      for (const auto& [field, path] : output) {
        const json* v = json_path(r, path);
        if (v == nullptr)
          return fail(AgentOutput::kFailed, errors::kBadOutput,
                      "output." + field + ": `" + path + "` is not in the response (status " + std::to_string(resp.status) + ")");
        out.output[field] = *v;
      }
    }
    for (const auto& [field, path] : writes) {
      const json* v = json_path(r, path);
      if (v == nullptr)
        return fail(AgentOutput::kFailed, errors::kBadOutput,
                    "writes." + field + ": `" + path + "` is not in the response (status " + std::to_string(resp.status) + ")");
      out.writes[field] = *v;
    }
    redact(out.output);
    redact(out.writes);
    return out;
  }
};

HttpTool::HttpTool(std::unique_ptr<const Impl> impl) : impl_(std::move(impl)) {}
HttpTool::~HttpTool() = default;

AgentOutput HttpTool::call(const json& scope, const std::string& idempotency_key, int64_t deadline_unix_ms) const {
  try {
    return impl_->call(scope, idempotency_key, deadline_unix_ms);
  } catch (const std::exception& e) {
    return impl_->fail(AgentOutput::kFailed, errors::kAgentError, e.what());
  } catch (...) {
    return impl_->fail(AgentOutput::kFailed, errors::kAgentError, "unknown error");
  }
}

Result<std::shared_ptr<const HttpTool>> HttpTool::create(const json& cfg, std::string what, bool allow_args) {
  if (Status s = config::check_object(cfg, what,
                                      {"method", "url", "query", "headers", "body", "expect", "output", "writes",
                                       "timeout_ms", "retries", "backoff_ms", "idempotent"});
      !s)
    return s;
  auto impl = std::make_unique<Impl>();
  impl->what = what;
  auto key = [&](const std::string& k) { return what + ": `" + k + "`"; };

  auto method = config::get_string(cfg, what, "method", std::string("GET"));
  if (!method) return method.status();
  impl->method = upper(trim(*method));
  static const std::vector<std::string> kIdempotent = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS"};
  bool idempotent_method = std::find(kIdempotent.begin(), kIdempotent.end(), impl->method) != kIdempotent.end();
  if (!idempotent_method && impl->method != "POST" && impl->method != "PATCH")
    return invalid(key("method") + " must be GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS, got " + *method);
  auto idempotent = config::get_bool(cfg, what, "idempotent", false);
  if (!idempotent) return idempotent.status();
  impl->retry_allowed = idempotent_method || *idempotent;

  // url: ${VAR} once, then a template whose values are percent-encoded. The
  // scheme and host are literal (or from ${VAR}): task data picks no host.
  auto url_it = cfg.find("url");
  if (url_it == cfg.end() || url_it->is_null()) return invalid(key("url") + " is required");
  if (!url_it->is_string()) return invalid(key("url") + " must be a string, got " + std::string(url_it->type_name()));
  auto url = config::expand_env(url_it->get_ref<const std::string&>(), key("url"));
  if (!url) return url.status();
  std::string lowered = config::lower(*url);
  std::size_t authority = lowered.rfind("http://", 0) == 0 ? 7 : lowered.rfind("https://", 0) == 0 ? 8 : 0;
  if (authority == 0) return invalid(key("url") + " must start with http:// or https://, got \"" + *url + "\"");
  std::size_t authority_end = url->find_first_of("/?#", authority);
  std::string host = url->substr(authority, authority_end == std::string::npos ? std::string::npos : authority_end - authority);
  if (host.empty()) return invalid(key("url") + " has no host");
  if (host.find("{{") != std::string::npos)
    return invalid(key("url") + ": the host must not be a template (use ${VAR} for a deployment setting)");
  auto url_t = parse_template(*url, key("url"), allow_args);
  if (!url_t) return url_t.status();
  for (std::size_t pos = 0; pos < url->size();) {
    std::size_t open = url->find("{{", pos);
    UrlPart lit;
    lit.text = url->substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    for (char c : lit.text)
      if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
        return invalid(key("url") + " must not contain spaces or control characters (encode them as %20)");
    if (!lit.text.empty()) impl->url.push_back(std::move(lit));
    if (open == std::string::npos) break;
    std::size_t close = url->find("}}", open + 2);  // parse() saw it closed
    UrlPart p;
    p.is_path = true;
    p.text = std::string(trim(std::string_view(*url).substr(open + 2, close - open - 2)));
    p.value = Template::parse("{{" + p.text + "}}").value();
    impl->url.push_back(std::move(p));
    pos = close + 2;
  }

  if (auto q = cfg.find("query"); q != cfg.end() && !q->is_null()) {
    if (!q->is_object()) return invalid(key("query") + " must be a map of name: template");
    for (auto it = q->begin(); it != q->end(); ++it) {
      if (it.key().empty()) return invalid(key("query") + ": empty parameter name");
      auto t = parse_template(it.value(), key("query." + it.key()), allow_args);
      if (!t) return t.status();
      impl->query.emplace_back(percent_encode(it.key()), std::move(t).value());
    }
  }

  if (auto h = cfg.find("headers"); h != cfg.end() && !h->is_null()) {
    if (!h->is_object()) return invalid(key("headers") + " must be a map of name: value");
    for (auto it = h->begin(); it != h->end(); ++it) {
      const std::string& name = it.key();
      std::string w = key("headers." + name);
      if (name.empty() || !std::all_of(name.begin(), name.end(), is_token_char))
        return invalid(w + ": not a valid header name");
      if (iequal(name, "Idempotency-Key")) return invalid(w + ": set by the agent from the task, not configurable");
      for (const auto& other : impl->headers)
        if (iequal(other.name, name)) return invalid(w + ": given twice (header names ignore case)");
      if (iequal(name, "User-Agent")) impl->has_user_agent = true;
      HeaderSpec spec;
      spec.name = name;
      const json& v = it.value();
      if (v.is_object()) {
        if (Status s = config::check_object(v, w, {"env", "file", "prefix"}); !s) return s;
        bool has_env = v.contains("env") && !v["env"].is_null(), has_file = v.contains("file") && !v["file"].is_null();
        if (has_env == has_file) return invalid(w + ": give `env: NAME` or `file: PATH` (one of them)");
        std::string prefix;
        if (v.contains("prefix") && !v["prefix"].is_null()) {
          auto p = config::as_text(v["prefix"]);
          if (!p) return invalid(w + ": `prefix` must be a string");
          prefix = *p;
        }
        json holder = json::object();
        holder[has_env ? "value_env" : "value_file"] = has_env ? v["env"] : v["file"];
        auto secret = config::get_secret(holder, w, "value");
        if (!secret) {
          // get_secret names its own keys (value_env/value_file); say env/file.
          std::string m = secret.status().message();
          for (auto [from, to] : {std::pair{"`value_env`", "`env`"}, std::pair{"`value_file`", "`file`"}})
            if (auto pos = m.find(from); pos != std::string::npos) m.replace(pos, std::strlen(from), to);
          return invalid(m);
        }
        if (has_line_break(*secret) || has_line_break(prefix))
          return invalid(w + ": the secret has a line break or a NUL byte (not valid in a header)");
        spec.secret = true;
        spec.value = prefix + *secret;
        impl->secrets.push_back(*secret);
      } else {
        auto text = config::as_text(v);
        if (!text) return invalid(w + " must be a string or {env: NAME} / {file: PATH}, got " + std::string(v.type_name()));
        auto expanded = config::expand_env(*text, w);
        if (!expanded) return expanded.status();
        if (has_line_break(*expanded)) return invalid(w + ": the value has a line break");
        auto t = parse_template(*expanded, w, allow_args);
        if (!t) return t.status();
        spec.tmpl = std::move(t).value();
      }
      impl->headers.push_back(std::move(spec));
    }
    std::sort(impl->secrets.begin(), impl->secrets.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }

  if (auto b = cfg.find("body"); b != cfg.end() && !b->is_null()) {
    if (impl->method == "GET" || impl->method == "HEAD")
      return invalid(key("body") + ": a " + impl->method + " request carries no body (use `query`)");
    auto node = compile_body(*b, "body", what, allow_args);
    if (!node) return node.status();
    impl->body_is_text = b->is_string();
    impl->body = std::move(node).value();
  }

  if (auto e = cfg.find("expect"); e != cfg.end() && !e->is_null()) {
    json list = e->is_array() ? *e : json::array({*e});
    if (list.empty()) return invalid(key("expect") + " must list at least one status code");
    for (const auto& c : list) {
      auto n = config::as_number(c);
      if (!n || *n < 100 || *n > 599 || *n != std::floor(*n))
        return invalid(key("expect") + ": " + c.dump() + " is not an HTTP status code (100-599)");
      impl->expect.push_back(static_cast<int>(*n));
    }
  }

  for (const char* section : {"output", "writes"}) {
    auto o = cfg.find(section);
    if (o == cfg.end() || o->is_null()) continue;
    if (!o->is_object()) return invalid(key(section) + " must be a map of field: path");
    auto& dst = std::string_view(section) == "output" ? impl->output : impl->writes;
    if (std::string_view(section) == "output") impl->has_output = true;
    for (auto it = o->begin(); it != o->end(); ++it) {
      if (it.key().empty()) return invalid(key(section) + ": empty field name");
      auto p = parse_response_path(it.value(), key(std::string(section) + "." + it.key()));
      if (!p) return p.status();
      dst.emplace_back(it.key(), std::move(p).value());
    }
  }

  auto timeout = get_int(cfg, what, "timeout_ms", 10000, 1, 600000);
  if (!timeout) return timeout.status();
  impl->timeout_ms = *timeout;
  auto retries = get_int(cfg, what, "retries", 2, 0, 10);
  if (!retries) return retries.status();
  impl->retries = static_cast<int>(*retries);
  auto backoff = get_int(cfg, what, "backoff_ms", 200, 1, 60000);
  if (!backoff) return backoff.status();
  impl->backoff_ms = *backoff;

  return std::shared_ptr<const HttpTool>(new HttpTool(std::move(impl)));
}

namespace {

class HttpAgent : public Agent {
 public:
  explicit HttpAgent(std::shared_ptr<const HttpTool> tool) : tool_(std::move(tool)) {}

  AgentOutput execute(const AgentInput& in) override {
    std::string key = in.task.idempotency_key();
    if (key.empty()) key = in.task.run_id() + ":" + in.task.step_id() + ":" + std::to_string(in.task.attempt());
    return tool_->call(in.scope, key, in.task.deadline_unix_ms());
  }

 private:
  std::shared_ptr<const HttpTool> tool_;
};

}  // namespace

FactoryResult make_http_agent(const json& config) {
  auto tool = HttpTool::create(config, "http");
  if (!tool) return tool.status();
  return AgentPtr(new HttpAgent(std::move(tool).value()));
}

}  // namespace baton::agent
