#include "workers/executor.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <exception>
#include <mutex>
#include <regex>

#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/limits.h"
#include "workers/agents/config.h"

namespace baton::worker {
namespace {

using agent::AgentOutput;
using v1::StepResult;

StepResult::Status to_proto(AgentOutput::Status s) {
  switch (s) {
    case AgentOutput::kOk:
      return StepResult::OK;
    case AgentOutput::kRetryable:
      return StepResult::RETRYABLE;
    case AgentOutput::kFailed:
      return StepResult::FAILED;
    case AgentOutput::kNeedsReview:
      return StepResult::NEEDS_REVIEW;
  }
  return StepResult::FAILED;
}

void fail(StepResult& r, const char* code, std::string message) {
  r.set_status(StepResult::FAILED);
  r.mutable_error()->set_code(code);
  r.mutable_error()->set_message(std::move(message));
  r.set_output_json("{}");
  r.set_writes_json("{}");
}

Result<nlohmann::json> parse_object_or_empty(const std::string& text, const char* what) {
  if (text.empty()) return nlohmann::json::object();
  auto j = parse_json_object(text, limits::kMaxMessageBytes);
  if (!j) return invalid(std::string(what) + ": " + j.status().message());
  return j;
}

// "{{ path }}" and nothing else -> the path.
std::string whole_path(const std::string& source) {
  static const std::regex kWhole(R"(^\s*\{\{\s*([^{}\s]+)\s*\}\}\s*$)");
  std::smatch m;
  if (std::regex_match(source, m, kWhole)) return m[1].str();
  return {};
}

}  // namespace

std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<RecordView> decode_record(const redis::Reply& reply) {
  if (reply.is_error()) return invalid("record read failed: " + reply.str);
  if (reply.is_nil()) return RecordView{};
  if (!reply.is_array()) return invalid("record read returned a non-array reply");
  if (reply.elements.size() % 2 != 0) return invalid("record read returned an odd number of elements");
  RecordView rec;
  for (std::size_t i = 0; i + 1 < reply.elements.size(); i += 2) {
    const std::string& field = reply.elements[i].str;
    const std::string& value = reply.elements[i + 1].str;
    if (field == "_v") {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
      if (ec != std::errc() || end != value.data() + value.size()) {
        return invalid("record version `_v` is not an integer: " + value);
      }
      rec.version = v;
      continue;
    }
    if (field.empty() || field[0] == '_') continue;
    auto parsed = parse_json(value, limits::kMaxMessageBytes);
    if (parsed) {
      rec.fields[field] = std::move(parsed).value();
    } else {
      rec.fields[field] = value;
    }
  }
  return rec;
}

std::vector<std::string> map_writes(const google::protobuf::RepeatedPtrField<std::string>& allowed,
                                    const nlohmann::json& output, nlohmann::json& writes) {
  if (!writes.is_object()) writes = nlohmann::json::object();
  for (const auto& field : allowed) {
    if (writes.contains(field)) continue;
    auto it = output.find(field);
    if (it != output.end()) writes[field] = *it;
  }
  std::vector<std::string> forbidden;
  for (auto it = writes.begin(); it != writes.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) forbidden.push_back(it.key());
  }
  return forbidden;
}

std::string_view base_step_id(std::string_view step_id) { return step_id.substr(0, step_id.find('#')); }

Executor::Executor(std::shared_ptr<const workflow::Registry> workflows, const agent::AgentRegistry& agents,
                   std::string role, std::string worker_id)
    : workflows_(std::move(workflows)), agents_(agents), role_(std::move(role)), worker_id_(std::move(worker_id)) {
  if (!workflows_) return;
  for (const auto& wf : workflows_->all()) {
    for (const auto& step : wf->steps) {
      if (!role_.empty() && step.role != role_) continue;
      build(*wf, step);
    }
  }
}

workflow::WorkflowPtr Executor::lookup(std::string_view name, uint32_t version) const {
  workflow::WorkflowPtr a = workflows_ ? workflows_->find(name, version) : nullptr;
  if (a && version != 0) return a;
  workflow::WorkflowPtr b = learned_.find(name, version);
  if (!a) return b;
  if (!b) return a;
  return a->version >= b->version ? a : b;  // version 0: the highest of both
}

bool Executor::knows(std::string_view name, uint32_t version) const { return lookup(name, version) != nullptr; }

