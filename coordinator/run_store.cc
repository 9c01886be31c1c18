#include "coordinator/run_store.h"

#include <charconv>
#include <chrono>
#include <string_view>

#include "common/util/keys.h"

namespace baton::coordinator {

namespace {

std::vector<std::pair<std::string, std::string>> pairs_of(const redis::Reply& r) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!r.is_array()) return out;
  out.reserve(r.elements.size() / 2);
  for (std::size_t i = 0; i + 1 < r.elements.size(); i += 2)
    out.emplace_back(r.elements[i].str, r.elements[i + 1].str);
  return out;
}

int64_t reply_int(const redis::Reply& r, int64_t dflt) {
  if (r.type == redis::Reply::Type::kInteger) return r.integer;
  if (r.is_string()) {
    int64_t v = dflt;
    std::from_chars(r.str.data(), r.str.data() + r.str.size(), v);
    return v;
  }
  return dflt;
}

}  // namespace

Result<int64_t> RunStore::bump_epoch(int32_t partition) {
  auto r = client_->command({"INCR", keys::epoch(ns_, partition)});
  if (!r) return r.status();
  if (r->is_error()) return internal("INCR epoch: " + r->str);
  return r->integer;
}

Result<int64_t> RunStore::applied_offset(int32_t partition) {
  auto r = client_->command({"GET", keys::applied(ns_, partition)});
  if (!r) return r.status();
  if (r->is_error()) return internal("GET applied: " + r->str);
  return r->is_nil() ? int64_t{-1} : reply_int(*r, -1);
}

Result<std::vector<std::string>> RunStore::active_runs(int32_t partition) {
  auto r = client_->command({"SMEMBERS", keys::active(ns_, partition)});
  if (!r) return r.status();
  if (r->is_error()) return internal("SMEMBERS active: " + r->str);
  std::vector<std::string> out;
  for (auto& e : r->elements) out.push_back(std::move(e.str));
  return out;
}

Result<std::vector<LoadedRun>> RunStore::load_runs(const std::vector<std::string>& run_ids) {
  std::vector<LoadedRun> out;
  constexpr std::size_t kChunk = 256;
  for (std::size_t base = 0; base < run_ids.size(); base += kChunk) {
    std::size_t end = std::min(run_ids.size(), base + kChunk);
    for (std::size_t i = base; i < end; ++i) {
      client_->append({"HGETALL", keys::run(ns_, run_ids[i])});
      client_->append({"HGETALL", keys::run_ctx(ns_, run_ids[i])});
      client_->append({"HGETALL", keys::run_outbox(ns_, run_ids[i])});
    }
    auto replies = client_->exec();
    if (!replies) return replies.status();
    for (std::size_t i = base; i < end; ++i) {
      const auto& rh = (*replies)[(i - base) * 3];
      const auto& ch = (*replies)[(i - base) * 3 + 1];
      const auto& oh = (*replies)[(i - base) * 3 + 2];
      if (rh.is_error() || ch.is_error() || oh.is_error()) return internal("HGETALL run: " + rh.str + ch.str);
      LoadedRun lr;
      if (!RunState::from_hashes(run_ids[i], pairs_of(rh), pairs_of(ch), lr.state)) continue;
      lr.outbox = pairs_of(oh);
      out.push_back(std::move(lr));
    }
  }
  return out;
}

Result<std::vector<std::pair<int32_t, std::string>>> RunStore::due_timers(const std::vector<int32_t>& partitions,
                                                                          int64_t now_ms, int limit) {
  std::vector<std::pair<int32_t, std::string>> out;
  if (partitions.empty()) return out;
  std::string now = std::to_string(now_ms);
  std::string lim = std::to_string(limit);
  for (int32_t p : partitions)
    client_->append({"ZRANGEBYSCORE", keys::timers(ns_, p), "-inf", now, "LIMIT", "0", lim});
  auto replies = client_->exec();
  if (!replies) return replies.status();
  for (std::size_t i = 0; i < partitions.size(); ++i) {
    const auto& r = (*replies)[i];
    if (r.is_error()) return internal("ZRANGEBYSCORE timers: " + r.str);
    for (const auto& e : r.elements) out.emplace_back(partitions[i], e.str);
  }
  return out;
}

void RunStore::append_record_write(const RecordWriteRequest& req) {
  args_.clear();
  args_.push_back("FCALL");
  args_.push_back("baton_record_write");
  args_.push_back("3");
  args_.push_back(keys::record(ns_, req.record_key));
  args_.push_back(keys::record_write_memo(ns_, req.record_key, req.idempotency_key));
  args_.push_back(keys::record_lock(ns_, req.record_key));
  args_.push_back(req.idempotency_key);
  args_.push_back(std::to_string(req.version_read));
  args_.push_back(req.writer);
  args_.push_back("604800");  // memo kept 7 days
  args_.push_back(std::to_string(req.allowed.size()));
  for (const auto& a : req.allowed) args_.push_back(a);
  args_.push_back(std::to_string(req.fields.size()));
  for (const auto& [f, v] : req.fields) {
    args_.push_back(f);
    args_.push_back(v);
  }
  if (req.fence > 0) {
    args_.push_back(std::to_string(req.fence));
    args_.push_back(std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count()));
  }
  std::vector<std::string_view> argv(args_.begin(), args_.end());
  client_->append(argv);
}

