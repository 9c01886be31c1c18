// Webhook notifications: config loading, rendering and the delivery thread.
// The Redis protocol (keys, claim, lease, retry, dead letters) is described in
// notifier.h and docs/notifications.md; this file explains the why of each step.
#include "coordinator/notifier.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <spdlog/spdlog.h>

#include "common/http/http.h"
#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/util/yaml.h"

namespace baton::coordinator {
namespace {

using json = nlohmann::json;

constexpr const char* kActor = "notifier";
constexpr std::size_t kMaxConfigNodes = 10000;
constexpr std::size_t kMaxDetailChars = 500;     // exception detail in a Slack message
constexpr std::size_t kMaxErrorBodyChars = 200;  // a failed answer's body in the audit
constexpr int kMaxRedisBackoffMs = 5000;

// ---- small helpers ----------------------------------------------------------

bool is_gate_event(std::string_view e) { return e.rfind("gate_", 0) == 0; }

bool known_event(std::string_view e) {
  return std::any_of(std::begin(kNotifyEvents), std::end(kNotifyEvents), [&](const char* k) { return e == k; });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

// A string member of `j`, or "" (never throws).
std::string str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number()) return it->dump();
  return "";
}

int64_t int_field(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned()) return static_cast<int64_t>(it->get<uint64_t>());
  if (it->is_number_float()) return static_cast<int64_t>(it->get<double>());
  return 0;
}

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string utf8_clip(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end)) + "…";
}

// JSON text that never throws on bad UTF-8 (replaced).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// ---- config -----------------------------------------------------------------

std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  return "a scalar";
}

bool is_webhook_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

