#include "tests/chaos/checker.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"

namespace baton::chaos {

using nlohmann::json;

namespace {

constexpr const char* kRedacted = "[redacted]";
constexpr std::size_t kChunk = 200;  // runs per pipeline

struct Audit {
  std::string kind;
  json detail;
};

struct RunData {
  std::map<std::string, std::string> hash;
  std::map<std::string, std::string> ctx;
  std::vector<Audit> audit;
  int64_t outbox = 0;
  bool in_exceptions = false;
};

struct RecordEntry {
  int64_t version = 0;
  std::string run_id, step;
  json fields;  // field -> {old, new}
};

std::map<std::string, std::string> pairs(const redis::Reply& r) {
  std::map<std::string, std::string> out;
  if (!r.is_array()) return out;
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2) out[r.elements[i].str] = r.elements[i + 1].str;
  return out;
}

std::vector<Audit> audit_entries(const redis::Reply& r) {
  std::vector<Audit> out;
  if (!r.is_array()) return out;
  for (const auto& e : r.elements) {
    if (e.elements.size() < 2) continue;
    auto f = pairs(e.elements[1]);
    auto d = parse_json(f["detail"], limits::kMaxMessageBytes);
    out.push_back({f["kind"], d ? *d : json()});
  }
  return out;
}

int64_t to_i64(const std::string& s) {
  try {
    return s.empty() ? 0 : std::stoll(s);
  } catch (...) {
    return 0;
  }
}

std::string step_of(const std::string& instance) { return instance.substr(0, instance.find('#')); }

std::string str_field(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t int_field(const json& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : -1;
}

// A record value as stored (JSON text) compared with a replayed value.
bool same_value(const json& replayed, const std::string& stored) {
  if (replayed.is_string() && replayed.get<std::string>() == kRedacted) return true;
  auto p = parse_json(stored, limits::kMaxMessageBytes);
  json v = p ? *p : json(stored);
  return v == replayed;
}

bool same_old(const json& old, const json& replay_value) {
  if (old.is_string() && old.get<std::string>() == kRedacted) return true;  // redaction hides even a null
  if (replay_value.is_string() && replay_value.get<std::string>() == kRedacted) return !old.is_null();
  return old == replay_value;
}

}  // namespace

int64_t percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  std::size_t rank = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size()) + 0.999999);
  rank = std::clamp<std::size_t>(rank, 1, v.size());
  return v[rank - 1];
}

