#include "coordinator/api.h"

#include <algorithm>
#include <spdlog/spdlog.h>

#include <charconv>
#include <future>
#include <nlohmann/json.hpp>

#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "coordinator/engine.h"
#include "coordinator/starts.h"
#include "coordinator/stats.h"
#include "coordinator/workflow_store.h"
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
  json j = {{"id", id}, {"step", std::string(step_of(id))}, {"role", role}};
  auto it = st.steps.find(id);
  StepState ss = it == st.steps.end() ? StepState() : it->second;
  j["status"] = to_string(ss.status);
  j["attempts"] = ss.attempt;
  auto hist = st.history.find(id);
  auto out = st.context.find(ss.key.empty() ? std::string(step_of(id)) : ss.key);
  j["output"] = hist != st.history.end() ? *hist : out == st.context.end() ? json(nullptr) : *out;
  j["error"] = ss.error_code.empty() ? json(nullptr)
                                     : json{{"code", ss.error_code}, {"message", ss.error_message}};
  j["dispatched_ms"] = ss.dispatched_ms;
  j["started_ms"] = ss.started_ms;
  j["finished_ms"] = ss.finished_ms;
  j["worker_id"] = ss.worker_id;
  if (!ss.parent.empty()) j["parent"] = ss.parent;
  if (ss.round) j["round"] = ss.round;
  return j;
}

json workflow_item(const workflow::Workflow& wf) {
  return {{"name", wf.name},
          {"version", wf.version},
          {"steps", wf.steps.size()},
          {"roles", wf.roles()},
          {"source", wf.source_path == kAppliedSource ? std::string("applied") : wf.source_path}};
}

// `?limit=` of a listing: 1..1000 (default: `limit` as given). false when malformed.
bool page_limit(const http::Request& req, int& limit) {
  auto it = req.query.find("limit");
  if (it == req.query.end()) return true;
  char* end = nullptr;
  long v = std::strtol(it->second.c_str(), &end, 10);
  if (it->second.empty() || *end != '\0' || v < 1 || v > 1000) return false;
  limit = static_cast<int>(v);
  return true;
}

// A path segment we accept as a workflow name (the parser's rule is stricter).
bool plain_segment(std::string_view s) {
  return !s.empty() && s.size() <= 128 && s.find_first_of("/{}:@ %") == std::string_view::npos;
}

}  // namespace

std::string render_run_json(const RunState& st, const workflow::Workflow* wf) {
  json j = {{"run_id", st.run_id},         {"workflow", st.workflow},     {"version", st.version},
            {"status", to_string(st.status)}, {"reason", st.reason},     {"reason_detail", st.reason_detail},
            {"record_key", st.record_key}, {"ended_step", st.ended_at}, {"dedupe_key", st.dedupe_key}, {"created_ms", st.created_ms},
            {"updated_ms", st.updated_ms}, {"ended_ms", st.ended_ms},     {"steps_executed", st.steps_executed},
            {"input", st.input}};
  // Every instance that ran, in the order it started (loops and planners run a
  // step several times: "draft", "draft#2"), then the steps not reached yet.
  std::vector<std::pair<const std::string*, const StepState*>> ran;
  for (const auto& [id, ss] : st.steps) ran.emplace_back(&id, &ss);
  std::stable_sort(ran.begin(), ran.end(), [](const auto& a, const auto& b) {
    if (a.second->dispatched_ms != b.second->dispatched_ms) return a.second->dispatched_ms < b.second->dispatched_ms;
    return a.second->seq < b.second->seq;
  });
  json steps = json::array();
  json path = json::array();
  for (const auto& [id, ss] : ran) {
    const workflow::Step* def = wf ? wf->find_step(step_of(*id)) : nullptr;
    steps.push_back(step_json(*id, def ? def->role : std::string(), st));
  }
  if (wf) {
    for (const auto& s : wf->steps)
      if (!st.steps.count(s.id)) steps.push_back(step_json(s.id, s.role, st));
  }
  std::sort(ran.begin(), ran.end(), [](const auto& a, const auto& b) { return a.second->seq < b.second->seq; });
  for (const auto& [id, ss] : ran)
    if (ss->seq) path.push_back(*id);
  j["steps"] = std::move(steps);
  j["path"] = std::move(path);
  if (wf) redact_sensitive(j, wf->sensitive_fields());  // the API never shows them
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
  Principal who;
  std::optional<http::Response> denied;
  if (opts_.auth) {
    denied = authorize(*opts_.auth, req, who);
    if (denied && who.name.empty()) who.name = "anonymous";
  } else {
    auto user = req.headers.find("x-baton-user");
    // Header bytes are outside data: the name goes into protobuf strings
    // (RunStarted.requested_by, decisions) and JSON, which need UTF-8.
    who.name = user != req.headers.end() && !user->second.empty() ? valid_utf8(user->second.substr(0, 128)) : "api";
    who.role = Role::kAdmin;
  }
  http::Response r = denied ? std::move(*denied) : route(req, who);
  if (req.path.rfind("/v1", 0) == 0) {
    // Every control-plane call, with its caller: a capped stream (the run's own
    // audit trail has what changed a run, with the same caller as actor).
    if (redis::Client* c = redis_for_thread()) {
      (void)c->command({"XADD", keys::api_audit(opts_.ns), "MAXLEN", "~", "100000", "*", "caller", who.name, "role",
                        to_string(who.role), "method", req.method, "path", req.path, "status",
                        std::to_string(r.status), "at", std::to_string(now_unix_ms())});
    }
  }
  return r;
}