bool is_header_name(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

bool has_ctl(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string name;
  YAML::Mark where() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

class ConfigParser {
 public:
  ConfigParser(std::string file, EnvLookup env) : file_(std::move(file)), env_(std::move(env)) {}

  Result<std::vector<WebhookConfig>> run(std::string_view text) {
    if (text.size() > limits::kMaxWorkflowFileBytes) {
      fail_at(1, 1, "file is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                        std::to_string(limits::kMaxWorkflowFileBytes));
      return err_;
    }
    YAML::Node root;
    try {
      std::vector<YAML::Node> docs = load_all_yaml(std::string(text));
      if (docs.size() > 1) {
        fail(docs[1].Mark(), "only one YAML document per file is allowed");
        return err_;
      }
      if (!docs.empty()) root = docs[0];
    } catch (const YAML::Exception& e) {
      fail(e.mark, "YAML syntax error: " + e.msg);
      return err_;
    }
    std::size_t visits = 0;
    if (!check_shape(root, 1, visits)) return err_;
    if (!root.IsDefined() || root.IsNull()) {
      fail_at(1, 1, "the file is empty: expected a map with `webhooks`");
      return err_;
    }
    if (!root.IsMap()) {
      fail(root, "the top level must be a map with `webhooks`, got " + describe(root));
      return err_;
    }
    std::vector<Entry> top;
    if (!entries(root, top)) return err_;
    std::vector<WebhookConfig> out;
    bool seen = false;
    for (const Entry& e : top) {
      if (e.name != "webhooks") {
        fail(e.key, "unknown key `" + e.name + "` (allowed: webhooks)");
        return err_;
      }
      seen = true;
      if (!e.value.IsSequence()) {
        fail(e.where(), "`webhooks` must be a list, got " + describe(e.value));
        return err_;
      }
      std::unordered_map<std::string, int> first_line;
      for (std::size_t i = 0; i < e.value.size(); ++i) {
        YAML::Node item = e.value[i];
        WebhookConfig w;
        if (!parse_webhook(item, w)) return err_;
        auto [pos, fresh] = first_line.emplace(w.name, item.Mark().line + 1);
        if (!fresh) {
          fail(item, "duplicate webhook name `" + w.name + "` (first at line " + std::to_string(pos->second) + ")");
          return err_;
        }
        out.push_back(std::move(w));
      }
    }
    if (!seen) {
      fail(root, "missing `webhooks` (a list of webhooks)");
      return err_;
    }
    return out;
  }

 private:
  bool fail_at(int line, int col, const std::string& reason) {
    err_ = invalid(file_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + reason);
    return false;
  }
  bool fail(const YAML::Mark& m, const std::string& reason) {
    if (m.is_null() || m.line < 0) return fail_at(1, 1, reason);
    return fail_at(m.line + 1, m.column + 1, reason);
  }
  bool fail(const YAML::Node& n, const std::string& reason) { return fail(n.Mark(), reason); }

  bool check_shape(const YAML::Node& n, int depth, std::size_t& visits) {
    if (++visits > kMaxConfigNodes) {
      return fail(n, "the document has more than " + std::to_string(kMaxConfigNodes) + " nodes");
    }
    if (!n.IsMap() && !n.IsSequence()) return true;
    if (depth > limits::kMaxYamlDepth) {
      return fail(n, "nesting is deeper than " + std::to_string(limits::kMaxYamlDepth) + " levels");
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (n.IsMap()) {
        if (!check_shape(it->first, depth + 1, visits) || !check_shape(it->second, depth + 1, visits)) return false;
      } else if (!check_shape(*it, depth + 1, visits)) {
        return false;
      }
    }
    return true;
  }

  // The pairs of a map; keys must be scalars and unique (yaml-cpp keeps both
  // copies of a duplicate and the later one would be silently ignored).
  bool entries(const YAML::Node& map, std::vector<Entry>& out) {
    std::unordered_map<std::string, int> first_line;
    for (auto it = map.begin(); it != map.end(); ++it) {
      YAML::Node k = it->first;
      YAML::Node v = it->second;
      if (!k.IsScalar()) return fail(k, "map keys must be strings, got " + describe(k));
      std::string name = k.Scalar();
      auto [pos, fresh] = first_line.emplace(name, k.Mark().line + 1);
      if (!fresh) {
        return fail(k, "duplicate key `" + name + "` (first at line " + std::to_string(pos->second) + ")");
      }
      out.push_back({k, v, std::move(name)});
    }
    return true;
  }

  bool scalar(const Entry& e, std::string& out) {
    if (!e.value.IsScalar()) return fail(e.where(), "`" + e.name + "` must be a string, got " + describe(e.value));
    out = e.value.Scalar();
    return true;
  }

  // A list of strings (a single string is a one-element list).
  bool string_list(const Entry& e, std::vector<std::string>& out) {
    if (e.value.IsScalar()) {
      out.push_back(e.value.Scalar());
      return true;
    }
    if (!e.value.IsSequence()) {
      return fail(e.where(), "`" + e.name + "` must be a list of strings, got " + describe(e.value));
    }
    for (std::size_t i = 0; i < e.value.size(); ++i) {
      YAML::Node n = e.value[i];
      if (!n.IsScalar() || n.Scalar().empty()) {
        return fail(n.IsNull() ? e.value.Mark() : n.Mark(),
                    "`" + e.name + "` entries must be non-empty strings, got " + describe(n));
      }
      out.push_back(n.Scalar());
    }
    if (out.empty()) {
      return fail(e.where(), "`" + e.name + "` is empty: it would match nothing (omit it to match everything)");
    }
    return true;
  }

  // Expands ${NAME} from the environment; "$${" is a literal "${". The error
  // names the variable, never a value.
  bool expand(const YAML::Node& at, const std::string& raw, const std::string& what, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '$' && raw.compare(i, 3, "$${") == 0) {
        out += "${";
        i += 2;
        continue;
      }
      if (raw[i] == '$' && i + 1 < raw.size() && raw[i + 1] == '{') {
        std::size_t close = raw.find('}', i + 2);
        if (close == std::string::npos) return fail(at, what + ": unterminated `${` (write `$${` for a literal)");
        std::string name = raw.substr(i + 2, close - i - 2);
        bool ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
                  });
        if (!ok) return fail(at, what + ": bad environment variable name in `${" + name + "}`");
        std::optional<std::string> value;
        if (env_) {
          value = env_(name);
        } else if (const char* v = std::getenv(name.c_str())) {
          value = std::string(v);
        }
        if (!value) return fail(at, what + ": environment variable " + name + " is not set");
        out += *value;
        i = close;
        continue;
      }
      out += raw[i];
    }
    return true;
  }

  bool parse_webhook(const YAML::Node& node, WebhookConfig& w) {
    if (!node.IsMap()) return fail(node, "each webhook must be a map with `name` and `url`, got " + describe(node));
    std::vector<Entry> es;
    if (!entries(node, es)) return false;
    bool has_name = false, has_url = false;
    for (const Entry& e : es) {
      std::string raw;
      if (e.name == "name") {
        if (!scalar(e, w.name)) return false;
        if (!is_webhook_name(w.name)) {
          return fail(e.where(), "`name` must be 1-64 characters of A-Z a-z 0-9 _ - .");
        }
        has_name = true;
      } else if (e.name == "url") {
        if (!scalar(e, raw) || !expand(e.value, raw, "`url`", w.url)) return false;
        if (starts_with_ci(w.url, "https://")) {
          return fail(e.where(),
                      "`url`: https is not supported by the built-in HTTP client; point `url` at a local "
                      "TLS-terminating proxy (e.g. stunnel or an egress proxy) over http://");
        }
        if (!starts_with_ci(w.url, "http://") || w.url.size() <= 7 || w.url[7] == '/' || has_ctl(w.url) ||
            w.url.find(' ') != std::string::npos) {
          return fail(e.where(), "`url` must be an http:// URL with a host");
        }
        has_url = true;
      } else if (e.name == "format") {
        if (!scalar(e, raw)) return false;
        if (raw == "slack") {
          w.format = WebhookFormat::kSlack;
        } else if (raw == "generic") {
          w.format = WebhookFormat::kGeneric;
        } else {
          return fail(e.where(), "`format` must be slack or generic, got `" + raw + "`");
        }
      } else if (e.name == "events") {
        if (!string_list(e, w.events)) return false;
        for (std::size_t i = 0; i < w.events.size(); ++i) {
          if (!known_event(w.events[i])) {
            YAML::Node at = e.value.IsSequence() ? e.value[i] : e.value;
            return fail(at, "unknown event `" + w.events[i] +
                                "` (known: gate_opened, gate_sla_near, gate_escalated, exception)");
          }
        }
      } else if (e.name == "groups") {
        if (!string_list(e, w.groups)) return false;
      } else if (e.name == "headers") {
        if (!e.value.IsMap()) return fail(e.where(), "`headers` must be a map of name: value, got " + describe(e.value));
        std::vector<Entry> hs;
        if (!entries(e.value, hs)) return false;
        std::set<std::string> lowered;
        for (const Entry& h : hs) {
          if (!is_header_name(h.name)) return fail(h.key, "`headers`: bad header name `" + h.name + "`");
          std::string l = lower(h.name);
          if (l == "content-length" || l == "transfer-encoding" || l == "connection") {
            return fail(h.key, "`headers`: `" + h.name + "` is set by the client and cannot be configured");
          }
          if (!lowered.insert(l).second) return fail(h.key, "`headers`: `" + h.name + "` is given twice");
          if (!h.value.IsScalar()) {
            return fail(h.where(), "`headers." + h.name + "` must be a string, got " + describe(h.value));
          }
          std::string value;
          if (!expand(h.value, h.value.Scalar(), "`headers." + h.name + "`", value)) return false;
          if (has_ctl(value)) return fail(h.where(), "`headers." + h.name + "`: the value holds a line break or NUL");
          w.headers[h.name] = std::move(value);
        }
      } else if (e.name == "console_url") {
        if (!scalar(e, raw) || !expand(e.value, raw, "`console_url`", w.console_url)) return false;
        if (!starts_with_ci(w.console_url, "http://") && !starts_with_ci(w.console_url, "https://")) {
          return fail(e.where(), "`console_url` must start with http:// or https://");
        }
        while (!w.console_url.empty() && w.console_url.back() == '/') w.console_url.pop_back();
      } else if (e.name == "timeout_ms") {
        if (!scalar(e, raw)) return false;
        int v = 0;
        auto [p, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), v);
        if (ec != std::errc() || p != raw.data() + raw.size() || v < 100 || v > 60000) {
          return fail(e.where(), "`timeout_ms` must be an integer from 100 to 60000, got `" + raw + "`");
        }
        w.timeout_ms = v;
      } else {
        return fail(e.key, "unknown key `" + e.name +
                               "` (allowed: name, url, format, events, groups, headers, console_url, timeout_ms)");
      }
    }
    if (!has_name) return fail(node, "a webhook needs a `name`");
    if (!has_url) return fail(node, "webhook `" + w.name + "` needs a `url`");
    return true;
  }

  std::string file_;
  EnvLookup env_;
  Status err_;
};

