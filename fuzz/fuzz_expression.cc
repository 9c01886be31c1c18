// Condition text -> Condition::parse + eval against a small fixed scope
// (common/workflow/expr.h). Contract checked: never crashes or throws; a parse
// error has 1 <= col <= length + 1 and a message; a parsed condition keeps its
// text, and evaluates the same twice and on a copy.
#include <cstdint>
#include <string>
#include <variant>

#include <nlohmann/json.hpp>

#include "common/workflow/expr.h"
#include "fuzz/fuzz_support.h"

namespace {

using nlohmann::json;

struct Scope {
  json input = json::parse(R"({"lead_id": "L-42", "amount": 120.5, "country": "NL", "n": 3,
                               "tags": ["vip", "eu"], "nested": {"a": {"b": [1, {"c": null}]}}})");
  json output = json::parse(R"({"score": 0.75, "intent": "billing", "spam": false, "text": "héllo",
                                "items": [{"sku": "A", "qty": 2}, {"sku": "B", "qty": 0}],
                                "big": 1e308, "neg": -9223372036854775808, "u": 18446744073709551615})");
  json record = json::parse(R"({"owner": "ada", "stage": "qualified", "visits": 7, "flags": {}})");
  json run = json::parse(R"({"id": "run-1", "round": 2, "steps_executed": 5})");
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  baton::fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace baton;
  static const Scope scope;
  std::string_view text = fuzz::text_of(data, size);
  auto parsed = workflow::Condition::parse(text);
  if (auto* err = std::get_if<workflow::ExprError>(&parsed)) {
    fuzz::check(err->col >= 1 && static_cast<std::size_t>(err->col) <= size + 1, "error column in range",
                std::to_string(err->col) + " of " + std::to_string(size) + ": " + err->message);
    fuzz::check(!err->message.empty(), "error has a message");
    return 0;
  }
  const auto& cond = std::get<workflow::Condition>(parsed);
  fuzz::check(cond.text() == text, "text() is the parsed text");
  workflow::ExprScope full{&scope.input, &scope.output, &scope.record, &scope.run};
  bool a = cond.eval(full);
  workflow::Condition copy = cond;
  fuzz::check(copy.eval(full) == a, "eval is deterministic");
  (void)cond.eval(workflow::ExprScope{});  // every root null
  workflow::ExprScope partial{nullptr, &scope.output, nullptr, &scope.run};
  (void)cond.eval(partial);
  for (const char* root : {"input", "output", "record", "run", "other"}) (void)cond.reads(root);
  return 0;
}