bool Executor::claim_reload(std::string_view name, uint32_t version, int64_t now_ms, int64_t interval_ms) const {
  std::unique_lock lock(mu_);
  std::string key = std::string(name) + "@" + std::to_string(version);
  auto it = reload_claims_.find(key);
  if (it != reload_claims_.end() && now_ms - it->second < interval_ms) return false;
  if (reload_claims_.size() >= 10000) {  // bounded under a flood of unknown names
    for (auto i = reload_claims_.begin(); i != reload_claims_.end();)
      i = now_ms - i->second >= interval_ms ? reload_claims_.erase(i) : std::next(i);
  }
  reload_claims_[key] = now_ms;
  return true;
}

Status Executor::learn(workflow::WorkflowPtr wf) const {
  if (!wf) return invalid("Executor::learn: null workflow");
  if (workflows_ && workflows_->contains(wf->name, wf->version)) {
    auto mine = workflows_->find(wf->name, wf->version);
    if (mine->to_json() == wf->to_json()) return Status::ok();
    return Status(Code::kAlreadyExists, "workflow " + wf->name + "@" + std::to_string(wf->version) +
                                            " is loaded from " + mine->source_path + " with different content");
  }
  // learned_ is only written here, under mu_: its check and the slots stay in step.
  std::unique_lock lock(mu_);
  if (Status s = learned_.add(wf); !s) return s;
  std::size_t built = 0;
  for (const auto& step : wf->steps) {
    if (!role_.empty() && step.role != role_) continue;
    if (slots_.count(slot_key(wf->name, wf->version, step.id))) continue;
    build(*wf, step);
    ++built;
  }
  if (built > 0)
    spdlog::info("role={} learned workflow {}@{} ({} step(s) of this role)", role_, wf->name, wf->version, built);
  return Status::ok();
}

Executor::~Executor() = default;

std::string Executor::slot_key(std::string_view workflow, uint32_t version, std::string_view step) {
  std::string k;
  k.reserve(workflow.size() + step.size() + 12);
  k.append(workflow).push_back('\n');
  k.append(std::to_string(version)).push_back('\n');
  k.append(step);
  return k;
}

void Executor::build(const workflow::Workflow& wf, const workflow::Step& step) const {
  const agent::AgentRegistry& agents = agents_;
  Slot slot;
  nlohmann::json cfg = nlohmann::json::object();
  if (step.agent) {
    slot.kind = step.agent->kind;
    cfg = step.agent->config.is_null() ? nlohmann::json::object() : step.agent->config;
  } else {
    slot.kind = step.role;
  }
  std::string where = wf.name + "@" + std::to_string(wf.version) + " step " + step.id;

  // `set` belongs to the runtime, not to the agent.
  nlohmann::json set = nlohmann::json::object();
  if (cfg.is_object() && cfg.contains("set")) {
    set = cfg["set"];
    cfg.erase("set");
  }
  if (!set.is_object()) {
    slot.error_code = agent::errors::kBadAgentConfig;
    slot.error_message = where + ": `set` must be a map of field -> template";
  } else {
    for (auto it = set.begin(); it != set.end() && slot.error_code.empty(); ++it) {
      SetField f;
      f.field = it.key();
      if (it.value().is_string()) {
        auto t = agent::config::parse_template(it.value(), "set." + f.field, /*allow_output=*/true);
        if (!t) {
          slot.error_code = agent::errors::kBadAgentConfig;
          slot.error_message = where + ": " + t.status().message();
          break;
        }
        f.whole_path = whole_path(t->source());
        f.tmpl = std::move(t).value();
      } else {
        f.literal = it.value();
      }
      slot.set.push_back(std::move(f));
    }
  }

  if (slot.error_code.empty()) {
    if (!agents.contains(slot.kind)) {
      slot.error_code = agent::errors::kUnknownAgent;
      slot.error_message = step.agent ? where + ": no agent kind `" + slot.kind + "` in this worker"
                                      : where + ": the step has no `agent:` and no agent kind named like its role `" +
                                            slot.kind + "` is registered";
    } else {
      agent::StepInfo info;
      info.workflow = wf.name;
      info.version = wf.version;
      info.step = step.id;
      for (const auto& f : step.output) info.output[f.name] = f.optional ? f.type + "?" : f.type;
      info.writes = step.writes;
      auto a = agents.create(slot.kind, cfg, info);
      if (a) {
        slot.agent = std::move(a).value();
      } else {
        slot.error_code = agent::errors::kBadAgentConfig;
        slot.error_message = where + ": " + a.status().message();
      }
    }
  }
  if (!slot.error_code.empty()) spdlog::warn("role={} {}: {} ({})", step.role, where, slot.error_message, slot.error_code);
  slots_.emplace(slot_key(wf.name, wf.version, step.id), std::move(slot));
}

