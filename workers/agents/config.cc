#include "workers/agents/config.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace baton::agent::config {
namespace {

std::string type_name(const nlohmann::json& v) { return v.type_name(); }

std::string what(std::string_view kind, const char* key) {
  return std::string(kind) + ": `" + key + "`";
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Status check_object(const nlohmann::json& cfg, std::string_view kind,
                    std::initializer_list<std::string_view> allowed) {
  if (!cfg.is_object()) {
    return invalid(std::string(kind) + ": config must be a map, got " + type_name(cfg));
  }
  for (auto it = cfg.begin(); it != cfg.end(); ++it) {
    bool ok = false;
    for (auto a : allowed) ok = ok || a == it.key();
    if (!ok) {
      std::string list;
      for (auto a : allowed) {
        if (!list.empty()) list += ", ";
        list += a;
      }
      return invalid(std::string(kind) + ": unknown key `" + it.key() + "` (allowed: " + list + ")");
    }
  }
  return Status::ok();
}

std::optional<double> as_number(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  if (!v.is_string()) return std::nullopt;
  std::string_view s = trim(v.get_ref<const std::string&>());
  if (s.empty()) return std::nullopt;
  double d = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<bool> as_bool(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (!v.is_string()) return std::nullopt;
  std::string s = lower(trim(v.get_ref<const std::string&>()));
  if (s == "true" || s == "yes") return true;
  if (s == "false" || s == "no") return false;
  return std::nullopt;
}

std::optional<std::string> as_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  return std::nullopt;
}

Result<std::string> get_string(const nlohmann::json& cfg, std::string_view kind, const char* key,
                               std::optional<std::string> default_value) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (default_value) return *default_value;
    return invalid(what(kind, key) + " is required");
  }
  auto t = as_text(*it);
  if (!t) return invalid(what(kind, key) + " must be a string, got " + type_name(*it));
  return *t;
}

Result<double> get_number(const nlohmann::json& cfg, std::string_view kind, const char* key,
                          std::optional<double> default_value) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (default_value) return *default_value;
    return invalid(what(kind, key) + " is required");
  }
  auto n = as_number(*it);
  if (!n) return invalid(what(kind, key) + " must be a number, got " + it->dump());
  return *n;
}

Result<bool> get_bool(const nlohmann::json& cfg, std::string_view kind, const char* key, bool default_value) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return default_value;
  auto b = as_bool(*it);
  if (!b) return invalid(what(kind, key) + " must be true or false, got " + it->dump());
  return *b;
}

Result<std::vector<std::string>> get_string_list(const nlohmann::json& cfg, std::string_view kind,
                                                 const char* key, bool required) {
  std::vector<std::string> out;
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) {
    if (required) return invalid(what(kind, key) + " is required");
    return out;
  }
  if (it->is_string()) {
    out.push_back(it->get<std::string>());
    return out;
  }
  if (!it->is_array()) return invalid(what(kind, key) + " must be a list of strings, got " + type_name(*it));
  for (const auto& e : *it) {
    auto t = as_text(e);
    if (!t) return invalid(what(kind, key) + " must be a list of strings, got an element " + e.dump());
    out.push_back(std::move(*t));
  }
  if (required && out.empty()) return invalid(what(kind, key) + " must not be empty");
  return out;
}

Result<workflow::Template> parse_template(const nlohmann::json& v, const std::string& w, bool allow_output) {
  auto text = as_text(v);
  if (!text) return invalid(w + " must be a template string, got " + type_name(v));
  auto t = workflow::Template::parse(*text);
  if (!t) return invalid(w + ": " + t.status().message());
  for (const auto& p : t->paths()) {
    Status s = check_scope_path(p, w, allow_output);
    if (!s) return s;
  }
  return t;
}

Result<workflow::Template> get_template(const nlohmann::json& cfg, std::string_view kind, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return invalid(what(kind, key) + " is required");
  return parse_template(*it, what(kind, key));
}

Status check_scope_path(std::string_view path, const std::string& w, bool allow_output) {
  auto root = path.substr(0, path.find_first_of(".["));
  if (root == "input" || root == "record" || root == "steps") return Status::ok();
  if (allow_output && root == "output") return Status::ok();
  return invalid(w + ": path `" + std::string(path) + "` must start with " +
                 (allow_output ? "input., record., steps. or output." : "input., record. or steps."));
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool loose_equal(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() || b.is_number()) {
    auto x = as_number(a), y = as_number(b);
    return x && y && *x == *y;
  }
  if (a.is_boolean() || b.is_boolean()) {
    auto x = as_bool(a), y = as_bool(b);
    return x && y && *x == *y;
  }
  if (a.is_string() && b.is_string()) {
    const auto& x = a.get_ref<const std::string&>();
    const auto& y = b.get_ref<const std::string&>();
    return x.size() == y.size() && lower(x) == lower(y);
  }
  return a == b;
}