namespace {
void append_lock(redis::Client& c, const std::string& ns, const std::string& op, const std::string& record,
                 const std::string& holder, int64_t now, int64_t lease) {
  c.append({"FCALL", "baton_lock", "4", keys::record_lock(ns, record), keys::record_lock_queue(ns, record),
            keys::record_fence(ns, record), keys::locks(ns), op, holder, std::to_string(now), std::to_string(lease),
            record});
}

Result<std::vector<RunStore::LockGrant>> lock_replies(const std::vector<redis::Reply>& replies,
                                                      const std::vector<std::string>& holders) {
  std::vector<RunStore::LockGrant> out;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const auto& r = replies[i];
    if (r.is_error()) return internal("baton_lock: " + r.str);
    RunStore::LockGrant g;
    if (r.is_array() && !r.elements.empty()) {
      const std::string& kind = r.elements[0].str;
      if (kind == "GRANTED" && r.elements.size() >= 2) {
        g.holder = holders[i];
        g.token = reply_int(r.elements[1], 0);
      } else if (kind == "NEXT" && r.elements.size() >= 3) {
        g.holder = r.elements[1].str;
        g.token = reply_int(r.elements[2], 0);
      }
    }
    out.push_back(std::move(g));
  }
  return out;
}
}  // namespace

Result<std::vector<RunStore::LockGrant>> RunStore::run_locks(const std::vector<LockOp>& ops, int64_t now_ms) {
  std::vector<std::string> holders;
  for (const auto& op : ops) {
    append_lock(*client_, ns_, op.op, op.record_key, op.holder, now_ms, op.lease_ms);
    holders.push_back(op.holder);
  }
  if (ops.empty()) return std::vector<LockGrant>();
  auto replies = client_->exec();
  if (!replies) return replies.status();
  return lock_replies(*replies, holders);
}

Result<std::vector<RunStore::LockGrant>> RunStore::expire_locks(int64_t now_ms, int limit) {
  auto due = client_->command({"ZRANGEBYSCORE", keys::locks(ns_), "-inf", std::to_string(now_ms), "LIMIT", "0",
                               std::to_string(limit)});
  if (!due) return due.status();
  if (due->is_error()) return internal("ZRANGEBYSCORE locks: " + due->str);
  std::vector<std::string> holders;
  for (const auto& e : due->elements) {
    append_lock(*client_, ns_, "expire", e.str, "-", now_ms, 0);
    holders.push_back("");
  }
  if (holders.empty()) return std::vector<LockGrant>();
  auto replies = client_->exec();
  if (!replies) return replies.status();
  return lock_replies(*replies, holders);
}

Result<std::vector<RecordWriteOutcome>> RunStore::exec_record_writes(const std::vector<RecordWriteRequest>& reqs) {
  std::vector<RecordWriteOutcome> out;
  if (reqs.empty()) return out;
  auto replies = client_->exec();
  if (!replies) return replies.status();
  out.reserve(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = (*replies)[i];
    if (r.is_error() || !r.is_array() || r.elements.size() < 2) {
      return internal("baton_record_write: " + (r.is_error() ? r.str : std::string("bad reply")));
    }
    RecordWriteOutcome o;
    const std::string& kind = r.elements[0].str;
    if (kind == "OK") {
      o.kind = RecordWriteOutcome::Kind::kApplied;
      o.version = reply_int(r.elements[1], 0);
      for (std::size_t k = 0; k < reqs[i].fields.size() && k + 2 < r.elements.size(); ++k)
        o.changes.push_back({reqs[i].fields[k].first, {r.elements[k + 2].str, reqs[i].fields[k].second}});
    } else if (kind == "COLLISION") {
      o.kind = RecordWriteOutcome::Kind::kCollision;
      o.version = reply_int(r.elements[1], 0);
    } else if (kind == "FORBIDDEN") {
      o.kind = RecordWriteOutcome::Kind::kForbidden;
      o.field = r.elements[1].str;
    } else if (kind == "FENCED") {
      o.kind = RecordWriteOutcome::Kind::kFenced;
      o.version = reply_int(r.elements[1], 0);  // the lock's current token
    } else {
      return internal("baton_record_write: unexpected reply " + kind);
    }
    out.push_back(std::move(o));
  }
  return out;
}