std::size_t Executor::ready_steps() const {
  std::shared_lock lock(mu_);
  return static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](const auto& kv) { return kv.second.agent != nullptr; }));
}

std::vector<std::string> Executor::broken_steps() const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [k, s] : slots_)
    if (!s.agent) out.push_back(s.error_message);
  std::sort(out.begin(), out.end());
  return out;
}

const Executor::Slot* Executor::find(const v1::Task& task, std::string& why) const {
  const auto& name = task.workflow().name();
  uint32_t version = task.workflow().version();
  if (version == 0) {
    if (auto wf = lookup(name, 0)) version = wf->version;
  }
  const std::string_view step_id = base_step_id(task.step_id());
  {
    std::shared_lock lock(mu_);
    auto it = slots_.find(slot_key(name, version, step_id));
    if (it != slots_.end()) return &it->second;
  }
  workflow::WorkflowPtr wf = lookup(name, version);
  if (!wf) {
    why = "workflow " + name + "@" + std::to_string(version) + " is not loaded by this worker";
  } else if (const auto* step = wf->find_step(step_id); !step) {
    why = "workflow " + name + "@" + std::to_string(version) + " has no step " + std::string(step_id);
  } else {
    why = "step " + std::string(step_id) + " of " + name + "@" + std::to_string(version) + " is for role " +
          step->role + ", not " + role_;
  }
  return nullptr;
}

StepResult Executor::execute(const v1::Task& task, RecordView record) const {
  StepResult r;
  r.set_step_id(task.step_id());
  r.set_attempt(task.attempt());
  r.set_worker_id(worker_id_);
  r.set_record_version_read(record.version);
  r.set_started_ms(now_unix_ms());
  auto finish = [&r]() -> StepResult& {
    r.set_finished_ms(now_unix_ms());
    return r;
  };

  std::string why;
  const Slot* slot = find(task, why);
  if (!slot) {
    fail(r, agent::errors::kUnknownAgent, std::move(why));
    return std::move(finish());
  }
  if (!slot->agent) {
    fail(r, slot->error_code.c_str(), slot->error_message);
    return std::move(finish());
  }

  auto input = parse_object_or_empty(task.input_json(), "task input");
  if (!input) {
    fail(r, agent::errors::kBadInput, input.status().message());
    return std::move(finish());
  }
  auto context = parse_object_or_empty(task.context_json(), "task context");
  if (!context) {
    fail(r, agent::errors::kBadInput, context.status().message());
    return std::move(finish());
  }

  // One scope object, built by moving: the agent's references point into it.
  nlohmann::json scope = nlohmann::json::object();
  scope["input"] = std::move(input).value();
  scope["record"] = std::move(record.fields);
  scope["steps"] = std::move(context).value();
  agent::AgentInput in{task, scope["input"], scope["steps"], scope["record"], record.version, scope};

  AgentOutput out;
  try {
    out = slot->agent->execute(in);
  } catch (const std::exception& e) {
    fail(r, agent::errors::kAgentError, std::string("agent ") + slot->kind + " threw: " + e.what());
    return std::move(finish());
  } catch (...) {
    fail(r, agent::errors::kAgentError, std::string("agent ") + slot->kind + " threw");
    return std::move(finish());
  }

  if (!out.output.is_object()) {
    fail(r, agent::errors::kBadOutput, std::string("agent output is ") + out.output.type_name() + ", not an object");
    return std::move(finish());
  }
  if (!out.writes.is_object()) {
    fail(r, agent::errors::kBadOutput, std::string("agent writes are ") + out.writes.type_name() + ", not an object");
    return std::move(finish());
  }

  auto* usage = r.mutable_usage();
  usage->set_tokens_in(out.usage.tokens_in);
  usage->set_tokens_out(out.usage.tokens_out);
  usage->set_cost_micros(out.usage.cost_micros);
  usage->set_model(std::move(out.usage.model));
  usage->set_model_reason(std::move(out.usage.model_reason));

  if (out.status == AgentOutput::kOk) {
    if (!slot->set.empty()) {
      scope["output"] = std::move(out.output);
      std::vector<std::pair<const std::string*, nlohmann::json>> values;
      values.reserve(slot->set.size());
      for (const auto& f : slot->set) {
        if (!f.tmpl) {
          values.emplace_back(&f.field, f.literal);
          continue;
        }
        if (!f.whole_path.empty()) {
          const auto* v = json_path(scope, f.whole_path);
          if (v && !v->is_null()) {
            values.emplace_back(&f.field, *v);
            continue;
          }
        }
        auto text = f.tmpl->render(scope);
        if (!text) {
          fail(r, agent::errors::kTemplateError, "set." + f.field + ": " + text.status().message());
          return std::move(finish());
        }
        values.emplace_back(&f.field, std::move(text).value());
      }
      out.output = std::move(scope["output"]);
      for (auto& [field, value] : values) out.output[*field] = std::move(value);
    }
    auto forbidden = map_writes(task.writes(), out.output, out.writes);
    if (!forbidden.empty()) {
      std::string list, allowed;
      for (const auto& f : forbidden) list += (list.empty() ? "" : ", ") + f;
      for (const auto& f : task.writes()) allowed += (allowed.empty() ? "" : ", ") + f;
      fail(r, agent::errors::kForbiddenWrite,
           "the step may write only [" + allowed + "]; it wrote " + list);
      return std::move(finish());
    }
  } else {
    out.writes = nlohmann::json::object();
    r.mutable_error()->set_code(out.error_code.empty() ? std::string(agent::status_name(out.status))
                                                       : std::move(out.error_code));
    r.mutable_error()->set_message(std::move(out.error_message));
  }
  r.set_status(to_proto(out.status));
  r.set_output_json(dump_json(out.output));
  r.set_writes_json(dump_json(out.writes));
  return std::move(finish());
}

