#include "workers/agents/template.h"

#include <utility>

#include "workers/agents/config.h"

namespace baton::agent {
namespace {

class TemplateAgent : public Agent {
 public:
  explicit TemplateAgent(std::vector<std::pair<std::string, workflow::Template>> fields)
      : fields_(std::move(fields)) {}

  AgentOutput execute(const AgentInput& in) override {
    AgentOutput out;
    for (const auto& [name, tmpl] : fields_) {
      auto text = tmpl.render(in.scope);
      if (!text) {
        return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                                 "field " + name + ": " + text.status().message());
      }
      out.output[name] = std::move(text).value();
    }
    return out;
  }

 private:
  std::vector<std::pair<std::string, workflow::Template>> fields_;
};

}  // namespace

FactoryResult make_template_agent(const nlohmann::json& cfg) {
  if (Status s = config::check_object(cfg, "template", {"fields"}); !s) return s;
  auto it = cfg.find("fields");
  if (it == cfg.end() || !it->is_object() || it->empty()) {
    return invalid("template: `fields` is required: a map of output field -> template");
  }
  std::vector<std::pair<std::string, workflow::Template>> fields;
  for (auto f = it->begin(); f != it->end(); ++f) {
    auto t = config::parse_template(f.value(), "template: `fields." + f.key() + "`");
    if (!t) return t.status();
    fields.emplace_back(f.key(), std::move(t).value());
  }
  return AgentPtr(new TemplateAgent(std::move(fields)));
}

}  // namespace baton::agent