http::Response Api::route(const http::Request& req, const Principal& who) {
  if (req.path == "/healthz") return json_response(200, {{"status", "ok"}});
  if (req.path == "/readyz") {
    if (ready_.load()) return json_response(200, {{"status", "ready"}});
    return http::json_error(503, "not_ready", "the coordinator has not joined its consumer group yet");
  }
  if (req.path == "/v1/whoami") {
    return json_response(200, {{"name", who.name}, {"role", to_string(who.role)}, {"groups", who.groups}});
  }
  if (req.path == "/v1/stats") {
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET /v1/stats");
    return stats(req);
  }
  if (req.path == "/v1/approvals") {
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET /v1/approvals");
    return list_approvals(req, who);
  }
  constexpr std::string_view kApprovalPrefix = "/v1/approvals/";
  if (req.path.rfind(kApprovalPrefix, 0) == 0) {
    std::string_view rest = std::string_view(req.path).substr(kApprovalPrefix.size());
    auto slash = rest.find('/');
    if (req.method != "POST") return http::json_error(405, "method_not_allowed", "use POST /v1/approvals/{run_id}/{step}");
    if (slash == std::string_view::npos) return http::json_error(400, "invalid_argument", "use /v1/approvals/{run_id}/{step}");
    std::string_view run = rest.substr(0, slash);
    // A step instance id may hold '#' ("qualify#2"): sent as %23.
    std::string step_text(rest.substr(slash + 1));
    for (std::size_t at = step_text.find("%23"); at != std::string::npos; at = step_text.find("%23", at + 1))
      step_text.replace(at, 3, "#");
    std::string_view step = step_text;
    if (run.empty() || run.size() > 128 || run.find_first_of("/{}: |") != std::string_view::npos || step.empty() ||
        step.size() > 200 || step.find_first_of("/{}: |") != std::string_view::npos)
      return http::json_error(400, "invalid_argument", "bad run id or step");
    return decide(req, run, step, who);
  }
  if (req.path == "/v1/runs") {
    if (req.method == "POST") return start_run(req, who);
    return http::json_error(405, "method_not_allowed", "use POST /v1/runs");
  }
  if (req.path == "/v1/workflows" || req.path.rfind("/v1/workflows/", 0) == 0) return workflows(req);
  if (req.path == "/v1/exceptions") {
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET /v1/exceptions");
    return list_exceptions(req);
  }
  constexpr std::string_view kExceptionPrefix = "/v1/exceptions/";
  if (req.path.rfind(kExceptionPrefix, 0) == 0) {
    std::string_view id = std::string_view(req.path).substr(kExceptionPrefix.size());
    if (req.method != "POST") return http::json_error(405, "method_not_allowed", "use POST /v1/exceptions/{run_id}");
    if (id.empty() || id.size() > 128 || id.find_first_of("/{}: ") != std::string_view::npos)
      return http::json_error(400, "invalid_argument", "bad run id");
    return act_on_exception(req, id, who);
  }
  constexpr std::string_view kRunPrefix = "/v1/runs/";
  if (req.path.rfind(kRunPrefix, 0) == 0) {
    std::string_view id = std::string_view(req.path).substr(kRunPrefix.size());
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET /v1/runs/{id}");
    constexpr std::string_view kAudit = "/audit";
    if (id.size() > kAudit.size() && id.substr(id.size() - kAudit.size()) == kAudit) {
      id.remove_suffix(kAudit.size());
      if (id.size() > 128 || id.find_first_of("/{}: ") != std::string_view::npos)
        return http::json_error(400, "invalid_argument", "bad run id");
      return get_audit(id);
    }
    if (id.empty() || id.size() > 128 || id.find_first_of("/{}: ") != std::string_view::npos)
      return http::json_error(400, "invalid_argument", "bad run id");
    return get_run(id);
  }
  return http::json_error(404, "not_found", "no route for " + req.method + " " + req.path);
}

