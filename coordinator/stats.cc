#include "coordinator/stats.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"

namespace baton::coordinator {

using nlohmann::json;

namespace {

// A gate_decided detail carries the held and the corrected outputs (each up to
// one message), so the cap is a few messages rather than one HTTP body.
constexpr std::size_t kMaxDetailBytes = 4 * limits::kMaxMessageBytes;

std::optional<int64_t> parse_i64(std::string_view s) {
  int64_t v = 0;
  if (s.empty()) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// "draft#2" -> "draft" (instances of a step are folded into the step).
std::string fold(std::string_view instance) { return std::string(instance.substr(0, instance.find('#'))); }

// Typed getters that never throw: nullopt when missing or of another type.
std::optional<int64_t> get_int(const json& o, const char* k) {
  auto it = o.find(k);
  if (it == o.end()) return std::nullopt;
  if (it->is_number_unsigned()) {
    uint64_t u = it->get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                                           : static_cast<int64_t>(u);
  }
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!std::isfinite(d) || std::fabs(d) > 9e18) return std::nullopt;
    return static_cast<int64_t>(std::llround(d));
  }
  return std::nullopt;
}

const std::string* get_str(const json& o, const char* k) {
  auto it = o.find(k);
  if (it == o.end() || !it->is_string()) return nullptr;
  return it->get_ptr<const std::string*>();
}

std::optional<bool> get_bool(const json& o, const char* k) {
  auto it = o.find(k);
  if (it == o.end() || !it->is_boolean()) return std::nullopt;
  return it->get<bool>();
}

std::optional<json> parse_detail(const std::string& text) {
  auto j = parse_json(text, kMaxDetailBytes, limits::kMaxJsonDepth);
  if (!j || !j->is_object()) return std::nullopt;
  return std::move(j).value();
}

json ratio(uint64_t num, uint64_t den) {
  if (den == 0) return nullptr;
  return static_cast<double>(num) / static_cast<double>(den);
}

// {"p50":..,"p95":..,"count":n} (percentiles null when there are no samples).
json distribution(std::vector<int64_t> samples, std::initializer_list<int> percentiles) {
  std::sort(samples.begin(), samples.end());
  json out = json::object();
  for (int p : percentiles) {
    out["p" + std::to_string(p)] = samples.empty() ? json(nullptr) : json(nearest_rank(samples, p));
  }
  out["count"] = samples.size();
  return out;
}

// An XRANGE element: [id, [field, value, ...]]. A malformed one gets an empty
// kind (counted as skipped by the accumulator).
StatsAuditEntry to_entry(redis::Reply& r, std::string* id_out) {
  StatsAuditEntry e;
  if (!r.is_array() || r.elements.size() != 2 || !r.elements[0].is_string() || !r.elements[1].is_array())
    return e;
  if (id_out) *id_out = r.elements[0].str;
  auto& fields = r.elements[1].elements;
  bool have_at = false;
  for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
    const std::string& k = fields[i].str;
    if (k == "kind") {
      e.kind = std::move(fields[i + 1].str);
    } else if (k == "at") {
      if (auto v = parse_i64(fields[i + 1].str)) {
        e.at_ms = *v;
        have_at = true;
      }
    } else if (k == "detail") {
      e.detail = std::move(fields[i + 1].str);
    }
  }
  if (!have_at) {  // the stream id's time part is the append time
    const std::string& id = r.elements[0].str;
    if (auto v = parse_i64(std::string_view(id).substr(0, id.find('-')))) e.at_ms = *v;
  }
  return e;
}

Status reply_error(const redis::Reply& r, std::string_view what) {
  return unavailable("redis " + std::string(what) + ": " + r.str);
}

bool wrong_type(const redis::Reply& r) { return r.is_error() && r.str.rfind("WRONGTYPE", 0) == 0; }

}  // namespace

int64_t nearest_rank(const std::vector<int64_t>& sorted, double p) {
  const std::size_t n = sorted.size();
  // p * n first: exact for whole percents, so a rank that is a whole number
  // (p * n a multiple of 100) is not pushed up by a rounding error.
  auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(n) / 100.0));
  rank = std::clamp<std::size_t>(rank, 1, n);
  return sorted[rank - 1];
}

StatsAccumulator::StatsAccumulator(std::string workflow, uint32_t version)
    : workflow_(std::move(workflow)), version_(version) {}

