#include "cli/human.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/api.h"
#include "cli/commands.h"

namespace baton::cli {
namespace {

using nlohmann::json;

std::string str(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

// A short, readable summary of an entry's detail, per kind.
std::string summary(const std::string& kind, const json& d) {
  if (kind == "run_started") return str(d, "workflow") + " v" + str(d, "version") + " dedupe " + str(d, "dedupe_key");
  if (kind == "task_dispatched") return str(d, "step") + " -> role " + str(d, "role") + " (attempt " + str(d, "attempt") + ")";
  if (kind == "step_result") {
    std::string s = str(d, "step") + " " + str(d, "status") + " by " + str(d, "worker") + " in " +
                    str(d, "duration_ms") + " ms";
    if (d.contains("error")) s += " error " + str(d, "error");
    if (d.contains("usage")) s += " model " + str(d["usage"], "model") + " tokens " + str(d["usage"], "tokens_in") +
                                  "/" + str(d["usage"], "tokens_out");
    return s;
  }
  if (kind == "routed") return str(d, "step") + ": " + str(d, "when") + " -> " + str(d, "to");
  if (kind == "handoff") return str(d, "step") + " -> " + str(d, "to");
  if (kind == "handoff_refused") return str(d, "step") + " named " + str(d, "named") + ", allowed " + str(d, "allowed");
  if (kind == "record_written") {
    std::string s = str(d, "record") + " v" + str(d, "version") + ":";
    if (d.contains("fields") && d["fields"].is_object()) {
      for (const auto& [f, ch] : d["fields"].items()) s += " " + f + " " + str(ch, "old") + " -> " + str(ch, "new");
    }
    return s;
  }
  if (kind == "run_exception") return str(d, "reason") + ": " + str(d, "detail");
  if (kind == "run_completed") return "in " + str(d, "duration_ms") + " ms";
  if (kind == "plan") return str(d, "step") + " round " + str(d, "round") + ": " + (d.contains("plan") ? d["plan"].dump() : "");
  if (kind == "joined" || kind == "join_failed") {
    return str(d, "step") + " succeeded " + str(d, "succeeded") + " failed " + str(d, "failed") +
           (d.contains("cancelled") ? " cancelled " + str(d, "cancelled") : "");
  }
  if (kind == "gate_opened")
    return str(d, "step") + " waits for " + str(d, "group") + " (" + str(d, "kind") + ")" +
           (str(d, "due_ms") != "0" && !str(d, "due_ms").empty() ? ", due " + str(d, "due_ms") : "");
  if (kind == "gate_decided") {
    std::string s = str(d, "step") + " " + str(d, "decision") + " for " + str(d, "group") + " after " +
                    str(d, "waited_ms") + " ms";
    if (!str(d, "comment").empty()) s += ": \"" + str(d, "comment") + "\"";
    return s;
  }
  if (kind == "gate_escalated") return str(d, "step") + " " + str(d, "from") + " -> " + str(d, "to");
  if (kind == "gate_timeout") return str(d, "step") + ": no decision from " + str(d, "group");
  if (kind == "operator_action") {
    std::string s = str(d, "action") + " " + str(d, "step");
    if (!str(d, "comment").empty()) s += ": \"" + str(d, "comment") + "\"";
    return s;
  }
  if (kind == "notification_sent" || kind == "notification_failed")
    return str(d, "event") + " -> " + str(d, "webhook") + " (attempt " + str(d, "attempt") + ", status " +
           str(d, "status") + ")";
  if (kind == "retry_scheduled") return str(d, "step") + " attempt " + str(d, "attempt") + " failed (" +
                                        str(d, "error") + "), retry in " + str(d, "delay_ms") + " ms";
  return d.is_object() && d.empty() ? "" : d.dump();
}

json read_object_file(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  json j = in ? json::parse(text.str(), nullptr, false) : json();
  ok = j.is_object();
  return j;
}

bool fetch(const std::string& api, const std::string& path, const char* who, ApiResponse& out) {
  auto r = api_get(api, path);
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", who, r.status().message().c_str());
    return false;
  }
  if (r->status != 200) {
    std::fprintf(stderr, "%s: %s\n", who, describe_api_error(*r).c_str());
    return false;
  }
  out = std::move(r).value();
  return true;
}

}  // namespace

std::string timeline_line(const json& entry, int64_t t0_ms) {
  int64_t at = entry.value("at_ms", int64_t{0});
  char rel[32];
  std::snprintf(rel, sizeof rel, "+%.3fs", static_cast<double>(at - t0_ms) / 1000.0);
  std::string kind = str(entry, "kind");
  std::string line = pad(rel, 10) + pad(kind, 18) + pad(str(entry, "actor"), 14);
  std::string s = summary(kind, entry.contains("detail") ? entry["detail"] : json::object());
  line += s;
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line;
}

int audit_command(const std::string& api, const std::string& run_id, const std::string& output) {
  ApiResponse r;
  if (!fetch(api, "/v1/runs/" + run_id + "/audit", "batonctl audit", r)) return kExitError;
  if (output == "json") {
    std::printf("%s\n", r.body.dump().c_str());
    return kExitOk;
  }
  const json& entries = r.body["entries"];
  int64_t t0 = entries.empty() ? 0 : entries[0].value("at_ms", int64_t{0});
  std::printf("run %s: %zu audit entries\n", run_id.c_str(), entries.size());
  for (const auto& e : entries) std::printf("%s\n", timeline_line(e, t0).c_str());
  if (r.body.value("truncated", false)) std::printf("(truncated: more entries than the API returns)\n");
  return kExitOk;
}

int exceptions_list(const std::string& api, const std::string& workflow, int limit, const std::string& output) {
  std::string path = "/v1/exceptions?limit=" + std::to_string(limit);
  if (!workflow.empty()) path += "&workflow=" + workflow;
  ApiResponse r;
  if (!fetch(api, path, "batonctl exceptions list", r)) return kExitError;
  if (output == "json") {
    std::printf("%s\n", r.body.dump().c_str());
    return kExitOk;
  }
  std::printf("%s%s%s%s%s\n", pad("RUN", 34).c_str(), pad("WORKFLOW", 22).c_str(), pad("STEP", 16).c_str(),
              pad("REASON", 22).c_str(), "DETAIL");
  for (const auto& e : r.body["exceptions"]) {
    std::string wf = str(e, "workflow") + "@" + str(e, "version");
    std::printf("%s%s%s%s%s\n", pad(str(e, "run_id"), 34).c_str(), pad(wf, 22).c_str(), pad(str(e, "step"), 16).c_str(),
                pad(str(e, "reason"), 22).c_str(), str(e, "detail").c_str());
  }
  return kExitOk;
}

int exceptions_show(const std::string& api, const std::string& run_id, const std::string& output) {
  ApiResponse run, audit;
  if (!fetch(api, "/v1/runs/" + run_id, "batonctl exceptions show", run)) return kExitError;
  if (!fetch(api, "/v1/runs/" + run_id + "/audit", "batonctl exceptions show", audit)) return kExitError;
  if (output == "json") {
    std::printf("%s\n", json{{"run", run.body}, {"audit", audit.body["entries"]}}.dump().c_str());
    return str(run.body, "status") == "exception" ? kExitOk : kExitError;
  }
  const json& b = run.body;
  std::printf("run:      %s\nworkflow: %s v%s\nstatus:   %s\n", run_id.c_str(), str(b, "workflow").c_str(),
              str(b, "version").c_str(), str(b, "status").c_str());
  if (str(b, "status") != "exception") {
    std::fprintf(stderr, "batonctl exceptions show: run %s is not in the exception queue\n", run_id.c_str());
    return kExitError;
  }
  std::printf("reason:   %s\nstep:     %s\ndetail:   %s\nrecord:   %s\ninput:    %s\n", str(b, "reason").c_str(),
              str(b, "ended_step").c_str(), str(b, "reason_detail").c_str(), str(b, "record_key").c_str(),
              b.contains("input") ? b["input"].dump().c_str() : "{}");
  const json& entries = audit.body["entries"];
  int64_t t0 = entries.empty() ? 0 : entries[0].value("at_ms", int64_t{0});
  std::size_t from = entries.size() > 8 ? entries.size() - 8 : 0;
  std::printf("last decisions:\n");
  for (std::size_t i = from; i < entries.size(); ++i) std::printf("  %s\n", timeline_line(entries[i], t0).c_str());
  return kExitOk;
}

int exceptions_act(const std::string& api, const std::string& action, const std::string& run_id,
                   const std::string& step, const std::string& input_file, const std::string& output_file,
                   const std::string& comment) {
  const std::string who = "batonctl exceptions " + action;
  json body = {{"action", action}};
  if (!step.empty()) body["step"] = step;
  if (!comment.empty()) body["comment"] = comment;
  for (const auto& [field, path] : {std::pair<const char*, const std::string&>{"input", input_file},
                                    std::pair<const char*, const std::string&>{"output", output_file}}) {
    if (path.empty()) continue;
    bool ok = false;
    json j = read_object_file(path, ok);
    if (!ok) {
      std::fprintf(stderr, "%s: %s is not a JSON object file\n", who.c_str(), path.c_str());
      return kExitError;
    }
    body[field] = std::move(j);
  }
  auto r = api_post(api, "/v1/exceptions/" + run_id, body);
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), r.status().message().c_str());
    return kExitError;
  }
  if (r->status != 202) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), describe_api_error(*r).c_str());
    return kExitError;
  }
  std::printf("%s %s: accepted\n", action.c_str(), run_id.c_str());
  return kExitOk;
}

