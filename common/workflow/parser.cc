#include "common/workflow/parser.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/util/limits.h"
#include "common/util/yaml.h"
#include "common/workflow/expr.h"
#include "common/workflow/schedule.h"
#include "common/workflow/template.h"

namespace baton::workflow {
namespace {

constexpr std::size_t kMaxNameLength = 64;
// Aliases make a small file a large tree ("billion laughs"): every node visit
// counts, including each re-visit through an alias.
constexpr std::size_t kMaxYamlNodes = 100000;
constexpr int64_t kMaxDurationMs = int64_t{8760} * 3600 * 1000;  // 8760h, one year
constexpr std::size_t kMaxQuoted = 40;

const std::vector<std::string> kTopKeys = {"name",      "version", "description", "trigger", "record",
                                           "max_steps", "steps",   "schedule",    "window",  "budget"};
const std::vector<std::string> kTopPlanned = {"agents"};
const std::vector<std::string> kStepKeys = {"id",      "role",  "agent",   "writes",   "output", "next",
                                            "timeout", "retry", "route",   "handoff",  "parallel",
                                            "join",    "loop",  "planner", "approval", "approve_when",
                                            "review_sample", "review", "on_collision", "lock"};
const std::vector<std::string> kStepPlanned = {"input"};
const std::vector<std::string> kApprovalKeys = {"group", "sla", "on_timeout", "on_reject"};
const std::vector<std::string> kEscalateKeys = {"escalate", "sla"};
const std::vector<std::string> kReviewKeys = {"group", "sla"};
// Keys of a gate step (`approval` without `role`): a person decides, no worker.
const std::vector<std::string> kGateKeys = {"id", "approval", "next", "route"};
const std::vector<std::string> kScheduleKeys = {"cron", "timezone", "input"};
const std::vector<std::string> kWindowKeys = {"days", "from", "to", "timezone"};
const std::vector<std::string> kHandoffKeys = {"from_output", "allowed"};
const std::vector<std::string> kJoinKeys = {"mode"};
const std::vector<std::string> kBranchKeys = {"step", "on_failure"};
const std::vector<std::string> kLoopKeys = {"maker", "checker", "until", "max_rounds", "on_exhausted"};
const std::vector<std::string> kPlannerKeys = {"allowed", "max_steps", "max_rounds", "on_exhausted"};
// Keys a control step (parallel, loop) may have: the coordinator runs it, no worker.
const std::vector<std::string> kControlKeys = {"id", "next", "route", "parallel", "join", "loop"};
const std::vector<std::string> kTriggerKeys = {"topic", "dedupe"};
const std::vector<std::string> kRetryKeys = {"max_attempts", "backoff", "max_backoff", "multiplier"};
const std::vector<std::string> kContractTypes = {"string", "number", "integer", "boolean",
                                                 "object", "array",  "any"};

bool contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

std::string clip(std::string_view s) {
  if (s.size() <= kMaxQuoted) return std::string(s);
  return std::string(s.substr(0, kMaxQuoted)) + "...";
}

std::string quote(std::string_view s) { return "\"" + clip(s) + "\""; }
std::string code(std::string_view s) { return "`" + clip(s) + "`"; }

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// [a-z0-9][a-z0-9_-]*: names, step ids, roles, agent kinds. They end up in
// Kafka topic names and Redis keys, hence lowercase and short.
bool is_id(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (!first && (c == '_' || c == '-'));
  };
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!ok(s[i], i == 0)) return false;
  return true;
}

// [A-Za-z0-9][A-Za-z0-9_-]*: record fields and contract fields. No leading '_'
// (the record keeps `_v` and writer bookkeeping there) and no '.' (paths).
bool is_field(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  auto ok = [](char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (!first && (c == '_' || c == '-'));
  };
  for (std::size_t i = 0; i < s.size(); ++i)
    if (!ok(s[i], i == 0)) return false;
  return true;
}

bool is_topic(std::string_view s) {
  if (s.empty() || s.size() > 249) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// How a scalar resolves under the YAML 1.2 core schema (the subset we need).
enum class Kind { kNull, kBool, kInt, kFloat, kString };

Kind kind_of(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return Kind::kNull;
  if (!n.IsScalar()) return Kind::kString;  // not used for collections
  const std::string& tag = n.Tag();
  // "!" marks a quoted or block scalar; an explicit !!str keeps the text as text.
  if (tag == "!" || tag == "tag:yaml.org,2002:str") return Kind::kString;
  std::string_view s = n.Scalar();
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return Kind::kNull;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE")
    return Kind::kBool;
  std::string_view body = s;
  if (!body.empty() && (body[0] == '-' || body[0] == '+')) body.remove_prefix(1);
  if (all_digits(body)) return Kind::kInt;
  if (body == ".inf" || body == ".Inf" || body == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN")
    return Kind::kFloat;
  // [0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)? with at least one digit before the exponent.
  std::size_t i = 0, digits = 0;
  while (i < body.size() && body[i] >= '0' && body[i] <= '9') ++i, ++digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && body[i] >= '0' && body[i] <= '9') ++i, ++digits;
  }
  if (digits == 0) return Kind::kString;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '-' || body[i] == '+')) ++i;
    if (!all_digits(body.substr(std::min(i, body.size())))) return Kind::kString;
    i = body.size();
  }
  return i == body.size() ? Kind::kFloat : Kind::kString;
}

// "a map", "a list", "null", "\"text\"", "42", "true": the "got ..." of messages.
std::string describe(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return "null";
  if (n.IsMap()) return n.size() == 0 ? "an empty map" : "a map";
  if (n.IsSequence()) return n.size() == 0 ? "an empty list" : "a list";
  switch (kind_of(n)) {
    case Kind::kNull:
      return "null";
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
      return clip(n.Scalar());
    case Kind::kString:
      break;
  }
  return quote(n.Scalar());
}

bool parse_double(const std::string& s, double& out) {
  std::string_view v = s;
  if (!v.empty() && v[0] == '+') v.remove_prefix(1);
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && p == v.data() + v.size() && std::isfinite(out);
}

// One key: value pair of a map, with the key as text.
struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string name;
  // A missing value ("timeout:") has the mark of whatever follows it; the key
  // is where the reader should look.
  YAML::Mark where() const { return value.IsNull() ? key.Mark() : value.Mark(); }
};