// ---- rendering --------------------------------------------------------------

// Slack mrkdwn: &, < and > are control characters.
std::string slack_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string utc_text(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string run_link(const WebhookConfig& w, const std::string& run_id) {
  if (w.console_url.empty() || run_id.empty()) return "";
  std::string url = w.console_url;
  auto pos = url.find("{run_id}");
  if (pos != std::string::npos) return url.replace(pos, 8, run_id);
  return url + "/runs/" + run_id;
}

std::string slack_text(const WebhookConfig& w, const json& item) {
  const std::string event = str(item, "event");
  const std::string group = slack_escape(str(item, "group"));
  std::string kind = str(item, "kind");
  std::string gate = kind.empty() || kind == "approval" ? "Approval" : slack_escape(kind);
  if (!gate.empty()) gate[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(gate[0])));
  std::string text;
  if (event == "gate_opened") {
    text = ":raised_hand: *" + gate + " needed*" + (group.empty() ? "" : " from *" + group + "*");
  } else if (event == "gate_sla_near") {
    text = ":hourglass_flowing_sand: *" + gate + " SLA near*" + (group.empty() ? "" : " for *" + group + "*");
  } else if (event == "gate_escalated") {
    std::string from = slack_escape(str(item, "from"));
    text = ":rotating_light: *" + gate + " escalated*" + (group.empty() ? "" : " to *" + group + "*") +
           (from.empty() ? "" : " (from " + from + ")");
  } else if (event == "exception") {
    std::string reason = slack_escape(str(item, "reason"));
    text = ":warning: *Run sent to the exception queue*" + (reason.empty() ? "" : ": `" + reason + "`");
  } else {
    text = ":bell: *" + slack_escape(event.empty() ? "notification" : event) + "*";
  }

  std::string line;
  auto part = [&](const std::string& s) {
    if (s.empty()) return;
    if (!line.empty()) line += " · ";
    line += s;
  };
  std::string wf = slack_escape(str(item, "workflow"));
  std::string version = str(item, "version");
  if (!wf.empty()) part("*" + wf + "*" + (version.empty() ? "" : " v" + slack_escape(version)));
  std::string step = slack_escape(str(item, "step"));
  if (!step.empty()) part("step `" + step + "`");
  std::string run = slack_escape(str(item, "run_id"));
  if (!run.empty()) part("run `" + run + "`");
  if (!line.empty()) text += "\n" + line;

  std::string record = slack_escape(str(item, "record_key"));
  if (!record.empty()) text += "\nRecord `" + record + "`";
  int64_t due = int_field(item, "due_ms");
  if (due > 0 && is_gate_event(event)) {
    // Slack shows <!date^...> in the reader's time zone; the fallback is UTC.
    text += "\nDue <!date^" + std::to_string(due / 1000) + "^{date_short_pretty} {time}|" + utc_text(due) + ">";
  }
  std::string detail = str(item, "detail");
  if (!detail.empty()) {
    std::string quoted = slack_escape(utf8_clip(detail, kMaxDetailChars));
    std::string q;
    for (char c : quoted) {
      q += c;
      if (c == '\n') q += "> ";
    }
    text += "\n> " + q;
  }
  std::string link = run_link(w, str(item, "run_id"));
  if (!link.empty()) text += "\n<" + link + "|Open the run>";
  return text;
}

// ---- delivery state in Redis --------------------------------------------------

// Characters that are special in a SCAN MATCH pattern.
std::string glob_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

