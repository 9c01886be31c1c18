// "{{path}}" templates, used for record keys, dedupe keys and the `template`
// agent. A path is dotted with optional [i] indexes and is resolved in a JSON
// scope object such as {"input": ..., "record": ..., "steps": ...}.
// Strings render without quotes, numbers/booleans as JSON, objects/arrays as
// compact JSON. Parsed once; render() is const and thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/util/status.h"

namespace baton::workflow {

class Template {
 public:
  // kInvalidArgument "column N: reason" on an unclosed "{{" or an empty path.
  static Result<Template> parse(std::string_view text);

  // kNotFound naming the path when a referenced path is missing or null.
  Result<std::string> render(const nlohmann::json& scope) const;
  // Renders, substituting missing paths with "" (for display text).
  std::string render_lenient(const nlohmann::json& scope) const;

  bool empty() const { return parts_.empty(); }
  const std::string& source() const { return source_; }
  // Paths referenced, in order.
  std::vector<std::string> paths() const;

 private:
  struct Part {
    bool is_path;
    std::string text;  // literal text, or the path
  };
  std::vector<Part> parts_;
  std::string source_;
};

}  // namespace baton::workflow