struct StepMarks {
  YAML::Mark id;
  YAML::Mark next;
  YAML::Mark writes;
  YAML::Mark node;
  std::vector<YAML::Mark> route_to;  // parallel to Step::route
  YAML::Mark handoff;
  std::vector<YAML::Mark> branches;  // parallel to Step::parallel
  std::vector<bool> branch_policy;   // on_failure written explicitly
  YAML::Mark loop;
  YAML::Mark planner;
  YAML::Mark approval;
  YAML::Mark lock;
  std::vector<std::string> keys;     // keys present, for the control-step check
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Result<WorkflowPtr> run(std::string_view text) {
    if (text.size() > limits::kMaxWorkflowFileBytes) {
      fail_at(1, 1,
              "file is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                  std::to_string(limits::kMaxWorkflowFileBytes));
      return err_;
    }
    std::vector<YAML::Node> docs;
    try {
      docs = load_all_yaml(std::string(text));
    } catch (const YAML::DeepRecursion& e) {
      // yaml-cpp's own guard (far above ours) says "bad file"; say what it means.
      fail(e.mark, "nesting is deeper than " + std::to_string(limits::kMaxYamlDepth) + " levels");
      return err_;
    } catch (const YAML::Exception& e) {  // ParserException and the rest
      fail(e.mark, "YAML syntax error: " + e.msg);
      return err_;
    }
    if (docs.empty()) {
      fail_at(1, 1, "the file is empty: expected a map with `name` and `steps`");
      return err_;
    }
    if (docs.size() > 1) {
      fail(docs[1].Mark(), "only one YAML document per file is allowed");
      return err_;
    }
    const YAML::Node& root = docs[0];
    std::size_t visits = 0;
    if (!check_shape(root, 1, visits)) return err_;
    text_ = text;
    if (!root.IsMap()) {
      // A null document's mark points past it: 1:1 is more honest.
      fail(root.IsNull() ? YAML::Mark::null_mark() : root.Mark(),
           "the top level must be a map, got " + describe(root));
      return err_;
    }
    auto wf = std::make_shared<Workflow>();
    wf->source_path = file_;
    if (!parse_top(root, *wf)) return err_;
    return WorkflowPtr(std::move(wf));
  }

 private:
  // ---- errors -------------------------------------------------------------

  bool fail_at(int line, int col, const std::string& reason) {
    err_ = invalid(file_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + reason);
    return false;
  }
  bool fail(const YAML::Mark& m, const std::string& reason) {
    if (m.is_null() || m.line < 0) return fail_at(1, 1, reason);
    return fail_at(m.line + 1, m.column + 1, reason);
  }
  bool fail(const YAML::Node& n, const std::string& reason) { return fail(n.Mark(), reason); }

  // ---- shape --------------------------------------------------------------

  // Depth of collections (the top-level map is level 1) and total node count.
  bool check_shape(const YAML::Node& n, int depth, std::size_t& visits) {
    if (++visits > kMaxYamlNodes) {
      return fail(n, "the document has more than " + std::to_string(kMaxYamlNodes) +
                         " nodes (each use of an alias counts)");
    }
    if (!n.IsMap() && !n.IsSequence()) return true;
    if (depth > limits::kMaxYamlDepth) {
      return fail(n, "nesting is deeper than " + std::to_string(limits::kMaxYamlDepth) + " levels");
    }
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (n.IsMap()) {
        if (!check_shape(it->first, depth + 1, visits)) return false;
        if (!check_shape(it->second, depth + 1, visits)) return false;
      } else if (!check_shape(*it, depth + 1, visits)) {
        return false;
      }
    }
    return true;
  }

  // The pairs of a map, refusing keys that are not scalars and duplicate keys
  // (yaml-cpp keeps both; the later one would be silently ignored).
  bool entries(const YAML::Node& map, std::vector<Entry>& out) {
    std::unordered_map<std::string, int> first_line;
    for (auto it = map.begin(); it != map.end(); ++it) {
      // yaml-cpp's iterator yields a temporary pair: copy the nodes (cheap handles).
      YAML::Node k = it->first;
      YAML::Node v = it->second;
      if (!k.IsScalar()) return fail(k, "map keys must be strings, got " + describe(k));
      std::string name = k.Scalar();
      auto [pos, inserted] = first_line.emplace(name, k.Mark().line + 1);
      if (!inserted) {
        return fail(k,
                    "duplicate key " + code(name) + " (first at line " + std::to_string(pos->second) + ")");
      }
      out.push_back({k, v, std::move(name)});
    }
    return true;
  }

  bool unknown_key(const Entry& e, std::string_view where, const std::vector<std::string>& allowed) {
    std::string reason =
        "unknown key " + code(e.name) + " " + std::string(where) + " (allowed: " + join(allowed) + ")";
    std::string home;
    if (contains(kTopKeys, e.name) || contains(kTopPlanned, e.name)) home = "at the top level";
    if (contains(kStepKeys, e.name) || contains(kStepPlanned, e.name)) home = "in a step";
    if (contains(kTriggerKeys, e.name)) home = "in `trigger`";
    if (contains(kRetryKeys, e.name)) home = "in `retry`";
    if (!home.empty() && home != where) reason += "; " + code(e.name) + " belongs " + home;
    return fail(e.key, reason);
  }

  bool planned(const Entry& e) { return fail(e.key, code(e.name) + " is not supported yet (planned)"); }

  // ---- scalars ------------------------------------------------------------

  bool get_string(const Entry& e, const std::string& label, std::string& out) {
    if (!e.value.IsScalar() || kind_of(e.value) == Kind::kNull) {
      return fail(e.where(), code(label) + " must be a string, got " + describe(e.value));
    }
    out = e.value.Scalar();
    return true;
  }

  bool get_id(const Entry& e, const std::string& label, std::string& out) {
    if (!get_string(e, label, out)) return false;
    if (!is_id(out)) {
      return fail(e.where(), code(label) + " must match [a-z0-9][a-z0-9_-]* (at most " +
                                 std::to_string(kMaxNameLength) + " characters), got " + describe(e.value));
    }
    return true;
  }