using Command = std::vector<std::string>;

// Replaces the webhook's URL and header values (secrets) in a message.
std::string scrub(std::string msg, const WebhookConfig& w) {
  auto replace_all = [&](const std::string& what, const std::string& with) {
    if (what.size() < 4) return;  // too short to be a secret; replacing would garble the text
    for (std::size_t pos = 0; (pos = msg.find(what, pos)) != std::string::npos; pos += with.size()) {
      msg.replace(pos, what.size(), with);
    }
  };
  replace_all(w.url, "<url of " + w.name + ">");
  for (const auto& [name, value] : w.headers) replace_all(value, "***");
  return msg;
}

std::string printable(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out;
}

}  // namespace

// ---- public pure functions ------------------------------------------------------

Result<std::vector<WebhookConfig>> parse_webhooks(std::string_view text, const std::string& file,
                                                  const EnvLookup& env) {
  try {
    return ConfigParser(file, env).run(text);
  } catch (const std::exception& e) {  // yaml-cpp surprises (bad conversions) stay here
    return invalid(file + ":1:1: " + e.what());
  }
}

Result<std::vector<WebhookConfig>> load_webhooks(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid(path + ":1:1: cannot open the file");
  std::string text;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > limits::kMaxWorkflowFileBytes) {
      return invalid(path + ":1:1: file is more than " + std::to_string(limits::kMaxWorkflowFileBytes) + " bytes");
    }
  }
  return parse_webhooks(text, path);
}

bool webhook_matches(const WebhookConfig& w, const nlohmann::json& item) {
  const std::string event = str(item, "event");
  if (!w.events.empty() && std::find(w.events.begin(), w.events.end(), event) == w.events.end()) return false;
  if (!w.groups.empty() && is_gate_event(event)) {
    const std::string group = str(item, "group");
    if (std::find(w.groups.begin(), w.groups.end(), group) == w.groups.end()) return false;
  }
  return true;
}

std::string render_notification(const WebhookConfig& w, const nlohmann::json& item) {
  try {
    if (w.format == WebhookFormat::kSlack) {
      std::string text = slack_text(w, item);
      json blocks = json::array({{{"type", "section"}, {"text", {{"type", "mrkdwn"}, {"text", text}}}}});
      std::string link = run_link(w, str(item, "run_id"));
      if (!link.empty()) {
        blocks.push_back({{"type", "actions"},
                          {"elements", json::array({{{"type", "button"},
                                                     {"text", {{"type", "plain_text"}, {"text", "Open run"}}},
                                                     {"url", link}}})}});
      }
      return dump({{"text", text}, {"blocks", std::move(blocks)}});
    }
    json body = item.is_object() ? item : json{{"item", item}};
    body["webhook"] = w.name;
    return dump(body);
  } catch (const std::exception& e) {  // nothing above should throw; a body is still owed
    return dump({{"webhook", w.name}, {"error", std::string("render failed: ") + e.what()}});
  }
}

int64_t notify_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, double jitter, double jitter_draw) {
  base_ms = std::max<int64_t>(base_ms, 0);
  max_ms = std::max<int64_t>(max_ms, base_ms);
  int shift = std::clamp(attempt - 1, 0, 40);
  double d = static_cast<double>(base_ms) * std::ldexp(1.0, shift);
  d = std::min(d, static_cast<double>(max_ms));
  jitter = std::clamp(jitter, 0.0, 1.0);
  d *= 1.0 - jitter + 2.0 * jitter * std::clamp(jitter_draw, 0.0, 1.0);
  return std::clamp<int64_t>(static_cast<int64_t>(std::llround(d)), 0, max_ms + static_cast<int64_t>(max_ms * jitter));
}

std::optional<int64_t> parse_retry_after_ms(std::string_view v, int64_t now_ms) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  if (v.empty()) return std::nullopt;
  if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int64_t secs = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
    if (ec != std::errc() || p != v.data() + v.size()) return std::nullopt;
    if (secs > 365LL * 24 * 3600) secs = 365LL * 24 * 3600;
    return secs * 1000;
  }
  // HTTP-date (IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  std::string s(v);
  const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  int64_t at = static_cast<int64_t>(timegm(&tm)) * 1000;
  return std::max<int64_t>(at - now_ms, 0);
}

// ---- the delivery thread ------------------------------------------------------

namespace {

struct Counters {
  std::atomic<uint64_t> sent{0}, failed_attempts{0}, retries_scheduled{0}, dead{0}, recovered{0}, polls{0},
      redis_errors{0};
};

// Everything the delivery thread owns. One instance per run of the thread.
class Worker {
 public:
  Worker(const NotifierOptions& opts, const std::vector<WebhookConfig>& webhooks, Counters& stats,
         std::function<bool()> stopping, std::function<bool(int)> sleep)
      : opts_(opts),
        stats_(stats),
        stopping_(std::move(stopping)),
        sleep_(std::move(sleep)),
        queue_(keys::notify_queue(opts.ns)),
        claimed_(keys::notify_claimed(opts.ns, opts.replica_id)),
        retry_(keys::notify_retry(opts.ns)),
        dead_(keys::notify_dead(opts.ns)),
        replicas_(keys::notify_replicas(opts.ns)),
        claimed_prefix_(keys::notify_claimed(opts.ns, "")),
        rng_(std::random_device{}()),
        order_(webhooks) {
    for (const auto& w : webhooks) webhooks_.emplace(w.name, &w);
  }