namespace {
std::string pct(const json& v) {
  if (!v.is_number()) return "-";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f%%", v.get<double>() * 100.0);
  return b;
}
std::string ms_pair(const json& v, const char* hi) {
  if (!v.is_object() || v.value("count", 0) == 0) return "-";
  return str(v, "p50") + " / " + str(v, hi) + " ms (n=" + str(v, "count") + ")";
}
}  // namespace

int stats_command(const std::string& api, const std::string& workflow, int since_hours, const std::string& output) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
  std::string path = "/v1/stats?since=" + std::to_string(now - int64_t{since_hours} * 3600 * 1000);
  if (!workflow.empty()) path += "&workflow=" + workflow;
  ApiResponse r;
  if (!fetch(api, path, "batonctl stats", r)) return kExitError;
  if (output == "json") {
    std::printf("%s\n", r.body.dump().c_str());
    return kExitOk;
  }
  std::printf("runs started in the last %d h: %s scanned%s\n", since_hours, str(r.body, "runs_scanned").c_str(),
              r.body.value("truncated", false) ? " (truncated)" : "");
  for (const auto& w : r.body["workflows"]) {
    std::printf("\n%s v%s: %s runs, %s completed, %s exceptions, %s running\n", str(w, "workflow").c_str(),
                str(w, "version").c_str(), str(w, "runs").c_str(), str(w, "completed").c_str(),
                str(w, "exceptions").c_str(), str(w, "running").c_str());
    std::printf("  completion rate      %s\n  exception rate       %s\n  retry rate           %s\n  fallback rate        %s\n",
                pct(w["completion_rate"]).c_str(), pct(w["exception_rate"]).c_str(), pct(w["retry_rate"]).c_str(),
                pct(w["fallback_rate"]).c_str());
    if (w.contains("exceptions_by_reason") && w["exceptions_by_reason"].is_object())
      for (const auto& [reason, n] : w["exceptions_by_reason"].items())
        std::printf("    %s %s\n", pad(reason, 24).c_str(), n.dump().c_str());
    std::printf("  approval latency     %s\n  time to resolve      %s\n", ms_pair(w["approval_latency_ms"], "p95").c_str(),
                ms_pair(w["time_to_resolve_ms"], "p95").c_str());
    std::printf("  cost per completed   %s micro-USD\n  collisions           %s\n",
                w["cost_per_completed_run_micros"].is_null() ? "-" : str(w, "cost_per_completed_run_micros").c_str(),
                str(w, "collisions").c_str());
    if (w.contains("step_latency_ms") && w["step_latency_ms"].is_object())
      for (const auto& [step, v] : w["step_latency_ms"].items())
        std::printf("  step %s %s\n", pad(step, 16).c_str(), ms_pair(v, "p99").c_str());
    if (w.contains("gates") && w["gates"].is_object())
      for (const auto& [step, g] : w["gates"].items())
        std::printf("  gate %s %s decisions, %s overturned: agent accuracy %s\n", pad(step, 16).c_str(),
                    str(g, "decisions").c_str(), str(g, "overturned").c_str(), pct(g["agent_accuracy"]).c_str());
  }
  return kExitOk;
}