void RunStore::append_apply(const RunState& st, const Transition& t, int64_t epoch, int64_t offset,
                            int64_t now_ms) {
  args_.clear();
  const std::string& id = st.run_id;
  args_.push_back("FCALL");
  args_.push_back("baton_apply");
  args_.push_back("12");
  args_.push_back(keys::run(ns_, id));
  args_.push_back(keys::run_ctx(ns_, id));
  args_.push_back(keys::run_outbox(ns_, id));
  args_.push_back(keys::run_audit(ns_, id));
  args_.push_back(keys::epoch(ns_, st.partition));
  args_.push_back(keys::applied(ns_, st.partition));
  args_.push_back(keys::timers(ns_, st.partition));
  args_.push_back(keys::active(ns_, st.partition));
  args_.push_back(keys::exceptions(ns_));
  args_.push_back(keys::approvals(ns_));
  args_.push_back(keys::notify_queue(ns_));
  args_.push_back(keys::runs_index(ns_));
  args_.push_back(std::to_string(epoch));
  args_.push_back(std::to_string(offset));
  args_.push_back(t.is_new ? "new" : "upd");
  args_.push_back(id);
  args_.push_back(std::to_string(now_ms));
  auto put_pairs = [&](const std::vector<std::pair<std::string, std::string>>& v) {
    args_.push_back(std::to_string(v.size()));
    for (const auto& [k, val] : v) {
      args_.push_back(k);
      args_.push_back(val);
    }
  };
  put_pairs(t.run_fields);
  put_pairs(t.ctx_fields);
  args_.push_back(std::to_string(t.dispatch.size()));
  for (std::size_t i = 0; i < t.dispatch.size(); ++i) {
    args_.push_back(outbox_field(t.dispatch[i].step_id(), t.dispatch[i].attempt()));
    args_.push_back(t.dispatch_bytes[i]);
  }
  args_.push_back(std::to_string(t.outbox_dels.size()));
  for (const auto& d : t.outbox_dels) args_.push_back(d);
  args_.push_back(std::to_string(t.timers_add.size()));
  for (const auto& [m, due] : t.timers_add) {
    args_.push_back(m);
    args_.push_back(std::to_string(due));
  }
  args_.push_back(std::to_string(t.timers_del.size()));
  for (const auto& d : t.timers_del) args_.push_back(d);
  args_.push_back(std::to_string(t.audit.size()));
  for (const auto& a : t.audit) {
    args_.push_back(a.kind);
    args_.push_back(std::to_string(a.at_ms));
    args_.push_back(a.actor);
    args_.push_back(a.detail.dump());
  }
  args_.push_back(t.ending);  // "" (no change), completed, exception, cancelled or resumed
  args_.push_back(t.exception_reason);
  args_.push_back(std::to_string(t.gates_add.size()));
  for (const auto& [m, score] : t.gates_add) {
    args_.push_back(m);
    args_.push_back(std::to_string(score));
  }
  args_.push_back(std::to_string(t.gates_del.size()));
  for (const auto& m : t.gates_del) args_.push_back(m);
  args_.push_back(std::to_string(t.notify.size()));
  for (const auto& n : t.notify) args_.push_back(n);
  std::vector<std::string_view> argv(args_.begin(), args_.end());
  client_->append(argv);
}

Result<std::vector<ApplyReply>> RunStore::exec_applies() {
  std::vector<ApplyReply> out;
  if (client_->pending() == 0) return out;
  auto replies = client_->exec();
  if (!replies) return replies.status();
  out.reserve(replies->size());
  for (const auto& r : *replies) {
    if (r.is_error()) {
      out.push_back(r.str.rfind("FENCED", 0) == 0 ? ApplyReply::kFenced : ApplyReply::kError);
    } else if (r.str == "OK") {
      out.push_back(ApplyReply::kOk);
    } else if (r.str == "DUP") {
      out.push_back(ApplyReply::kDup);
    } else if (r.str == "EXISTS") {
      out.push_back(ApplyReply::kExists);
    } else if (r.str == "MISSING") {
      out.push_back(ApplyReply::kMissing);
    } else {
      out.push_back(ApplyReply::kError);
    }
  }
  return out;
}

Status RunStore::ack_outbox(const std::vector<std::pair<std::string, std::string>>& acks) {
  if (acks.empty()) return Status::ok();
  for (const auto& [run, field] : acks) client_->append({"HDEL", keys::run_outbox(ns_, run), field});
  auto r = client_->exec();
  return r ? Status::ok() : r.status();
}

Status RunStore::drop_timers(int32_t partition, const std::vector<std::string>& members) {
  if (members.empty()) return Status::ok();
  std::vector<std::string_view> argv;
  std::string key = keys::timers(ns_, partition);
  argv.push_back("ZREM");
  argv.push_back(key);
  for (const auto& m : members) argv.push_back(m);
  auto r = client_->command(argv);
  return r ? Status::ok() : r.status();
}

}  // namespace baton::coordinator