Result<Report> check(redis::Client& rc, const CheckInput& in) {
  Report rep;
  rep.runs = in.runs.size();
  rep.faults = in.faults;
  rep.seed = in.seed;
  rep.sizes = in.sizes;
  rep.soak_ms = in.soak_ms;
  rep.drain_ms = in.drain_ms;
  auto violate = [&](const char* inv, const std::string& id, const std::string& detail) {
    rep.violations.push_back({inv, id, detail});
  };

  // ---- read every run, pipelined in chunks ----
  std::map<std::string, RunData> runs;
  for (std::size_t base = 0; base < in.runs.size(); base += kChunk) {
    std::size_t end = std::min(in.runs.size(), base + kChunk);
    std::vector<std::string> ks;  // keep the strings alive while appended
    ks.reserve((end - base) * 4 + 1);
    const std::string exc = keys::exceptions(in.ns);
    for (std::size_t i = base; i < end; ++i) {
      const std::string& id = in.runs[i].run_id;
      ks.push_back(keys::run(in.ns, id));
      ks.push_back(keys::run_ctx(in.ns, id));
      ks.push_back(keys::run_audit(in.ns, id));
      ks.push_back(keys::run_outbox(in.ns, id));
    }
    for (std::size_t i = base; i < end; ++i) {
      std::size_t k = (i - base) * 4;
      rc.append({"HGETALL", ks[k]});
      rc.append({"HGETALL", ks[k + 1]});
      rc.append({"XRANGE", ks[k + 2], "-", "+"});
      rc.append({"HLEN", ks[k + 3]});
      rc.append({"ZSCORE", exc, in.runs[i].run_id});
    }
    auto replies = rc.exec();
    if (!replies) return replies.status();
    if (replies->size() != (end - base) * 5) return internal("checker: short pipeline reply");
    for (std::size_t i = base; i < end; ++i) {
      const auto* r = &(*replies)[(i - base) * 5];
      for (int j = 0; j < 5; ++j)
        if (r[j].is_error()) return unavailable("checker: redis error: " + r[j].str);
      RunData& d = runs[in.runs[i].run_id];
      d.hash = pairs(r[0]);
      d.ctx = pairs(r[1]);
      d.audit = audit_entries(r[2]);
      d.outbox = r[3].integer;
      d.in_exceptions = !r[4].is_nil();
    }
  }

  // ---- runs: lost, ended, stuck; the audit trail; latency ----
  std::map<std::string, std::vector<RecordEntry>> record_entries;
  std::map<std::string, std::set<std::string>> record_runs;  // record -> runs that name it
  // (run, instance) -> dispatched attempts
  std::map<std::pair<std::string, std::string>, std::set<uint32_t>> dispatched;
  std::vector<int64_t> latencies;
  for (const auto& sr : in.runs) {
    const RunData& d = runs[sr.run_id];
    if (d.hash.empty()) {
      ++rep.lost;
      violate("lost", sr.run_id, "no run hash for a run of " + sr.workflow + " the driver saw accepted");
      continue;
    }
    const std::string status = d.hash.count("status") ? d.hash.at("status") : "";
    const std::string reason = d.hash.count("reason") ? d.hash.at("reason") : "";
    bool ended = false;
    if (status == "completed") {
      ++rep.completed;
      ended = true;
      if (d.in_exceptions) violate("ended", sr.run_id, "completed but still in the exceptions zset");
    } else if (status == "exception") {
      ++rep.exceptions;
      ended = true;
      ++rep.exception_reasons[reason.empty() ? "(none)" : reason];
      if (reason.empty()) violate("ended", sr.run_id, "exception without a reason");
      if (!d.in_exceptions) violate("ended", sr.run_id, "exception (" + reason + ") not in the exceptions zset");
    } else if (status == "cancelled") {
      ++rep.other_ended;
      ended = true;
    } else {
      ++rep.stuck;
      std::string steps;
      for (const auto& [f, v] : d.hash)
        if (f.rfind("step:", 0) == 0) steps += " " + f.substr(5) + "=" + v;
      violate("stuck", sr.run_id, "status '" + status + "' after the drain;" + steps);
    }
    if (ended) {
      int64_t ended_ms = d.hash.count("ended") ? to_i64(d.hash.at("ended")) : 0;
      if (ended_ms > 0) latencies.push_back(std::max<int64_t>(0, ended_ms - sr.requested_ms));
      if (d.outbox > 0)
        violate("ended", sr.run_id, "ended with " + std::to_string(d.outbox) + " task(s) left in its outbox");
    }
    if (d.hash.count("record") && !d.hash.at("record").empty()) record_runs[d.hash.at("record")].insert(sr.run_id);

    // The audit trail.
    int started = 0, completed = 0, excepted = 0;
    std::map<std::string, std::set<uint32_t>> results, disp;
    std::map<std::string, int> decisions, timeouts;
    for (const auto& a : d.audit) {
      if (a.kind == "run_started") {
        ++started;
      } else if (a.kind == "run_completed") {
        ++completed;
      } else if (a.kind == "run_exception") {
        ++excepted;
      } else if (a.kind == "task_dispatched") {
        std::string step = str_field(a.detail, "step");
        int64_t at = int_field(a.detail, "attempt");
        auto& set = disp[step];
        if (at <= 0 || !set.insert(static_cast<uint32_t>(at)).second) {
          ++rep.events_applied_twice;
          violate("audit", sr.run_id, "task " + step + " attempt " + std::to_string(at) + " dispatched twice");
        }
      } else if (a.kind == "step_result") {
        std::string step = str_field(a.detail, "step");
        int64_t at = int_field(a.detail, "attempt");
        auto dit = disp.find(step);
        if (dit == disp.end() || !dit->second.count(static_cast<uint32_t>(at)))
          violate("audit", sr.run_id, "result of " + step + " attempt " + std::to_string(at) + " before its dispatch");
        if (!results[step].insert(static_cast<uint32_t>(at)).second) {
          ++rep.events_applied_twice;
          violate("audit", sr.run_id, "result of " + step + " attempt " + std::to_string(at) + " applied twice");
        }
      } else if (a.kind == "step_timeout") {
        std::string key = str_field(a.detail, "step") + ":" + std::to_string(int_field(a.detail, "attempt"));
        if (++timeouts[key] > 1) {
          ++rep.events_applied_twice;
          violate("audit", sr.run_id, "timeout of " + key + " applied twice");
        }
      } else if (a.kind == "stale_result") {
        ++rep.stale_results;
      } else if (a.kind == "gate_decided") {
        std::string step = str_field(a.detail, "step");
        if (++decisions[step] > 1) {
          ++rep.events_applied_twice;
          violate("audit", sr.run_id, "gate " + step + " decided twice");
        }
      } else if (a.kind == "record_written") {
        RecordEntry e;
        e.version = int_field(a.detail, "version");
        e.run_id = sr.run_id;
        e.step = str_field(a.detail, "step");
        e.fields = a.detail.contains("fields") ? a.detail["fields"] : json::object();
        record_entries[str_field(a.detail, "record")].push_back(std::move(e));
      }
    }
    if (started != 1) violate("audit", sr.run_id, std::to_string(started) + " run_started entries");
    if (completed + excepted > 1) {
      ++rep.events_applied_twice;
      violate("audit", sr.run_id, "ended " + std::to_string(completed + excepted) + " times");
    }
    if (status == "completed" && completed != 1) violate("audit", sr.run_id, "completed without one run_completed");
    if (status == "exception" && excepted != 1) violate("audit", sr.run_id, "exception without one run_exception");
    if (!ended && completed + excepted > 0) violate("audit", sr.run_id, "not ended but its audit says it ended");
    for (auto& [step, set] : disp) {
      if (set.empty()) continue;
      rep.retried_attempts += set.size() - 1;
      if (*set.rbegin() != set.size())
        violate("audit", sr.run_id, "attempts of " + step + " are not 1.." + std::to_string(set.size()));
      dispatched[{sr.run_id, step}] = std::move(set);
    }
  }
  // ---- the partitions' sets: a running run must be in active:<p> (a new
  // owner reloads only those) and each running step must have its timeout
  // timer (a lost task is retried only by it); an ended run must be in neither.
  std::set<int64_t> partitions;
  for (const auto& [id, d] : runs)
    if (d.hash.count("partition")) partitions.insert(to_i64(d.hash.at("partition")));
  std::map<int64_t, std::set<std::string>> active;
  std::set<std::string> timers;  // members of every timers:<p>
  if (!partitions.empty()) {
    std::vector<std::string> ks;
    for (int64_t p : partitions) {
      ks.push_back(keys::active(in.ns, static_cast<int32_t>(p)));
      ks.push_back(keys::timers(in.ns, static_cast<int32_t>(p)));
    }
    for (std::size_t i = 0; i < ks.size(); i += 2) {
      rc.append({"SMEMBERS", ks[i]});
      rc.append({"ZRANGE", ks[i + 1], "0", "-1"});
    }
    auto replies = rc.exec();
    if (!replies) return replies.status();
    std::size_t i = 0;
    for (int64_t p : partitions) {
      const auto& a = (*replies)[i++];
      const auto& t = (*replies)[i++];
      if (a.is_error() || t.is_error()) return unavailable("checker: redis error: " + a.str + t.str);
      for (const auto& m : a.elements) active[p].insert(m.str);
      for (const auto& m : t.elements) timers.insert(m.str);
    }
  }
  for (const auto& sr : in.runs) {
    const RunData& d = runs[sr.run_id];
    if (d.hash.empty()) continue;
    const std::string status = d.hash.count("status") ? d.hash.at("status") : "";
    const bool ended = status == "completed" || status == "exception" || status == "cancelled";
    const int64_t p = d.hash.count("partition") ? to_i64(d.hash.at("partition")) : -1;
    const bool in_active = active[p].count(sr.run_id) > 0;
    if (ended && in_active) violate("ended", sr.run_id, status + " but still in active:" + std::to_string(p));
    if (!ended && !in_active)
      violate("stuck", sr.run_id, status + " but not in active:" + std::to_string(p) + " (no takeover reloads it)");
    std::size_t left = 0;
    const std::string prefix = sr.run_id + "|";
    for (auto it = timers.lower_bound(prefix); it != timers.end() && it->rfind(prefix, 0) == 0; ++it) ++left;
    if (ended) rep.timers_left += left;
    if (ended) continue;
    for (const auto& [f, v] : d.hash) {
      if (f.rfind("step:", 0) != 0) continue;
      auto sj = parse_json(v, limits::kMaxMessageBytes);
      if (!sj || !sj->is_object()) continue;
      const std::string st = str_field(*sj, "s");
      const std::string instance = f.substr(5);
      const std::string attempt = std::to_string(int_field(*sj, "a"));
      if (st == "running" && !timers.count(prefix + "timeout|" + instance + "|" + attempt))
        violate("stuck", sr.run_id, instance + " attempt " + attempt + " is running without its timeout timer");
      if (st == "retry_wait" && !timers.count(prefix + "retry|" + instance + "|" + attempt))
        violate("stuck", sr.run_id, instance + " waits for a retry without its retry timer");
    }
  }

  rep.p50_ms = percentile(latencies, 50);
  rep.p99_ms = percentile(latencies, 99);
  rep.max_ms = latencies.empty() ? -1 : latencies.back();

  // ---- records: equal to the replay of their record_written entries ----
  for (const auto& [rk, _] : record_runs) record_entries[rk];  // records with no entries are checked too
  std::vector<std::string> record_keys;
  for (const auto& [rk, _] : record_entries)
    if (!rk.empty()) record_keys.push_back(rk);
  for (std::size_t base = 0; base < record_keys.size(); base += kChunk) {
    std::size_t end = std::min(record_keys.size(), base + kChunk);
    std::vector<std::string> ks;
    for (std::size_t i = base; i < end; ++i) ks.push_back(keys::record(in.ns, record_keys[i]));
    for (const auto& k : ks) rc.append({"HGETALL", k});
    auto replies = rc.exec();
    if (!replies) return replies.status();
    for (std::size_t i = base; i < end; ++i) {
      const std::string& rk = record_keys[i];
      const auto& reply = (*replies)[i - base];
      if (reply.is_error()) return unavailable("checker: redis error: " + reply.str);
      auto stored = pairs(reply);
      auto& entries = record_entries[rk];
      ++rep.records;
      std::sort(entries.begin(), entries.end(),
                [](const RecordEntry& a, const RecordEntry& b) { return a.version < b.version; });
      std::map<std::string, json> replay;
      int64_t v = 0;
      std::vector<std::string> problems;
      for (const auto& e : entries) {
        if (e.version != v + 1)
          problems.push_back("version " + std::to_string(e.version) + " after " + std::to_string(v) + " (" + e.run_id +
                             ":" + e.step + ")");
        v = e.version;
        for (const auto& [f, change] : e.fields.items()) {
          json old = change.contains("old") ? change["old"] : json();
          json now = replay.count(f) ? replay[f] : json();
          if (!same_old(old, now))
            problems.push_back("v" + std::to_string(e.version) + " " + f + ": audit old " + old.dump() +
                               " but the replay has " + now.dump());
          replay[f] = change.contains("new") ? change["new"] : json();
        }
      }
      int64_t stored_v = stored.count("_v") ? to_i64(stored["_v"]) : 0;
      if (stored_v != v)
        problems.push_back("_v is " + std::to_string(stored_v) + ", the replay ends at " + std::to_string(v));
      std::set<std::string> seen;
      for (const auto& [f, val] : stored) {
        if (f.empty() || f[0] == '_') continue;
        seen.insert(f);
        auto it = replay.find(f);
        if (it == replay.end()) {
          problems.push_back(f + " = " + val + " is in the record but no audit entry wrote it");
        } else if (!same_value(it->second, val)) {
          problems.push_back(f + " = " + val + " but the replay gives " + it->second.dump());
        }
      }
      for (const auto& [f, val] : replay)
        if (!seen.count(f) && !val.is_null()) problems.push_back(f + " replays to " + val.dump() + " but is absent");
      if (!problems.empty()) {
        ++rep.record_mismatches;
        std::string all;
        for (const auto& p : problems) all += (all.empty() ? "" : "; ") + p;
        violate("record", rk, all);
      }
    }
  }

  // ---- effects ----
  struct KeyStats {
    std::size_t answered = 0, applied = 0;
    std::set<std::string> bodies, effect_ids;
    std::string run, step;
    uint32_t attempt = 0;
  };
  std::map<std::string, KeyStats> by_key;
  for (const auto& r : in.sink) {
    ++rep.sink_requests;
    if (r.status == 400) {
      ++rep.sink_refused;
      violate("effect", r.run_id, "the sink refused a request (key '" + r.key + "')");
      continue;
    }
    if (r.status != 200 && r.status != 201) continue;  // injected 503s
    KeyStats& k = by_key[r.key];
    k.run = r.run_id;
    k.step = r.step;
    k.attempt = r.attempt;
    ++k.answered;
    if (r.applied) ++k.applied;
    k.bodies.insert(r.body);
    if (!r.effect_id.empty()) k.effect_ids.insert(r.effect_id);
  }
  std::set<std::string> started_ids;
  for (const auto& sr : in.runs) started_ids.insert(sr.run_id);
  // (run, instance) -> applied attempts
  std::map<std::pair<std::string, std::string>, std::set<uint32_t>> applied;
  for (const auto& [key, k] : by_key) {
    rep.duplicate_deliveries += k.answered - 1;
    if (k.applied > 0) ++rep.effects_applied;
    if (k.applied != 1 || k.effect_ids.size() != 1) {
      ++rep.duplicated_effects;
      violate("effect", k.run, "key " + key + " applied " + std::to_string(k.applied) + " times");
    }
    if (k.bodies.size() > 1) violate("effect", k.run, "key " + key + " sent with different bodies");
    if (!started_ids.count(k.run)) {
      violate("effect", k.run, "effect " + key + " of a run the driver did not start");
      continue;
    }
    auto dit = dispatched.find({k.run, k.step});
    if (dit == dispatched.end() || !dit->second.count(k.attempt)) {
      ++rep.duplicated_effects;
      violate("effect", k.run, "effect " + key + " applied for an attempt that was never dispatched");
    }
    applied[{k.run, k.step}].insert(k.attempt);
  }
  for (const auto& sr : in.runs) {
    const RunData& d = runs[sr.run_id];
    for (const auto& [f, v] : d.hash) {
      if (f.rfind("step:", 0) != 0) continue;
      const std::string instance = f.substr(5);
      auto es = in.effect_steps.find(step_of(instance));
      if (es == in.effect_steps.end()) continue;
      auto sj = parse_json(v, limits::kMaxMessageBytes);
      if (!sj || !sj->is_object()) continue;
      const std::string st = str_field(*sj, "s");
      const int64_t accepted = int_field(*sj, "a");
      const auto& att = applied[{sr.run_id, instance}];
      if (st != "succeeded") {
        rep.superseded_effects += att.size();
        continue;
      }
      const std::string key = sr.run_id + ":" + instance + ":" + std::to_string(accepted);
      auto kit = by_key.find(key);
      if (kit == by_key.end() || kit->second.applied == 0) {
        ++rep.missing_effects;
        violate("effect", sr.run_id, instance + " succeeded with attempt " + std::to_string(accepted) +
                                         " but the sink applied no effect for it");
        rep.superseded_effects += att.size();
        continue;
      }
      rep.superseded_effects += att.size() - 1;
      // The accepted result is the applied effect: its output names that effect.
      auto out = d.ctx.count("out:" + instance) ? parse_json(d.ctx.at("out:" + instance), limits::kMaxMessageBytes)
                                                : Result<json>(not_found("no output"));
      std::string id = out && out->is_object() ? str_field(*out, es->second.c_str()) : "";
      if (kit->second.effect_ids.empty() || id != *kit->second.effect_ids.begin()) {
        ++rep.duplicated_effects;
        violate("effect", sr.run_id, instance + " output " + es->second + " '" + id + "' is not the effect " +
                                         (kit->second.effect_ids.empty() ? "?" : *kit->second.effect_ids.begin()) +
                                         " applied for " + key);
      }
    }
  }
  return rep;
}

