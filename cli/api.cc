#include "cli/api.h"

#include <cstdlib>

#include "common/http/http.h"
#include "common/util/json.h"

namespace baton::cli {
namespace {

std::string read_small_file(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return "";
  std::string out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0 && out.size() < (1u << 20)) out.append(buf, n);
  std::fclose(f);
  return out;
}

std::string strip_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

Result<ApiResponse> to_api(Result<http::ClientResponse> r, const std::string& url) {
  if (!r) {
    const std::string& m = r.status().message();
    return Status(r.status().code(), m.find(url) != std::string::npos ? "cannot reach the API: " + m
                                                                        : "cannot reach " + url + ": " + m);
  }
  ApiResponse out;
  out.status = r->status;
  out.raw = std::move(r->body);
  auto j = parse_json(out.raw, 64u << 20);
  if (j) out.body = std::move(*j);
  return out;
}

}  // namespace

std::string resolve_api(const std::string& flag, const std::string& state_dir) {
  if (!flag.empty()) return strip_slash(flag);
  if (const char* env = std::getenv("BATON_API"); env != nullptr && *env != '\0') return strip_slash(env);
  std::string text = read_small_file((state_dir.empty() ? std::string(kDefaultStateDir) : state_dir) +
                                     "/env.json");
  if (!text.empty()) {
    auto j = parse_json_object(text);
    if (j) {
      auto it = j->find("api");
      if (it != j->end() && it->is_string() && !it->get<std::string>().empty())
        return strip_slash(it->get<std::string>());
    }
  }
  return kDefaultApi;
}

std::map<std::string, std::string> api_headers() {
  std::map<std::string, std::string> h;
  std::string token;
  if (const char* t = std::getenv("BATON_TOKEN"); t != nullptr && *t != '\0') {
    token = t;
  } else if (const char* f = std::getenv("BATON_TOKEN_FILE"); f != nullptr && *f != '\0') {
    token = read_small_file(f);
    if (auto nl = token.find_first_of("\r\n"); nl != std::string::npos) token.resize(nl);
  }
  if (!token.empty()) h["Authorization"] = "Bearer " + token;
  if (const char* u = std::getenv("BATON_USER"); u != nullptr && *u != '\0') h["X-Baton-User"] = u;
  return h;
}

Result<ApiResponse> api_get(const std::string& api, const std::string& path, int timeout_ms) {
  std::string url = api + path;
  return to_api(http::request("GET", url, "", timeout_ms, api_headers()), url);
}

Result<ApiResponse> api_post(const std::string& api, const std::string& path, const nlohmann::json& body,
                             int timeout_ms) {
  std::string url = api + path;
  auto headers = api_headers();
  headers["Content-Type"] = "application/json";
  return to_api(http::request("POST", url, body.dump(), timeout_ms, headers), url);
}

std::string describe_api_error(const ApiResponse& r) {
  std::string out = "HTTP " + std::to_string(r.status);
  if (r.body.is_object()) {
    auto e = r.body.find("error");
    if (e != r.body.end() && e->is_object()) {
      auto code = e->find("code");
      auto msg = e->find("message");
      if (code != e->end() && code->is_string()) out += " " + code->get<std::string>();
      if (msg != e->end() && msg->is_string()) out += ": " + msg->get<std::string>();
      return out;
    }
  }
  std::string raw = r.raw.size() > 500 ? r.raw.substr(0, 500) + "..." : r.raw;
  if (!raw.empty()) out += ": " + raw;
  return out;
}

}  // namespace baton::cli
