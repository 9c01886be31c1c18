#include "coordinator/workflow_store.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"

namespace baton::coordinator {
namespace {

std::string quote(std::string_view s) { return "`" + std::string(s) + "`"; }

// "<name>@<version>" -> (name, version); false when it is not of that shape.
bool split_field(std::string_view field, std::string& name, uint32_t& version) {
  auto at = field.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 >= field.size()) return false;
  const char* b = field.data() + at + 1;
  const char* e = field.data() + field.size();
  auto [end, ec] = std::from_chars(b, e, version);
  if (ec != std::errc() || end != e || version == 0) return false;
  name.assign(field.substr(0, at));
  return true;
}

Status redis_error(const std::string& what, const redis::Reply& r) {
  return unavailable(what + ": " + (r.is_error() ? r.str : std::string("unexpected reply")));
}

std::string conflict_message(const workflow::Workflow& wf, const std::string& where) {
  return std::string(kAppliedSource) + ":1:1: workflow " + quote(wf.name) + " version " +
         std::to_string(wf.version) + " already exists with different content (" + where +
         "); bump `version` to change it";
}

}  // namespace

Result<AppliedWorkflow> WorkflowStore::apply(std::string_view yaml, workflow::Registry* registry) {
  if (yaml.size() > limits::kMaxWorkflowFileBytes) {
    return Status(Code::kTooLarge, "a workflow is at most " + std::to_string(limits::kMaxWorkflowFileBytes) +
                                       " bytes; got " + std::to_string(yaml.size()));
  }
  auto parsed = workflow::parse_workflow(yaml, kAppliedSource);
  if (!parsed) return parsed.status();
  workflow::WorkflowPtr wf = std::move(parsed).value();
  const nlohmann::json model = wf->to_json();

  bool known = false;
  if (registry && registry->contains(wf->name, wf->version)) {
    auto mine = registry->find(wf->name, wf->version);
    if (mine && mine->to_json() != model) {
      std::string from = mine->source_path == kAppliedSource ? std::string("applied earlier")
                                                             : "loaded from " + mine->source_path;
      return Status(Code::kAlreadyExists, conflict_message(*wf, from));
    }
    known = true;
  }

  const std::string key = keys::workflows(ns_);
  const std::string field = keys::workflow_field(wf->name, wf->version);
  auto set = redis_.command({"HSETNX", key, field, yaml});
  if (!set) return set.status();
  if (set->type != redis::Reply::Type::kInteger) return redis_error("HSETNX " + key, *set);
  bool written = set->integer == 1;
  if (!written) {
    // Someone stored this version first (maybe a replica, just now): same model or a conflict.
    auto got = redis_.command({"HGET", key, field});
    if (!got) return got.status();
    if (!got->is_string()) return redis_error("HGET " + key + " " + field, *got);
    auto stored = workflow::parse_workflow(got->str, kAppliedSource);
    if (!stored) {
      return Status(Code::kAlreadyExists,
                    conflict_message(*wf, "the stored copy no longer parses: " + stored.status().message()));
    }
    if ((*stored)->to_json() != model) return Status(Code::kAlreadyExists, conflict_message(*wf, "applied earlier"));
    known = true;
  }
  if (registry) {
    if (Status s = registry->add(wf); !s) return s;  // only a file loaded meanwhile could conflict
    // Hand back the registry's copy (the first one stays when the content is equal).
    if (auto kept = registry->find(wf->name, wf->version)) wf = std::move(kept);
  }
  if (written) spdlog::info("workflow {}@{} applied ({} steps)", wf->name, wf->version, wf->steps.size());
  return AppliedWorkflow{std::move(wf), written && !known};
}

bool WorkflowStore::add_stored(workflow::Registry& registry, const std::string& field, const std::string& yaml) {
  auto parsed = workflow::parse_workflow(yaml, kAppliedSource);
  if (!parsed) {
    spdlog::warn("stored workflow {} in {} skipped: {}", field, keys::workflows(ns_), parsed.status().message());
    return false;
  }
  const auto& wf = *parsed;
  if (keys::workflow_field(wf->name, wf->version) != field) {
    spdlog::warn("stored workflow {} in {} skipped: it defines {}@{}", field, keys::workflows(ns_), wf->name,
                 wf->version);
    return false;
  }
  if (Status s = registry.add(wf); !s) {
    spdlog::warn("stored workflow {} skipped: {}", field, s.message());
    return false;
  }
  return true;
}