namespace {

Answer seal(const v1::Task& task, v1::StepResult result) {
  v1::RunEvent ev;
  ev.set_run_id(task.run_id());
  ev.set_event_id(random_id());
  ev.set_traceparent(task.traceparent());
  *ev.mutable_step_result() = std::move(result);
  ev.set_produced_unix_ms(now_unix_ms());
  // Error texts and usage labels quote outside data (task input, agent and
  // provider messages): a proto3 string with invalid UTF-8 makes the whole
  // answer undecodable to the coordinator (DLQ; found by fuzz_worker_task).
  auto* sr = ev.mutable_step_result();
  if (sr->has_error()) {
    sr->mutable_error()->set_code(valid_utf8(sr->error().code()));
    sr->mutable_error()->set_message(valid_utf8(sr->error().message()));
  }
  if (sr->has_usage()) {
    sr->mutable_usage()->set_model(valid_utf8(sr->usage().model()));
    sr->mutable_usage()->set_model_reason(valid_utf8(sr->usage().model_reason()));
  }
  Answer a;
  a.bytes = ev.SerializeAsString();
  if (a.bytes.size() > limits::kMaxMessageBytes) {
    auto* r = ev.mutable_step_result();
    fail(*r, agent::errors::kOutputTooLarge,
         "the result is " + std::to_string(a.bytes.size()) + " bytes, over the limit of " +
             std::to_string(limits::kMaxMessageBytes));
    r->clear_usage();
    a.bytes = ev.SerializeAsString();
  }
  const auto& r = ev.step_result();
  a.status = r.status();
  a.error_code = r.error().code();
  a.error_message = r.error().message();
  return a;
}

}  // namespace

Answer Executor::answer(const v1::Task& task, RecordView record) const {
  return seal(task, execute(task, std::move(record)));
}

Answer Executor::reject(const v1::Task& task, const char* code, std::string message) const {
  StepResult r;
  r.set_step_id(task.step_id());
  r.set_attempt(task.attempt());
  r.set_worker_id(worker_id_);
  r.set_started_ms(now_unix_ms());
  fail(r, code, std::move(message));
  r.set_finished_ms(r.started_ms());
  return seal(task, std::move(r));
}

}  // namespace baton::worker
