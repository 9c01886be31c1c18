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
    return act_on_exception(req, id);
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
http::Response Api::act_on_exception(const http::Request& req, std::string_view run_id) {
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
  } else {
    return http::json_error(400, "invalid_argument", "field 'action' must be retry, resolve or cancel");
  }
  a.set_step(step);
  a.set_comment(comment);
  auto user = req.headers.find("x-baton-user");
  a.set_actor(user != req.headers.end() && !user->second.empty() ? user->second : "api");

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
  auto promise = std::make_shared<std::promise<Status>>();
  auto fut = promise->get_future();
  Status ps = producer_.produce(keys::events_topic(opts_.ns), std::string(run_id), ev.SerializeAsString(),
                                [promise](const Status& st) { promise->set_value(st); });
  if (!ps) return http::json_error(503, "unavailable", ps.message());
  if (fut.wait_for(std::chrono::milliseconds(opts_.produce_timeout_ms)) != std::future_status::ready)
    return http::json_error(503, "unavailable", "the events topic did not acknowledge the action in time");
  if (Status ds = fut.get(); !ds) return http::json_error(503, "unavailable", ds.message());
  return json_response(202, {{"run_id", std::string(run_id)}, {"action", action}, {"status", "accepted"}});
}

// The exception queue, newest first: runs that ended in an exception, with the
// reason, where they ended and the detail. `?workflow=` filters, `?limit=`
// (1..1000, default 100) bounds the page.
http::Response Api::list_exceptions(const http::Request& req) {
  int limit = 100;
  if (auto it = req.query.find("limit"); it != req.query.end()) {
    char* end = nullptr;
    long v = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || v < 1 || v > 1000)
      return http::json_error(400, "invalid_argument", "limit must be an integer from 1 to 1000");
    limit = static_cast<int>(v);
  }
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
