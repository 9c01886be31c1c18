#include "coordinator/application.h"

#include <ctime>

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <map>
#include <cstdio>
#include <thread>
#include <unordered_set>

#include "common/util/ids.h"
#include "common/util/json.h"
#include "common/util/keys.h"
#include "common/util/limits.h"
#include "common/workflow/schedule.h"
#include "coordinator/starts.h"
#include "coordinator/workflow_store.h"

namespace baton::coordinator {

namespace {

void sleep_ms(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

Status write_file_atomic(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return internal("cannot write " + tmp);
  std::fputs(content.c_str(), f);
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return internal("cannot rename " + tmp);
  return Status::ok();
}

}  // namespace

Application::Application(Options opts)
    : opts_(std::move(opts)), engine_(EngineOptions{opts_.ns, /*notify=*/!opts_.notify.empty()}) {
  events_topic_ = keys::events_topic(opts_.ns);
  triggers_topic_ = keys::triggers_topic(opts_.ns);
  audit_topic_ = keys::audit_topic(opts_.ns);
}

Application::~Application() {
  if (http_) http_->stop();
  if (notifier_) notifier_->stop();
}

int Application::http_port() const { return http_ ? http_->port() : 0; }

Status Application::init() {
  if (Status s = registry_.load_dir(opts_.workflows_dir); !s) return s;
  std::shared_ptr<const Authenticator> auth;
  if (!opts_.auth_tokens.empty()) {
    auto a = Authenticator::load(opts_.auth_tokens);
    if (!a) return a.status();
    spdlog::info("control plane auth: {} token(s) from {}", a->size(), opts_.auth_tokens);
    auth = std::make_shared<const Authenticator>(std::move(a).value());
  } else {
    spdlog::warn("control plane auth is off (no --auth-tokens): every caller is an admin");
  }
  std::vector<WebhookConfig> webhooks;
  if (!opts_.notify.empty()) {
    auto w = load_webhooks(opts_.notify);
    if (!w) return w.status();
    webhooks = std::move(w).value();
  }
  auto wfs = registry_.all();
  spdlog::info("loaded {} workflow(s) from {}", wfs.size(), opts_.workflows_dir);

  auto ep = redis::parse_endpoint(opts_.redis);
  if (!ep) return ep.status();
  // Redis may still be starting: bounded retry.
  Result<std::unique_ptr<redis::Client>> client = unavailable("not tried");
  for (int i = 0; i < 50 && !stop_; ++i) {
    client = redis::Client::connect(*ep);
    if (client) break;
    sleep_ms(100);
  }
  if (!client) return client.status();
  if (Status s = redis::ensure_library(**client); !s) return s;
  // Workflows applied over the API (any replica): load them, and look again on a miss.
  if (Status s = WorkflowStore(**client, opts_.ns).load_all(registry_); !s) return s;
  refresh_on_miss(registry_, *ep, opts_.ns);
  store_ = std::make_unique<RunStore>(std::move(client).value(), opts_.ns);

  kafka::KafkaConfig kc;
  kc.brokers = opts_.brokers;
  kc.client_id = "baton-coordinator";
  kc.fetch_wait_max_ms = opts_.fetch_wait_ms;
  kc.linger_ms = opts_.linger_ms;
  auto producer = kafka::make_producer(kc, /*with_poller=*/true);
  if (!producer) return producer.status();
  producer_ = std::move(producer).value();
  // The audit export has its own producer that batches (linger 50 ms): with
  // the task producer's linger 0 it would double the broker's requests.
  kafka::KafkaConfig akc = kc;
  akc.client_id = "baton-coordinator-audit";
  akc.linger_ms = 50;
  auto audit_producer = kafka::make_producer(akc, /*with_poller=*/true);
  if (!audit_producer) return audit_producer.status();
  audit_producer_ = std::move(audit_producer).value();
  // Fetch the topics' metadata now, so the first task of each role is not held
  // back (about a second) waiting for it.
  std::vector<std::string> topics = {events_topic_, keys::dlq_topic(opts_.ns), audit_topic_};
  for (const auto& role : registry_.roles()) topics.push_back(keys::tasks_topic(opts_.ns, role));
  if (Status s = producer_->warm_up(topics, 5000); !s) spdlog::warn("warming up topics: {}", s.to_string());

  kafka::RebalanceListener listener;
  listener.on_assigned = [this](const std::vector<kafka::TopicPartition>& p) { on_assigned(p); };
  listener.on_revoked = [this](const std::vector<kafka::TopicPartition>& p) { on_revoked(p); };
  auto consumer = kafka::make_consumer(kc, keys::coordinator_group(opts_.ns), listener);
  if (!consumer) return consumer.status();
  consumer_ = std::move(consumer).value();
  if (Status s = consumer_->subscribe({events_topic_, triggers_topic_}); !s) return s;

  if (!opts_.notify.empty()) {
    NotifierOptions no;
    no.ns = opts_.ns;
    no.redis = *ep;
    notifier_ = std::make_unique<Notifier>(no, std::move(webhooks));
    if (Status s = notifier_->start(); !s) return s;
  }
  ApiOptions ao;
  ao.ns = opts_.ns;
  ao.redis = *ep;
  ao.auth = std::move(auth);
  api_ = std::make_unique<Api>(ao, registry_, *producer_, ready_);
  http::ServerOptions so;
  auto colon = opts_.http.rfind(':');
  if (colon == std::string::npos) return invalid("--http must be HOST:PORT, got " + opts_.http);
  so.host = opts_.http.substr(0, colon);
  so.port = std::atoi(opts_.http.c_str() + colon + 1);
  so.threads = 2;
  auto server = http::Server::start(so, [this](const http::Request& r) { return api_->handle(r); });
  if (!server) return server.status();
  http_ = std::move(server).value();
  spdlog::info("control plane on http://{}:{}", so.host, http_->port());
  if (!opts_.http_port_file.empty()) {
    if (Status s = write_file_atomic(opts_.http_port_file, std::to_string(http_->port()) + "\n"); !s) return s;
  }
  return Status::ok();
}

Status Application::run() {
  std::vector<kafka::Message> msgs;
  msgs.reserve(opts_.max_batch);
  while (!stop_) {
    msgs.clear();
    Status s = consumer_->poll_batch(msgs, opts_.max_batch, 5);
    if (!s) {
      spdlog::error("consumer: {}", s.to_string());
      sleep_ms(100);
      continue;
    }
    if (!msgs.empty()) process_batch(msgs);
    drain_acks();
    int64_t now = now_unix_ms();
    if (now >= next_timer_scan_ms_) {
      scan_timers();
      next_timer_scan_ms_ = now + opts_.timer_scan_ms;
    }
    if (now >= next_schedule_scan_ms_) {
      scan_schedules();
      expire_locks();
      next_schedule_scan_ms_ = now + 1000;
    }
    maybe_commit(false);
  }
  spdlog::info("shutting down: flushing the producer and committing offsets");
  (void)producer_->flush(5000);
  (void)audit_producer_->flush(2000);
  drain_acks();
  maybe_commit(true);
  consumer_->close();
  if (http_) http_->stop();
  return Status::ok();
}

void Application::on_assigned(const std::vector<kafka::TopicPartition>& parts) {
  for (const auto& tp : parts) {
    if (tp.topic != events_topic_) continue;
    // Bounded only by shutdown: without Redis we cannot own the partition.
    for (int attempt = 0; !stop_; ++attempt) {
      Status s = take_partition(tp.partition);
      if (s) break;
      spdlog::warn("taking partition {}: {} (retrying)", tp.partition, s.to_string());
      sleep_ms(std::min<int64_t>(1000, 50 << std::min(attempt, 5)));
    }
  }
  ready_.store(true);
}

void Application::on_revoked(const std::vector<kafka::TopicPartition>& parts) {
  maybe_commit(true);
  for (const auto& tp : parts) {
    if (tp.topic == events_topic_) {
      partitions_.erase(tp.partition);
      spdlog::info("released events partition {}", tp.partition);
    }
  }
}

Status Application::take_partition(int32_t p) {
  auto epoch = store_->bump_epoch(p);
  if (!epoch) return epoch.status();
  auto applied = store_->applied_offset(p);
  if (!applied) return applied.status();
  auto ids = store_->active_runs(p);
  if (!ids) return ids.status();
  auto loaded = store_->load_runs(*ids);
  if (!loaded) return loaded.status();
  Partition part;
  part.epoch = *epoch;
  part.applied = *applied;
  std::size_t republished = 0;
  std::vector<LockOp> reask;
  for (auto& lr : *loaded) {
    if (ended(lr.state.status)) continue;
    republished += lr.outbox.size();
    republish_outbox(lr.outbox);
    // A lock request the previous owner stored but may not have sent: ask
    // again (idempotent: the same holder is granted again or stays queued).
    for (const auto& [inst, ss] : lr.state.steps) {
      if (ss.status != StepStatus::kWaitingLock) continue;
      auto wf = registry_.find(lr.state.workflow, lr.state.version);
      const workflow::Step* step = wf ? wf->find_step(step_of(inst)) : nullptr;
      if (step) reask.push_back({"acquire", lr.state.record_key, Engine::lock_holder(lr.state.run_id, inst),
                                 Engine::lock_lease_ms(*step)});
    }
    std::string id = lr.state.run_id;
    part.runs.emplace(std::move(id), std::move(lr.state));
  }
  spdlog::info("owning events partition {} (epoch {}, applied offset {}, {} runs in flight, {} tasks republished)", p,
               part.epoch, part.applied, part.runs.size(), republished);
  partitions_[p] = std::move(part);
  run_locks(reask);
  return Status::ok();
}

void Application::run_locks(const std::vector<LockOp>& ops) {
  if (ops.empty()) return;
  auto grants = store_->run_locks(ops, now_unix_ms());
  if (!grants) {
    // A lost acquire is asked again on the next takeover; a lost release ends
    // with the lease (expire_locks).
    spdlog::warn("record locks: {}", grants.status().to_string());
    return;
  }
  send_grants(*grants);
}

void Application::send_grants(const std::vector<RunStore::LockGrant>& grants) {
  for (const auto& g : grants) {
    auto bar = g.holder.find('|');
    if (g.holder.empty() || bar == std::string::npos) continue;
    baton::v1::RunEvent ev;
    ev.set_run_id(g.holder.substr(0, bar));
    ev.set_event_id(random_id());
    ev.set_produced_unix_ms(now_unix_ms());
    ev.mutable_lock_granted()->set_step(g.holder.substr(bar + 1));
    ev.mutable_lock_granted()->set_token(g.token);
    Status s = producer_->produce(events_topic_, ev.run_id(), ev.SerializeAsString());
    if (!s) spdlog::warn("lock grant for {}: {} (the lease expires and passes it on)", g.holder, s.to_string());
  }
}

void Application::expire_locks() {
  auto grants = store_->expire_locks(now_unix_ms(), 256);
  if (!grants) {
    spdlog::warn("expiring record locks: {}", grants.status().to_string());
    return;
  }
  send_grants(*grants);
}

void Application::process_batch(std::vector<kafka::Message>& msgs) {
  std::vector<kafka::Message*> events;
  std::vector<kafka::Message*> triggers;
  events.reserve(msgs.size());
  for (auto& m : msgs) {
    if (m.topic == events_topic_) {
      events.push_back(&m);
    } else if (m.topic == triggers_topic_) {
      triggers.push_back(&m);
    }
  }
  if (!triggers.empty()) handle_triggers(triggers);
  for (int attempt = 0; !events.empty() && !stop_; ++attempt) {
    if (apply_events(events)) break;
    sleep_ms(std::min<int64_t>(1000, 50 << std::min(attempt, 5)));
  }
}

void Application::to_dlq(const kafka::Message& m, const std::string& error) {
  spdlog::warn("to DLQ: {}[{}]@{}: {}", m.topic, m.partition, m.offset, error);
  Status s = kafka::send_to_dlq(*producer_, opts_.ns, m, error);
  if (!s) spdlog::error("DLQ produce failed: {}", s.to_string());
}

void Application::handle_triggers(std::vector<kafka::Message*>& triggers) {
  std::size_t produced = 0;
  for (kafka::Message* m : triggers) {
    auto& commit = to_commit_[m->topic][m->partition];
    baton::v1::Trigger tr;
    if (m->payload.size() > limits::kMaxMessageBytes) {
      to_dlq(*m, "trigger exceeds " + std::to_string(limits::kMaxMessageBytes) + " bytes");
    } else if (!tr.ParseFromString(m->payload) || tr.workflow().empty()) {
      to_dlq(*m, "not a baton.v1.Trigger (or no workflow)");
    } else if (auto wf = registry_.find(tr.workflow(), tr.version()); !wf) {
      to_dlq(*m, "unknown workflow '" + tr.workflow() + "' version " + std::to_string(tr.version()));
    } else if (auto input = parse_json_object(tr.input_json().empty() ? "{}" : tr.input_json(),
                                              limits::kMaxMessageBytes);
               !input) {
      to_dlq(*m, "trigger input: " + input.status().message());
    } else {
      // A dedupe template that cannot be rendered (a missing field) does not
      // lose the trigger: the message's own coordinates still make its
      // redelivery idempotent, and the run reports what is missing.
      auto key = start_dedupe_key(*wf, *input, tr.dedupe_key());
      std::string dedupe = key ? std::move(key).value() : std::string();
      if (dedupe.empty())
        dedupe = "kafka:" + m->topic + ":" + std::to_string(m->partition) + ":" + std::to_string(m->offset);
      baton::v1::RunEvent ev = make_start_event(*wf, tr.input_json().empty() ? "{}" : tr.input_json(), dedupe,
                                                tr.source().empty() ? "trigger" : "trigger:" + tr.source());
      const std::string& run_id = ev.run_id();
      Status ps = producer_->produce(events_topic_, run_id, ev.SerializeAsString());
      if (!ps) {
        spdlog::error("trigger -> events: {}", ps.to_string());
        return;  // not committed: redelivered
      }
      ++produced;
    }
    commit = m->offset + 1;
  }
  if (produced > 0) {
    Status f = producer_->flush(10000);
    if (!f) {
      // Do not commit the triggers: they come back and dedupe to the same runs.
      spdlog::error("flushing started runs: {}", f.to_string());
      to_commit_.erase(triggers_topic_);
    }
  }
}

bool Application::apply_events(std::vector<kafka::Message*>& events) {
  const int64_t now = now_unix_ms();
  struct Item {
    kafka::Message* m;
    int32_t p;
    baton::v1::RunEvent ev;
    RunState* st = nullptr;
    const nlohmann::json* record = nullptr;  // for conditions reading `record.`
    int write_index = -1;
    Transition t;
    bool queued = false;
  };
  std::vector<Item> items;
  items.reserve(events.size());
  std::unordered_map<int32_t, int64_t> last_offset;
  for (kafka::Message* m : events) {
    auto pit = partitions_.find(m->partition);
    if (pit == partitions_.end()) continue;  // not (or no longer) ours
    last_offset[m->partition] = m->offset;
    if (m->offset <= pit->second.applied) continue;
    Item it{m, m->partition, {}, nullptr, nullptr, -1, {}, false};
    if (m->payload.size() > limits::kMaxMessageBytes) {
      to_dlq(*m, "event exceeds " + std::to_string(limits::kMaxMessageBytes) + " bytes");
      continue;
    }
    if (!it.ev.ParseFromString(m->payload) || it.ev.run_id().empty() ||
        it.ev.body_case() == baton::v1::RunEvent::BODY_NOT_SET) {
      to_dlq(*m, "not a baton.v1.RunEvent (or no run_id/body)");
      continue;
    }
    items.push_back(std::move(it));
  }

  // Runs not cached (a late result for a finished run, or after a failure):
  // load them in one pipeline.
  std::vector<std::string> missing;
  std::unordered_set<std::string> seen;
  std::unordered_set<std::string> acted_on;  // operator actions: these runs are loaded even in the exception queue
  for (auto& it : items) {
    if (it.ev.has_started()) continue;
    if (it.ev.has_operator_()) acted_on.insert(it.ev.run_id());
    auto& runs = partitions_[it.p].runs;
    if (!runs.count(it.ev.run_id()) && seen.insert(it.ev.run_id()).second) missing.push_back(it.ev.run_id());
  }
  if (!missing.empty()) {
    auto loaded = store_->load_runs(missing);
    if (!loaded) {
      spdlog::warn("loading runs: {}", loaded.status().to_string());
      return false;
    }
    for (auto& lr : *loaded) {
      // Finished: late events are ignored, but an operator may act on a run in the exception queue.
      if (ended(lr.state.status) && !(lr.state.status == RunStatus::kException && acted_on.count(lr.state.run_id)))
        continue;
      auto pit = partitions_.find(lr.state.partition);
      if (pit == partitions_.end()) continue;
      republish_outbox(lr.outbox);
      std::string id = lr.state.run_id;
      pit->second.runs.emplace(std::move(id), std::move(lr.state));
    }
  }

  // Phase 1: record writes (their own hash slot), pipelined.
  std::vector<RecordWriteRequest> writes;
  for (auto& it : items) {
    auto& runs = partitions_[it.p].runs;
    auto rit = runs.find(it.ev.run_id());
    if (rit != runs.end()) it.st = &rit->second;
    if (!it.st || (!it.ev.has_step_result() && !it.ev.has_operator_() && !it.ev.has_decision())) continue;
    auto wf = registry_.find(it.st->workflow, it.st->version);
    if (!wf) continue;
    std::optional<RecordWriteRequest> req;
    if (it.ev.has_operator_()) {
      // A resolve writes the manual output's fields at the record's current
      // version (rare: one extra round trip, only for operator actions).
      if (it.ev.operator_().kind() != baton::v1::OperatorAction::RESOLVE || it.st->record_key.empty()) continue;
      auto v = store_->client().command({"HGET", keys::record(opts_.ns, it.st->record_key), "_v"});
      if (!v) {
        spdlog::warn("reading record version: {}", v.status().to_string());
        return false;
      }
      int64_t version = v->is_nil() ? 0 : std::strtoll(v->str.c_str(), nullptr, 10);
      req = engine_.record_write_for_operator(*wf, *it.st, it.ev.operator_(), it.ev.event_id(), version);
    } else if (it.ev.has_decision()) {
      req = engine_.record_write_for_decision(*wf, *it.st, it.ev.decision());
    } else {
      req = engine_.record_write_for(*wf, *it.st, it.ev.step_result());
    }
    if (!req) continue;
    it.write_index = static_cast<int>(writes.size());
    store_->append_record_write(*req);
    writes.push_back(std::move(*req));
  }
  std::vector<RecordWriteOutcome> outcomes;
  if (!writes.empty()) {
    auto r = store_->exec_record_writes(writes);
    if (!r) {
      spdlog::warn("record writes: {}", r.status().to_string());
      return false;
    }
    outcomes = std::move(r).value();
  }

  // Conditions that read `record.` see the record as it is after the writes
  // above: one pipelined HGETALL per such result.
  std::vector<std::pair<Item*, nlohmann::json>> records;
  for (auto& it : items) {
    if (!it.ev.has_step_result() || !it.st || it.st->record_key.empty()) continue;
    auto wf = registry_.find(it.st->workflow, it.st->version);
    if (!wf || !Engine::reads_record(*wf)) continue;
    store_->client().append({"HGETALL", keys::record(opts_.ns, it.st->record_key)});
    records.emplace_back(&it, nlohmann::json::object());
  }
  if (!records.empty()) {
    auto replies = store_->client().exec();
    if (!replies) {
      spdlog::warn("reading records: {}", replies.status().to_string());
      return false;
    }
    for (std::size_t i = 0; i < records.size() && i < replies->size(); ++i) {
      const auto& el = (*replies)[i].elements;
      for (std::size_t k = 0; k + 1 < el.size(); k += 2) {
        if (el[k].str.empty() || el[k].str[0] == '_') continue;  // bookkeeping (_v, writers)
        auto v = parse_json(el[k + 1].str, limits::kMaxMessageBytes);
        records[i].second[el[k].str] = v ? std::move(v).value() : nlohmann::json(el[k + 1].str);
      }
      records[i].first->record = &records[i].second;
    }
  }

  // Daily budgets: today's spend of the workflows concerned.
  {
    // One registry lookup per distinct workflow of the batch, not per event.
    std::vector<std::string> names;
    std::unordered_set<std::string> checked;
    for (auto& it : items) {
      const std::string* name = it.st ? &it.st->workflow : it.ev.has_started() ? &it.ev.started().workflow() : nullptr;
      uint32_t version = it.st ? it.st->version : it.ev.has_started() ? it.ev.started().version() : 0;
      if (!name || name->empty() || !checked.insert(*name + "@" + std::to_string(version)).second) continue;
      auto wf = registry_.find(*name, version);
      if (wf && wf->budget && wf->budget->daily_max_cost_micros &&
          std::find(names.begin(), names.end(), *name) == names.end())
        names.push_back(*name);
    }
    if (!names.empty() && !load_daily_spend(names)) return false;
  }
  std::unordered_map<std::string, uint64_t> spent;
  std::vector<std::string> orphan_grants;  // "<run>|<instance>" granted a lock after its run ended
  std::vector<LockOp> lock_ops;

  // Phase 2: transitions, one baton_apply each, pipelined.
  std::vector<Item*> queued;
  std::unordered_set<std::string> touched;
  for (auto& it : items) {
    Partition& part = partitions_[it.p];
    const std::string& run_id = it.ev.run_id();
    if (it.st) {
      auto d = daily_spend_.find(it.st->workflow);
      it.st->daily_spent_micros = d == daily_spend_.end() ? 0 : d->second;
    }
    if (it.ev.has_started()) {
      if (part.runs.count(run_id)) continue;  // duplicate start of an in-flight run
      const auto& s = it.ev.started();
      auto wf = registry_.find(s.workflow(), s.version());
      RunState& st = part.runs[run_id];
      it.st = &st;
      if (auto d = daily_spend_.find(s.workflow()); d != daily_spend_.end()) st.daily_spent_micros = d->second;
      it.t = engine_.start(wf.get(), run_id, it.p, s, now, st);
    } else if (!it.st) {
      if (it.ev.has_lock_granted()) orphan_grants.push_back(it.ev.run_id() + "|" + it.ev.lock_granted().step());
      continue;  // unknown or finished run
    } else if (it.ev.has_step_result()) {
      auto wf = registry_.find(it.st->workflow, it.st->version);
      if (!wf) {
        spdlog::error("run {}: workflow {} v{} is not loaded; result ignored", run_id, it.st->workflow,
                      it.st->version);
        continue;
      }
      RecordWriteOutcome none;
      const RecordWriteOutcome& w = it.write_index >= 0 ? outcomes[it.write_index] : none;
      it.t = engine_.on_result(*wf, *it.st, it.ev.step_result(), w, now, it.record);
    } else if (it.ev.has_timer()) {
      auto wf = registry_.find(it.st->workflow, it.st->version);
      if (!wf) continue;
      Timer tm{it.ev.timer().kind() == baton::v1::TimerFired::RETRY ? TimerKind::kRetry : TimerKind::kTimeout,
               it.ev.timer().step_id(), it.ev.timer().attempt(), now};
      it.t = engine_.on_timer(*wf, *it.st, tm, now);
    } else if (it.ev.has_operator_()) {
      auto wf = registry_.find(it.st->workflow, it.st->version);
      if (!wf) continue;
      RecordWriteOutcome none;
      const RecordWriteOutcome& w = it.write_index >= 0 ? outcomes[it.write_index] : none;
      it.t = engine_.on_operator(*wf, *it.st, it.ev.operator_(), now, w);
    } else if (it.ev.has_lock_granted()) {
      auto wf = registry_.find(it.st->workflow, it.st->version);
      if (!wf) continue;
      it.t = engine_.on_lock_granted(*wf, *it.st, it.ev.lock_granted(), now);
    } else if (it.ev.has_decision()) {
      auto wf = registry_.find(it.st->workflow, it.st->version);
      if (!wf) continue;
      RecordWriteOutcome none;
      const RecordWriteOutcome& w = it.write_index >= 0 ? outcomes[it.write_index] : none;
      it.t = engine_.on_decision(*wf, *it.st, it.ev.decision(), now, w);
    }
    if (!it.t.changed) continue;
    if (it.t.spent_micros) {
      spent[it.st->workflow] += it.t.spent_micros;
      daily_spend_[it.st->workflow] += it.t.spent_micros;
    }
    if (auto wf = registry_.find(it.st->workflow, it.st->version)) Engine::redact(*wf, it.t);
    store_->append_apply(*it.st, it.t, part.epoch, it.m->offset, now);
    it.queued = true;
    touched.insert(run_id);
    queued.push_back(&it);
  }
  auto replies = store_->exec_applies();
  if (!replies) {
    spdlog::warn("applying {} transitions: {}", queued.size(), replies.status().to_string());
    // Our cached copies may be ahead of Redis: drop them, they reload.
    for (auto& it : items)
      if (auto pit = partitions_.find(it.p); pit != partitions_.end()) pit->second.runs.erase(it.ev.run_id());
    return false;
  }
  for (std::size_t i = 0; i < queued.size(); ++i) {
    Item& it = *queued[i];
    auto pit = partitions_.find(it.p);
    if (pit == partitions_.end()) continue;  // fenced earlier in this batch
    const std::string run_id = it.ev.run_id();
    switch ((*replies)[i]) {
      case ApplyReply::kOk:
        publish_all(it.t);
        export_audit(run_id, it.t);
        lock_ops.insert(lock_ops.end(), it.t.locks.begin(), it.t.locks.end());
        // By id, not through it.st: an earlier item of this batch for the same
        // run may have ended it and erased it already (it.st then dangles;
        // heap-use-after-free found by ASan in the parallel examples' e2e tests).
        if (auto rit = pit->second.runs.find(run_id); rit != pit->second.runs.end() && ended(rit->second.status))
          pit->second.runs.erase(rit);
        break;
      case ApplyReply::kFenced:
        spdlog::warn("events partition {}: fenced by a newer owner; releasing it", it.p);
        partitions_.erase(pit);
        last_offset.erase(it.p);
        break;
      case ApplyReply::kExists:
      case ApplyReply::kDup:
      case ApplyReply::kMissing:
      case ApplyReply::kError:
        reload_run(it.p, run_id);
        break;
    }
  }
  if (!spent.empty()) add_daily_spend(spent);
  if (!orphan_grants.empty()) {
    // The record key of an ended run's grant: from its run hash.
    for (const auto& h : orphan_grants) store_->client().append({"HGET", keys::run(opts_.ns, h.substr(0, h.find('|'))), "record"});
    auto recs = store_->client().exec();
    if (recs) {
      for (std::size_t i = 0; i < orphan_grants.size() && i < recs->size(); ++i)
        if (!(*recs)[i].is_nil() && !(*recs)[i].str.empty())
          lock_ops.push_back({"release", (*recs)[i].str, orphan_grants[i], 0});
    }
  }
  run_locks(lock_ops);
  for (const auto& [p, off] : last_offset) {
    auto pit = partitions_.find(p);
    if (pit == partitions_.end()) continue;
    if (off > pit->second.applied) pit->second.applied = off;
    to_commit_[events_topic_][p] = off + 1;
  }
  return true;
}

namespace {
std::string utc_day(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}
}  // namespace

bool Application::load_daily_spend(const std::vector<std::string>& names) {
  const std::string day = utc_day(now_unix_ms());
  for (const auto& n : names) store_->client().append({"GET", keys::daily_spend(opts_.ns, n, day)});
  auto replies = store_->client().exec();
  if (!replies) {
    spdlog::warn("reading daily spend: {}", replies.status().to_string());
    return false;
  }
  for (std::size_t i = 0; i < names.size() && i < replies->size(); ++i)
    daily_spend_[names[i]] = (*replies)[i].is_nil() ? 0 : std::strtoull((*replies)[i].str.c_str(), nullptr, 10);
  return true;
}

void Application::add_daily_spend(const std::unordered_map<std::string, uint64_t>& spent) {
  // After the transitions are stored: a crash in between under-counts a
  // little (documented), it never counts an event twice.
  const std::string day = utc_day(now_unix_ms());
  for (const auto& [name, micros] : spent) {
    std::string key = keys::daily_spend(opts_.ns, name, day);
    store_->client().append({"INCRBY", key, std::to_string(micros)});
    store_->client().append({"EXPIRE", key, "259200"});
  }
  auto r = store_->client().exec();
  if (!r) spdlog::warn("adding daily spend: {}", r.status().to_string());
}

void Application::reload_run(int32_t partition, const std::string& run_id) {
  auto pit = partitions_.find(partition);
  if (pit == partitions_.end()) return;
  pit->second.runs.erase(run_id);
  auto loaded = store_->load_runs({run_id});
  if (!loaded) return;  // loaded lazily by the next event or timer
  for (auto& lr : *loaded) {
    if (ended(lr.state.status)) continue;
    republish_outbox(lr.outbox);
    pit->second.runs.emplace(run_id, std::move(lr.state));
  }
}

void Application::scan_schedules() {
  // The latest version of each workflow owns its schedule.
  std::map<std::string, workflow::WorkflowPtr> latest;
  for (auto& wf : registry_.all()) {
    auto& cur = latest[wf->name];
    if (!cur || cur->version < wf->version) cur = wf;
  }
  const int64_t now = now_unix_ms();
  for (const auto& [name, wf] : latest) {
    if (!wf->schedule) continue;
    const std::string key = keys::schedule_last(opts_.ns, name);
    auto last = store_->client().command({"GET", key});
    if (!last) {
      spdlog::warn("schedule {}: {}", name, last.status().to_string());
      return;
    }
    if (last->is_nil()) {
      // First sight of this schedule: fire from now on, no backfill.
      (void)store_->client().command({"SET", key, std::to_string(now), "NX"});
      continue;
    }
    int64_t from = 0;
    const std::string text = last->str;
    std::from_chars(text.data(), text.data() + text.size(), from);
    int64_t fire = wf->schedule->next_after(from);
    if (fire < 0 || fire > now) continue;
    // After an outage only the latest missed fire time runs (as a cron job
    // with a starting deadline would); the older ones are logged.
    int skipped = 0;
    for (int i = 0; i < 10000; ++i) {
      int64_t n = wf->schedule->next_after(fire);
      if (n < 0 || n > now) break;
      fire = n;
      ++skipped;
    }
    if (skipped > 0) spdlog::warn("schedule {}: {} missed fire times skipped; starting the latest", name, skipped);
    nlohmann::json input = wf->schedule_input;
    input["scheduled_at_ms"] = fire;
    std::string dedupe = "schedule:" + name + ":" + std::to_string(fire);
    baton::v1::RunEvent ev = make_start_event(*wf, input.dump(), dedupe, "schedule");
    Status ps = producer_->produce(events_topic_, ev.run_id(), ev.SerializeAsString());
    if (ps) ps = producer_->flush(5000);
    if (!ps) {
      spdlog::error("schedule {}: starting the run of {}: {}", name, fire, ps.to_string());
      continue;  // retried next scan: the same fire time maps to the same run
    }
    spdlog::info("schedule {}: started run {} for fire time {}", name, ev.run_id(), fire);
    // Another replica may have moved it further already: never move it back.
    auto cur = store_->client().command({"GET", key});
    int64_t seen = 0;
    if (cur && !cur->is_nil()) std::from_chars(cur->str.data(), cur->str.data() + cur->str.size(), seen);
    if (seen < fire) (void)store_->client().command({"SET", key, std::to_string(fire)});
  }
}

void Application::scan_timers() {
  std::vector<int32_t> parts;
  parts.reserve(partitions_.size());
  for (const auto& [p, _] : partitions_) parts.push_back(p);
  if (parts.empty()) return;
  const int64_t now = now_unix_ms();
  auto due = store_->due_timers(parts, now, 512);
  if (!due) {
    spdlog::warn("timers: {}", due.status().to_string());
    return;
  }
  if (due->empty()) return;
  // A timeout and a result of the same attempt race for the attempt's record
  // write; the write's memo key ({rec}:w:<run>:<step>:<attempt>, in the
  // record's slot) decides. Before timing out an attempt of a step that
  // writes, the owner sets that memo to a COLLISION answer if it is absent: a
  // late write of the attempt (a zombie owner's, or a slow result's) then
  // writes nothing. If the memo already says OK, the result won: a previous
  // owner died or stalled between the record write and the run's transition,
  // and the result is on the partition past the applied offset and comes
  // again. Timing the attempt out would leave the write in the record with
  // no audit entry (found by the chaos suite, seed 11), so such a timeout
  // waits (it stays due and is looked at again next scan), bounded in case
  // the result never comes.
  std::unordered_set<std::string> waiting;
  {
    std::vector<std::string> memo_keys, members;
    std::vector<int64_t> wait_until;
    for (const auto& [p, member] : *due) {
      std::string run_id, step;
      TimerKind kind;
      uint32_t attempt = 0;
      if (!parse_timer_member(member, run_id, kind, step, attempt) || kind != TimerKind::kTimeout) continue;
      auto pit = partitions_.find(p);
      if (pit == partitions_.end()) continue;
      auto rit = pit->second.runs.find(run_id);
      if (rit == pit->second.runs.end() || rit->second.record_key.empty()) continue;
      auto sit = rit->second.steps.find(step);
      if (sit == rit->second.steps.end() || sit->second.status != StepStatus::kRunning ||
          sit->second.attempt != attempt)
        continue;
      auto wf = registry_.find(rit->second.workflow, rit->second.version);
      const workflow::Step* st = wf ? wf->find_step(step_of(step)) : nullptr;
      if (!st || st->writes.empty()) continue;
      memo_keys.push_back(keys::record_write_memo(opts_.ns, rit->second.record_key,
                                                  run_id + ":" + step + ":" + std::to_string(attempt)));
      members.push_back(member);
      wait_until.push_back(sit->second.dispatched_ms + 3 * st->timeout_ms + 30000);
    }
    if (!memo_keys.empty()) {
      redis::Client& c = store_->client();
      for (const auto& k : memo_keys) {
        c.append({"SET", k, "[\"COLLISION\",0]", "NX", "EX", "604800"});  // as baton_record_write memoises
        c.append({"GET", k});
      }
      auto replies = c.exec();
      if (!replies || replies->size() != 2 * memo_keys.size()) {
        // Not decided: leave these timeouts due for the next scan.
        for (const auto& m : members) waiting.insert(m);
      } else {
        for (std::size_t i = 0; i < memo_keys.size(); ++i) {
          const auto& got = (*replies)[2 * i + 1];
          if (got.is_string() && got.str.rfind("[\"OK\"", 0) == 0 && now <= wait_until[i]) waiting.insert(members[i]);
        }
      }
    }
  }
  struct Fired {
    int32_t p;
    std::string run_id;
    Transition t;
  };
  std::vector<Fired> fired;
  std::unordered_map<int32_t, std::vector<std::string>> orphans;
  for (const auto& [p, member] : *due) {
    if (waiting.count(member)) continue;
    std::string run_id, step;
    TimerKind kind;
    uint32_t attempt = 0;
    Partition& part = partitions_[p];
    auto rit = part.runs.end();
    if (parse_timer_member(member, run_id, kind, step, attempt)) rit = part.runs.find(run_id);
    if (rit == part.runs.end()) {
      orphans[p].push_back(member);
      continue;
    }
    auto wf = registry_.find(rit->second.workflow, rit->second.version);
    if (!wf) {
      orphans[p].push_back(member);
      continue;
    }
    if (auto d = daily_spend_.find(rit->second.workflow); d != daily_spend_.end())
      rit->second.daily_spent_micros = d->second;
    Transition t = engine_.on_timer(*wf, rit->second, Timer{kind, step, attempt, now}, now);
    Engine::redact(*wf, t);
    store_->append_apply(rit->second, t, part.epoch, /*offset=*/-1, now);
    fired.push_back({p, run_id, std::move(t)});
  }
  // Orphans are dropped after the applies ran: drop_timers is a command on the
  // same pipelined client, and ran first it sent the queued applies and took
  // their replies, so exec_applies returned none and the loop below read past
  // the end of the empty vector (found by UBSan in the chaos soak).
  auto drop_orphans = [&] {
    for (const auto& [p, members] : orphans) {
      Status s = store_->drop_timers(p, members);
      if (!s) spdlog::warn("dropping timers: {}", s.to_string());
    }
  };
  if (fired.empty()) return drop_orphans();
  auto replies = store_->exec_applies();
  drop_orphans();
  if (!replies) {
    spdlog::warn("applying {} timers: {}", fired.size(), replies.status().to_string());
    for (const auto& f : fired)
      if (auto pit = partitions_.find(f.p); pit != partitions_.end()) pit->second.runs.erase(f.run_id);
    return;
  }
  for (std::size_t i = 0; i < fired.size(); ++i) {
    auto pit = partitions_.find(fired[i].p);
    if (pit == partitions_.end()) continue;
    switch ((*replies)[i]) {
      case ApplyReply::kOk:
        publish_all(fired[i].t);
        export_audit(fired[i].run_id, fired[i].t);
        run_locks(fired[i].t.locks);
        if (!fired[i].t.ending.empty()) pit->second.runs.erase(fired[i].run_id);
        break;
      case ApplyReply::kFenced:
        spdlog::warn("events partition {}: fenced by a newer owner; releasing it", fired[i].p);
        partitions_.erase(pit);
        break;
      default:
        reload_run(fired[i].p, fired[i].run_id);
        break;
    }
  }
}

void Application::publish_all(const Transition& t) {
  for (std::size_t i = 0; i < t.dispatch.size(); ++i) publish(t.dispatch[i], t.dispatch_bytes[i]);
}

void Application::export_audit(const std::string& run_id, const Transition& t) {
  // One message per transition (not per entry): the export is a fraction of
  // the Kafka traffic of a step, not a multiple of it.
  if (t.audit.empty()) return;
  nlohmann::json entries = nlohmann::json::array();
  for (const auto& a : t.audit)
    entries.push_back({{"kind", a.kind}, {"actor", a.actor}, {"at_ms", a.at_ms}, {"detail", a.detail}});
  Status s = audit_producer_->produce(audit_topic_, run_id, nlohmann::json{{"run_id", run_id}, {"entries", entries}}.dump());
  if (!s) spdlog::debug("audit export of run {}: {}", run_id, s.to_string());
}

void Application::publish(const baton::v1::Task& task, const std::string& bytes) {
  std::string run_id = task.run_id();
  std::string field = outbox_field(task.step_id(), task.attempt());
  Status s = producer_->produce(
      keys::tasks_topic(opts_.ns, task.role()), task.run_id(), bytes,
      [this, run_id = std::move(run_id), field = std::move(field)](const Status& st) mutable {
        if (!st) return;  // stays in the outbox; the step's timeout recovers it
        std::lock_guard<std::mutex> lock(acks_mu_);
        acks_.emplace_back(std::move(run_id), std::move(field));
      });
  if (!s) spdlog::warn("run {} step {}: publish failed: {}", task.run_id(), task.step_id(), s.to_string());
}

void Application::republish_outbox(const std::vector<std::pair<std::string, std::string>>& outbox) {
  for (const auto& [field, bytes] : outbox) {
    baton::v1::Task task;
    if (!task.ParseFromString(bytes)) {
      spdlog::error("outbox entry {} is not a Task; skipped", field);
      continue;
    }
    publish(task, bytes);
  }
}

void Application::drain_acks() {
  std::vector<std::pair<std::string, std::string>> acks;
  {
    std::lock_guard<std::mutex> lock(acks_mu_);
    acks.swap(acks_);
  }
  if (acks.empty()) return;
  Status s = store_->ack_outbox(acks);
  // A lost ack only leaves a task in the outbox: it is republished on reload
  // and answered from the worker's done cache.
  if (!s) spdlog::warn("outbox acks: {}", s.to_string());
}

void Application::maybe_commit(bool force) {
  int64_t now = now_unix_ms();
  if (!force && now - last_commit_ms_ < 200) return;
  last_commit_ms_ = now;
  std::vector<kafka::TopicPartition> offsets;
  for (const auto& [topic, parts] : to_commit_)
    for (const auto& [p, off] : parts) offsets.push_back({topic, p, off});
  to_commit_.clear();
  if (offsets.empty()) return;
  Status s = consumer_->commit(offsets, /*async=*/!force);
  if (!s) spdlog::warn("commit: {}", s.to_string());
}

}  // namespace baton::coordinator
