#include "workers/agents/plan.h"

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "common/util/json.h"
#include "workers/agents/config.h"

namespace baton::agent {
namespace {

using nlohmann::json;

// A config value whose strings are templates, parsed once.
struct Value {
  enum Kind { kLiteral, kTemplate, kObject, kArray };
  Kind kind = kLiteral;
  json literal;                                          // kLiteral
  std::optional<workflow::Template> tmpl;                // kTemplate
  std::string whole_path;                                // kTemplate: "{{path}}" and nothing else
  // kObject (keys), kArray (keys empty). By pointer: a std::pair of the
  // still-incomplete Value is ill-formed (clang + libstdc++ refuse it).
  std::vector<std::pair<std::string, std::shared_ptr<const Value>>> children;
};

bool valid_id(const std::string& id) {
  if (id.empty()) return false;
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (!first && (c == '_' || c == '-'));
  };
  for (std::size_t i = 0; i < id.size(); ++i)
    if (!ok(id[i], i == 0)) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The roots a plan template may use: the agents' scope plus `context` (another
// name for `steps`, the word the planner protocol uses), and `item` inside a
// `for_each` entry.
Status check_root(std::string_view path, const std::string& what, bool* uses_context, bool allow_item = false) {
  auto root = path.substr(0, path.find_first_of(".["));
  if (root == "context") {
    *uses_context = true;
    return Status::ok();
  }
  if (root == "input" || root == "record" || root == "steps") return Status::ok();
  if (allow_item && root == "item") return Status::ok();
  return invalid(what + ": path `" + std::string(path) + "` must start with " +
                 (allow_item ? "input., record., steps., context. or item." : "input., record., steps. or context."));
}

Result<Value> parse_value(const json& v, const std::string& what, bool* uses_context, bool allow_item = false) {
  Value out;
  if (v.is_string()) {
    auto t = workflow::Template::parse(v.get_ref<const std::string&>());
    if (!t) return invalid(what + ": " + t.status().message());
    auto paths = t->paths();
    for (const auto& p : paths) {
      if (Status s = check_root(p, what, uses_context, allow_item); !s) return s;
    }
    if (paths.empty()) {  // plain text
      out.literal = v;
      return out;
    }
    std::string_view src = trim(t->source());
    if (paths.size() == 1 && src.size() > 4 && src.substr(0, 2) == "{{" && src.substr(src.size() - 2) == "}}" &&
        src.find("{{", 2) == std::string_view::npos) {
      out.whole_path = paths.front();
    }
    out.kind = Value::kTemplate;
    out.tmpl = std::move(t).value();
    return out;
  }
  if (v.is_object()) {
    out.kind = Value::kObject;
    for (auto it = v.begin(); it != v.end(); ++it) {
      auto c = parse_value(it.value(), what + "." + it.key(), uses_context, allow_item);
      if (!c) return c.status();
      out.children.emplace_back(it.key(), std::make_shared<const Value>(std::move(c).value()));
    }
    return out;
  }
  if (v.is_array()) {
    out.kind = Value::kArray;
    for (std::size_t i = 0; i < v.size(); ++i) {
      auto c = parse_value(v[i], what + "[" + std::to_string(i) + "]", uses_context, allow_item);
      if (!c) return c.status();
      out.children.emplace_back(std::string(), std::make_shared<const Value>(std::move(c).value()));
    }
    return out;
  }
  out.literal = v;
  return out;
}

// Renders `v` in `scope`; `what` names the value in an error ("draft.input.notes").
Result<json> render(const Value& v, const json& scope, const std::string& what) {
  switch (v.kind) {
    case Value::kLiteral:
      return v.literal;
    case Value::kTemplate: {
      if (!v.whole_path.empty()) {
        const json* found = json_path(scope, v.whole_path);
        if (found && !found->is_null()) return *found;
      }
      auto text = v.tmpl->render(scope);
      if (!text) return Status(text.status().code(), what + ": " + text.status().message());
      return json(std::move(text).value());
    }
    case Value::kObject: {
      json out = json::object();
      for (const auto& [key, child] : v.children) {
        auto c = render(*child, scope, what + "." + key);
        if (!c) return c.status();
        out[key] = std::move(c).value();
      }
      return out;
    }
    case Value::kArray: {
      json out = json::array();
      for (std::size_t i = 0; i < v.children.size(); ++i) {
        auto c = render(*v.children[i].second, scope, what + "[" + std::to_string(i) + "]");
        if (!c) return c.status();
        out.push_back(std::move(c).value());
      }
      return out;
    }
  }
  return internal("unreachable");
}

struct Entry {
  std::string id;                         // a fixed id; empty for a `for_each` entry
  std::string step;
  Value input;                            // kObject
  std::string for_each;                   // path of a list: one planned step per element
  std::optional<workflow::Template> id_tmpl;  // `for_each`: the id, a template over `item`
};

// One planned step, ready to emit or to look up.
struct Concrete {
  std::string id;
  const Entry* entry;
  json item;  // the `for_each` element (null otherwise)
};

bool has_result(const json& context, const std::string& id) {
  if (!context.is_object()) return false;
  auto it = context.find(id);
  return it != context.end() && !it->is_null();
}

class PlanAgent : public Agent {
 public:
  PlanAgent(std::vector<std::vector<Entry>> stages, std::optional<Value> result, bool uses_context)
      : stages_(std::move(stages)), result_(std::move(result)), uses_context_(uses_context) {
    for (const auto& stage : stages_)
      for (const auto& e : stage)
        if (!e.for_each.empty()) has_for_each_ = true;
  }

