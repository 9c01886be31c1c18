// How batonctl reaches the coordinator's HTTP API (docs: cli/README.md).
// Stateless helpers over baton::http::request; safe to call from any thread.
// Nothing here throws.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "common/util/status.h"

namespace baton::cli {

inline constexpr const char* kDefaultApi = "http://127.0.0.1:8080";
inline constexpr const char* kDefaultStateDir = ".baton/dev";

// The API base URL: `flag` when non-empty, else $BATON_API, else "api" of
// `<state_dir>/env.json` (relative to the cwd), else kDefaultApi. A trailing
// '/' is removed.
std::string resolve_api(const std::string& flag, const std::string& state_dir);

// An HTTP answer whose body is JSON (null when the body is not JSON).
struct ApiResponse {
  int status = 0;
  nlohmann::json body;
  std::string raw;
};

// Headers every call sends: `Authorization: Bearer $BATON_TOKEN` (or the
// first line of the file $BATON_TOKEN_FILE) when set, and `X-Baton-User:
// $BATON_USER` (the caller's name when the control plane runs without auth).
std::map<std::string, std::string> api_headers();

// kUnavailable when the API cannot be reached (the message names the URL).
Result<ApiResponse> api_get(const std::string& api, const std::string& path, int timeout_ms = 10000);
Result<ApiResponse> api_post(const std::string& api, const std::string& path, const nlohmann::json& body,
                             int timeout_ms = 10000);

// "404 not_found: no run abc" from an error body {"error":{"code","message"}},
// or the status and raw body when it has another shape.
std::string describe_api_error(const ApiResponse& r);

}  // namespace baton::cli
