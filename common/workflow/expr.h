// Conditions: the small, safe expression language of `route: [{when: ...}]`,
// loop `until:` and similar (reference: docs/conditions.md).
//
//   output.score >= 0.7
//   output.intent in ["billing", "refund"]
//   exists(record.owner) and not output.spam
//
// Parsed once (at workflow load) into a flat, immutable node array; evaluated
// many times. Contract:
// - parse() never throws; a bad expression returns an ExprError whose `col`
//   (1-based, within the expression text) points at the offending token and whose
//   `message` is short, lowercase and names the token without repeating the column
//   (the caller prints "file:line:col: message"). Text longer than
//   kMaxExpressionLength or nested deeper than kMaxExpressionDepth is a parse
//   error, never a stack overflow.
// - eval() never throws and never fails: a missing path, a non-object/array on
//   the way or an out-of-range index reads as null; comparing values of the wrong
//   types is false. It copies no JSON: the scope's documents are only read, and
//   must outlive the call.
// - A Condition is immutable after parse(); copies share the parsed form
//   (one shared_ptr), so copying is cheap and eval() may run concurrently on any
//   number of threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <nlohmann/json_fwd.hpp>

namespace baton::workflow {

inline constexpr std::size_t kMaxExpressionLength = 4096;  // characters of text
inline constexpr int kMaxExpressionDepth = 64;             // nested (), [], not

// The four roots a condition can read. Any pointer may be null (= every path under
// it is null). Not owned; they must stay valid during eval().
struct ExprScope {
  const nlohmann::json* input = nullptr;
  const nlohmann::json* output = nullptr;
  const nlohmann::json* record = nullptr;
  const nlohmann::json* run = nullptr;
};

struct ExprError {
  int col = 0;          // 1-based column within the expression text
  std::string message;  // e.g. "expected ')'", "unterminated string"
};

class Condition {
 public:
  // An empty condition (empty() is true): eval() is false, text() is "".
  Condition() = default;

  // Parses `text`. On error returns the ExprError (col points at the offending token).
  static std::variant<Condition, ExprError> parse(std::string_view text);

  // The truthiness of the expression's value in `scope`. Never throws.
  bool eval(const ExprScope& scope) const noexcept;

  // The text given to parse().
  const std::string& text() const;
  // True if any path (including exists(...)) starts with that root:
  // "input", "output", "record" or "run". Anything else is false.
  bool reads(std::string_view root) const;
  bool empty() const { return impl_ == nullptr; }

  struct Impl;  // defined in expr.cc

 private:
  explicit Condition(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace baton::workflow