  AgentOutput execute(const AgentInput& in) override {
    // `context.` paths, and `item.` of `for_each` entries, need the scope under
    // those names too (a copy: only then).
    json aliased;
    json* scope_copy = nullptr;
    const json* scope = &in.scope;
    if (uses_context_ || has_for_each_) {
      aliased = in.scope;
      if (uses_context_) aliased["context"] = in.context;
      scope_copy = &aliased;
      scope = &aliased;
    }

    std::vector<std::vector<Concrete>> stages;
    for (const auto& stage : stages_) {
      std::vector<Concrete> planned;
      for (const auto& e : stage) {
        if (e.for_each.empty()) {
          planned.push_back({e.id, &e, json()});
          continue;
        }
        const json* list = json_path(*scope, e.for_each);
        if (list == nullptr || list->is_null()) {
          return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                   "plan: for_each: missing value for " + e.for_each);
        }
        if (!list->is_array()) {
          return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                   "plan: for_each: " + e.for_each + " is not a list");
        }
        const json items = *list;  // a copy: the scope changes below
        for (const auto& item : items) {
          (*scope_copy)["item"] = item;
          auto id = e.id_tmpl->render(*scope);
          if (!id) {
            return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                     "plan: for_each " + e.for_each + ": id: " + id.status().message());
          }
          planned.push_back({std::move(id).value(), &e, item});
        }
      }
      stages.push_back(std::move(planned));
    }

    for (const auto& stage : stages) {
      json steps = json::array();
      for (const auto& p : stage) {
        if (has_result(in.context, p.id)) continue;
        if (scope_copy != nullptr) (*scope_copy)["item"] = p.item;
        auto input = render(p.entry->input, *scope, p.id + ".input");
        if (!input) {
          return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                   "plan: " + input.status().message());
        }
        steps.push_back({{"id", p.id}, {"step", p.entry->step}, {"input", std::move(input).value()}});
      }
      if (!steps.empty()) return AgentOutput::ok({{"done", false}, {"steps", std::move(steps)}});
    }

    json result = json::object();
    if (result_) {
      if (scope_copy != nullptr) scope_copy->erase("item");
      auto r = render(*result_, *scope, "result");
      if (!r) return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError, "plan: " + r.status().message());
      result = std::move(r).value();
    } else {
      for (const auto& stage : stages)
        for (const auto& p : stage) result[p.id] = in.context.at(p.id);
    }
    return AgentOutput::ok({{"done", true}, {"result", std::move(result)}});
  }

 private:
  const std::vector<std::vector<Entry>> stages_;
  const std::optional<Value> result_;
  const bool uses_context_;
  bool has_for_each_ = false;
};

}  // namespace