  void loop() {
    int backoff_ms = std::max(opts_.poll_ms, 50);
    while (!stopping_()) {
      if (!client_) {
        auto c = redis::Client::connect(opts_.redis);
        if (!c) {
          redis_trouble(c.status());
          if (!sleep_(backoff_ms)) break;
          backoff_ms = std::min(backoff_ms * 2, kMaxRedisBackoffMs);
          continue;
        }
        client_ = std::move(c).value();
      }
      bool busy = false;
      Status st;
      try {
        st = iteration(busy);
      } catch (const std::exception& e) {  // a bug, not an expected failure: say so loudly, back off
        spdlog::critical("notifier: unexpected exception: {}", e.what());
        st = internal(std::string("notifier: unexpected exception: ") + e.what());
      }
      if (!st) {
        redis_trouble(st);
        if (!sleep_(backoff_ms)) break;
        backoff_ms = std::min(backoff_ms * 2, kMaxRedisBackoffMs);
        continue;
      }
      if (redis_down_) {
        spdlog::info("notifier: redis is back");
        redis_down_ = false;
      }
      backoff_ms = std::max(opts_.poll_ms, 50);
      ++stats_.polls;
      if (!busy && !sleep_(opts_.poll_ms)) break;
    }
    release();
  }

 private:
  int64_t now() const { return opts_.clock ? opts_.clock() : now_unix_ms(); }

  void redis_trouble(const Status& st) {
    ++stats_.redis_errors;
    auto t = std::chrono::steady_clock::now();
    if (!redis_down_ || t - last_redis_log_ > std::chrono::seconds(30)) {
      spdlog::warn("notifier: redis unavailable, retrying with backoff: {}", st.message());
      last_redis_log_ = t;
    }
    redis_down_ = true;
  }

  // Runs `cmds` as one MULTI/EXEC; on kUnavailable the commands are kept and
  // retried first thing on the next iteration (so a delivery whose POST went
  // out is not sent again just because Redis blinked).
  Status commit(std::vector<Command> cmds) {
    pending_ = std::move(cmds);
    return flush_pending();
  }

  Status flush_pending() {
    if (pending_.empty()) return Status::ok();
    client_->append({"MULTI"});
    for (const auto& c : pending_) {
      std::vector<std::string_view> argv(c.begin(), c.end());
      client_->append(argv);
    }
    client_->append({"EXEC"});
    auto r = client_->exec();
    if (!r) return r.status();
    const redis::Reply& exec = r->back();
    if (exec.is_error()) {
      spdlog::error("notifier: commit refused by redis: {}", exec.str);
    } else {
      for (const auto& e : exec.elements) {
        if (e.is_error()) spdlog::error("notifier: a commit command failed: {}", e.str);
      }
    }
    pending_.clear();
    return Status::ok();
  }

  Status iteration(bool& busy) {
    if (Status s = flush_pending(); !s) return s;
    const int64_t t = now();

    // Lease: ours refreshed, others' expiries read in the same round trip.
    client_->append({"ZADD", replicas_, std::to_string(t + opts_.lease_ms), opts_.replica_id});
    last_heartbeat_ms_ = t;
    client_->append({"ZRANGEBYSCORE", replicas_, "-inf", std::to_string(t), "LIMIT", "0", "16"});
    auto r = client_->exec();
    if (!r) return r.status();
    for (const auto& e : (*r)[1].elements) {
      if (e.str == opts_.replica_id) continue;
      if (Status s = recover_expired(e.str, t); !s) return s;
    }
    if (Status s = sweep_orphans(t); !s) return s;

    // Our own claimed entries first (also what a previous run of this replica left).
    auto mine = client_->command({"LRANGE", claimed_, "0", std::to_string(opts_.batch - 1)});
    if (!mine) return mine.status();
    if (!mine->elements.empty()) {
      busy = true;
      for (const auto& e : mine->elements) {
        if (stopping_()) break;
        // Slow webhooks can make a batch outlast the lease: keep it fresh.
        if (int64_t n = now(); n - last_heartbeat_ms_ >= opts_.lease_ms / 3) {
          auto hb = client_->command({"ZADD", replicas_, std::to_string(n + opts_.lease_ms), opts_.replica_id});
          if (!hb) return hb.status();
          last_heartbeat_ms_ = n;
        }
        Status s;
        try {
          s = process(e.str);
        } catch (const std::exception& ex) {  // a bug: park the entry rather than retry it forever
          spdlog::critical("notifier: unexpected exception on a claimed entry, dead-lettered: {}", ex.what());
          s = dead_letter(e.str, {{"raw", utf8_clip(e.str, 4096)}}, std::string("internal error: ") + ex.what());
        }
        if (!s) return s;
      }
      return Status::ok();
    }

    int claimed = 0;
    if (Status s = claim_due_retries(t, claimed); !s) return s;
    if (Status s = claim_new(claimed); !s) return s;
    busy = claimed > 0;
    return Status::ok();
  }