http::Response Api::start_run(const http::Request& req, const Principal& who) {
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
  baton::v1::RunEvent ev = make_start_event(*wf, input.dump(), *dedupe, who.name);
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

http::Response Api::workflows(const http::Request& req) {
  if (req.path == "/v1/workflows") {
    if (req.method == "PUT") return apply_workflow(req);
    if (req.method != "GET") return http::json_error(405, "method_not_allowed", "use GET or PUT /v1/workflows");
  } else if (req.method != "GET") {
    return http::json_error(405, "method_not_allowed", "use GET /v1/workflows/{name}[/{version}]");
  }
  std::string_view rest = std::string_view(req.path).substr(std::string_view("/v1/workflows").size());
  if (!rest.empty()) rest.remove_prefix(1);  // the '/'
  std::string_view name = rest.substr(0, rest.find('/'));
  std::string_view version_text =
      rest.find('/') == std::string_view::npos ? std::string_view() : rest.substr(rest.find('/') + 1);
  if (!rest.empty() && !plain_segment(name)) return http::json_error(400, "invalid_argument", "bad workflow name");

  if (!version_text.empty() || rest.find('/') != std::string_view::npos) {
    uint32_t version = 0;
    auto [end, ec] = std::from_chars(version_text.data(), version_text.data() + version_text.size(), version);
    if (ec != std::errc() || end != version_text.data() + version_text.size() || version == 0)
      return http::json_error(400, "invalid_argument", "the version must be a positive integer");
    auto wf = registry_.find(name, version);  // a miss looks in Redis (refresh_on_miss)
    if (!wf)
      return http::json_error(404, "not_found",
                              "workflow '" + std::string(name) + "' version " + std::to_string(version) +
                                  " is not known");
    return json_response(200, wf->to_json());
  }

  // Listings: first pick up what other replicas applied; serve what we have if Redis is down.
  if (redis::Client* c = redis_for_thread()) {
    if (Status s = WorkflowStore(*c, opts_.ns).refresh(registry_); !s)
      spdlog::warn("GET {}: refreshing workflows from Redis: {}", req.path, s.to_string());
  }
  json items = json::array();
  for (const auto& wf : registry_.all())  // sorted by name, then version
    if (name.empty() || wf->name == name) items.push_back(workflow_item(*wf));
  if (name.empty()) return json_response(200, {{"workflows", std::move(items)}});
  if (items.empty()) return http::json_error(404, "not_found", "workflow '" + std::string(name) + "' is not known");
  return json_response(200, {{"name", name}, {"workflows", std::move(items)}});
}

http::Response Api::apply_workflow(const http::Request& req) {
  if (req.body.size() > limits::kMaxWorkflowFileBytes) {
    return http::json_error(413, "too_large",
                            "a workflow is at most " + std::to_string(limits::kMaxWorkflowFileBytes) +
                                " bytes; got " + std::to_string(req.body.size()));
  }
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  auto applied = WorkflowStore(*c, opts_.ns).apply(req.body, &registry_);
  if (!applied) {
    const Status& s = applied.status();
    switch (s.code()) {
      case Code::kInvalidArgument:
        return http::json_error(400, "invalid_workflow", s.message());
      case Code::kAlreadyExists:
        return http::json_error(409, "conflict", s.message());
      case Code::kTooLarge:
        return http::json_error(413, "too_large", s.message());
      case Code::kUnavailable:
        return http::json_error(503, "unavailable", s.message());
      default:
        return http::json_error(500, "internal", s.message());
    }
  }
  const auto& wf = *applied->workflow;
  return json_response(applied->created ? 201 : 200,
                       {{"name", wf.name},
                        {"version", wf.version},
                        {"status", applied->created ? "created" : "unchanged"}});
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

// The run's audit stream, oldest first: [{id, kind, at_ms, actor, detail}].
// At most kMaxAuditEntries entries; `truncated` says when there were more.
http::Response Api::get_audit(std::string_view run_id) {
  constexpr int kMaxAuditEntries = 10000;
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  c->append({"EXISTS", keys::run(opts_.ns, run_id)});
  c->append({"XRANGE", keys::run_audit(opts_.ns, run_id), "-", "+", "COUNT", std::to_string(kMaxAuditEntries + 1)});
  auto replies = c->exec();
  if (!replies || replies->size() != 2) {
    return http::json_error(503, "unavailable", replies ? "short reply" : replies.status().message());
  }
  if ((*replies)[0].integer == 0) return http::json_error(404, "not_found", "no run " + std::string(run_id));
  json entries = json::array();
  const auto& items = (*replies)[1].elements;
  for (std::size_t i = 0; i < items.size() && i < static_cast<std::size_t>(kMaxAuditEntries); ++i) {
    const auto& e = items[i];
    if (e.elements.size() != 2) continue;
    json entry = {{"id", e.elements[0].str}};
    const auto& fields = e.elements[1].elements;
    for (std::size_t k = 0; k + 1 < fields.size(); k += 2) {
      const std::string& name = fields[k].str;
      const std::string& value = fields[k + 1].str;
      if (name == "kind" || name == "actor") {
        entry[name] = value;
      } else if (name == "at") {
        entry["at_ms"] = std::strtoll(value.c_str(), nullptr, 10);
      } else if (name == "detail") {
        auto d = parse_json(value, limits::kMaxMessageBytes);
        entry["detail"] = d ? std::move(d).value() : json(value);
      }
    }
    entries.push_back(std::move(entry));
  }
  return json_response(200, {{"run_id", std::string(run_id)},
                             {"entries", std::move(entries)},
                             {"truncated", items.size() > static_cast<std::size_t>(kMaxAuditEntries)}});
}

// An operator action on a run in the exception queue, as a RunEvent applied by
// the run's owner (the engine checks it again there):
// {"action": "retry" | "resolve" | "cancel", "step"?, "input"? (retry),
//  "output"? (resolve, required), "comment"?}. 202 when the event is on the
// events topic; 404 unknown run; 409 not in the queue.
http::Response Api::act_on_exception(const http::Request& req, std::string_view run_id, const Principal& who) {
  auto body = parse_json_object(req.body);
  if (!body) {
    int status = body.status().code() == Code::kTooLarge ? 413 : 400;
    return http::json_error(status, code_name(body.status().code()), body.status().message());
  }
  const json& b = *body;
  auto str_field = [&](const char* name, std::string& out) -> bool {
    auto it = b.find(name);
    if (it == b.end() || it->is_null()) return true;
    if (!it->is_string()) return false;
    out = it->get<std::string>();
    return true;
  };
  std::string action, step, comment;
  if (!str_field("action", action) || !str_field("step", step) || !str_field("comment", comment))
    return http::json_error(400, "invalid_argument", "fields 'action', 'step' and 'comment' must be strings");
  baton::v1::OperatorAction a;
  if (action == "retry") {
    a.set_kind(baton::v1::OperatorAction::RETRY);
    if (auto in = b.find("input"); in != b.end() && !in->is_null()) {
      if (!in->is_object()) return http::json_error(400, "invalid_argument", "field 'input' must be a JSON object");
      a.set_input_json(in->dump());
    }
  } else if (action == "resolve") {
    a.set_kind(baton::v1::OperatorAction::RESOLVE);
    auto out = b.find("output");
    if (out == b.end() || !out->is_object())
      return http::json_error(400, "invalid_argument", "resolve needs field 'output' (a JSON object)");
    a.set_output_json(out->dump());
  } else if (action == "cancel") {
    a.set_kind(baton::v1::OperatorAction::CANCEL);
  } else if (action == "reroute") {
    a.set_kind(baton::v1::OperatorAction::REROUTE);
    if (step.empty()) return http::json_error(400, "invalid_argument", "reroute needs field 'step' (where the run goes on)");
    if (auto in = b.find("input"); in != b.end() && !in->is_null()) {
      if (!in->is_object()) return http::json_error(400, "invalid_argument", "field 'input' must be a JSON object");
      a.set_input_json(in->dump());
    }
  } else {
    return http::json_error(400, "invalid_argument", "field 'action' must be retry, resolve, reroute or cancel");
  }
  a.set_step(step);
  a.set_comment(comment);
  a.set_actor(who.name);

  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  auto status = c->command({"HGET", keys::run(opts_.ns, run_id), "status"});
  if (!status) return http::json_error(503, "unavailable", status.status().message());
  if (status->is_nil()) return http::json_error(404, "not_found", "no run " + std::string(run_id));
  if (status->str != "exception")
    return http::json_error(409, "conflict", "run " + std::string(run_id) + " is " + status->str + ", not in the exception queue");

  baton::v1::RunEvent ev;
  ev.set_run_id(std::string(run_id));
  ev.set_event_id(random_id());
  ev.set_produced_unix_ms(now_unix_ms());
  *ev.mutable_operator_() = std::move(a);
  if (Status ps = produce_event(ev); !ps) return http::json_error(503, "unavailable", ps.message());
  return json_response(202, {{"run_id", std::string(run_id)}, {"action", action}, {"status", "accepted"}});
}

Status Api::produce_event(const baton::v1::RunEvent& ev) {
  auto promise = std::make_shared<std::promise<Status>>();
  auto fut = promise->get_future();
  Status ps = producer_.produce(keys::events_topic(opts_.ns), ev.run_id(), ev.SerializeAsString(),
                                [promise](const Status& st) { promise->set_value(st); });
  if (!ps) return ps;
  if (fut.wait_for(std::chrono::milliseconds(opts_.produce_timeout_ms)) != std::future_status::ready)
    return Status(Code::kUnavailable, "the events topic did not acknowledge the event in time");
  return fut.get();
}

// KPIs per workflow and version over the runs started in a window
// (docs/kpis.md): ?workflow=, ?version=, ?since= and ?until= (unix ms; default
// the last 24 h), ?max_runs= (default 20000).
http::Response Api::stats(const http::Request& req) {
  StatsQuery q;
  const int64_t now = now_unix_ms();
  auto num = [&](const char* name, int64_t& out) -> bool {
    auto it = req.query.find(name);
    if (it == req.query.end()) return true;
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < 0) return false;
    out = v;
    return true;
  };
  int64_t version = 0, max_runs = 20000;
  q.since_ms = now - 24 * 3600 * 1000;
  q.until_ms = now;
  if (!num("since", q.since_ms) || !num("until", q.until_ms) || !num("version", version) || !num("max_runs", max_runs))
    return http::json_error(400, "invalid_argument", "since, until, version and max_runs must be non-negative integers");
  if (auto it = req.query.find("workflow"); it != req.query.end()) q.workflow = it->second;
  q.version = static_cast<uint32_t>(version);
  q.max_runs = static_cast<std::size_t>(max_runs);
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  auto r = compute_stats(*c, opts_.ns, q, now);
  if (!r) {
    int status = r.status().code() == Code::kInvalidArgument ? 400 : 503;
    return http::json_error(status, code_name(r.status().code()), r.status().message());
  }
  return json_response(200, *r);
}

// Open gates, oldest first: approvals and sampled reviews waiting for a person.
// Approvers see their groups' gates only; `?group=` filters, `?limit=` (1..1000,
// default 100) bounds the page. Each entry carries what the person needs to
// decide: the run, the step, the held output (for a task's result) and the SLA.
http::Response Api::list_approvals(const http::Request& req, const Principal& who) {
  int limit = 100;
  if (!page_limit(req, limit)) return http::json_error(400, "invalid_argument", "limit must be an integer from 1 to 1000");
  std::string group;
  if (auto it = req.query.find("group"); it != req.query.end()) group = it->second;
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  auto members = c->command({"ZRANGE", keys::approvals(opts_.ns), "0", "9999"});
  if (!members) return http::json_error(503, "unavailable", members.status().message());
  struct Gate {
    std::string run, step;
  };
  std::vector<Gate> gates;
  for (const auto& m : members->elements) {
    auto bar = m.str.find('|');
    if (bar == std::string::npos) continue;
    gates.push_back({m.str.substr(0, bar), m.str.substr(bar + 1)});
    c->append({"HMGET", keys::run(opts_.ns, gates.back().run), "wf", "ver", "record", "status",
               RunState::step_field(gates.back().step)});
  }
  json out = json::array();
  if (!gates.empty()) {
    auto rows = c->exec();
    if (!rows) return http::json_error(503, "unavailable", rows.status().message());
    for (std::size_t i = 0; i < rows->size() && i < gates.size(); ++i) {
      const auto& f = (*rows)[i].elements;
      if (f.size() != 5 || f[0].is_nil() || f[3].str != "running" || f[4].is_nil()) continue;  // closed meanwhile
      auto sj = parse_json(f[4].str, limits::kMaxMessageBytes);
      if (!sj) continue;
      StepState ss = StepState::from_json(*sj);
      if (ss.status != StepStatus::kAwaitingApproval || !ss.gate) continue;
      const GateState& g = *ss.gate;
      if (!group.empty() && g.group != group) continue;
      if (who.role == Role::kApprover && !who.may_decide(g.group)) continue;
      json item = {{"run_id", gates[i].run},
                   {"step", gates[i].step},
                   {"workflow", f[0].str},
                   {"version", std::strtoll(f[1].str.c_str(), nullptr, 10)},
                   {"record_key", f[2].str},
                   {"kind", g.kind},
                   {"group", g.group},
                   {"opened_ms", g.opened_ms},
                   {"due_ms", g.due_ms},
                   {"escalations", g.escalations},
                   {"output", g.output}};
      if (auto wf = registry_.find(f[0].str, static_cast<uint32_t>(std::strtoul(f[1].str.c_str(), nullptr, 10))))
        redact_sensitive(item["output"], wf->sensitive_fields());
      out.push_back(std::move(item));
      if (out.size() >= static_cast<std::size_t>(limit)) break;
    }
  }
  return json_response(200, {{"approvals", std::move(out)}});
}

// A decision on an open gate: {"decision": "approve" | "reject", "comment"?,
// "output"? (approve with a corrected output: held results only)}. 202 when
// the event is on the events topic; 403 when the caller may not decide for
// the gate's group; 404 unknown run; 409 no open gate on that step.
http::Response Api::decide(const http::Request& req, std::string_view run_id, std::string_view step,
                           const Principal& who) {
  auto body = parse_json_object(req.body);
  if (!body) {
    int status = body.status().code() == Code::kTooLarge ? 413 : 400;
    return http::json_error(status, code_name(body.status().code()), body.status().message());
  }
  const json& b = *body;
  auto d = b.find("decision");
  if (d == b.end() || !d->is_string() || (*d != "approve" && *d != "reject"))
    return http::json_error(400, "invalid_argument", "field 'decision' must be approve or reject");
  baton::v1::GateDecision gd;
  gd.set_step(std::string(step));
  gd.set_approve(*d == "approve");
  if (auto cm = b.find("comment"); cm != b.end() && !cm->is_null()) {
    if (!cm->is_string()) return http::json_error(400, "invalid_argument", "field 'comment' must be a string");
    gd.set_comment(cm->get<std::string>());
  }
  if (auto o = b.find("output"); o != b.end() && !o->is_null()) {
    if (!o->is_object()) return http::json_error(400, "invalid_argument", "field 'output' must be a JSON object");
    if (!gd.approve()) return http::json_error(400, "invalid_argument", "a rejection takes no 'output'");
    gd.set_output_json(o->dump());
  }
  gd.set_actor(who.name);

  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  auto f = c->command({"HMGET", keys::run(opts_.ns, run_id), "status", RunState::step_field(step)});
  if (!f) return http::json_error(503, "unavailable", f.status().message());
  if (f->elements.size() != 2 || f->elements[0].is_nil())
    return http::json_error(404, "not_found", "no run " + std::string(run_id));
  std::optional<GateState> gate;
  if (!f->elements[1].is_nil()) {
    if (auto sj = parse_json(f->elements[1].str, limits::kMaxMessageBytes)) {
      StepState ss = StepState::from_json(*sj);
      if (ss.status == StepStatus::kAwaitingApproval) gate = ss.gate;
    }
  }
  if (f->elements[0].str != "running" || !gate)
    return http::json_error(409, "conflict", "no open gate on step " + std::string(step) + " of run " + std::string(run_id));
  if (!who.may_decide(gate->group))
    return http::json_error(403, "forbidden", who.name + " may not decide for group " + gate->group);
  if (!gd.output_json().empty() && gate->output.is_null())
    return http::json_error(400, "invalid_argument", "an approval step takes no 'output'");

  baton::v1::RunEvent ev;
  ev.set_run_id(std::string(run_id));
  ev.set_event_id(random_id());
  ev.set_produced_unix_ms(now_unix_ms());
  *ev.mutable_decision() = std::move(gd);
  if (Status ps = produce_event(ev); !ps) return http::json_error(503, "unavailable", ps.message());
  return json_response(202, {{"run_id", std::string(run_id)}, {"step", std::string(step)},
                             {"decision", d->get<std::string>()}, {"status", "accepted"}});
}

// The exception queue, newest first: runs that ended in an exception, with the
// reason, where they ended and the detail. `?workflow=` filters, `?limit=`
// (1..1000, default 100) bounds the page.
http::Response Api::list_exceptions(const http::Request& req) {
  int limit = 100;
  if (!page_limit(req, limit)) return http::json_error(400, "invalid_argument", "limit must be an integer from 1 to 1000");
  std::string workflow;
  if (auto it = req.query.find("workflow"); it != req.query.end()) workflow = it->second;
  redis::Client* c = redis_for_thread();
  if (!c) return http::json_error(503, "unavailable", "redis is unreachable");
  // A filter may skip entries: scan at most 10 pages of the queue for one page of answers.
  const int scan = workflow.empty() ? limit : limit * 10;
  auto ids = c->command({"ZREVRANGE", keys::exceptions(opts_.ns), "0", std::to_string(scan - 1), "WITHSCORES"});
  if (!ids) return http::json_error(503, "unavailable", ids.status().message());
  const auto& el = ids->elements;
  for (std::size_t i = 0; i + 1 < el.size(); i += 2)
    c->append({"HMGET", keys::run(opts_.ns, el[i].str), "wf", "ver", "reason", "detail", "at", "created", "ended",
               "record"});
  json out = json::array();
  if (!el.empty()) {
    auto rows = c->exec();
    if (!rows) return http::json_error(503, "unavailable", rows.status().message());
    for (std::size_t i = 0; i < rows->size() && 2 * i + 1 < el.size(); ++i) {
      const auto& f = (*rows)[i].elements;
      if (f.size() != 8 || f[0].is_nil()) continue;  // the run hash is gone
      if (!workflow.empty() && f[0].str != workflow) continue;
      out.push_back({{"run_id", el[2 * i].str},
                     {"workflow", f[0].str},
                     {"version", std::strtoll(f[1].str.c_str(), nullptr, 10)},
                     {"reason", f[2].str},
                     {"detail", f[3].str},
                     {"step", f[4].str},
                     {"created_ms", std::strtoll(f[5].str.c_str(), nullptr, 10)},
                     {"ended_ms", std::strtoll(f[6].str.c_str(), nullptr, 10)},
                     {"record_key", f[7].str},
                     {"queued_ms", std::strtoll(el[2 * i + 1].str.c_str(), nullptr, 10)}});
      if (out.size() >= static_cast<std::size_t>(limit)) break;
    }
  }
  return json_response(200, {{"exceptions", std::move(out)}});
}

}  // namespace baton::coordinator