bool StatsAccumulator::begin_run(const HashPairs& run_hash) {
  end_run();
  if (run_hash.empty()) {
    ++runs_missing_;
    return false;
  }
  const std::string* wf = nullptr;
  const std::string* status = nullptr;
  const std::string* reason = nullptr;
  std::optional<int64_t> ver;
  for (const auto& [k, v] : run_hash) {
    if (k == "wf") wf = &v;
    else if (k == "ver") ver = parse_i64(v);
    else if (k == "status") status = &v;
    else if (k == "reason") reason = &v;
  }
  if (!wf || wf->empty() || !status || !ver || *ver < 0 || *ver > std::numeric_limits<uint32_t>::max()) {
    ++runs_skipped_;
    return false;
  }
  const auto version = static_cast<uint32_t>(*ver);
  if ((!workflow_.empty() && *wf != workflow_) || (version_ != 0 && version != version_)) {
    ++runs_filtered_;
    return false;
  }
  Group& g = groups_[{*wf, version}];
  ++g.runs;
  ++runs_counted_;
  Current cur;
  cur.group = &g;
  if (*status == "completed") {
    ++g.completed;
    cur.completed = true;
  } else if (*status == "exception") {
    ++g.exceptions;
    ++g.exceptions_by_reason[reason && !reason->empty() ? *reason : "unknown"];
  } else if (*status == "running") {
    ++g.running;
  } else if (*status == "waiting") {
    ++g.running;  // not ended: waiting for its window to open
    ++g.waiting;
  } else if (*status == "cancelled") {
    ++g.cancelled;
  } else {
    ++g.other;
  }
  cur_ = cur;
  return true;
}

void StatsAccumulator::add_entry(const StatsAuditEntry& e) {
  if (!cur_) return;
  if (!apply_entry(*cur_->group, e)) ++entries_skipped_;
}

void StatsAccumulator::end_run() {
  if (!cur_) return;
  if (cur_->excepted) ++cur_->group->ever_excepted;
  if (cur_->fallback) ++cur_->group->runs_with_fallback;
  cur_.reset();
}

bool StatsAccumulator::add_run(const HashPairs& run_hash, const std::vector<StatsAuditEntry>& audit) {
  if (!begin_run(run_hash)) return false;
  for (const auto& e : audit) add_entry(e);
  end_run();
  return true;
}

// False when the entry is malformed (counted, otherwise ignored). Kinds this
// does not know are fine: the audit trail holds many more than the KPIs need.
bool StatsAccumulator::apply_entry(Group& g, const StatsAuditEntry& e) {
  const std::string& kind = e.kind;
  if (kind.empty()) return false;
  // Kinds that are only counted: their detail is not even parsed.
  if (kind == "retry_scheduled") {
    ++g.retries;
    return true;
  }
  if (kind == "collision") {
    ++g.collisions;
    return true;
  }
  if (kind == "run_exception") {
    cur_->excepted = true;
    cur_->open_exception_at = e.at_ms;
    return true;
  }
  if (kind == "operator_action") {
    if (cur_->open_exception_at) {
      // Clocks of different coordinator replicas may disagree by a little.
      g.time_to_resolve.push_back(std::max<int64_t>(0, e.at_ms - *cur_->open_exception_at));
      cur_->open_exception_at.reset();
    }
    return true;
  }
  if (kind == "budget_fallback") {
    ++g.fallbacks;
    cur_->fallback = true;
    return true;
  }
  if (kind == "budget_exceeded") {
    ++g.budget_exceeded;
    return true;
  }
  const bool gate = kind == "gate_opened" || kind == "gate_decided" || kind == "gate_timeout" ||
                    kind == "gate_escalated";
  if (kind != "step_result" && !gate) return true;

  auto d = parse_detail(e.detail);
  if (!d) return false;
  const std::string* step = get_str(*d, "step");
  if (!step || step->empty()) return false;

  if (kind == "step_result") {
    const std::string* status = get_str(*d, "status");
    if (!status) return false;
    ++g.step_results;
    if (*status == "ok") {
      if (auto ms = get_int(*d, "duration_ms"); ms && *ms >= 0) g.step_latency[fold(*step)].push_back(*ms);
    }
    auto u = d->find("usage");
    if (u != d->end() && u->is_object()) {
      auto nonneg = [&](const char* k) -> uint64_t {
        auto v = get_int(*u, k);
        return v && *v > 0 ? static_cast<uint64_t>(*v) : 0;
      };
      g.tokens_in += nonneg("tokens_in");
      g.tokens_out += nonneg("tokens_out");
      uint64_t cost = nonneg("cost_micros");
      g.cost_micros += cost;
      if (cur_->completed) g.cost_micros_completed += cost;
    }
    return true;
  }

  Gate& gs = g.gates[fold(*step)];
  if (const std::string* k = get_str(*d, "kind"); k && !k->empty()) gs.kind = *k;
  if (kind == "gate_opened") {
    ++gs.opened;
  } else if (kind == "gate_timeout") {
    ++gs.timeouts;
  } else if (kind == "gate_escalated") {
    ++gs.escalations;
  } else {  // gate_decided
    const std::string* decision = get_str(*d, "decision");
    if (!decision) return false;
    ++gs.decisions;
    if (*decision == "approved") ++gs.approved;
    else if (*decision == "rejected") ++gs.rejected;
    else if (*decision == "corrected") ++gs.corrected;
    if (get_bool(*d, "overturned").value_or(false)) ++gs.overturned;
    if (auto waited = get_int(*d, "waited_ms"); waited && *waited >= 0) {
      const std::string* gk = get_str(*d, "kind");
      if (gk && *gk == "approval") g.approval_latency.push_back(*waited);
      else if (gk && *gk == "review") g.review_latency.push_back(*waited);
    }
  }
  return true;
}