  // A retry is claimed by whoever's ZREM removes it; the RPUSH to our claimed
  // list rides in the same MULTI so a crash cannot lose it. A loser drops the
  // copy it pushed.
  Status claim_due_retries(int64_t t, int& claimed) {
    auto due = client_->command({"ZRANGEBYSCORE", retry_, "-inf", std::to_string(t), "LIMIT", "0",
                                 std::to_string(opts_.batch)});
    if (!due) return due.status();
    if (due->elements.empty()) return Status::ok();
    for (const auto& m : due->elements) {
      client_->append({"MULTI"});
      client_->append({"ZREM", retry_, m.str});
      client_->append({"RPUSH", claimed_, m.str});
      client_->append({"EXEC"});
    }
    auto r = client_->exec();
    if (!r) return r.status();
    for (std::size_t i = 0; i < due->elements.size(); ++i) {
      const redis::Reply& exec = (*r)[i * 4 + 3];
      bool won = exec.is_array() && !exec.elements.empty() && exec.elements[0].integer == 1;
      if (won) {
        ++claimed;
      } else {
        client_->append({"LREM", claimed_, "-1", due->elements[i].str});
      }
    }
    if (client_->pending() > 0) {
      auto d = client_->exec();
      if (!d) return d.status();
    }
    return Status::ok();
  }

  Status claim_new(int& claimed) {
    for (int i = 0; i < opts_.batch; ++i) client_->append({"LMOVE", queue_, claimed_, "LEFT", "RIGHT"});
    auto r = client_->exec();
    if (!r) return r.status();
    for (const auto& e : *r) {
      if (e.is_string()) ++claimed;
    }
    return Status::ok();
  }

  // Moves up to `max` entries of another replica's claimed list back to the
  // head of the queue, oldest first. Returns whether the list is now empty.
  Result<bool> drain(const std::string& key, int max, int& moved) {
    for (int i = 0; i < max; ++i) client_->append({"LMOVE", key, queue_, "RIGHT", "LEFT"});
    auto r = client_->exec();
    if (!r) return r.status();
    bool empty = false;
    for (const auto& e : *r) {
      if (e.is_string()) {
        ++moved;
      } else {
        empty = true;
      }
    }
    return empty;
  }

  Status recover_expired(const std::string& replica, int64_t t) {
    const std::string key = keys::notify_claimed(opts_.ns, replica);
    int moved = 0;
    auto empty = drain(key, 256, moved);
    if (!empty) return empty.status();
    if (moved > 0) {
      stats_.recovered += static_cast<uint64_t>(moved);
      spdlog::warn("notifier: replica {} missed its lease; re-queued {} notification(s) it had claimed", replica,
                   moved);
    }
    if (!*empty) return Status::ok();  // more next time
    // Forget the replica unless it came back meanwhile (WATCH: its heartbeat
    // between our read and the ZREM aborts the EXEC).
    client_->append({"WATCH", replicas_});
    client_->append({"ZSCORE", replicas_, replica});
    client_->append({"LLEN", key});
    auto r = client_->exec();
    if (!r) return r.status();
    const redis::Reply& score = (*r)[1];
    bool still_expired = score.is_string() && std::strtod(score.str.c_str(), nullptr) <= static_cast<double>(t);
    if (still_expired && (*r)[2].integer == 0) {
      client_->append({"MULTI"});
      client_->append({"ZREM", replicas_, replica});
      client_->append({"EXEC"});
    } else {
      client_->append({"UNWATCH"});
    }
    auto d = client_->exec();
    return d ? Status::ok() : d.status();
  }

  // Claimed lists whose replica holds no lease entry at all (it was removed,
  // or an operator or a bug put items there): found with SCAN, one step per
  // iteration, and re-queued once seen orphaned for a whole lease.
  Status sweep_orphans(int64_t t) {
    auto steady = std::chrono::steady_clock::now();
    if (!sweeping_) {
      if (steady < next_sweep_) return Status::ok();
      sweeping_ = true;
      cursor_ = "0";
      seen_.clear();
    }
    auto r = client_->command({"SCAN", cursor_, "MATCH", glob_escape(claimed_prefix_) + "*", "COUNT", "1000", "TYPE",
                               "list"});
    if (!r) return r.status();
    if (!r->is_array() || r->elements.size() != 2) return internal("notifier: unexpected SCAN reply");
    cursor_ = r->elements[0].str;
    std::vector<std::string> candidates;
    for (const auto& k : r->elements[1].elements) {
      if (k.str.size() <= claimed_prefix_.size() || k.str == claimed_) continue;
      candidates.push_back(k.str);
    }
    if (!candidates.empty()) {
      for (const auto& k : candidates) client_->append({"ZSCORE", replicas_, k.substr(claimed_prefix_.size())});
      auto scores = client_->exec();
      if (!scores) return scores.status();
      for (std::size_t i = 0; i < candidates.size(); ++i) {
        const std::string& key = candidates[i];
        if (!(*scores)[i].is_nil()) {
          orphans_.erase(key);  // a leased replica: recover_expired's business
          continue;
        }
        seen_.insert(key);
        auto [it, fresh] = orphans_.emplace(key, t);
        if (fresh || t - it->second < opts_.lease_ms) continue;
        int moved = 0;
        auto empty = drain(key, 1024, moved);
        if (!empty) return empty.status();
        stats_.recovered += static_cast<uint64_t>(moved);
        if (moved > 0) {
          spdlog::warn("notifier: {} had no lease for {} ms; re-queued {} notification(s)", key, opts_.lease_ms,
                       moved);
        }
        if (*empty) orphans_.erase(it);
      }
    }
    if (cursor_ == "0") {
      sweeping_ = false;
      next_sweep_ = steady + std::chrono::milliseconds(std::clamp(opts_.lease_ms / 2, 100, 30000));
      for (auto it = orphans_.begin(); it != orphans_.end();) {
        it = seen_.count(it->first) ? std::next(it) : orphans_.erase(it);
      }
    }
    return Status::ok();
  }

