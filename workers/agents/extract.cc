#include "workers/agents/extract.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <regex>

#include "workers/agents/config.h"

namespace baton::agent {
namespace {

struct Field {
  std::string name;
  std::regex regex;
  bool number = false;
  bool required = false;
};

std::string trimmed(std::string s) {
  auto sp = [](unsigned char c) { return std::isspace(c); };
  while (!s.empty() && sp(s.back())) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && sp(s[i])) ++i;
  return s.substr(i);
}

class ExtractAgent : public Agent {
 public:
  ExtractAgent(workflow::Template from, std::vector<Field> fields, std::size_t max_text)
      : from_(std::move(from)), fields_(std::move(fields)), max_text_(max_text) {}

  AgentOutput execute(const AgentInput& in) override {
    auto rendered = from_.render(in.scope);
    if (!rendered) {
      return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError,
                               "from: " + rendered.status().message());
    }
    const std::string text = std::move(rendered).value();

    AgentOutput out;
    std::vector<std::string> missing;
    for (const auto& f : fields_) {
      std::cmatch m;
      bool found = config::regex_search(text, f.regex, &m, max_text_) && m.size() > 1 && m[1].matched;
      std::string value = found ? trimmed(m[1].str()) : std::string();
      if (found && f.number) {
        auto n = read_number(value);
        if (n) {
          out.output[f.name] = *n;
        } else {
          found = false;
        }
      } else if (found) {
        found = !value.empty();
        if (found) out.output[f.name] = std::move(value);
      }
      if (!found && f.required) missing.push_back(f.name);
    }
    if (!missing.empty()) {
      std::string names;
      for (const auto& n : missing) names += (names.empty() ? "" : ", ") + n;
      nlohmann::json output = std::move(out.output);
      out = AgentOutput::fail(AgentOutput::kNeedsReview, errors::kMissingField,
                              "missing required fields: " + names);
      out.output = std::move(output);
      out.output["missing"] = missing;
    }
    return out;
  }

 private:
  workflow::Template from_;
  std::vector<Field> fields_;
  std::size_t max_text_;
};

}  // namespace

std::optional<double> read_number(std::string_view text) {
  std::string s;
  bool seen_digit = false;
  for (char c : text) {
    if (std::isdigit(static_cast<unsigned char>(c))) {
      s.push_back(c);
      seen_digit = true;
    } else if (c == '.') {
      s.push_back(c);
    } else if (c == '-' && !seen_digit && s.empty()) {
      s.push_back(c);
    } else if (c == ',' || c == ' ' || c == '\'' || c == '_') {
      continue;  // thousands separators
    } else if (seen_digit) {
      break;  // trailing unit or currency
    }
  }
  if (!seen_digit) return std::nullopt;
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
  return d;
}

FactoryResult make_extract_agent(const nlohmann::json& cfg) {
  constexpr std::string_view kind = "extract";
  if (Status s = config::check_object(cfg, kind,
                                      {"from", "fields", "numbers", "required", "ignore_case", "max_text_bytes"});
      !s)
    return s;
  auto from = config::get_template(cfg, kind, "from");
  if (!from) return from.status();
  auto numbers = config::get_string_list(cfg, kind, "numbers", false);
  if (!numbers) return numbers.status();
  auto required = config::get_string_list(cfg, kind, "required", false);
  if (!required) return required.status();
  auto icase = config::get_bool(cfg, kind, "ignore_case", true);
  if (!icase) return icase.status();
  auto max_text = config::get_text_limit(cfg, kind);
  if (!max_text) return max_text.status();

  auto fit = cfg.find("fields");
  if (fit == cfg.end() || !fit->is_object() || fit->empty()) {
    return invalid("extract: `fields` is required: a map of field -> regex with one capture group");
  }
  auto flags = std::regex::ECMAScript | std::regex::optimize | std::regex::multiline;
  if (*icase) flags |= std::regex::icase;
  std::vector<Field> fields;
  for (auto it = fit->begin(); it != fit->end(); ++it) {
    std::string where = "extract: `fields." + it.key() + "`";
    auto pattern = config::as_text(it.value());
    if (!pattern || !it.value().is_string()) return invalid(where + " must be a regex string");
    Field f;
    f.name = it.key();
    try {
      f.regex = std::regex(*pattern, flags);
    } catch (const std::regex_error& e) {
      return invalid(where + ": bad regex `" + *pattern + "`: " + e.what());
    }
    if (f.regex.mark_count() < 1) return invalid(where + ": the regex needs a capture group ( ... )");
    f.number = std::find(numbers->begin(), numbers->end(), f.name) != numbers->end();
    f.required = std::find(required->begin(), required->end(), f.name) != required->end();
    fields.push_back(std::move(f));
  }
  for (const auto* list : {&*numbers, &*required}) {
    for (const auto& n : *list) {
      if (!fit->contains(n)) {
        return invalid(std::string("extract: `") + (list == &*numbers ? "numbers" : "required") + "` names `" +
                       n + "`, which is not in `fields`");
      }
    }
  }
  return AgentPtr(new ExtractAgent(std::move(from).value(), std::move(fields), *max_text));
}

}  // namespace baton::agent
