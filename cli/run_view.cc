#include "cli/run_view.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace baton::cli {
namespace {

using nlohmann::json;

std::string str_at(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

int64_t int_at(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  if (it == j.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_unsigned()) return static_cast<int64_t>(it->get<uint64_t>());
  if (it->is_number_float()) return static_cast<int64_t>(it->get<double>());
  return 0;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

}  // namespace

RunView view_run(const json& run) {
  RunView v;
  v.run_id = str_at(run, "run_id");
  v.status = str_at(run, "status");
  v.created_ms = int_at(run, "created_ms");
  v.ended_ms = int_at(run, "ended_ms");
  v.reason = str_at(run, "reason");
  if (run.is_object()) {
    if (auto p = run.find("path"); p != run.end() && p->is_array()) {
      for (const auto& x : *p)
        if (x.is_string()) v.path.push_back(x.get<std::string>());
    }
  }
  const json* ended = nullptr;
  int64_t best = -1;
  if (run.is_object()) {
    auto steps = run.find("steps");
    if (steps != run.end() && steps->is_array()) {
      for (const auto& s : *steps) {
        if (int_at(s, "attempts") <= 0 && int_at(s, "dispatched_ms") <= 0) continue;
        int64_t at = int_at(s, "dispatched_ms");
        if (at >= best) {  // ties: the later step in workflow order
          best = at;
          ended = &s;
        }
      }
    }
  }
  if (ended != nullptr) v.ended_step = str_at(*ended, "id");
  // The coordinator says where a finished run ended (the failed branch, the
  // step whose route or join decided); the last dispatched step otherwise.
  if (std::string at = str_at(run, "ended_step"); !at.empty()) {
    v.ended_step = at;
    if (run.is_object() && run.contains("steps") && run["steps"].is_array()) {
      for (const auto& s : run["steps"])
        if (str_at(s, "id") == at) ended = &s;
    }
  }
  if (v.status == "running" && run.is_object() && run.contains("steps") && run["steps"].is_array()) {
    // Waiting for a person: a gate is open and nothing else is in flight.
    std::string gate;
    bool busy = false;
    for (const auto& s : run["steps"]) {
      std::string st = str_at(s, "status");
      if (st == "awaiting_approval" && gate.empty()) gate = str_at(s, "id");
      if (st == "running" || st == "retry_wait") busy = true;
    }
    if (!gate.empty() && !busy) {
      v.status = "awaiting_approval";
      v.ended_step = gate;
    }
  }
  if (v.status == "exception") {
    if (ended != nullptr && ended->contains("error") && (*ended)["error"].is_object()) {
      v.code = str_at((*ended)["error"], "code");
      v.message = str_at((*ended)["error"], "message");
    }
    if (v.code.empty()) {
      v.code = str_at(run, "reason");
      v.message = str_at(run, "reason_detail");
    }
  }
  return v;
}

std::vector<std::string> step_transitions(const json& run, std::map<std::string, StepSeen>& before) {
  std::vector<std::string> out;
  if (!run.is_object()) return out;
  auto steps = run.find("steps");
  if (steps == run.end() || !steps->is_array()) return out;
  for (const auto& s : *steps) {
    std::string id = str_at(s, "id");
    StepSeen now{str_at(s, "status"), int_at(s, "attempts")};
    StepSeen& prev = before[id];
    if (now.status == prev.status && now.attempts == prev.attempts) continue;
    bool first_sight = prev.status.empty();
    prev = now;
    if (first_sight && now.status == "pending" && now.attempts == 0) continue;  // not dispatched yet
    std::string line = "  " + pad(id, 14) + pad(now.status, 11) + " attempt " + std::to_string(now.attempts);
    int64_t started = int_at(s, "started_ms");
    int64_t finished = int_at(s, "finished_ms");
    int64_t dispatched = int_at(s, "dispatched_ms");
    if (finished > 0 && (now.status == "succeeded" || now.status == "failed" || now.status == "retry_wait")) {
      int64_t from = started > 0 ? started : dispatched;
      if (from > 0 && finished >= from) line += "  " + std::to_string(finished - from) + " ms";
    }
    if (s.contains("error") && s["error"].is_object()) {
      std::string code = str_at(s["error"], "code");
      std::string msg = str_at(s["error"], "message");
      if (!code.empty() || !msg.empty()) line += "  error " + code + (msg.empty() ? "" : ": " + msg);
    }
    out.push_back(std::move(line));
  }
  return out;
}

int64_t percentile(std::vector<int64_t> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = std::ceil(q * static_cast<double>(values.size()));
  std::size_t idx = rank < 1 ? 0 : static_cast<std::size_t>(rank) - 1;
  if (idx >= values.size()) idx = values.size() - 1;
  return values[idx];
}

Summary summarize(const std::vector<BatchItem>& items, int64_t wall_ms) {
  Summary s;
  s.total = items.size();
  s.wall_ms = wall_ms;
  std::vector<int64_t> lat;
  for (const auto& it : items) {
    if (it.run_id.empty()) {  // never submitted
      ++s.errors;
      continue;
    }
    if (it.view.status == "completed") {
      ++s.completed;
    } else if (it.view.status == "exception") {
      ++s.exceptions;
      ++s.exceptions_by[{it.view.ended_step, it.view.code}];
    } else if (it.view.status == "awaiting_approval") {
      ++s.awaiting;
      continue;
    } else if (!it.error.empty() && it.last.is_null()) {
      ++s.errors;
      continue;
    } else {
      ++s.unfinished;
      continue;
    }
    if (it.view.ended_ms > 0 && it.view.created_ms > 0 && it.view.ended_ms >= it.view.created_ms)
      lat.push_back(it.view.ended_ms - it.view.created_ms);
  }
  s.p50_ms = percentile(lat, 0.50);
  s.p99_ms = percentile(lat, 0.99);
  s.max_ms = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end());
  return s;
}

std::string identity_key(const json& input) {
  if (!input.is_object() || input.empty()) return "";
  // The first "<something>_id" or "id" key: lead_id, ticket_id, invoice_id.
  for (const auto& [k, v] : input.items()) {
    if (v.is_string() || v.is_number()) {
      if (k == "id" || (k.size() > 3 && k.compare(k.size() - 3, 3, "_id") == 0)) return k;
    }
  }
  return input.begin().key();
}

std::string summary_text(const Summary& s) {
  std::ostringstream o;
  o << "runs:        " << s.total << " total, " << s.completed << " completed, " << s.exceptions
    << " exceptions, " << s.awaiting << " awaiting approval, " << s.errors << " errors, " << s.unfinished
    << " unfinished\n";
  if (!s.exceptions_by.empty()) {
    o << "exceptions by step and code:\n";
    for (const auto& [k, n] : s.exceptions_by) {
      o << "  " << pad(k.first.empty() ? "-" : k.first, 14) << pad(k.second.empty() ? "-" : k.second, 28)
        << n << "\n";
    }
  }
  o << "latency:     p50 " << s.p50_ms << " ms, p99 " << s.p99_ms << " ms, max " << s.max_ms
    << " ms (ended_ms - created_ms)\n";
  char wall[64];
  std::snprintf(wall, sizeof wall, "%.2f s", static_cast<double>(s.wall_ms) / 1000.0);
  o << "wall time:   " << wall << "\n";
  return o.str();
}

json summary_json(const Summary& s, const std::vector<BatchItem>& items) {
  json by = json::array();
  for (const auto& [k, n] : s.exceptions_by) by.push_back({{"step", k.first}, {"code", k.second}, {"count", n}});
  json runs = json::array();
  for (const auto& it : items) {
    json input = json::object();
    std::string key = identity_key(it.input);
    if (!key.empty()) input[key] = it.input[key];
    json r = {{"line", it.line},
              {"run_id", it.run_id},
              {"input", input},
              {"status", it.view.status.empty() ? (it.run_id.empty() ? "error" : "unknown") : it.view.status},
              {"step", it.view.ended_step},
              {"code", it.view.code}};
    if (!it.error.empty()) r["error"] = it.error;
    if (it.view.ended() && it.view.ended_ms > 0 && it.view.ended_ms >= it.view.created_ms)
      r["latency_ms"] = it.view.ended_ms - it.view.created_ms;
    runs.push_back(std::move(r));
  }
  return {{"total", s.total},
          {"completed", s.completed},
          {"exceptions", s.exceptions},
          {"errors", s.errors},
          {"unfinished", s.unfinished},
          {"awaiting_approval", s.awaiting},
          {"exceptions_by", by},
          {"latency_ms", {{"p50", s.p50_ms}, {"p99", s.p99_ms}, {"max", s.max_ms}}},
          {"wall_ms", s.wall_ms},
          {"runs", runs}};
}

std::vector<Mismatch> compare_expected(const std::vector<json>& expected, const std::vector<BatchItem>& items) {
  std::vector<Mismatch> out;
  std::vector<bool> used(items.size(), false);
  for (const auto& e : expected) {
    if (!e.is_object()) {
      out.push_back({"expected line is not an object: " + e.dump()});
      continue;
    }
    json ident = json::object();
    for (const auto& [k, v] : e.items()) {
      if (k != "outcome" && k != "status" && k != "step" && k != "path" && k != "reason") ident[k] = v;
    }
    std::string want_status = str_at(e, "outcome");
    if (want_status.empty()) want_status = str_at(e, "status");
    std::string want_step = str_at(e, "step");
    const BatchItem* hit = nullptr;
    for (std::size_t i = 0; i < items.size(); ++i) {
      if (used[i] || !items[i].input.is_object()) continue;
      bool match = true;
      for (const auto& [k, v] : ident.items()) {
        auto f = items[i].input.find(k);
        if (f == items[i].input.end() || *f != v) {
          match = false;
          break;
        }
      }
      if (match) {
        used[i] = true;
        hit = &items[i];
        break;
      }
    }
    std::string who = ident.empty() ? e.dump() : ident.dump();
    if (hit == nullptr) {
      out.push_back({who + ": no such input was submitted"});
      continue;
    }
    std::string got_status = hit->view.status.empty() ? (hit->error.empty() ? "unknown" : "error") : hit->view.status;
    bool bad_status = !want_status.empty() && want_status != got_status;
    bool bad_step = !want_step.empty() && want_step != hit->view.ended_step;
    std::string want_reason = str_at(e, "reason");
    bool bad_reason = !want_reason.empty() && want_reason != hit->view.reason;
    bool bad_path = false;
    std::string got_path;
    for (const auto& p : hit->view.path) got_path += (got_path.empty() ? "" : ",") + p;
    if (auto wp = e.find("path"); wp != e.end() && wp->is_array()) {
      std::vector<std::string> want;
      for (const auto& x : *wp) want.push_back(x.is_string() ? x.get<std::string>() : x.dump());
      bad_path = want != hit->view.path;
    }
    if (bad_reason || bad_path) {
      std::string m = who + ": expected";
      if (bad_reason) m += " reason " + want_reason + ", got " + (hit->view.reason.empty() ? "-" : hit->view.reason) + ";";
      if (bad_path) m += " path " + e["path"].dump() + ", got [" + got_path + "];";
      if (!hit->run_id.empty()) m += " run " + hit->run_id;
      out.push_back({m});
      continue;
    }
    if (bad_status || bad_step) {
      std::string m = who + ": expected " + (want_status.empty() ? "?" : want_status) + " at step " +
                      (want_step.empty() ? "?" : want_step) + ", got " + got_status + " at step " +
                      (hit->view.ended_step.empty() ? "-" : hit->view.ended_step);
      if (!hit->view.code.empty()) m += " (" + hit->view.code + ")";
      if (!hit->error.empty()) m += " [" + hit->error + "]";
      if (!hit->run_id.empty()) m += " run " + hit->run_id;
      out.push_back({m});
    }
  }
  return out;
}

}  // namespace baton::cli