  Status dead_letter(const std::string& entry, json dead, const std::string& why) {
    dead["error"] = why;
    dead["at_ms"] = now();
    dead["replica"] = opts_.replica_id;
    ++stats_.dead;
    return commit({{"RPUSH", dead_, dump(dead)}, {"LREM", claimed_, "1", entry}});
  }

  // One entry of our claimed list: a raw item from the queue (split into one
  // delivery job per matching webhook) or a job (one POST).
  Status process(const std::string& entry) {
    auto parsed = parse_json_object(entry, limits::kMaxMessageBytes);
    if (!parsed) {
      spdlog::error("notifier: unreadable notification item, dead-lettered: {}", parsed.status().message());
      return dead_letter(entry, {{"raw", utf8_clip(entry, 4096)}}, "unreadable item: " + parsed.status().message());
    }
    const json& j = *parsed;
    if (j.contains("job")) return deliver(entry, j);

    std::string problem;
    if (str(j, "id").empty()) problem = "no `id`";
    else if (str(j, "event").empty()) problem = "no `event`";
    else if (str(j, "run_id").empty()) problem = "no `run_id`";
    if (!problem.empty()) {
      spdlog::error("notifier: invalid notification item, dead-lettered: {}", problem);
      return dead_letter(entry, {{"item", j}}, "invalid item: " + problem);
    }
    std::vector<Command> cmds;
    Command push = {"RPUSH", claimed_};
    for (const auto& w : order_) {
      if (!webhook_matches(w, j)) continue;
      push.push_back(dump({{"job", str(j, "id") + "|" + w.name}, {"item", j}, {"webhook", w.name}, {"attempt", 0}}));
    }
    if (push.size() > 2) cmds.push_back(std::move(push));
    cmds.push_back({"LREM", claimed_, "1", entry});
    return commit(std::move(cmds));
  }

  Status deliver(const std::string& entry, const json& job) {
    const json empty = json::object();
    const json& item = job.contains("item") && job["item"].is_object() ? job["item"] : empty;
    const std::string name = str(job, "webhook");
    const int attempt = static_cast<int>(std::clamp<int64_t>(int_field(job, "attempt"), 0, 1000000)) + 1;
    const std::string run_id = str(item, "run_id");
    const std::string event = str(item, "event");

    json detail = {{"webhook", name}, {"event", event}, {"attempt", attempt}};
    if (!str(item, "step").empty()) detail["step"] = str(item, "step");

    auto wit = webhooks_.find(name);
    if (wit == webhooks_.end()) {
      detail["status"] = 0;
      detail["error"] = "webhook `" + name + "` is not in the configuration";
      detail["dead"] = true;
      ++stats_.failed_attempts;
      ++stats_.dead;
      spdlog::error("notifier: {} for run {}: webhook {} is no longer configured; dead-lettered", event, run_id, name);
      json dead = {{"item", item}, {"webhook", name}, {"attempts", attempt - 1}, {"status", 0},
                   {"error", detail["error"]}, {"at_ms", now()}, {"replica", opts_.replica_id}};
      std::vector<Command> cmds;
      if (!run_id.empty()) cmds.push_back(audit(run_id, "notification_failed", detail));
      cmds.push_back({"RPUSH", dead_, dump(dead)});
      cmds.push_back({"LREM", claimed_, "1", entry});
      return commit(std::move(cmds));
    }
    const WebhookConfig& w = *wit->second;

    std::map<std::string, std::string> headers = {{"Idempotency-Key", str(item, "id")},
                                                  {"X-Baton-Event", event},
                                                  {"X-Baton-Attempt", std::to_string(attempt)}};
    for (const auto& [k, v] : w.headers) headers[k] = v;
    auto resp = http::request("POST", w.url, render_notification(w, item), w.timeout_ms, headers);
    const int64_t t = now();

    int status = resp ? resp->status : 0;
    bool ok = resp && status >= 200 && status < 300;
    std::vector<Command> cmds;
    if (ok) {
      detail["status"] = status;
      ++stats_.sent;
      spdlog::debug("notifier: {} for run {} sent to {} (attempt {})", event, run_id, name, attempt);
      if (!run_id.empty()) cmds.push_back(audit(run_id, "notification_sent", detail));
    } else {
      std::string error;
      bool retryable;
      if (!resp) {
        error = scrub(resp.status().message(), w);
        retryable = resp.status().code() != Code::kInvalidArgument;
      } else {
        error = "HTTP " + std::to_string(status);
        std::string body = printable(utf8_clip(resp->body, kMaxErrorBodyChars));
        if (!body.empty()) error += ": " + scrub(body, w);
        retryable = status == 429 || status >= 500;
      }
      detail["status"] = status;
      detail["error"] = error;
      ++stats_.failed_attempts;
      if (retryable && attempt < opts_.max_attempts) {
        int64_t delay = notify_backoff_ms(attempt, opts_.base_backoff_ms, opts_.max_backoff_ms, opts_.jitter,
                                          std::uniform_real_distribution<double>(0.0, 1.0)(rng_));
        if (resp && (status == 429 || status == 503)) {
          auto h = resp->headers.find("retry-after");
          if (h != resp->headers.end()) {
            if (auto ra = parse_retry_after_ms(h->second, t)) delay = std::min(*ra, opts_.max_retry_after_ms);
          }
        }
        json next = job;
        next["attempt"] = attempt;
        detail["retry_at_ms"] = t + delay;
        ++stats_.retries_scheduled;
        spdlog::warn("notifier: {} for run {} to {}: attempt {} failed ({}); retrying in {} ms", event, run_id, name,
                     attempt, error, delay);
        cmds.push_back({"ZADD", retry_, std::to_string(t + delay), dump(next)});
      } else {
        detail["dead"] = true;
        ++stats_.dead;
        spdlog::error("notifier: {} for run {} to {}: attempt {} failed ({}); dead-lettered", event, run_id, name,
                      attempt, error);
        json dead = {{"item", item}, {"webhook", name}, {"attempts", attempt}, {"status", status},
                     {"error", error}, {"at_ms", t}, {"replica", opts_.replica_id}};
        cmds.push_back({"RPUSH", dead_, dump(dead)});
      }
      if (!run_id.empty()) cmds.insert(cmds.begin(), audit(run_id, "notification_failed", detail));
    }
    cmds.push_back({"LREM", claimed_, "1", entry});
    return commit(std::move(cmds));
  }