json StatsAccumulator::to_json() const {
  json out = json::array();
  for (const auto& [key, g] : groups_) {
    const uint64_t ended = g.completed + g.exceptions + g.cancelled;
    json w = {
        {"workflow", key.first},
        {"version", key.second},
        {"runs", g.runs},
        {"completed", g.completed},
        {"exceptions", g.exceptions},
        {"running", g.running},
        {"waiting", g.waiting},
        {"cancelled", g.cancelled},
        {"other", g.other},
        {"completion_rate", ratio(g.completed, ended)},
        {"exception_rate", ratio(g.exceptions, g.runs)},
        {"exceptions_by_reason", json(g.exceptions_by_reason)},
        {"ever_excepted", g.ever_excepted},
        {"step_results", g.step_results},
        {"retries", g.retries},
        {"retry_rate", ratio(g.retries, g.step_results)},
        {"fallback_rate", ratio(g.runs_with_fallback, g.runs)},
        {"fallbacks", g.fallbacks},
        {"budget_exceeded", g.budget_exceeded},
        {"approval_latency_ms", distribution(g.approval_latency, {50, 95})},
        {"review_latency_ms", distribution(g.review_latency, {50, 95})},
        {"time_to_resolve_ms", distribution(g.time_to_resolve, {50, 95})},
        {"cost_micros", g.cost_micros},
        {"cost_per_completed_run_micros", ratio(g.cost_micros_completed, g.completed)},
        {"tokens", {{"in", g.tokens_in}, {"out", g.tokens_out}}},
        {"collisions", g.collisions},
    };
    if (g.exceptions_by_reason.empty()) w["exceptions_by_reason"] = json::object();
    json steps = json::object();
    for (const auto& [step, samples] : g.step_latency) steps[step] = distribution(samples, {50, 95, 99});
    w["step_latency_ms"] = std::move(steps);
    json gates = json::object();
    for (const auto& [step, gs] : g.gates) {
      gates[step] = {{"kind", gs.kind.empty() ? json(nullptr) : json(gs.kind)},
                     {"opened", gs.opened},
                     {"decisions", gs.decisions},
                     {"approved", gs.approved},
                     {"rejected", gs.rejected},
                     {"corrected", gs.corrected},
                     {"timeouts", gs.timeouts},
                     {"escalations", gs.escalations},
                     {"overturned", gs.overturned},
                     {"agent_accuracy", gs.decisions == 0 ? json(nullptr)
                                                          : json(1.0 - static_cast<double>(gs.overturned) /
                                                                           static_cast<double>(gs.decisions))}};
    }
    w["gates"] = std::move(gates);
    out.push_back(std::move(w));
  }
  return out;
}

