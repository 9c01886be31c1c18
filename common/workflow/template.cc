#include "common/workflow/template.h"

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/util/json.h"

namespace baton::workflow {
namespace {

constexpr std::string_view kOpen = "{{";
constexpr std::string_view kClose = "}}";

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// The subset of json_path syntax a template may use: name ( "." name | "[" digits "]" )*.
// Stricter than json_path itself so that typos ("a..b", "a[]", "a b") fail at load time,
// not as a silent "missing value" at run time. Index digits are capped so they cannot overflow.
bool valid_path(std::string_view p) {
  std::size_t i = 0;
  auto name = [&] {
    std::size_t start = i;
    while (i < p.size() && is_name_char(p[i])) ++i;
    return i > start;
  };
  if (!name()) return false;
  while (i < p.size()) {
    if (p[i] == '.') {
      ++i;
      if (!name()) return false;
    } else if (p[i] == '[') {
      std::size_t start = ++i;
      while (i < p.size() && p[i] >= '0' && p[i] <= '9') ++i;
      if (i == start || i - start > 9 || i >= p.size() || p[i] != ']') return false;
      ++i;
    } else {
      return false;
    }
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

Status error_at(std::size_t offset, const std::string& reason) {
  return invalid("column " + std::to_string(offset + 1) + ": " + reason);
}

// Appends the text form of a present, non-null value.
void append_value(std::string& out, const nlohmann::json& v) {
  switch (v.type()) {
    case nlohmann::json::value_t::string:
      out += v.get_ref<const std::string&>();
      return;
    case nlohmann::json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case nlohmann::json::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      return;
    case nlohmann::json::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      return;
    case nlohmann::json::value_t::number_float: {
      // A float that holds an integer (3.0, often from a JSON producer or an LLM)
      // renders as "3": record keys and dedupe keys must not depend on that.
      double d = v.get<double>();
      if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) < 1e15) {
        out += std::to_string(static_cast<int64_t>(d));
        return;
      }
      break;
    }
    default:
      break;
  }
  // Objects, arrays, other floats. `replace` keeps dump() from throwing on
  // invalid UTF-8 that did not come through the JSON parser (e.g. protobuf bytes).
  out += v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

Result<Template> Template::parse(std::string_view text) {
  Template t;
  t.source_ = std::string(text);
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t open = text.find(kOpen, pos);
    if (open == std::string_view::npos) {
      t.parts_.push_back({false, std::string(text.substr(pos))});
      break;
    }
    if (open > pos) t.parts_.push_back({false, std::string(text.substr(pos, open - pos))});
    std::size_t close = text.find(kClose, open + kOpen.size());
    if (close == std::string_view::npos) return error_at(open, "unclosed {{");
    std::string_view path = trim(text.substr(open + kOpen.size(), close - open - kOpen.size()));
    if (path.empty()) return error_at(open, "empty path in {{ }}");
    if (!valid_path(path)) {
      return error_at(open, "invalid path `" + std::string(path) +
                                "` (expected names joined by dots, with optional [index])");
    }
    t.parts_.push_back({true, std::string(path)});
    pos = close + kClose.size();
  }
  return t;
}

Result<std::string> Template::render(const nlohmann::json& scope) const {
  std::string out;
  for (const auto& p : parts_) {
    if (!p.is_path) {
      out += p.text;
      continue;
    }
    const nlohmann::json* v = json_path(scope, p.text);
    if (v == nullptr || v->is_null() || v->is_discarded()) {
      return not_found("missing value for {{" + p.text + "}}");
    }
    append_value(out, *v);
  }
  return out;
}

std::string Template::render_lenient(const nlohmann::json& scope) const {
  std::string out;
  for (const auto& p : parts_) {
    if (!p.is_path) {
      out += p.text;
      continue;
    }
    const nlohmann::json* v = json_path(scope, p.text);
    if (v == nullptr || v->is_null() || v->is_discarded()) continue;
    append_value(out, *v);
  }
  return out;
}

std::vector<std::string> Template::paths() const {
  std::vector<std::string> out;
  for (const auto& p : parts_)
    if (p.is_path) out.push_back(p.text);
  return out;
}

}  // namespace baton::workflow