int approvals_list(const std::string& api, const std::string& group, int limit, const std::string& output) {
  std::string path = "/v1/approvals?limit=" + std::to_string(limit);
  if (!group.empty()) path += "&group=" + group;
  ApiResponse r;
  if (!fetch(api, path, "batonctl approvals list", r)) return kExitError;
  if (output == "json") {
    std::printf("%s\n", r.body.dump().c_str());
    return kExitOk;
  }
  std::printf("%s%s%s%s%s%s\n", pad("RUN", 34).c_str(), pad("STEP", 18).c_str(), pad("WORKFLOW", 22).c_str(),
              pad("GROUP", 18).c_str(), pad("KIND", 10).c_str(), "OUTPUT");
  for (const auto& e : r.body["approvals"]) {
    std::string wf = str(e, "workflow") + "@" + str(e, "version");
    std::string out = e.contains("output") && !e["output"].is_null() ? e["output"].dump() : "";
    std::printf("%s%s%s%s%s%s\n", pad(str(e, "run_id"), 34).c_str(), pad(str(e, "step"), 18).c_str(),
                pad(wf, 22).c_str(), pad(str(e, "group"), 18).c_str(), pad(str(e, "kind"), 10).c_str(), out.c_str());
  }
  return kExitOk;
}

int approvals_decide(const std::string& api, const std::string& decision, const std::string& run_id,
                     const std::string& step, const std::string& comment, const std::string& output_file) {
  const std::string who = "batonctl approvals " + decision;
  json body = {{"decision", decision}};
  if (!comment.empty()) body["comment"] = comment;
  if (!output_file.empty()) {
    bool ok = false;
    body["output"] = read_object_file(output_file, ok);
    if (!ok) {
      std::fprintf(stderr, "%s: %s is not a JSON object file\n", who.c_str(), output_file.c_str());
      return kExitError;
    }
  }
  std::string step_path;  // '#' of an instance id ("qualify#2") would start a URL fragment
  for (char ch : step) step_path += ch == '#' ? std::string("%23") : std::string(1, ch);
  auto r = api_post(api, "/v1/approvals/" + run_id + "/" + step_path, body);
  if (!r) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), r.status().message().c_str());
    return kExitError;
  }
  if (r->status != 202) {
    std::fprintf(stderr, "%s: %s\n", who.c_str(), describe_api_error(*r).c_str());
    return kExitError;
  }
  std::printf("%s %s %s: accepted\n", decision.c_str(), run_id.c_str(), step.c_str());
  return kExitOk;
}

}  // namespace baton::cli