FactoryResult make_plan_agent(const json& cfg) {
  if (Status s = config::check_object(cfg, "plan", {"stages", "result"}); !s) return s;
  bool uses_context = false;

  auto st = cfg.find("stages");
  if (st == cfg.end() || st->is_null()) {
    return invalid("plan: `stages` is required: a list of stages, each a list of {id, step, input}");
  }
  if (!st->is_array() || st->empty()) {
    return invalid("plan: `stages` must be a non-empty list of stages, got " + st->dump());
  }
  std::vector<std::vector<Entry>> stages;
  std::set<std::string> ids;
  for (std::size_t i = 0; i < st->size(); ++i) {
    const json& stage = (*st)[i];
    std::string sw = "plan: `stages[" + std::to_string(i) + "]`";
    if (!stage.is_array() || stage.empty()) {
      return invalid(sw + " must be a non-empty list of {id, step, input}, got " + stage.dump());
    }
    std::vector<Entry> entries;
    for (std::size_t j = 0; j < stage.size(); ++j) {
      const json& e = stage[j];
      std::string ew = "plan: `stages[" + std::to_string(i) + "][" + std::to_string(j) + "]`";
      if (!e.is_object()) return invalid(ew + " must be a map {id, step, input}, got " + e.dump());
      for (auto it = e.begin(); it != e.end(); ++it) {
        if (it.key() != "id" && it.key() != "step" && it.key() != "input" && it.key() != "for_each") {
          return invalid(ew + ": unknown key `" + it.key() + "` (allowed: id, step, input, for_each)");
        }
      }
      Entry entry;
      auto id = e.find("id");
      if (id == e.end() || !id->is_string()) return invalid(ew + ": `id` is required (a string)");
      bool each = false;
      if (auto fe = e.find("for_each"); fe != e.end() && !fe->is_null()) {
        if (!fe->is_string() || fe->get_ref<const std::string&>().empty()) {
          return invalid(ew + ": `for_each` must be the path of a list, e.g. input.competitors");
        }
        auto t = workflow::Template::parse("{{" + fe->get<std::string>() + "}}");
        if (!t) return invalid(ew + ": `for_each`: invalid path `" + fe->get<std::string>() + "`");
        if (Status s = check_root(fe->get<std::string>(), ew + ": `for_each`", &uses_context); !s) return s;
        entry.for_each = fe->get<std::string>();
        each = true;
      }
      if (each) {
        // The id is a template over `item`, rendered per element; the
        // coordinator checks the ids it gets (invalid_plan).
        auto t = workflow::Template::parse(id->get<std::string>());
        if (!t) return invalid(ew + ": `id`: " + t.status().message());
        bool uses_item = false;
        for (const auto& p : t->paths()) {
          if (Status s = check_root(p, ew + ": `id`", &uses_context, true); !s) return s;
          uses_item = uses_item || p.substr(0, p.find_first_of(".[")) == "item";
        }
        if (!uses_item) {
          return invalid(ew + ": the `id` of a `for_each` entry must use {{item}} (one id per element), got `" +
                         id->get<std::string>() + "`");
        }
        entry.id_tmpl = std::move(t).value();
      } else {
        entry.id = id->get<std::string>();
        if (!valid_id(entry.id)) {
          return invalid(ew + ": id `" + entry.id + "` must match [a-z0-9][a-z0-9_-]*");
        }
        if (!ids.insert(entry.id).second) return invalid(ew + ": id `" + entry.id + "` is used twice");
      }
      auto step = e.find("step");
      if (step == e.end() || !step->is_string() || step->get_ref<const std::string&>().empty()) {
        return invalid(ew + ": `step` is required (the name of an allowed step)");
      }
      entry.step = step->get<std::string>();
      auto input = e.find("input");
      json input_cfg = json::object();
      if (input != e.end() && !input->is_null()) {
        if (!input->is_object()) return invalid(ew + ": `input` must be a map, got " + input->dump());
        input_cfg = *input;
      }
      auto v = parse_value(input_cfg, ew + ".input", &uses_context, each);
      if (!v) return v.status();
      entry.input = std::move(v).value();
      entries.push_back(std::move(entry));
    }
    stages.push_back(std::move(entries));
  }

  std::optional<Value> result;
  if (auto r = cfg.find("result"); r != cfg.end() && !r->is_null()) {
    if (!r->is_object()) return invalid("plan: `result` must be a map, got " + r->dump());
    auto v = parse_value(*r, "plan: `result`", &uses_context);
    if (!v) return v.status();
    result = std::move(v).value();
  }
  return AgentPtr(new PlanAgent(std::move(stages), std::move(result), uses_context));
}

}  // namespace baton::agent
