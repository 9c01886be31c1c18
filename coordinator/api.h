// The coordinator's HTTP control plane (docs/ARCHITECTURE.md §8):
//   POST /v1/runs, GET /v1/runs/{id}, GET /healthz, GET /readyz,
//   GET /v1/workflows, GET /v1/workflows/{name}, GET /v1/workflows/{name}/{version},
//   PUT /v1/workflows (body: the YAML; see docs/workflows.md "Versions"),
//   GET /v1/exceptions, POST /v1/exceptions/{id}, GET /v1/runs/{id}/audit,
//   GET /v1/approvals, POST /v1/approvals/{run}/{step}, GET /v1/stats (docs/kpis.md).
// Every /v1 call is authenticated (ApiOptions::auth) and recorded with its caller.
// Handlers run on the HTTP server's threads; each thread has its own Redis
// connection (hiredis connections are not thread-safe). Changes to a run are
// never made here: a start becomes a RunStarted event on baton.<ns>.events.
// A workflow applied with PUT is stored in Redis (WorkflowStore) and added to
// `registry` before the answer, so POST /v1/runs can use it right away; the
// listings first pick up what other replicas applied (WorkflowStore::refresh).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "common/redis/client.h"
#include "common/workflow/parser.h"
#include "coordinator/auth.h"
#include "coordinator/engine.h"

namespace baton::coordinator {

struct ApiOptions {
  std::string ns = "dev";
  redis::Endpoint redis;
  int produce_timeout_ms = 10000;
  // Bearer tokens and roles (docs/security.md); null: auth off, every caller
  // is an admin named by its X-Baton-User header (or "api").
  std::shared_ptr<const Authenticator> auth;
};

class Api {
 public:
  Api(ApiOptions opts, workflow::Registry& registry, kafka::Producer& producer,
      const std::atomic<bool>& ready)
      : opts_(std::move(opts)), registry_(registry), producer_(producer), ready_(ready) {}

  // Authenticates and authorizes (401/403 JSON errors), serves, and appends
  // the call (caller, method, path, status) to baton:<ns>:api-audit.
  http::Response handle(const http::Request& req);

 private:
  http::Response route(const http::Request& req, const Principal& who);
  http::Response start_run(const http::Request& req, const Principal& who);
  http::Response get_run(std::string_view run_id);
  http::Response get_audit(std::string_view run_id);
  http::Response list_exceptions(const http::Request& req);
  http::Response act_on_exception(const http::Request& req, std::string_view run_id, const Principal& who);
  http::Response list_approvals(const http::Request& req, const Principal& who);
  http::Response stats(const http::Request& req);
  http::Response decide(const http::Request& req, std::string_view run_id, std::string_view step,
                        const Principal& who);
  // Produces a run event and waits for the broker's acknowledgement.
  Status produce_event(const baton::v1::RunEvent& ev);
  http::Response workflows(const http::Request& req);
  http::Response apply_workflow(const http::Request& req);
  redis::Client* redis_for_thread();

  ApiOptions opts_;
  workflow::Registry& registry_;
  kafka::Producer& producer_;
  const std::atomic<bool>& ready_;
};

// Builds the GET /v1/runs/{id} body from a loaded run (shared with batonctl tests).
std::string render_run_json(const RunState& st, const workflow::Workflow* wf);

}  // namespace baton::coordinator
