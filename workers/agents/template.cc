#include "workers/agents/template.h"

#include <algorithm>
#include <utility>

#include "workers/agents/config.h"

namespace baton::agent {
namespace {

// One output field: its alternatives, tried in order.
struct Field {
  std::string name;
  std::vector<workflow::Template> alternatives;
};

class TemplateAgent : public Agent {
 public:
  explicit TemplateAgent(std::vector<Field> fields) : fields_(std::move(fields)) {}

  AgentOutput execute(const AgentInput& in) override {
    AgentOutput out;
    for (const auto& f : fields_) {
      std::string last_error;
      bool rendered = false;
      for (const auto& tmpl : f.alternatives) {
        auto text = tmpl.render(in.scope);
        if (text) {
          out.output[f.name] = std::move(text).value();
          rendered = true;
          break;
        }
        last_error = text.status().message();
      }
      if (!rendered) {
        std::string prefix = f.alternatives.size() > 1 ? "field " + f.name + " (no alternative rendered): "
                                                       : "field " + f.name + ": ";
        return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError, prefix + last_error);
      }
    }
    return out;
  }

 private:
  std::vector<Field> fields_;
};

}  // namespace

FactoryResult make_template_agent(const nlohmann::json& cfg) {
  if (Status s = config::check_object(cfg, "template", {"fields"}); !s) return s;
  auto it = cfg.find("fields");
  if (it == cfg.end() || !it->is_object() || it->empty()) {
    return invalid("template: `fields` is required: a map of output field -> template");
  }
  std::vector<Field> fields;
  for (auto f = it->begin(); f != it->end(); ++f) {
    Field field;
    field.name = f.key();
    std::string what = "template: `fields." + f.key() + "`";
    // A non-empty list of strings: alternatives. Anything else that is not a
    // scalar is refused by parse_template ("must be a template string").
    const auto& v = f.value();
    bool alternatives = v.is_array() && !v.empty() &&
                        std::all_of(v.begin(), v.end(), [](const nlohmann::json& x) { return x.is_string(); });
    if (alternatives) {
      for (std::size_t i = 0; i < f.value().size(); ++i) {
        const auto& alt = f.value()[i];
        std::string at = what + "[" + std::to_string(i) + "]";
        auto t = config::parse_template(alt, at);
        if (!t) return t.status();
        field.alternatives.push_back(std::move(t).value());
      }
    } else {
      auto t = config::parse_template(f.value(), what);
      if (!t) return t.status();
      field.alternatives.push_back(std::move(t).value());
    }
    fields.push_back(std::move(field));
  }
  return AgentPtr(new TemplateAgent(std::move(fields)));
}

}  // namespace baton::agent