  bool get_positive_int(const Entry& e, const std::string& label, uint32_t& out) {
    uint64_t v = 0;
    bool ok = false;
    if (e.value.IsScalar() && kind_of(e.value) == Kind::kInt) {
      std::string_view s = e.value.Scalar();
      if (!s.empty() && s[0] == '+') s.remove_prefix(1);
      auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc::result_out_of_range ||
          (ec == std::errc() && v > std::numeric_limits<uint32_t>::max())) {
        return fail(e.where(), code(label) + " must be at most " +
                                   std::to_string(std::numeric_limits<uint32_t>::max()) + ", got " +
                                   describe(e.value));
      }
      ok = ec == std::errc() && p == s.data() + s.size() && v >= 1;
    }
    if (!ok) return fail(e.where(), code(label) + " must be a positive integer, got " + describe(e.value));
    out = static_cast<uint32_t>(v);
    return true;
  }

  // <digits><unit>, unit one of ms, s, m, h. A bare number is refused: "30"
  // could mean seconds or milliseconds, and the wrong guess is costly.
  bool get_duration(const Entry& e, const std::string& label, bool allow_zero, int64_t& out_ms) {
    auto bad = [&] {
      return fail(e.where(), code(label) +
                                 " must be a duration: an integer with a unit ms, s, m or h "
                                 "(e.g. 250ms, 30s, 5m, 4h), got " +
                                 describe(e.value));
    };
    if (!e.value.IsScalar() || kind_of(e.value) == Kind::kNull) return bad();
    std::string_view s = e.value.Scalar();
    std::size_t digits = 0;
    while (digits < s.size() && s[digits] >= '0' && s[digits] <= '9') ++digits;
    std::string_view unit = s.substr(digits);
    int64_t scale = 0;
    if (unit == "ms")
      scale = 1;
    else if (unit == "s")
      scale = 1000;
    else if (unit == "m")
      scale = 60 * 1000;
    else if (unit == "h")
      scale = 3600 * 1000;
    if (digits == 0 || scale == 0) return bad();
    if (digits > 12) return fail(e.where(), code(label) + " must be at most 8760h, got " + describe(e.value));
    int64_t n = 0;
    std::from_chars(s.data(), s.data() + digits, n);  // <= 12 digits: cannot overflow
    if (n > kMaxDurationMs / scale) {
      return fail(e.where(), code(label) + " must be at most 8760h, got " + describe(e.value));
    }
    if (n == 0 && !allow_zero) {
      return fail(e.where(), code(label) + " must be longer than 0, got " + describe(e.value));
    }
    out_ms = n * scale;
    return true;
  }

  bool get_template(const Entry& e, const std::string& label, std::string& out) {
    if (!get_string(e, label, out)) return false;
    if (out.empty()) return fail(e.where(), code(label) + " must not be empty");
    auto t = Template::parse(out);
    if (t) return true;
    // Template errors read "column N: reason"; N is 1-based inside the string.
    const std::string& msg = t.status().message();
    int col_in = 1;
    std::string reason = msg;
    if (msg.rfind("column ", 0) == 0) {
      std::size_t colon = msg.find(": ");
      if (colon != std::string::npos) {
        std::from_chars(msg.data() + 7, msg.data() + colon, col_in);
        reason = msg.substr(colon + 2);
      }
    }
    return fail(position_in(e.value, out, static_cast<std::size_t>(std::max(col_in, 1) - 1)),
                "invalid template in " + code(label) + ": " + reason);
  }

  // Where byte `offset` of a scalar's value sits in the file. Exact for plain
  // and quoted one-line scalars without escapes and for literal blocks (|);
  // approximate for escapes, folded blocks (>) and multi-line flow scalars.
  YAML::Mark position_in(const YAML::Node& n, const std::string& value, std::size_t offset) {
    YAML::Mark m = n.Mark();
    offset = std::min(offset, value.size());
    const auto pos = static_cast<std::size_t>(std::max(m.pos, 0));
    const char first = pos < text_.size() ? text_[pos] : '\0';
    if (first == '|' || first == '>') {
      // Content starts on the next line, indented like its first line.
      std::size_t line_start = text_.find('\n', pos);
      if (line_start == std::string_view::npos) return m;
      ++line_start;
      std::size_t indent = 0;
      while (line_start + indent < text_.size() && text_[line_start + indent] == ' ') ++indent;
      std::size_t lines = 0, last_nl = std::string::npos;
      for (std::size_t i = 0; i < offset; ++i) {
        if (value[i] == '\n') ++lines, last_nl = i;
      }
      std::size_t col = last_nl == std::string::npos ? offset : offset - last_nl - 1;
      m.line += 1 + static_cast<int>(lines);
      m.column = static_cast<int>(indent + col);
      return m;
    }
    m.column += static_cast<int>(offset) + (first == '"' || first == '\'' ? 1 : 0);
    return m;
  }

  // ---- JSON for agent config ----------------------------------------------

  bool to_json(const YAML::Node& n, nlohmann::json& out) {
    if (n.IsMap()) {
      std::vector<Entry> es;
      if (!entries(n, es)) return false;
      out = nlohmann::json::object();
      for (const auto& e : es) {
        if (!to_json(e.value, out[e.name])) return false;
      }
      return true;
    }
    if (n.IsSequence()) {
      out = nlohmann::json::array();
      for (const auto& item : n) {
        nlohmann::json j;
        if (!to_json(item, j)) return false;
        out.push_back(std::move(j));
      }
      return true;
    }
    const std::string text = n.IsScalar() ? n.Scalar() : std::string();
    switch (kind_of(n)) {
      case Kind::kNull:
        out = nullptr;
        return true;
      case Kind::kBool:
        out = (text[0] == 't' || text[0] == 'T');
        return true;
      case Kind::kInt: {
        std::string_view s = text;
        if (!s.empty() && s[0] == '+') s.remove_prefix(1);
        int64_t i = 0;
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), i);
        if (ec == std::errc() && p == s.data() + s.size()) {
          out = i;
          return true;
        }
        uint64_t u = 0;
        auto [p2, ec2] = std::from_chars(s.data(), s.data() + s.size(), u);
        if (ec2 == std::errc() && p2 == s.data() + s.size()) {
          out = u;
          return true;
        }
        double d = 0;
        if (parse_double(text, d)) {
          out = d;
          return true;
        }
        out = text;
        return true;
      }
      case Kind::kFloat: {
        double d = 0;
        if (parse_double(text, d)) {
          out = d;
        } else {
          out = text;  // .inf / .nan have no JSON form: kept as text
        }
        return true;
      }
      case Kind::kString:
        break;
    }
    out = text;
    return true;
  }

  // ---- sections -----------------------------------------------------------

  bool parse_top(const YAML::Node& root, Workflow& wf) {
    std::vector<Entry> es;
    if (!entries(root, es)) return false;
    bool has_name = false, has_steps = false;
    for (const auto& e : es) {
      if (contains(kTopPlanned, e.name)) return planned(e);
      if (e.name == "name") {
        if (!get_id(e, "name", wf.name)) return false;
        has_name = true;
      } else if (e.name == "version") {
        if (!get_positive_int(e, "version", wf.version)) return false;
      } else if (e.name == "description") {
        if (!get_string(e, "description", wf.description)) return false;
      } else if (e.name == "trigger") {
        if (!parse_trigger(e, wf)) return false;
      } else if (e.name == "record") {
        if (e.value.IsMap()) {
          if (!parse_record(e, wf)) return false;
        } else if (!get_template(e, "record", wf.record_template)) {
          return false;
        }
      } else if (e.name == "max_steps") {
        if (!get_positive_int(e, "max_steps", wf.max_steps)) return false;
      } else if (e.name == "steps") {
        if (!parse_steps(e, wf)) return false;
        has_steps = true;
      } else if (e.name == "schedule") {
        if (!parse_schedule(e, wf)) return false;
      } else if (e.name == "window") {
        if (!parse_window(e, wf)) return false;
      } else if (e.name == "budget") {
        if (!parse_budget(e, wf)) return false;
      } else {
        return unknown_key(e, "at the top level", kTopKeys);
      }
    }
    if (!has_name) return fail(root, "missing required key `name`");
    if (!has_steps) return fail(root, "missing required key `steps`");
    return check_links(wf);
  }

  // `record: {key: <template>, fields: {name: type | {type, sensitive, writers}}}`.
  bool parse_record(const Entry& e, Workflow& wf) {
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    bool has_key = false;
    for (const auto& k : es) {
      if (k.name == "key") {
        if (!get_template(k, "record.key", wf.record_template)) return false;
        has_key = true;
      } else if (k.name == "fields") {
        if (!k.value.IsMap()) return fail(k.where(), "`record.fields` must be a map of field: type or {type, sensitive, writers}, got " + describe(k.value));
        std::vector<Entry> fs;
        if (!entries(k.value, fs)) return false;
        for (const auto& f : fs) {
          if (!is_field(f.name) || f.name[0] == '_') {
            return fail(f.key, "`record.fields` names must match [A-Za-z0-9][A-Za-z0-9_-]*, got " + quote(f.name));
          }
          RecordField rf;
          rf.name = f.name;
          auto type_of = [&](const Entry& t) {
            if (!t.value.IsScalar() || kind_of(t.value) != Kind::kString || !contains(kContractTypes, t.value.Scalar())) {
              return fail(t.where(), code("record.fields." + f.name) + " type must be one of " + join(kContractTypes) +
                                         ", got " + describe(t.value));
            }
            rf.type = t.value.Scalar();
            return true;
          };
          if (f.value.IsMap()) {
            std::vector<Entry> ps;
            if (!entries(f.value, ps)) return false;
            for (const auto& p : ps) {
              if (p.name == "type") {
                if (!type_of(p)) return false;
              } else if (p.name == "sensitive") {
                if (!p.value.IsScalar() || kind_of(p.value) != Kind::kBool) {
                  return fail(p.where(), code("record.fields." + f.name + ".sensitive") + " must be true or false, got " + describe(p.value));
                }
                rf.sensitive = p.value.as<bool>();
              } else if (p.name == "writers") {
                if (!get_step_list(p, "record.fields." + f.name + ".writers", rf.writers)) return false;
                record_writer_marks_.push_back({f.name, p.where()});
              } else {
                return unknown_key(p, "in a record field", {"type", "sensitive", "writers"});
              }
            }
          } else if (!type_of(f)) {
            return false;
          }
          wf.record_fields.push_back(std::move(rf));
        }
      } else {
        return unknown_key(k, "in `record`", {"key", "fields"});
      }
    }
    if (!has_key) return fail(e.value, "`record` is missing required key `key` (the record's key template)");
    return true;
  }

  // A cost in USD ("0.50", 20) as micro-USD.
  bool get_cost(const Entry& e, const std::string& label, uint64_t& out) {
    double v = -1;
    Kind kind = kind_of(e.value);
    bool ok = e.value.IsScalar() && (kind == Kind::kInt || kind == Kind::kFloat) && parse_double(e.value.Scalar(), v) &&
              v > 0 && v <= 1e9;
    if (!ok) return fail(e.where(), code(label) + " must be a positive amount in USD (e.g. 0.50), got " + describe(e.value));
    out = static_cast<uint64_t>(v * 1e6 + 0.5);
    return true;
  }

  bool parse_budget(const Entry& e, Workflow& wf) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`budget` must be a map (keys: run, daily, on_exceeded, fallback_models), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    Budget b;
    const Entry* fallback_list = nullptr;
    for (const auto& k : es) {
      if (k.name == "run" || k.name == "daily") {
        if (!k.value.IsMap()) return fail(k.where(), code("budget." + k.name) + " must be a map, got " + describe(k.value));
        std::vector<Entry> ls;
        if (!entries(k.value, ls)) return false;
        for (const auto& l : ls) {
          const std::string label = "budget." + k.name + "." + l.name;
          if (l.name == "max_cost") {
            if (!get_cost(l, label, k.name == "run" ? b.run_max_cost_micros : b.daily_max_cost_micros)) return false;
          } else if (k.name == "run" && l.name == "max_tokens") {
            uint32_t t = 0;
            if (!get_positive_int(l, label, t)) return false;
            b.run_max_tokens = t;
          } else if (k.name == "run" && l.name == "max_steps") {
            if (!get_positive_int(l, label, b.run_max_steps)) return false;
          } else {
            return unknown_key(l, "in " + code("budget." + k.name),
                               k.name == "run" ? std::vector<std::string>{"max_cost", "max_tokens", "max_steps"}
                                               : std::vector<std::string>{"max_cost"});
          }
        }
      } else if (k.name == "on_exceeded") {
        std::string v;
        if (!get_string(k, "budget.on_exceeded", v)) return false;
        if (v != "exception" && v != "fallback") {
          return fail(k.where(), "`budget.on_exceeded` must be exception or fallback, got " + describe(k.value));
        }
        b.fallback = v == "fallback";
      } else if (k.name == "fallback_models") {
        if (!k.value.IsSequence() || k.value.size() == 0) {
          return fail(k.where(), "`budget.fallback_models` must be a non-empty list of model names, got " + describe(k.value));
        }
        for (const auto& m : k.value) {
          if (!m.IsScalar() || kind_of(m) == Kind::kNull || m.Scalar().empty() || m.Scalar().size() > 200) {
            return fail(m.IsNull() ? k.value.Mark() : m.Mark(), "`budget.fallback_models` entries must be model names, got " + describe(m));
          }
          b.fallback_models.push_back(m.Scalar());
        }
        fallback_list = &k;
      } else {
        return unknown_key(k, "in `budget`", {"run", "daily", "on_exceeded", "fallback_models"});
      }
    }
    if (b.fallback && b.fallback_models.empty()) {
      return fail(e.value, "`budget.on_exceeded: fallback` needs `fallback_models` (the cheaper models to switch to)");
    }
    if (!b.fallback && fallback_list) {
      return fail(fallback_list->key, "`budget.fallback_models` is used only with `on_exceeded: fallback`");
    }
    wf.budget = std::move(b);
    return true;
  }

  bool parse_trigger(const Entry& e, Workflow& wf) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`trigger` must be a map (keys: topic, dedupe), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    for (const auto& t : es) {
      if (t.name == "topic") {
        if (!get_string(t, "trigger.topic", wf.trigger_topic)) return false;
        if (!is_topic(wf.trigger_topic)) {
          return fail(t.where(),
                      "`trigger.topic` must be a Kafka topic name ([A-Za-z0-9._-], at most "
                      "249 characters), got " +
                          describe(t.value));
        }
      } else if (t.name == "dedupe") {
        if (!get_template(t, "trigger.dedupe", wf.dedupe_template)) return false;
      } else {
        return unknown_key(t, "in `trigger`", kTriggerKeys);
      }
    }
    return true;
  }

  bool parse_steps(const Entry& e, Workflow& wf) {
    if (!e.value.IsSequence() || e.value.size() == 0) {
      return fail(e.where(), "`steps` must be a non-empty list of steps, got " + describe(e.value));
    }
    for (const auto& item : e.value) {
      if (!item.IsMap()) {
        return fail(item.IsNull() ? e.value.Mark() : item.Mark(),
                    "each step must be a map with `id` and `role`, got " + describe(item));
      }
      if (!parse_step(item, wf)) return false;
    }
    return true;
  }

  bool parse_step(const YAML::Node& node, Workflow& wf) {
    Step s;
    StepMarks marks;
    s.mark = {node.Mark().line + 1, node.Mark().column + 1};
    std::vector<Entry> es;
    if (!entries(node, es)) return false;
    bool has_id = false, has_role = false;
    const Entry* approve_when = nullptr;
    marks.node = node.Mark();
    for (const auto& e : es) {
      if (contains(kStepPlanned, e.name)) return planned(e);
      marks.keys.push_back(e.name);
      if (e.name == "id") {
        if (!get_id(e, "id", s.id)) return false;
        marks.id = e.where();
        has_id = true;
      } else if (e.name == "role") {
        if (!get_id(e, "role", s.role)) return false;
        has_role = true;
      } else if (e.name == "agent") {
        if (!parse_agent(e, s)) return false;
      } else if (e.name == "writes") {
        if (!parse_writes(e, s)) return false;
        marks.writes = e.key.Mark();
      } else if (e.name == "output") {
        if (!parse_output(e, s)) return false;
      } else if (e.name == "next") {
        if (!get_id(e, "next", s.next)) return false;
        marks.next = e.where();
      } else if (e.name == "timeout") {
        if (!get_duration(e, "timeout", /*allow_zero=*/false, s.timeout_ms)) return false;
      } else if (e.name == "retry") {
        if (!parse_retry(e, s.retry)) return false;
      } else if (e.name == "route") {
        if (!parse_route(e, s, marks)) return false;
      } else if (e.name == "handoff") {
        if (!parse_handoff(e, s)) return false;
        marks.handoff = e.key.Mark();
      } else if (e.name == "parallel") {
        if (!parse_parallel(e, s, marks)) return false;
      } else if (e.name == "join") {
        if (!parse_join(e, s)) return false;
      } else if (e.name == "loop") {
        if (!parse_loop(e, s)) return false;
        marks.loop = e.key.Mark();
      } else if (e.name == "planner") {
        if (!parse_planner(e, s)) return false;
        marks.planner = e.key.Mark();
      } else if (e.name == "approval") {
        if (!parse_approval(e, s)) return false;
        marks.approval = e.key.Mark();
      } else if (e.name == "approve_when") {
        approve_when = &e;
      } else if (e.name == "review_sample") {
        double v = -1;
        Kind kind = kind_of(e.value);
        bool ok = e.value.IsScalar() && (kind == Kind::kInt || kind == Kind::kFloat) &&
                  parse_double(e.value.Scalar(), v) && v >= 0.0 && v <= 1.0;
        if (!ok) return fail(e.where(), "`review_sample` must be a share from 0 to 1 (e.g. 0.05), got " + describe(e.value));
        if (!s.review) s.review = Review();
        s.review->sample = v;
      } else if (e.name == "review") {
        if (!parse_review(e, s)) return false;
      } else if (e.name == "lock") {
        std::string v;
        if (!get_string(e, "lock", v)) return false;
        if (v != "record") return fail(e.where(), "`lock` must be record (the run's shared record), got " + describe(e.value));
        s.lock_record = true;
        marks.lock = e.key.Mark();
      } else if (e.name == "on_collision") {
        std::string v;
        if (!get_string(e, "on_collision", v)) return false;
        if (v != "retry" && v != "exception") {
          return fail(e.where(), "`on_collision` must be retry or exception, got " + describe(e.value));
        }
        s.collision_is_exception = v == "exception";
      } else {
        return unknown_key(e, "in a step", kStepKeys);
      }
    }
    if (!has_id) return fail(node, "step is missing required key `id`");
    if (s.id == kTargetEnd || s.id == kTargetException) {
      return fail(marks.id, "step id " + code(s.id) + " is reserved (a built-in route target)");
    }
    if (s.approval && !has_role && s.kind == StepKind::kTask) s.kind = StepKind::kApproval;
    if (approve_when) {
      if (!s.approval || s.kind != StepKind::kTask) {
        return fail(approve_when->key, "`approve_when` needs `role` and `approval: {group: ...}` in the same step "
                                       "(it holds the task's result for that group)");
      }
      if (!get_condition(*approve_when, "approve_when", s.approval->when)) return false;
      if (s.approval->when->reads("record")) {
        return fail(approve_when->where(), "`approve_when` may read input, output and run, not record (the record "
                                           "is written after the decision)");
      }
    }
    if (s.review) {
      const Entry* r = nullptr;
      for (const auto& e : es)
        if (e.name == "review" || e.name == "review_sample") r = r ? r : &e;
      if (s.kind != StepKind::kTask) return fail(r->key, "`review_sample` is for task steps (it samples a role's results)");
      bool has_sample = std::any_of(es.begin(), es.end(), [](const Entry& x) { return x.name == "review_sample"; });
      if (!has_sample) return fail(r->key, "`review` needs `review_sample` (the share of results a person checks)");
    }
    if (!check_step_shape(s, marks, es)) return false;
    // A branch's failure fails an `all` join; `any` and `quorum` only need enough
    // successes, so there a failed branch counts as not succeeded unless it says
    // `on_failure: fail`.
    for (std::size_t b = 0; b < s.parallel.size(); ++b) {
      if (!marks.branch_policy[b]) s.parallel[b].ignore_failure = s.join.mode != JoinMode::kAll;
    }
    if (!has_role && s.kind == StepKind::kTask) {
      return fail(node, "step " + code(s.id) + " is missing required key `role` (or `approval` for a person's decision)");
    }
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      if (wf.steps[i].id == s.id) {
        return fail(marks.id, "duplicate step id " + code(s.id) + " (first defined at line " +
                                  std::to_string(marks_[i].id.line + 1) + ")");
      }
    }
    wf.steps.push_back(std::move(s));
    marks_.push_back(marks);
    return true;
  }

  bool parse_agent(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`agent` must be a map with `kind`, got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    AgentSpec a;
    bool has_kind = false;
    for (const auto& k : es) {
      if (k.name == "kind") {
        if (!get_id(k, "agent.kind", a.kind)) return false;
        has_kind = true;
      } else if (!to_json(k.value, a.config[k.name])) {
        return false;
      }
    }
    if (!has_kind) return fail(e.value, "`agent` is missing required key `kind`");
    s.agent = std::move(a);
    return true;
  }

  bool parse_writes(const Entry& e, Step& s) {
    if (!e.value.IsSequence()) {
      return fail(e.where(), "`writes` must be a list of field names, got " + describe(e.value));
    }
    for (const auto& item : e.value) {
      if (!item.IsScalar() || kind_of(item) == Kind::kNull || !is_field(item.Scalar())) {
        return fail(item.IsNull() ? e.value.Mark() : item.Mark(),
                    "`writes` entries must be field names matching [A-Za-z0-9][A-Za-z0-9_-]* (at "
                    "most " +
                        std::to_string(kMaxNameLength) + " characters), got " + describe(item));
      }
      if (contains(s.writes, item.Scalar())) {
        return fail(item, "`writes` lists " + code(item.Scalar()) + " twice");
      }
      s.writes.push_back(item.Scalar());
    }
    return true;
  }

  bool parse_output(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`output` must be a map of field: type, got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    for (const auto& f : es) {
      if (!is_field(f.name)) {
        return fail(f.key, "`output` field names must match [A-Za-z0-9][A-Za-z0-9_-]* (at most " +
                               std::to_string(kMaxNameLength) + " characters), got " + quote(f.name));
      }
      FieldContract c;
      c.name = f.name;
      if (f.value.IsScalar() && kind_of(f.value) == Kind::kString) {
        c.type = f.value.Scalar();
        if (!c.type.empty() && c.type.back() == '?') {
          c.optional = true;
          c.type.pop_back();
        }
      }
      if (!contains(kContractTypes, c.type)) {
        return fail(f.where(), code("output." + f.name) + " must be one of " + join(kContractTypes) +
                                   " (with ? for optional), got " + describe(f.value));
      }
      s.output.push_back(std::move(c));
    }
    return true;
  }

  bool parse_retry(const Entry& e, RetryPolicy& r) {
    if (!e.value.IsMap()) {
      return fail(e.where(),
                  "`retry` must be a map (keys: " + join(kRetryKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    const Entry* max_backoff = nullptr;
    for (const auto& k : es) {
      if (k.name == "max_attempts") {
        if (!get_positive_int(k, "retry.max_attempts", r.max_attempts)) return false;
      } else if (k.name == "backoff") {
        if (!get_duration(k, "retry.backoff", /*allow_zero=*/true, r.backoff_ms)) return false;
      } else if (k.name == "max_backoff") {
        if (!get_duration(k, "retry.max_backoff", /*allow_zero=*/true, r.max_backoff_ms)) return false;
        max_backoff = &k;
      } else if (k.name == "multiplier") {
        double m = 0;
        Kind kind = kind_of(k.value);
        bool ok = k.value.IsScalar() && (kind == Kind::kInt || kind == Kind::kFloat) &&
                  parse_double(k.value.Scalar(), m) && m >= 1.0 && m <= 100.0;
        if (!ok) {
          return fail(k.where(),
                      "`retry.multiplier` must be a number from 1 to 100, got " + describe(k.value));
        }
        r.multiplier = m;
      } else {
        return unknown_key(k, "in `retry`", kRetryKeys);
      }
    }
    if (r.max_backoff_ms < r.backoff_ms) {
      // Only the default cap is raised silently; an explicit one that is too low is a mistake.
      if (max_backoff == nullptr) {
        r.max_backoff_ms = r.backoff_ms;
      } else {
        return fail(max_backoff->where(),
                    "`retry.max_backoff` must not be shorter than `retry.backoff`, got " +
                        describe(max_backoff->value));
      }
    }
    return true;
  }

  // ---- patterns -----------------------------------------------------------

  // A condition, parsed now; errors point at the column inside the text.
  bool get_condition(const Entry& e, const std::string& label, std::shared_ptr<const Condition>& out) {
    std::string text;
    if (!get_string(e, label, text)) return false;
    auto parsed = Condition::parse(text);
    if (auto* err = std::get_if<ExprError>(&parsed)) {
      return fail(position_in(e.value, text, static_cast<std::size_t>(std::max(err->col, 1) - 1)),
                  "invalid condition in " + code(label) + ": " + err->message);
    }
    out = std::make_shared<const Condition>(std::get<Condition>(std::move(parsed)));
    return true;
  }

  // A target: a step id (checked later), `end` or `exception`.
  bool get_target(const Entry& e, const std::string& label, std::string& out) {
    return get_id(e, label, out);
  }

  bool parse_route(const Entry& e, Step& s, StepMarks& marks) {
    if (!e.value.IsSequence() || e.value.size() == 0) {
      return fail(e.where(), "`route` must be a non-empty list of {when, to} and a final {else}, got " +
                                 describe(e.value));
    }
    for (const auto& item : e.value) {
      if (!item.IsMap()) {
        return fail(item.IsNull() ? e.value.Mark() : item.Mark(),
                    "each `route` entry must be a map {when: <condition>, to: <step>} or {else: <step>}, got " +
                        describe(item));
      }
      if (!s.route.empty() && !s.route.back().when) {
        return fail(item, "`else` must be the last `route` entry");
      }
      std::vector<Entry> es;
      if (!entries(item, es)) return false;
      RouteRule rule;
      const Entry* when = nullptr;
      const Entry* to = nullptr;
      const Entry* els = nullptr;
      for (const auto& k : es) {
        if (k.name == "when") {
          when = &k;
        } else if (k.name == "to") {
          to = &k;
        } else if (k.name == "else") {
          els = &k;
        } else {
          return unknown_key(k, "in a `route` entry", {"when", "to", "else"});
        }
      }
      if (els) {
        if (when || to) return fail(els->key, "a `route` entry has either `when` and `to`, or only `else`");
        if (!get_target(*els, "route.else", rule.to)) return false;
        marks.route_to.push_back(els->where());
      } else {
        if (!when) return fail(item, "`route` entry is missing `when` (or use `else`)");
        if (!to) return fail(item, "`route` entry is missing `to`");
        if (!get_condition(*when, "route.when", rule.when)) return false;
        if (!get_target(*to, "route.to", rule.to)) return false;
        marks.route_to.push_back(to->where());
      }
      s.route.push_back(std::move(rule));
    }
    return true;
  }

  bool get_step_list(const Entry& e, const std::string& label, std::vector<std::string>& out) {
    if (!e.value.IsSequence() || e.value.size() == 0) {
      return fail(e.where(), code(label) + " must be a non-empty list of step ids, got " + describe(e.value));
    }
    for (const auto& item : e.value) {
      if (!item.IsScalar() || kind_of(item) == Kind::kNull || !is_id(item.Scalar())) {
        return fail(item.IsNull() ? e.value.Mark() : item.Mark(),
                    code(label) + " entries must be step ids, got " + describe(item));
      }
      if (contains(out, item.Scalar())) return fail(item, code(label) + " lists " + code(item.Scalar()) + " twice");
      out.push_back(item.Scalar());
    }
    return true;
  }

  bool parse_handoff(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`handoff` must be a map (keys: from_output, allowed), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    Handoff h;
    bool has_allowed = false;
    for (const auto& k : es) {
      if (k.name == "from_output") {
        if (!get_string(k, "handoff.from_output", h.from_output)) return false;
        if (!is_field(h.from_output)) {
          return fail(k.where(), "`handoff.from_output` must be an output field name, got " + describe(k.value));
        }
      } else if (k.name == "allowed") {
        if (!get_step_list(k, "handoff.allowed", h.allowed)) return false;
        has_allowed = true;
      } else {
        return unknown_key(k, "in `handoff`", kHandoffKeys);
      }
    }
    if (h.from_output.empty()) return fail(e.value, "`handoff` is missing required key `from_output`");
    if (!has_allowed) return fail(e.value, "`handoff` is missing required key `allowed`");
    s.handoff = std::move(h);
    return true;
  }

  bool parse_parallel(const Entry& e, Step& s, StepMarks& marks) {
    if (!e.value.IsSequence() || e.value.size() < 2) {
      return fail(e.where(), "`parallel` must be a list of at least two step ids, got " + describe(e.value));
    }
    s.kind = StepKind::kParallel;
    for (const auto& item : e.value) {
      Branch b;
      YAML::Mark at = item.IsNull() ? e.value.Mark() : item.Mark();
      if (item.IsScalar() && kind_of(item) != Kind::kNull && is_id(item.Scalar())) {
        b.step = item.Scalar();
      } else if (item.IsMap()) {
        std::vector<Entry> es;
        if (!entries(item, es)) return false;
        for (const auto& k : es) {
          if (k.name == "step") {
            if (!get_id(k, "parallel.step", b.step)) return false;
            at = k.where();
          } else if (k.name == "on_failure") {
            std::string v;
            if (!get_string(k, "parallel.on_failure", v)) return false;
            if (v != "fail" && v != "ignore") {
              return fail(k.where(), "`parallel.on_failure` must be fail or ignore, got " + describe(k.value));
            }
            b.ignore_failure = v == "ignore";
          } else {
            return unknown_key(k, "in a `parallel` entry", kBranchKeys);
          }
        }
        if (b.step.empty()) return fail(item, "`parallel` entry is missing required key `step`");
      } else {
        return fail(at, "`parallel` entries must be step ids or {step, on_failure}, got " + describe(item));
      }
      for (const auto& other : s.parallel) {
        if (other.step == b.step) return fail(at, "`parallel` lists " + code(b.step) + " twice");
      }
      marks.branch_policy.push_back(item.IsMap() && item["on_failure"].IsDefined());
      s.parallel.push_back(std::move(b));
      marks.branches.push_back(at);
    }
    return true;
  }

  bool parse_join(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`join` must be a map {mode: all | any | quorum(n)}, got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    for (const auto& k : es) {
      if (k.name != "mode") return unknown_key(k, "in `join`", kJoinKeys);
      std::string m;
      if (!get_string(k, "join.mode", m)) return false;
      if (m == "all") {
        s.join.mode = JoinMode::kAll;
      } else if (m == "any") {
        s.join.mode = JoinMode::kAny;
      } else if (m.rfind("quorum(", 0) == 0 && m.size() > 8 && m.back() == ')' &&
                 all_digits(std::string_view(m).substr(7, m.size() - 8)) && m.size() < 14) {
        s.join.mode = JoinMode::kQuorum;
        s.join.quorum = static_cast<uint32_t>(std::stoul(m.substr(7, m.size() - 8)));
        if (s.join.quorum == 0) return fail(k.where(), "`join.mode` quorum(n) needs n >= 1, got " + describe(k.value));
      } else {
        return fail(k.where(), "unknown join mode " + describe(k.value) + " (use all, any or quorum(n))");
      }
    }
    return true;
  }

  bool parse_loop(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`loop` must be a map (keys: " + join(kLoopKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    Loop l;
    s.kind = StepKind::kLoop;
    for (const auto& k : es) {
      if (k.name == "maker") {
        if (!get_id(k, "loop.maker", l.maker)) return false;
      } else if (k.name == "checker") {
        if (!get_id(k, "loop.checker", l.checker)) return false;
      } else if (k.name == "until") {
        if (!get_condition(k, "loop.until", l.until)) return false;
      } else if (k.name == "max_rounds") {
        if (!get_positive_int(k, "loop.max_rounds", l.max_rounds)) return false;
        if (l.max_rounds > 100) return fail(k.where(), "`loop.max_rounds` must be at most 100, got " + describe(k.value));
      } else if (k.name == "on_exhausted") {
        if (!get_target(k, "loop.on_exhausted", l.on_exhausted)) return false;
      } else {
        return unknown_key(k, "in `loop`", kLoopKeys);
      }
    }
    for (const char* req : {"maker", "checker", "until", "max_rounds"}) {
      bool present = std::any_of(es.begin(), es.end(), [&](const Entry& x) { return x.name == req; });
      if (!present) return fail(e.value, "`loop` is missing required key `" + std::string(req) + "`");
    }
    if (l.maker == l.checker) return fail(e.value, "`loop.maker` and `loop.checker` must be different steps");
    s.loop = std::move(l);
    return true;
  }

  bool parse_planner(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`planner` must be a map (keys: " + join(kPlannerKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    Planner p;
    bool has_allowed = false, has_max = false;
    for (const auto& k : es) {
      if (k.name == "allowed") {
        if (!get_step_list(k, "planner.allowed", p.allowed)) return false;
        has_allowed = true;
      } else if (k.name == "max_steps") {
        if (!get_positive_int(k, "planner.max_steps", p.max_steps)) return false;
        has_max = true;
      } else if (k.name == "max_rounds") {
        if (!get_positive_int(k, "planner.max_rounds", p.max_rounds)) return false;
      } else if (k.name == "on_exhausted") {
        if (!get_target(k, "planner.on_exhausted", p.on_exhausted)) return false;
      } else {
        return unknown_key(k, "in `planner`", kPlannerKeys);
      }
    }
    if (!has_allowed) return fail(e.value, "`planner` is missing required key `allowed`");
    if (!has_max) return fail(e.value, "`planner` is missing required key `max_steps` (the bound on planned steps)");
    s.planner = std::move(p);
    return true;
  }

  bool parse_approval(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`approval` must be a map (keys: " + join(kApprovalKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    Approval a;
    bool has_group = false;
    for (const auto& k : es) {
      if (k.name == "group") {
        if (!get_id(k, "approval.group", a.group)) return false;
        has_group = true;
      } else if (k.name == "sla") {
        if (!get_duration(k, "approval.sla", /*allow_zero=*/false, a.sla_ms)) return false;
      } else if (k.name == "on_reject") {
        if (!get_target(k, "approval.on_reject", a.on_reject)) return false;
      } else if (k.name == "on_timeout") {
        if (k.value.IsScalar() && kind_of(k.value) == Kind::kString && k.value.Scalar() == kTargetException) continue;
        if (!k.value.IsMap()) {
          return fail(k.where(), "`approval.on_timeout` must be exception or {escalate: <group>, sla: <duration>}, got " +
                                     describe(k.value));
        }
        std::vector<Entry> ts;
        if (!entries(k.value, ts)) return false;
        for (const auto& t : ts) {
          if (t.name == "escalate") {
            if (!get_id(t, "approval.on_timeout.escalate", a.escalate_to)) return false;
          } else if (t.name == "sla") {
            if (!get_duration(t, "approval.on_timeout.sla", /*allow_zero=*/false, a.escalate_sla_ms)) return false;
          } else {
            return unknown_key(t, "in `approval.on_timeout`", kEscalateKeys);
          }
        }
        if (a.escalate_to.empty()) return fail(k.value, "`approval.on_timeout` is missing required key `escalate`");
      } else {
        return unknown_key(k, "in `approval`", kApprovalKeys);
      }
    }
    if (!has_group) return fail(e.value, "`approval` is missing required key `group` (who decides)");
    if (!a.escalate_to.empty() && a.sla_ms == 0) {
      return fail(e.value, "`approval.on_timeout` escalates after the SLA: `approval` needs `sla`");
    }
    if (a.escalate_to == a.group && !a.group.empty()) {
      return fail(e.value, "`approval.on_timeout.escalate` names the gate's own group " + code(a.group));
    }
    s.approval = std::move(a);
    return true;
  }

  bool parse_review(const Entry& e, Step& s) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`review` must be a map (keys: " + join(kReviewKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    if (!s.review) s.review = Review();
    for (const auto& k : es) {
      if (k.name == "group") {
        if (!get_id(k, "review.group", s.review->group)) return false;
      } else if (k.name == "sla") {
        if (!get_duration(k, "review.sla", /*allow_zero=*/false, s.review->sla_ms)) return false;
      } else {
        return unknown_key(k, "in `review`", kReviewKeys);
      }
    }
    return true;
  }

  // Which keys go together: one way out (next, route, handoff), control steps
  // without worker keys, join only with parallel.
  bool check_step_shape(const Step& s, const StepMarks& marks, const std::vector<Entry>& es) {
    auto entry = [&](std::string_view name) -> const Entry* {
      for (const auto& e : es)
        if (e.name == name) return &e;
      return nullptr;
    };
    int exits = (entry("next") ? 1 : 0) + (entry("route") ? 1 : 0) + (entry("handoff") ? 1 : 0);
    if (exits > 1) {
      const Entry* second = entry("handoff") ? entry("handoff") : entry("route");
      return fail(second->key, "step " + code(s.id) + " may have only one of `next`, `route` and `handoff`");
    }
    if (entry("parallel") && entry("loop")) {
      return fail(entry("loop")->key, "step " + code(s.id) + " cannot have both `parallel` and `loop`");
    }
    if (entry("join") && !entry("parallel")) {
      return fail(entry("join")->key, "`join` needs `parallel` in the same step");
    }
    if (s.kind == StepKind::kApproval) {
      for (const auto& e : es) {
        if (!contains(kGateKeys, e.name)) {
          return fail(e.key, code(e.name) + " is not allowed in an approval step without `role` (a person decides; "
                                             "allowed: " + join(kGateKeys) + ")");
        }
      }
    } else if (s.kind != StepKind::kTask) {
      for (const auto& e : es) {
        if (!contains(kControlKeys, e.name)) {
          return fail(e.key, code(e.name) + " is not allowed in a " +
                                 (s.kind == StepKind::kParallel ? "`parallel`" : "`loop`") +
                                 " step (the coordinator runs it; its branches have roles)");
        }
      }
    }
    if (s.kind == StepKind::kParallel && s.join.mode == JoinMode::kQuorum && s.join.quorum > s.parallel.size()) {
      return fail(entry("join")->value, "`join.mode` quorum(" + std::to_string(s.join.quorum) + ") needs at most " +
                                            std::to_string(s.parallel.size()) + " (the number of branches)");
    }
    if (s.planner && entry("handoff")) {
      return fail(entry("handoff")->key, "a `planner` step leaves with `next` or `route`, not `handoff`");
    }
    (void)marks;
    return true;
  }

  bool parse_schedule(const Entry& e, Workflow& wf) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`schedule` must be a map (keys: " + join(kScheduleKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    const Entry* cron = nullptr;
    std::string cron_text, tz = "UTC";
    const Entry* tz_entry = nullptr;
    for (const auto& k : es) {
      if (k.name == "cron") {
        if (!get_string(k, "schedule.cron", cron_text)) return false;
        cron = &k;
      } else if (k.name == "timezone") {
        if (!get_string(k, "schedule.timezone", tz)) return false;
        tz_entry = &k;
      } else if (k.name == "input") {
        if (!k.value.IsMap()) return fail(k.where(), "`schedule.input` must be a map, got " + describe(k.value));
        if (!to_json(k.value, wf.schedule_input)) return false;
      } else {
        return unknown_key(k, "in `schedule`", kScheduleKeys);
      }
    }
    if (!cron) return fail(e.value, "`schedule` is missing required key `cron`");
    auto parsed = CronSchedule::parse(cron_text, tz);
    if (auto* err = std::get_if<ScheduleError>(&parsed)) {
      if (err->col == 0) return fail(tz_entry ? tz_entry->where() : cron->where(), "invalid `schedule`: " + err->message);
      return fail(position_in(cron->value, cron_text, static_cast<std::size_t>(err->col - 1)),
                  "invalid `schedule.cron`: " + err->message);
    }
    wf.schedule = std::make_shared<const CronSchedule>(std::get<CronSchedule>(std::move(parsed)));
    return true;
  }

  bool parse_window(const Entry& e, Workflow& wf) {
    if (!e.value.IsMap()) {
      return fail(e.where(), "`window` must be a map (keys: " + join(kWindowKeys) + "), got " + describe(e.value));
    }
    std::vector<Entry> es;
    if (!entries(e.value, es)) return false;
    std::vector<std::string> days;
    std::string from, to, tz = "UTC";
    const Entry* from_e = nullptr;
    const Entry* to_e = nullptr;
    for (const auto& k : es) {
      if (k.name == "days") {
        if (!k.value.IsSequence()) return fail(k.where(), "`window.days` must be a list of day names, got " + describe(k.value));
        for (const auto& d : k.value) {
          if (!d.IsScalar() || kind_of(d) == Kind::kNull) {
            return fail(d.IsNull() ? k.value.Mark() : d.Mark(), "`window.days` entries must be day names, got " + describe(d));
          }
          days.push_back(d.Scalar());
        }
      } else if (k.name == "from") {
        if (!get_string(k, "window.from", from)) return false;
        from_e = &k;
      } else if (k.name == "to") {
        if (!get_string(k, "window.to", to)) return false;
        to_e = &k;
      } else if (k.name == "timezone") {
        if (!get_string(k, "window.timezone", tz)) return false;
      } else {
        return unknown_key(k, "in `window`", kWindowKeys);
      }
    }
    if (!from_e) return fail(e.value, "`window` is missing required key `from`");
    if (!to_e) return fail(e.value, "`window` is missing required key `to`");
    auto made = TimeWindow::make(days, from, to, tz);
    if (auto* err = std::get_if<ScheduleError>(&made)) return fail(e.value, "invalid `window`: " + err->message);
    wf.window = std::make_shared<const TimeWindow>(std::get<TimeWindow>(std::move(made)));
    wf.window_json = {{"days", days}, {"from", from}, {"to", to}, {"timezone", tz}};
    return true;
  }

  // ---- whole-workflow checks ------------------------------------------------

  bool is_target(const Workflow& wf, const std::string& t) {
    return t == kTargetEnd || t == kTargetException || wf.find_step(t) != nullptr;
  }

  bool check_links(const Workflow& wf) {
    auto unknown = [&](const YAML::Mark& m, const std::string& label, const std::string& id) {
      return fail(m, code(label) + " names unknown step " + code(id));
    };
    for (const auto& [field, mark] : record_writer_marks_) {
      for (const auto& w : wf.find_record_field(field)->writers) {
        if (!wf.find_step(w)) return fail(mark, code("record.fields." + field + ".writers") + " names unknown step " + code(w));
      }
    }

    // Sub-steps: run by their parent, they must be plain task steps that end there.
    std::unordered_map<std::string, std::string> parent_of;  // sub-step -> "a branch of `x`"
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      const Step& s = wf.steps[i];
      const StepMarks& m = marks_[i];
      for (std::size_t r = 0; r < s.route.size(); ++r) {
        if (!is_target(wf, s.route[r].to)) {
          return fail(m.route_to[r], code(s.route[r].when ? "route.to" : "route.else") + " names unknown step " +
                                         code(s.route[r].to) + " (or use end, exception)");
        }
      }
      if (s.handoff) {
        for (const auto& a : s.handoff->allowed) {
          if (!wf.find_step(a)) return unknown(m.handoff, "handoff.allowed", a);
        }
      }
      for (std::size_t b = 0; b < s.parallel.size(); ++b) {
        if (!wf.find_step(s.parallel[b].step)) return unknown(m.branches[b], "parallel", s.parallel[b].step);
        parent_of.emplace(s.parallel[b].step, "a branch of " + code(s.id));
      }
      if (s.loop) {
        if (!wf.find_step(s.loop->maker)) return unknown(m.loop, "loop.maker", s.loop->maker);
        if (!wf.find_step(s.loop->checker)) return unknown(m.loop, "loop.checker", s.loop->checker);
        if (!is_target(wf, s.loop->on_exhausted)) return unknown(m.loop, "loop.on_exhausted", s.loop->on_exhausted);
        parent_of.emplace(s.loop->maker, "the maker of loop " + code(s.id));
        parent_of.emplace(s.loop->checker, "the checker of loop " + code(s.id));
      }
      if (s.planner) {
        for (const auto& a : s.planner->allowed) {
          if (!wf.find_step(a)) return unknown(m.planner, "planner.allowed", a);
          if (a == s.id) return fail(m.planner, "`planner.allowed` cannot name the planner itself");
          parent_of.emplace(a, "planned by " + code(s.id));
        }
        if (!is_target(wf, s.planner->on_exhausted)) {
          return unknown(m.planner, "planner.on_exhausted", s.planner->on_exhausted);
        }
      }
      if (s.approval && !is_target(wf, s.approval->on_reject)) {
        return unknown(m.approval, "approval.on_reject", s.approval->on_reject);
      }
    }
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      const Step& s = wf.steps[i];
      auto p = parent_of.find(s.id);
      if (p == parent_of.end()) continue;
      if (i == 0) return fail(marks_[i].node, "step " + code(s.id) + " is " + p->second + " and cannot be the entry step");
      if (s.kind != StepKind::kTask || s.planner) {
        return fail(marks_[i].node, "step " + code(s.id) + " is " + p->second +
                                        " and must be a plain task step (no parallel, loop, planner or approval step)");
      }
      if (!s.next.empty() || !s.route.empty() || s.handoff) {
        return fail(marks_[i].node, "step " + code(s.id) + " is " + p->second +
                                        " and cannot have `next`, `route` or `handoff` (its parent decides what follows)");
      }
    }
    for (std::size_t i = 0; i < wf.steps.size(); ++i) {
      const Step& s = wf.steps[i];
      if (!s.next.empty() && wf.find_step(s.next) == nullptr) {
        return fail(marks_[i].next, "`next` names unknown step " + code(s.next));
      }
      if (!s.writes.empty() && wf.record_template.empty()) {
        return fail(marks_[i].writes,
                    "`writes` needs a top-level `record` (the key of the shared record the step "
                    "writes to)");
      }
      if (s.lock_record && (wf.record_template.empty() || s.kind != StepKind::kTask)) {
        return fail(marks_[i].lock, "`lock: record` needs a top-level `record` and a task step (with `role`)");
      }
      if (!wf.record_fields.empty()) {
        for (const auto& w : s.writes) {
          const RecordField* f = wf.find_record_field(w);
          if (!f) {
            return fail(marks_[i].writes, "step " + code(s.id) + " writes " + code(w) +
                                              ", which is not a field of the record schema (`record.fields`)");
          }
          if (!f->writers.empty() && !contains(f->writers, s.id)) {
            return fail(marks_[i].writes, "step " + code(s.id) + " writes " + code(w) + ", but the record schema lets only " +
                                              join(f->writers) + " write it");
          }
        }
      }
    }
    // Each step has at most one `next`, so following it from every step finds
    // every cycle. A cycle of `next` alone has no exit: refused. Cycles through
    // `route` or `handoff` are conditional and bounded by max_steps.
    std::unordered_map<std::string, std::size_t> index;
    for (std::size_t i = 0; i < wf.steps.size(); ++i) index.emplace(wf.steps[i].id, i);
    std::vector<int> state(wf.steps.size(), 0);  // 0 new, 1 on the current path, 2 done
    for (std::size_t start = 0; start < wf.steps.size(); ++start) {
      std::vector<std::size_t> path;
      std::size_t cur = start;
      while (state[cur] != 2) {
        if (state[cur] == 1) {
          // `cur` is reached again: the cycle is path[from..] -> cur.
          auto from = std::find(path.begin(), path.end(), cur);
          std::string names;
          for (auto it = from; it != path.end(); ++it) names += wf.steps[*it].id + " -> ";
          names += wf.steps[cur].id;
          return fail(marks_[path.back()].next,
                      "cycle " + names + " has no exit (use `loop`, or `route` with a condition)");
        }
        state[cur] = 1;
        path.push_back(cur);
        const std::string& next = wf.steps[cur].next;
        if (next.empty()) break;
        cur = index.at(next);
      }
      for (std::size_t i : path) state[i] = 2;
    }
    return true;
  }

  std::string file_;
  std::string_view text_;  // the document, for positions inside block scalars
  Status err_;
  std::vector<StepMarks> marks_;  // parallel to Workflow::steps
  std::vector<std::pair<std::string, YAML::Mark>> record_writer_marks_;  // record field -> its `writers`
};

}  // namespace

Result<WorkflowPtr> parse_workflow(std::string_view text, const std::string& display_name) {
  try {
    Parser p(display_name);
    return p.run(text);
  } catch (const std::exception& e) {
    // yaml-cpp may throw from node accessors on malformed trees; never let it escape.
    return internal(display_name + ":1:1: unexpected error while parsing: " + e.what());
  }
}

Result<WorkflowPtr> parse_workflow_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    if (ec) return Status(Code::kNotFound, path + ": cannot read file: " + ec.message());
    return invalid(path + ": not a regular file");
  }
  auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > limits::kMaxWorkflowFileBytes) {
    return invalid(path + ":1:1: file is " + std::to_string(size) + " bytes, more than the limit of " +
                   std::to_string(limits::kMaxWorkflowFileBytes));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, path + ": cannot open file: " + std::strerror(errno));
  // Read at most one byte over the cap: a file that grew since the size check
  // is still refused by parse_workflow without being read whole.
  std::string text(limits::kMaxWorkflowFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return Status(Code::kUnavailable, path + ": read error: " + std::strerror(errno));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return parse_workflow(text, path);
}

}  // namespace baton::workflow