Status WorkflowStore::load_all(workflow::Registry& registry) {
  const std::string key = keys::workflows(ns_);
  auto all = redis_.command({"HGETALL", key});
  if (!all) return all.status();
  if (!all->is_array()) return redis_error("HGETALL " + key, *all);
  std::size_t added = 0;
  for (std::size_t i = 0; i + 1 < all->elements.size(); i += 2)
    if (add_stored(registry, all->elements[i].str, all->elements[i + 1].str)) ++added;
  if (added > 0) spdlog::info("loaded {} applied workflow version(s) from {}", added, key);
  return Status::ok();
}

Status WorkflowStore::refresh(workflow::Registry& registry) {
  const std::string key = keys::workflows(ns_);
  auto names = redis_.command({"HKEYS", key});
  if (!names) return names.status();
  if (!names->is_array()) return redis_error("HKEYS " + key, *names);
  std::vector<std::string> wanted;
  for (const auto& f : names->elements) {
    std::string name;
    uint32_t version = 0;
    if (!split_field(f.str, name, version)) {
      spdlog::warn("stored workflow field {} in {} is not <name>@<version>; skipped", f.str, key);
      continue;
    }
    if (!registry.contains(name, version)) wanted.push_back(f.str);
  }
  if (wanted.empty()) return Status::ok();
  std::vector<std::string_view> argv = {"HMGET", key};
  for (const auto& f : wanted) argv.push_back(f);
  auto values = redis_.command(argv);
  if (!values) return values.status();
  if (!values->is_array() || values->elements.size() != wanted.size()) return redis_error("HMGET " + key, *values);
  std::size_t added = 0;
  for (std::size_t i = 0; i < wanted.size(); ++i) {
    if (!values->elements[i].is_string()) continue;  // HDEL'd by hand meanwhile
    if (add_stored(registry, wanted[i], values->elements[i].str)) ++added;
  }
  if (added > 0) spdlog::info("refreshed {} applied workflow version(s) from {}", added, key);
  return Status::ok();
}

void refresh_on_miss(workflow::Registry& registry, const redis::Endpoint& ep, std::string ns,
                     int64_t min_interval_ms) {
  struct State {
    std::mutex mu;
    std::unique_ptr<redis::Client> client;
    std::unordered_map<std::string, std::chrono::steady_clock::time_point> last;  // name@version -> last try
  };
  auto state = std::make_shared<State>();
  // The handler is stored in `registry`: it must not own it, a plain reference is enough.
  registry.set_miss_handler([state, &registry, ep, ns = std::move(ns), min_interval_ms](std::string_view name,
                                                                                       uint32_t version) {
    const auto now = std::chrono::steady_clock::now();
    const auto interval = std::chrono::milliseconds(min_interval_ms);
    std::lock_guard<std::mutex> lock(state->mu);
    std::string k = keys::workflow_field(name, version);
    auto it = state->last.find(k);
    if (it != state->last.end() && now - it->second < interval) return;
    if (state->last.size() >= 10000) {  // bounded memory under a flood of unknown names
      for (auto i = state->last.begin(); i != state->last.end();)
        i = now - i->second >= interval ? state->last.erase(i) : std::next(i);
    }
    state->last[k] = now;
    if (!state->client) {
      auto c = redis::Client::connect(ep);
      if (!c) {
        spdlog::warn("workflow {} not known; cannot reach Redis to look for it: {}", k, c.status().to_string());
        return;
      }
      state->client = std::move(c).value();
    }
    if (Status s = WorkflowStore(*state->client, ns).refresh(registry); !s)
      spdlog::warn("workflow {} not known; refreshing from Redis failed: {}", k, s.to_string());
  });
}

}  // namespace baton::coordinator