Result<json> compute_stats(redis::Client& c, const std::string& ns, const StatsQuery& q, int64_t now_ms) {
  const int64_t since = q.since_ms;
  const int64_t until = q.until_ms != 0 ? q.until_ms : now_ms;
  if (since > until) return invalid("stats: since (" + std::to_string(since) + ") is after until (" +
                                    std::to_string(until) + ")");
  if (q.max_runs == 0 || q.max_runs > kMaxStatsRuns)
    return invalid("stats: max_runs must be 1.." + std::to_string(kMaxStatsRuns));

  // Newest first; one more than asked says whether the window holds more.
  const std::string index = keys::runs_index(ns);
  const std::string until_s = std::to_string(until), since_s = std::to_string(since);
  const std::string limit_s = std::to_string(q.max_runs + 1);
  auto ids_reply = c.command({"ZREVRANGEBYSCORE", index, until_s, since_s, "LIMIT", "0", limit_s});
  if (!ids_reply) return ids_reply.status();
  if (ids_reply->is_error()) return reply_error(*ids_reply, "ZREVRANGEBYSCORE " + index);
  std::vector<std::string> ids;
  ids.reserve(ids_reply->elements.size());
  for (auto& e : ids_reply->elements) {
    if (e.is_string()) ids.push_back(std::move(e.str));
  }
  ids_reply->elements.clear();
  const bool truncated = ids.size() > q.max_runs;
  if (truncated) ids.resize(q.max_runs);

  StatsAccumulator acc(q.workflow, q.version);
  const std::string page_s = std::to_string(kStatsAuditPage);
  std::size_t wrong_type_runs = 0;
  for (std::size_t start = 0; start < ids.size(); start += kStatsChunkRuns) {
    const std::size_t end = std::min(ids.size(), start + kStatsChunkRuns);
    std::vector<std::string> run_keys, audit_keys;
    run_keys.reserve(end - start);
    audit_keys.reserve(end - start);
    for (std::size_t i = start; i < end; ++i) {
      run_keys.push_back(keys::run(ns, ids[i]));
      audit_keys.push_back(keys::run_audit(ns, ids[i]));
      c.append({"HGETALL", run_keys.back()});
      c.append({"XRANGE", audit_keys.back(), "-", "+", "COUNT", page_s});
    }
    auto replies = c.exec();
    if (!replies) return replies.status();
    if (replies->size() != 2 * (end - start)) return unavailable("stats: pipeline reply count mismatch");
    for (std::size_t i = 0; i < end - start; ++i) {
      redis::Reply& h = (*replies)[2 * i];
      redis::Reply& a = (*replies)[2 * i + 1];
      if (wrong_type(h) || wrong_type(a)) {
        ++wrong_type_runs;
        continue;
      }
      if (h.is_error()) return reply_error(h, "HGETALL " + run_keys[i]);
      if (a.is_error()) return reply_error(a, "XRANGE " + audit_keys[i]);
      StatsAccumulator::HashPairs pairs;
      pairs.reserve(h.elements.size() / 2);
      for (std::size_t k = 0; k + 1 < h.elements.size(); k += 2)
        pairs.emplace_back(std::move(h.elements[k].str), std::move(h.elements[k + 1].str));
      h.elements.clear();
      if (!acc.begin_run(pairs)) {
        a.elements.clear();
        continue;
      }
      // A stream longer than a page is read on in pages after its last id.
      std::string last_id;
      std::size_t got = a.elements.size();
      for (auto& el : a.elements) acc.add_entry(to_entry(el, &last_id));
      a.elements.clear();
      while (got == kStatsAuditPage && !last_id.empty()) {
        auto more = c.command({"XRANGE", audit_keys[i], "(" + last_id, "+", "COUNT", page_s});
        if (!more) return more.status();
        if (more->is_error()) return reply_error(*more, "XRANGE " + audit_keys[i]);
        got = more->elements.size();
        for (auto& el : more->elements) acc.add_entry(to_entry(el, &last_id));
      }
      acc.end_run();
    }
  }

  return json{{"since_ms", since},
              {"until_ms", until},
              {"runs_scanned", ids.size()},
              {"runs_counted", acc.runs_counted()},
              {"runs_missing", acc.runs_missing()},
              {"runs_skipped", acc.runs_skipped() + wrong_type_runs},
              {"entries_skipped", acc.entries_skipped()},
              {"truncated", truncated},
              {"workflows", acc.to_json()}};
}

}  // namespace baton::coordinator
