// Workflow YAML text -> parse_workflow (common/workflow/parser.h).
// Contract checked: never crashes, throws or leaks; a refusal is
// kInvalidArgument/kTooLarge with "fuzz.yaml:<line>:<col>: <reason>" (line and
// col >= 1); an accepted workflow has a name and an entry step and serializes
// (to_json) and registers.
#include <cctype>
#include <cstdint>
#include <string>

#include "common/workflow/parser.h"
#include "common/workflow/registry.h"
#include "fuzz/fuzz_support.h"

namespace {

// Reads a positive decimal number at `pos` and the ':' after it.
bool number_then_colon(const std::string& s, std::size_t& pos) {
  std::size_t start = pos;
  while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) ++pos;
  if (pos == start || pos - start > 9 || s[start] == '0') return false;
  if (pos >= s.size() || s[pos] != ':') return false;
  ++pos;
  return true;
}

bool located(const std::string& msg) {
  const std::string prefix = "fuzz.yaml:";
  if (msg.rfind(prefix, 0) != 0) return false;
  std::size_t pos = prefix.size();
  return number_then_colon(msg, pos) && number_then_colon(msg, pos) && pos + 1 < msg.size() && msg[pos] == ' ';
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  baton::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baton;
  auto wf = workflow::parse_workflow(fuzz::text_of(data, size), "fuzz.yaml");
  if (!wf) {
    const Status& s = wf.status();
    fuzz::check(s.code() == Code::kInvalidArgument || s.code() == Code::kTooLarge, "refusal code", s.to_string());
    fuzz::check(located(s.message()), "refusal is file:line:col: reason", s.message());
    return 0;
  }
  const workflow::Workflow& w = **wf;
  fuzz::check(!w.name.empty() && !w.steps.empty(), "accepted workflow has a name and steps", w.name);
  std::string dumped = w.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  workflow::Registry reg;
  Status added = reg.add(*wf);
  fuzz::check(added.is_ok(), "an accepted workflow registers", added.to_string());
  fuzz::check(reg.find(w.name, w.version) != nullptr, "registered workflow is found", w.name);
  return 0;
}
