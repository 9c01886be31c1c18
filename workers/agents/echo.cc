#include "workers/agents/echo.h"

#include "workers/agents/config.h"

namespace baton::agent {
namespace {

class EchoAgent : public Agent {
 public:
  explicit EchoAgent(std::vector<std::string> fields) : fields_(std::move(fields)) {}

  AgentOutput execute(const AgentInput& in) override {
    AgentOutput out;
    if (!in.input.is_object()) return out;
    if (fields_.empty()) {
      out.output = in.input;
      return out;
    }
    for (const auto& f : fields_) {
      auto it = in.input.find(f);
      if (it != in.input.end()) out.output[f] = *it;
    }
    return out;
  }

 private:
  std::vector<std::string> fields_;
};

}  // namespace

FactoryResult make_echo_agent(const nlohmann::json& cfg) {
  if (Status s = config::check_object(cfg, "echo", {"fields"}); !s) return s;
  auto fields = config::get_string_list(cfg, "echo", "fields", false);
  if (!fields) return fields.status();
  return AgentPtr(new EchoAgent(std::move(fields).value()));
}

}  // namespace baton::agent