std::string Report::table() const {
  std::ostringstream o;
  auto row = [&](const std::string& k, const std::string& v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "| %-22s | ", k.c_str());
    o << buf << v << "\n";
  };
  auto ms = [](int64_t v) {
    if (v < 0) return std::string("-");
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f s", static_cast<double>(v) / 1000.0);
    return std::string(buf);
  };
  std::string reasons;
  for (const auto& [r, n] : exception_reasons) reasons += (reasons.empty() ? "" : ", ") + r + " " + std::to_string(n);
  int total_faults = 0;
  std::string fk;
  for (const auto& [k, n] : faults) {
    total_faults += n;
    fk += (fk.empty() ? "" : ", ") + k + " " + std::to_string(n);
  }
  o << "+------------------------+----------------------------------------------\n";
  row("seed", std::to_string(seed) + (sizes.empty() ? "" : "  (" + sizes + ")"));
  row("runs", std::to_string(runs));
  row("completed", std::to_string(completed));
  row("exceptions", std::to_string(exceptions) + (reasons.empty() ? "" : " (" + reasons + ")"));
  if (other_ended) row("cancelled", std::to_string(other_ended));
  row("faults", std::to_string(total_faults) + (fk.empty() ? "" : " (" + fk + ")"));
  row("lost", std::to_string(lost));
  row("duplicated effects", std::to_string(duplicated_effects));
  row("missing effects", std::to_string(missing_effects));
  row("stuck", std::to_string(stuck));
  row("events applied twice", std::to_string(events_applied_twice));
  row("record mismatches", std::to_string(record_mismatches) + " of " + std::to_string(records) + " records");
  row("effects", std::to_string(effects_applied) + " applied, " + std::to_string(superseded_effects) +
                     " by superseded attempts, " + std::to_string(duplicate_deliveries) + " duplicate deliveries, " +
                     std::to_string(sink_requests) + " requests");
  row("retried attempts", std::to_string(retried_attempts) + " (" + std::to_string(stale_results) +
                              " stale results ignored, " + std::to_string(timers_left) + " timers left on ended runs)");
  row("run latency", "p50 " + ms(p50_ms) + ", p99 " + ms(p99_ms) + ", max " + ms(max_ms));
  row("soak / drain", ms(soak_ms) + " / " + ms(drain_ms));
  row("violations", std::to_string(violations.size()));
  o << "+------------------------+----------------------------------------------\n";
  return o.str();
}

std::string Report::violations_text(std::size_t max) const {
  std::ostringstream o;
  for (std::size_t i = 0; i < violations.size() && i < max; ++i)
    o << "  [" << violations[i].invariant << "] " << violations[i].run_id << ": " << violations[i].detail << "\n";
  if (violations.size() > max) o << "  ... and " << violations.size() - max << " more\n";
  return o.str();
}

}  // namespace baton::chaos
