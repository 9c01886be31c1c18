#include "coordinator/api.h"

#include <future>
#include <nlohmann/json.hpp>

#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "coordinator/engine.h"
#include "coordinator/starts.h"
#include "proto/baton/v1/baton.pb.h"

namespace baton::coordinator {

namespace {

using nlohmann::json;

http::Response json_response(int status, const json& body) {
  http::Response r;
  r.status = status;
  r.body = body.dump();
  return r;
}

std::vector<std::pair<std::string, std::string>> pairs_of(const redis::Reply& r) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
    out.emplace_back(r.elements[i].str, r.elements[i + 1].str);
  return out;
}

json step_json(const std::string& id, const std::string& role, const RunState& st) {
  json j = {{"id", id}, {"role", role}};
  auto it = st.steps.find(id);
  StepState ss = it == st.steps.end() ? StepState() : it->second;
  j["status"] = to_string(ss.status);
  j["attempts"] = ss.attempt;
  auto out = st.context.find(id);
  j["output"] = out == st.context.end() ? json(nullptr) : *out;
  j["error"] = ss.error_code.empty() ? json(nullptr)
                                     : json{{"code", ss.error_code}, {"message", ss.error_message}};
  j["dispatched_ms"] = ss.dispatched_ms;
  j["started_ms"] = ss.started_ms;
  j["finished_ms"] = ss.finished_ms;
  j["worker_id"] = ss.worker_id;
  return j;
}

}  // namespace

std::string render_run_json(const RunState& st, const workflow::Workflow* wf) {
  json j = {{"run_id", st.run_id},         {"workflow", st.workflow},     {"version", st.version},
            {"status", to_string(st.status)}, {"reason", st.reason},     {"reason_detail", st.reason_detail},
            {"record_key", st.record_key}, {"dedupe_key", st.dedupe_key}, {"created_ms", st.created_ms},
            {"updated_ms", st.updated_ms}, {"ended_ms", st.ended_ms},     {"steps_executed", st.steps_executed},
            {"input", st.input}};
  json steps = json::array();
  if (wf) {
    for (const auto& s : wf->steps) steps.push_back(step_json(s.id, s.role, st));
  } else {
    for (const auto& [id, _] : st.steps) steps.push_back(step_json(id, "", st));
  }
  j["steps"] = std::move(steps);
  return j.dump();
}

redis::Client* Api::redis_for_thread() {
  thread_local std::unique_ptr<redis::Client> client;
  thread_local const Api* owner = nullptr;
  if (!client || owner != this) {
    auto c = redis::Client::connect(opts_.redis);
    if (!c) return nullptr;
    client = std::move(c).value();
    owner = this;
  }
  return client.get();
}

http::Response Api::handle(const http::Request& req) {
  if (req.path == "/healthz") return json_response(200, {{"status", "ok"}});
  if (req.path == "/readyz") {
    if (ready_.load()) return json_response(200, {{"status", "ready"}});
    return http::json_error(503, "not_ready", "the coordinator has not joined its consumer group yet");
  }
  if (req.path == "/v1/runs") {
    if (req.method == "POST") return start_run(req);
    return http::json_error(405, "method_not_allowed", "use POST /v1/runs");
  }
  constexpr std::string_view kRunPrefix = "/v1/runs/";
  if (req.path.rfind(kRunPrefix, 0) == 0) {
    std::string_view id = std::string_view(req.path).substr(kRunPrefix.size());
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET /v1/runs/{id}");
    if (id.empty() || id.size() > 128 || id.find_first_of("/{}: ") != std::string_view::npos)
      return http::json_error(400, "invalid_argument", "bad run id");
    return get_run(id);
  }
  return http::json_error(404, "not_found", "no route for " + req.method + " " + req.path);
}

http::Response Api::start_run(const http::Request& req) {
  auto body = parse_json_object(req.body);
  if (!body) {
    int status = body.status().code() == Code::kTooLarge ? 413 : 400;
    return http::json_error(status, code_name(body.status().code()), body.status().message());
  }
  const json& b = *body;
  auto wf_it = b.find("workflow");
  if (wf_it == b.end() || !wf_it->is_string() || wf_it->get<std::string>().empty())
    return http::json_error(400, "invalid_argument", "field 'workflow' (string) is required");
  uint32_t version = 0;
  if (auto v = b.find("version"); v != b.end() && !v->is_null()) {
    if (!v->is_number_unsigned()) return http::json_error(400, "invalid_argument", "field 'version' must be a non-negative integer");
    version = v->get<uint32_t>();
  }
  json input = json::object();
  if (auto in = b.find("input"); in != b.end() && !in->is_null()) {
    if (!in->is_object()) return http::json_error(400, "invalid_argument", "field 'input' must be a JSON object");
    input = *in;
  }
  std::string name = wf_it->get<std::string>();
  auto wf = registry_.find(name, version);
  if (!wf) {
    return http::json_error(404, "not_found",
                            "workflow '" + name + "'" + (version ? " version " + std::to_string(version) : "") +
                                " is not loaded");
  }
  std::string given;
  if (auto d = b.find("dedupe_key"); d != b.end() && !d->is_null()) {
    if (!d->is_string()) return http::json_error(400, "invalid_argument", "field 'dedupe_key' must be a string");
    given = d->get<std::string>();
  }
  auto dedupe = start_dedupe_key(*wf, input, given);
  if (!dedupe) return http::json_error(400, "invalid_argument", dedupe.status().message());
  auto user = req.headers.find("x-baton-user");
  baton::v1::RunEvent ev =
      make_start_event(*wf, input.dump(), *dedupe, user != req.headers.end() ? user->second : "api");
  const std::string& run_id = ev.run_id();
  auto promise = std::make_shared<std::promise<Status>>();
  auto fut = promise->get_future();
  Status ps = producer_.produce(keys::events_topic(opts_.ns), run_id, ev.SerializeAsString(),
                                [promise](const Status& st) { promise->set_value(st); });
  if (!ps) return http::json_error(503, "unavailable", ps.message());
  if (fut.wait_for(std::chrono::milliseconds(opts_.produce_timeout_ms)) != std::future_status::ready)
    return http::json_error(503, "unavailable", "the events topic did not acknowledge the start in time");
  Status ds = fut.get();
  if (!ds) return http::json_error(503, "unavailable", ds.message());
  return json_response(202, {{"run_id", run_id}, {"workflow", wf->name}, {"version", wf->version},
                             {"dedupe_key", *dedupe}});
}

http::Response Api::get_run(std::string_view run_id) {
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  c->append({"HGETALL", keys::run(opts_.ns, run_id)});
  c->append({"HGETALL", keys::run_ctx(opts_.ns, run_id)});
  auto replies = c->exec();
  if (!replies) return http::json_error(503, "unavailable", replies.status().message());
  RunState st;
  if (!RunState::from_hashes(run_id, pairs_of((*replies)[0]), pairs_of((*replies)[1]), st))
    return http::json_error(404, "not_found", "no run " + std::string(run_id));
  auto wf = registry_.find(st.workflow, st.version);
  http::Response r;
  r.body = render_run_json(st, wf.get());
  return r;
}

}  // namespace baton::coordinator
