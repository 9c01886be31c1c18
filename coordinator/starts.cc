#include "coordinator/starts.h"

#include <nlohmann/json.hpp>

#include "common/util/ids.h"
#include "common/workflow/template.h"

namespace baton::coordinator {

Result<std::string> start_dedupe_key(const workflow::Workflow& wf, const nlohmann::json& input,
                                     std::string_view given) {
  if (!given.empty()) return std::string(given);
  if (wf.dedupe_template.empty()) return std::string();
  auto t = workflow::Template::parse(wf.dedupe_template);
  if (!t) return t.status();  // the parser refused bad templates at load; kept for safety
  auto r = t->render(nlohmann::json{{"input", input}});
  if (!r) return Status(r.status().code(), "dedupe key: " + r.status().message());
  return r;
}

baton::v1::RunEvent make_start_event(const workflow::Workflow& wf, std::string input_json, const std::string& dedupe,
                                     std::string requested_by) {
  baton::v1::RunEvent ev;
  ev.set_run_id(dedupe.empty() ? random_id() : run_id_for_dedupe(wf.name, dedupe));
  ev.set_event_id(random_id());
  ev.set_produced_unix_ms(now_unix_ms());
  auto* s = ev.mutable_started();
  s->set_workflow(wf.name);
  s->set_version(wf.version);
  s->set_input_json(std::move(input_json));
  s->set_dedupe_key(dedupe);
  s->set_requested_by(std::move(requested_by));
  return ev;
}

}  // namespace baton::coordinator