bool is_empty(const nlohmann::json* v) {
  if (v == nullptr || v->is_null()) return true;
  if (v->is_string()) return trim(v->get_ref<const std::string&>()).empty();
  if (v->is_array() || v->is_object()) return v->empty();
  return false;
}

bool regex_search(std::string_view text, const std::regex& re, std::cmatch* m, std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    std::size_t n = max_bytes;
    // Do not cut a UTF-8 sequence: back up over continuation bytes.
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    text = text.substr(0, n);
  }
  try {
    std::cmatch local;
    return std::regex_search(text.data(), text.data() + text.size(), m ? *m : local, re);
  } catch (const std::regex_error&) {
    return false;
  }
}

Result<std::size_t> get_text_limit(const nlohmann::json& cfg, std::string_view kind) {
  auto n = get_number(cfg, kind, "max_text_bytes", static_cast<double>(kRegexTextBytes));
  if (!n) return n.status();
  if (*n < 1 || *n > static_cast<double>(kMaxRegexTextBytes) || *n != std::floor(*n)) {
    return invalid(std::string(kind) + ": `max_text_bytes` must be an integer within 1.." +
                   std::to_string(kMaxRegexTextBytes));
  }
  return static_cast<std::size_t>(*n);
}

double round_to(double v, int digits) {
  double f = std::pow(10.0, digits);
  return std::round(v * f) / f;
}

Result<std::string> expand_env(std::string_view text, const std::string& what) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c != '$' || i + 1 >= text.size()) {
      out += c;
      continue;
    }
    if (text[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out += c;
      continue;
    }
    std::size_t close = text.find('}', i + 2);
    if (close == std::string_view::npos) return invalid(what + ": unterminated `${` in \"" + std::string(text) + "\"");
    std::string_view body = text.substr(i + 2, close - i - 2);
    std::optional<std::string_view> fallback;
    if (auto d = body.find(":-"); d != std::string_view::npos) {
      fallback = body.substr(d + 2);
      body = body.substr(0, d);
    }
    bool name_ok = !body.empty() && !std::isdigit(static_cast<unsigned char>(body[0]));
    for (char n : body) name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(n)) || n == '_');
    if (!name_ok) return invalid(what + ": `${" + std::string(body) + "}` is not an environment variable name");
    const char* value = std::getenv(std::string(body).c_str());
    if (value && *value) {
      out += value;
    } else if (fallback) {
      out += *fallback;
    } else {
      return invalid(what + ": environment variable " + std::string(body) +
                     " is not set (write ${" + std::string(body) + ":-default} for a default)");
    }
    i = close;
  }
  return out;
}

Result<std::string> get_secret(const nlohmann::json& cfg, std::string_view kind, const std::string& key) {
  std::string env_key = key + "_env", file_key = key + "_file";
  auto e = cfg.find(env_key);
  auto f = cfg.find(file_key);
  bool has_e = e != cfg.end() && !e->is_null(), has_f = f != cfg.end() && !f->is_null();
  if (has_e && has_f) return invalid(std::string(kind) + ": give `" + env_key + "` or `" + file_key + "`, not both");
  if (has_e) {
    if (!e->is_string() || e->get_ref<const std::string&>().empty())
      return invalid(std::string(kind) + ": `" + env_key + "` must name an environment variable");
    const char* v = std::getenv(e->get_ref<const std::string&>().c_str());
    if (!v || !*v)
      return invalid(std::string(kind) + ": `" + env_key + "`: environment variable " + e->get<std::string>() +
                     " is not set");
    return std::string(v);
  }
  if (has_f) {
    if (!f->is_string() || f->get_ref<const std::string&>().empty())
      return invalid(std::string(kind) + ": `" + file_key + "` must be a file path");
    auto path = expand_env(f->get_ref<const std::string&>(), std::string(kind) + ": `" + file_key + "`");
    if (!path) return path.status();
    std::ifstream in(*path, std::ios::binary);
    if (!in) return invalid(std::string(kind) + ": `" + file_key + "`: cannot read " + *path);
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string v = ss.str();
    while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
    if (v.empty()) return invalid(std::string(kind) + ": `" + file_key + "`: " + *path + " is empty");
    return v;
  }
  return std::string();
}

}  // namespace baton::agent::config