  Command audit(const std::string& run_id, const char* kind, const json& detail) {
    return {"XADD", keys::run_audit(opts_.ns, run_id), "*", "kind", kind, "at", std::to_string(now()),
            "actor", kActor, "detail", dump(detail)};
  }

  // On stop: hand what we claimed back to the queue and drop our lease so
  // others need not wait for it. Best effort; a failure leaves it to the lease.
  void release() {
    if (!client_) return;
    if (!flush_pending()) return;
    int moved = 0;
    auto empty = drain(claimed_, 4096, moved);
    if (!empty) return;
    if (*empty) {
      (void)client_->command({"ZREM", replicas_, opts_.replica_id});
    } else {
      (void)client_->command({"ZADD", replicas_, "0", opts_.replica_id});  // expired: anyone may take the rest
    }
  }

  const NotifierOptions& opts_;
  Counters& stats_;
  std::function<bool()> stopping_;
  std::function<bool(int)> sleep_;
  const std::string queue_, claimed_, retry_, dead_, replicas_, claimed_prefix_;
  std::mt19937_64 rng_;
  const std::vector<WebhookConfig>& order_;  // config order; owned by the Notifier
  std::unordered_map<std::string, const WebhookConfig*> webhooks_;
  int64_t last_heartbeat_ms_ = 0;
  std::unique_ptr<redis::Client> client_;
  std::vector<Command> pending_;
  bool redis_down_ = false;
  std::chrono::steady_clock::time_point last_redis_log_{};
  // Orphan sweep.
  bool sweeping_ = false;
  std::chrono::steady_clock::time_point next_sweep_{};
  std::string cursor_ = "0";
  std::unordered_map<std::string, int64_t> orphans_;  // key -> first seen orphaned (clock ms)
  std::unordered_set<std::string> seen_;
};

}  // namespace

struct Notifier::Impl {
  Counters counters;
};

Notifier::Notifier(NotifierOptions opts, std::vector<WebhookConfig> webhooks)
    : opts_(std::move(opts)), webhooks_(std::move(webhooks)), impl_(std::make_unique<Impl>()) {
  if (opts_.replica_id.empty()) opts_.replica_id = random_id();
}

Notifier::~Notifier() { stop(); }

Status Notifier::start() {
  if (started_) return Status(Code::kAlreadyExists, "notifier: already started");
  if (opts_.ns.empty()) return invalid("notifier: empty namespace");
  if (opts_.replica_id.find_first_of("*?[]\\ \r\n") != std::string::npos) {
    return invalid("notifier: replica id must not contain glob characters or whitespace");
  }
  if (opts_.poll_ms <= 0 || opts_.lease_ms <= 0 || opts_.max_attempts < 1 || opts_.batch < 1 ||
      opts_.base_backoff_ms < 0 || opts_.max_backoff_ms < 0 || opts_.jitter < 0 || opts_.jitter > 1) {
    return invalid("notifier: poll_ms, lease_ms, max_attempts and batch must be positive, backoffs >= 0, jitter 0..1");
  }
  std::set<std::string> names;
  for (const auto& w : webhooks_) {
    if (!names.insert(w.name).second) return invalid("notifier: duplicate webhook name `" + w.name + "`");
  }
  started_ = true;
  thread_ = std::thread([this] { run(); });
  spdlog::info("notifier: replica {} delivering to {} webhook(s)", opts_.replica_id, webhooks_.size());
  return Status::ok();
}

void Notifier::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

NotifierStats Notifier::stats() const {
  NotifierStats s;
  const Counters& c = impl_->counters;
  s.sent = c.sent.load();
  s.failed_attempts = c.failed_attempts.load();
  s.retries_scheduled = c.retries_scheduled.load();
  s.dead = c.dead.load();
  s.recovered = c.recovered.load();
  s.polls = c.polls.load();
  s.redis_errors = c.redis_errors.load();
  return s;
}

void Notifier::run() {
  try {  // only construction can throw here (allocation): the loop catches its own
    Worker worker(
        opts_, webhooks_, impl_->counters,
        [this] {
          std::lock_guard<std::mutex> lock(mu_);
          return stopping_;
        },
        [this](int ms) {
          std::unique_lock<std::mutex> lock(mu_);
          return !cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
        });
    worker.loop();
  } catch (const std::exception& e) {  // a bug, not an expected failure: say so loudly, keep the process
    spdlog::critical("notifier: delivery thread stopped by an exception: {}", e.what());
  }
}

}  // namespace baton::coordinator
