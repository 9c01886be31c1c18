// The `http` agent: one configured REST call per task (a CRM, a calendar, an
// accounting package). docs/agents.md#http.
//
// Config (the step's `agent:` map without `kind`/`set`; unknown keys refused):
//   method      GET (default), HEAD, PUT, DELETE, OPTIONS (idempotent), POST, PATCH
//   url         required; `${VAR}` / `${VAR:-default}` expanded once at
//               construction, then a `{{path}}` template rendered per call. Values
//               rendered into the URL are percent-encoded (all but A-Z a-z 0-9 -._~),
//               so task data cannot change the URL's structure. http:// or https://
//               only, written literally at the start.
//   query       {name: template}: rendered, percent-encoded, appended.
//   headers     {name: template | {env: NAME} | {file: PATH} | {env|file, prefix: "Bearer "}}.
//               Templates after `${VAR}` expansion; secrets read at construction.
//   body        a JSON value whose string leaves are templates; a leaf that is exactly
//               one `{{path}}` keeps the value's JSON type. A string body is rendered
//               and sent as is. Content-Type application/json unless a header sets it.
//   expect      status codes that succeed (default: any 2xx).
//   output      {field: path} into {status, headers, body} of the response ("body.data.id",
//               "headers.etag", "status"; header names lower-case). Default {status, body}
//               (body parsed when it is JSON, else the text).
//   writes      {record field: path}, the same paths: AgentOutput.writes.
//   timeout_ms  per call (default 10000); retries (default 2); backoff_ms (base, default
//               200); idempotent (default false: the tool honours Idempotency-Key, so
//               POST/PATCH may be retried too).
//
// Every call sends `Idempotency-Key: <key>` (the same on every retry) and
// `User-Agent: baton/<version>`.
//
// Outcomes: an expected status -> OK. 429/5xx (net::is_retryable_status), a
// timeout or a connection error -> retried here when the method is idempotent
// or `idempotent: true`, with jittered backoff honouring Retry-After, never past
// the deadline and never waiting more than 30 s at once; then RETRYABLE
// `http_<status>` / `timeout` / `unavailable`. Any other status -> FAILED
// `http_<status>` with the first 512 bytes of the body. A missing template
// path -> FAILED `template_error`; a missing output/writes path -> FAILED
// `bad_output`; a response over 4 MiB -> FAILED `response_too_large`.
//
// Secrets (header values from env/file) are sent only in their header: never
// logged, and every occurrence in an error message, output or writes (a server
// that echoes them) is replaced by "[redacted]".
//
// Threads: immutable after construction; call()/execute() are thread-safe and
// never throw. A call blocks for at most (retries + 1) * timeout_ms plus the
// backoff, and never past the deadline when one is given.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "baton/agent.h"
#include "common/util/status.h"

namespace baton::agent {

// kInvalidArgument naming the key ("http: `headers.Authorization`: ...") for a bad config.
FactoryResult make_http_agent(const nlohmann::json& config);

// One configured HTTP call (the `http` agent's config), reusable by other
// agents: the llm agent's tools.
class HttpTool {
 public:
  // `what` prefixes error messages (e.g. "http" or "llm: tools.lookup_order").
  // With allow_args, templates may also read `args.<path>` (the model's
  // tool-call arguments), besides input./record./steps.
  static Result<std::shared_ptr<const HttpTool>> create(const nlohmann::json& config, std::string what,
                                                        bool allow_args = false);
  // Renders against `scope` ({"input","record","steps"} and, for tools,
  // "args"), sends with the given Idempotency-Key, retries as configured, never
  // past deadline_unix_ms (0: no deadline). Returns what the agent returns
  // (output, writes, status, error). Thread-safe, never throws.
  AgentOutput call(const nlohmann::json& scope, const std::string& idempotency_key, int64_t deadline_unix_ms) const;

  ~HttpTool();
  HttpTool(const HttpTool&) = delete;
  HttpTool& operator=(const HttpTool&) = delete;

 private:
  struct Impl;
  explicit HttpTool(std::unique_ptr<const Impl> impl);
  std::unique_ptr<const Impl> impl_;
};

}  // namespace baton::agent
