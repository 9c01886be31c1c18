#include "workers/runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "common/util/keys.h"
#include "common/util/ids.h"
#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "workers/thread_pool.h"

namespace baton::worker {

using Clock = std::chrono::steady_clock;

struct Runtime::Pool {
  explicit Pool(int n) : threads(n) {}
  ThreadPool threads;
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  Clock::time_point stop_at{};
};

struct Runtime::Item {
  kafka::Message* msg = nullptr;
  enum Kind { kDlq, kRun, kCached, kDuplicate } kind = kRun;
  v1::Task task;
  std::string done_key;
  std::string running_key;  // poison detection: agent starts of this attempt
  std::string dlq_error;
  std::unique_ptr<kafka::Message> dlq_copy;  // an oversized message, truncated for the DLQ
  int record_reply = -1;  // index of the HGETALL reply, -1: no record
  std::size_t dup_of = 0; // kDuplicate: the item that answers it
  Answer answer;
  bool delivered = false;
};

struct Runtime::Batch {
  std::vector<Item> items;
  std::vector<redis::Reply> replies;
  std::vector<std::size_t> to_run;
};

namespace {

// Adds the microseconds since `since` to `counter` and restarts `since`.
void lap(std::atomic<uint64_t>& counter, Clock::time_point& since) {
  auto now = Clock::now();
  counter.fetch_add(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - since).count()),
                    std::memory_order_relaxed);
  since = now;
}

const char* status_text(v1::StepResult::Status s) {
  switch (s) {
    case v1::StepResult::OK:
      return "ok";
    case v1::StepResult::RETRYABLE:
      return "retryable";
    case v1::StepResult::FAILED:
      return "failed";
    case v1::StepResult::NEEDS_REVIEW:
      return "needs_review";
    default:
      return "unspecified";
  }
}

}  // namespace

Runtime::Runtime(RuntimeOptions options, std::shared_ptr<const Executor> executor,
                 std::unique_ptr<kafka::Consumer> consumer, std::unique_ptr<kafka::Producer> producer,
                 std::unique_ptr<redis::Client> redis)
    : opts_(std::move(options)),
      executor_(std::move(executor)),
      consumer_(std::move(consumer)),
      producer_(std::move(producer)),
      redis_(std::move(redis)),
      events_topic_(keys::events_topic(opts_.ns)),
      pool_(std::make_unique<Pool>(opts_.concurrency)) {
  opts_.max_batch = std::max<std::size_t>(opts_.max_batch, 1);
}

Runtime::~Runtime() = default;

void Runtime::stop() {
  {
    std::lock_guard<std::mutex> lock(pool_->stop_mu);
    if (!stop_.load()) pool_->stop_at = Clock::now();
    stop_.store(true);
  }
  pool_->stop_cv.notify_all();
}

void Runtime::on_revoked(const std::vector<kafka::TopicPartition>& partitions) {
  std::vector<kafka::TopicPartition> mine;
  for (const auto& p : partitions) {
    auto pos = std::find_if(last_commit_.begin(), last_commit_.end(), [&](const kafka::TopicPartition& x) {
      return x.topic == p.topic && x.partition == p.partition;
    });
    if (pos == last_commit_.end()) continue;
    mine.push_back(*pos);
    last_commit_.erase(pos);
  }
  if (mine.empty()) return;
  if (Status s = consumer_->commit(mine, /*async=*/false); !s) {
    spdlog::warn("role={} commit on revoke failed: {}", opts_.role, s.to_string());
  }
}

bool Runtime::backoff(int& ms) {
  std::unique_lock<std::mutex> lock(pool_->stop_mu);
  pool_->stop_cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stop_.load(); });
  ms = std::min(ms * 2, opts_.max_backoff_ms);
  return !stop_.load();
}

Status Runtime::run() {
  const std::string topic = keys::tasks_topic(opts_.ns, opts_.role);
  if (Status s = consumer_->subscribe({topic}); !s) return s;
  // So that the first answers are not held back by a metadata round trip.
  if (Status s = producer_->warm_up({events_topic_, keys::dlq_topic(opts_.ns)}, 5000); !s) {
    spdlog::warn("role={} producer warm-up: {}", opts_.role, s.to_string());
  }
  spdlog::info("role={} serving {} as group {} with {} agent threads, batches of up to {}", opts_.role, topic,
               keys::worker_group(opts_.ns, opts_.role), opts_.concurrency, opts_.max_batch);

  Status result;
  std::vector<kafka::Message> messages;
  messages.reserve(opts_.max_batch);
  while (!stop_.load()) {
    messages.clear();
    auto t0 = Clock::now();
    Status s = consumer_->poll_batch(messages, opts_.max_batch, opts_.poll_timeout_ms);
    lap(stats_.poll_us, t0);
    if (!s) {
      spdlog::error("role={} consumer failed: {}", opts_.role, s.to_string());
      result = s;
      break;
    }
    if (messages.empty()) continue;
    if (!process(messages)) break;  // stopping with a batch not fully answered
  }

  // Everything answered so far is committed; async commits may still be in
  // flight, so commit the latest offsets once more, synchronously.
  if (!last_commit_.empty()) {
    if (Status s = consumer_->commit(last_commit_, /*async=*/false); !s) {
      spdlog::warn("role={} final commit failed: {}", opts_.role, s.to_string());
    }
    last_commit_.clear();  // close() reports the final revocation: nothing left to commit then
  }
  consumer_->close();
  if (Status s = producer_->flush(opts_.shutdown_grace_ms); !s) {
    spdlog::warn("role={} producer flush: {}", opts_.role, s.to_string());
  }
  spdlog::info("role={} stopped: {} messages, {} agent runs, {} cached answers, {} dead-lettered", opts_.role,
               stats_.messages.load(), stats_.executed.load(), stats_.cached.load(), stats_.dead_lettered.load());
  return result;
}

bool Runtime::process(std::vector<kafka::Message>& messages) {
  stats_.batches.fetch_add(1, std::memory_order_relaxed);
  stats_.messages.fetch_add(messages.size(), std::memory_order_relaxed);

  Batch b;
  b.items.resize(messages.size());
  std::unordered_map<std::string, std::size_t> first;  // done key -> first item in this batch
  for (std::size_t i = 0; i < messages.size(); ++i) {
    Item& it = b.items[i];
    it.msg = &messages[i];
    const std::string& payload = messages[i].payload;
    if (payload.size() > limits::kMaxMessageBytes) {
      // The DLQ has the same cap: keep the head of the payload so it can be looked at.
      constexpr std::size_t kKeep = 64 << 10;
      it.kind = Item::kDlq;
      it.dlq_error = "task of " + std::to_string(payload.size()) + " bytes exceeds the limit of " +
                     std::to_string(limits::kMaxMessageBytes) + " (payload truncated to " + std::to_string(kKeep) +
                     " bytes)";
      it.dlq_copy = std::make_unique<kafka::Message>(messages[i]);
      it.dlq_copy->payload.resize(kKeep);
    } else if (!it.task.ParseFromString(payload)) {
      it.kind = Item::kDlq;
      it.dlq_error = "payload is not a baton.v1.Task";
    } else if (it.task.run_id().empty() || it.task.step_id().empty() || it.task.attempt() == 0) {
      it.kind = Item::kDlq;
      it.dlq_error = "task lacks run_id, step_id or attempt";
    }
    if (it.kind == Item::kDlq) {
      spdlog::warn("role={} {}[{}]@{}: {} -> dead-letter queue", opts_.role, messages[i].topic,
                   messages[i].partition, messages[i].offset, it.dlq_error);
      continue;
    }
    it.done_key = keys::done(opts_.ns, it.task.run_id(), it.task.step_id(), it.task.attempt());
    if (opts_.poison_after > 0)
      it.running_key = keys::running(opts_.ns, it.task.run_id(), it.task.step_id(), it.task.attempt());
    auto [pos, inserted] = first.emplace(it.done_key, i);
    if (!inserted) {
      it.kind = Item::kDuplicate;
      it.dup_of = pos->second;
    }
  }

  auto t = Clock::now();
  if (!check_cache(b)) return false;
  lap(stats_.check_us, t);
  execute(b);
  lap(stats_.run_us, t);
  bool delivered = deliver(b);
  lap(stats_.deliver_us, t);
  if (!delivered) {
    commit(b, true);
    return false;
  }
  remember(b);
  lap(stats_.cache_us, t);
  commit(b, stopping());
  return true;
}

bool Runtime::check_cache(Batch& b) {
  int delay = 50;
  const std::string ttl = std::to_string(opts_.done_ttl_seconds);
  // Replies per task: GET done, [HGETALL record], [INCR running, EXPIRE running].
  auto stride = [](const Item& it) {
    return std::size_t{1} + (it.task.record().key().empty() ? 0 : 1) + (it.running_key.empty() ? 0 : 2);
  };
  while (true) {
    std::size_t n = 0;
    for (auto& it : b.items) {
      if (it.kind == Item::kDlq || it.kind == Item::kDuplicate) continue;
      redis_->append({"GET", it.done_key});
      if (!it.task.record().key().empty()) {
        std::string key = keys::record(opts_.ns, it.task.record().key());
        redis_->append({"HGETALL", key});
      }
      if (!it.running_key.empty()) {
        redis_->append({"INCR", it.running_key});
        redis_->append({"EXPIRE", it.running_key, ttl});
      }
      n += stride(it);
    }
    if (n == 0) return true;
    auto replies = redis_->exec();
    std::string problem;
    if (!replies) {
      problem = replies.status().to_string();
    } else if (replies->size() != n) {
      problem = "pipeline returned " + std::to_string(replies->size()) + " replies for " + std::to_string(n);
    } else {
      std::size_t k = 0;
      for (auto& it : b.items) {
        if (it.kind == Item::kDlq || it.kind == Item::kDuplicate) continue;
        const auto& r = (*replies)[k];
        if (r.is_error() || !(r.is_nil() || r.is_string())) {
          problem = "done-check of " + it.done_key + " failed: " + (r.is_error() ? r.str : "unexpected reply");
          break;
        }
        k += stride(it);
      }
    }
    if (problem.empty()) {
      b.replies = std::move(replies).value();
      break;
    }
    stats_.redis_retries.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("role={} Redis done-check of {} tasks failed ({}); retrying in {} ms", opts_.role, b.items.size(),
                 problem, delay);
    if (!backoff(delay)) return false;
  }

  std::size_t k = 0;
  for (std::size_t i = 0; i < b.items.size(); ++i) {
    Item& it = b.items[i];
    if (it.kind == Item::kDlq || it.kind == Item::kDuplicate) continue;
    redis::Reply& done = b.replies[k++];
    if (!it.task.record().key().empty()) it.record_reply = static_cast<int>(k++);
    int64_t starts = 0;
    if (!it.running_key.empty()) {
      const redis::Reply& incr = b.replies[k];
      if (incr.type == redis::Reply::Type::kInteger) starts = incr.integer;
      k += 2;
    }
    if (done.is_string()) {
      it.kind = Item::kCached;
      it.answer.bytes = std::move(done.str);
      stats_.cached.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("run_id={} step={} role={} attempt={} answered from done:", it.task.run_id(), it.task.step_id(),
                    opts_.role, it.task.attempt());
    } else if (starts > opts_.poison_after && opts_.poison_after > 0) {
      // Started `poison_after` times before and never answered: each start
      // ended with the worker's death. Answer instead of dying again.
      it.kind = Item::kRun;
      it.answer = executor_->reject(
          it.task, agent::errors::kPoisonTask,
          "the agent was started " + std::to_string(starts - 1) + " times for this attempt and its worker died "
          "each time before answering (--poison-after " + std::to_string(opts_.poison_after) + ")");
      stats_.poisoned.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("run_id={} step={} role={} attempt={} poison task: started {} times without an answer",
                   it.task.run_id(), it.task.step_id(), opts_.role, it.task.attempt(), starts - 1);
    } else {
      it.kind = Item::kRun;
      b.to_run.push_back(i);
    }
  }
  return load_missing_workflows(b);
}

bool Runtime::load_missing_workflows(Batch& b) {
  std::vector<std::pair<std::string, uint32_t>> wanted;
  const int64_t now = now_unix_ms();
  for (std::size_t i : b.to_run) {
    const auto& wf = b.items[i].task.workflow();
    if (wf.version() == 0 || executor_->knows(wf.name(), wf.version())) continue;
    if (std::find(wanted.begin(), wanted.end(), std::make_pair(wf.name(), wf.version())) != wanted.end()) continue;
    if (!executor_->claim_reload(wf.name(), wf.version(), now)) continue;
    wanted.emplace_back(wf.name(), wf.version());
  }
  if (wanted.empty()) return true;
  const std::string key = keys::workflows(opts_.ns);
  int delay = 50;
  Result<std::vector<redis::Reply>> replies = unavailable("not tried");
  for (int attempt = 0; attempt < 5; ++attempt) {
    for (const auto& [name, version] : wanted) redis_->append({"HGET", key, keys::workflow_field(name, version)});
    stats_.workflow_reloads.fetch_add(wanted.size(), std::memory_order_relaxed);
    replies = redis_->exec();
    if (replies && replies->size() == wanted.size()) break;
    stats_.redis_retries.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("role={} reading workflows from {} failed ({}); retrying in {} ms", opts_.role, key,
                 replies ? "short reply" : replies.status().to_string(), delay);
    if (!backoff(delay)) return false;
  }
  if (!replies || replies->size() != wanted.size()) return true;  // the tasks fail as unknown; retried upstream
  for (std::size_t k = 0; k < wanted.size(); ++k) {
    const auto& [name, version] = wanted[k];
    const redis::Reply& r = (*replies)[k];
    if (r.type != redis::Reply::Type::kString) {
      spdlog::warn("role={} workflow {}@{} is neither loaded nor applied", opts_.role, name, version);
      continue;
    }
    // "<applied>": the display name the coordinator's WorkflowStore gives applied workflows.
    auto wf = workflow::parse_workflow(r.str, "<applied>");
    if (!wf) {
      spdlog::warn("role={} applied workflow {}@{} does not parse: {}", opts_.role, name, version,
                   wf.status().message());
      continue;
    }
    if ((*wf)->name != name || (*wf)->version != version) {
      spdlog::warn("role={} applied workflow {}@{} defines {}@{}; ignored", opts_.role, name, version, (*wf)->name,
                   (*wf)->version);
      continue;
    }
    if (Status s = executor_->learn(std::move(wf).value()); !s)
      spdlog::warn("role={} applied workflow {}@{}: {}", opts_.role, name, version, s.message());
  }
  return true;
}

void Runtime::execute(Batch& b) {
  pool_->threads.for_each(b.to_run.size(), [&](std::size_t j) {
    Item& it = b.items[b.to_run[j]];
    try {
      RecordView record;
      if (it.record_reply >= 0) {
        auto decoded = decode_record(b.replies[static_cast<std::size_t>(it.record_reply)]);
        if (!decoded) {
          it.answer = executor_->reject(it.task, agent::errors::kBadRecord,
                                        "record " + it.task.record().key() + ": " + decoded.status().message());
          return;
        }
        record = std::move(decoded).value();
      }
      it.answer = executor_->answer(it.task, std::move(record));
    } catch (const std::exception& e) {  // e.g. bad_alloc: answer rather than terminate
      it.answer = executor_->reject(it.task, agent::errors::kAgentError, std::string("worker error: ") + e.what());
    }
  });
  for (std::size_t i : b.to_run) {
    const Item& it = b.items[i];
    stats_.executed.fetch_add(1, std::memory_order_relaxed);
    if (it.answer.status == v1::StepResult::OK) {
      spdlog::debug("run_id={} step={} role={} attempt={} status=ok", it.task.run_id(), it.task.step_id(),
                    opts_.role, it.task.attempt());
    } else {
      stats_.not_ok.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("run_id={} step={} role={} attempt={} status={} error={}: {}", it.task.run_id(),
                   it.task.step_id(), opts_.role, it.task.attempt(), status_text(it.answer.status),
                   it.answer.error_code, it.answer.error_message);
    }
  }
  for (auto& it : b.items) {
    if (it.kind == Item::kDuplicate) {
      stats_.cached.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("run_id={} step={} role={} attempt={} duplicate in batch, answered again", it.task.run_id(),
                    it.task.step_id(), opts_.role, it.task.attempt());
    }
  }
}

namespace {

// Delivery reports for one round of produce calls; shared with the callbacks,
// which may outlive a round abandoned at shutdown.
struct Deliveries {
  std::mutex mu;
  std::condition_variable cv;
  std::size_t pending = 0;
  std::vector<char> ok;
  std::vector<std::string> errors;
};

}  // namespace

bool Runtime::deliver(Batch& b) {
  int delay = 50;
  while (true) {
    auto d = std::make_shared<Deliveries>();
    d->ok.assign(b.items.size(), 0);
    d->errors.assign(b.items.size(), std::string());
    std::size_t attempted = 0;
    for (std::size_t i = 0; i < b.items.size(); ++i) {
      Item& it = b.items[i];
      if (it.delivered) continue;
      ++attempted;
      {
        std::lock_guard<std::mutex> lock(d->mu);
        ++d->pending;
      }
      auto cb = [d, i](const Status& s) {
        std::lock_guard<std::mutex> lock(d->mu);
        d->ok[i] = s.is_ok();
        if (!s.is_ok()) d->errors[i] = s.to_string();
        if (--d->pending == 0) d->cv.notify_all();
      };
      Status s;
      if (it.kind == Item::kDlq) {
        s = kafka::send_to_dlq(*producer_, opts_.ns, it.dlq_copy ? *it.dlq_copy : *it.msg, it.dlq_error, cb);
      } else {
        const std::string& bytes =
            it.kind == Item::kDuplicate ? b.items[it.dup_of].answer.bytes : it.answer.bytes;
        s = producer_->produce(events_topic_, it.task.run_id(), bytes, cb);
      }
      if (!s) {  // no callback will come
        std::lock_guard<std::mutex> lock(d->mu);
        --d->pending;
        d->errors[i] = s.to_string();
      }
    }
    if (attempted == 0) return true;

    {
      std::unique_lock<std::mutex> lock(d->mu);
      while (d->pending > 0) {
        d->cv.wait_for(lock, std::chrono::milliseconds(100));
        if (d->pending > 0 && stopping() &&
            Clock::now() > pool_->stop_at + std::chrono::milliseconds(opts_.shutdown_grace_ms)) {
          break;  // give up: the undelivered ones stay uncommitted
        }
      }
    }

    std::size_t failed = 0;
    std::string first_error;
    {
      std::lock_guard<std::mutex> lock(d->mu);
      for (std::size_t i = 0; i < b.items.size(); ++i) {
        Item& it = b.items[i];
        if (it.delivered) continue;
        if (d->ok[i]) {
          it.delivered = true;
          if (it.kind == Item::kDlq) {
            stats_.dead_lettered.fetch_add(1, std::memory_order_relaxed);
          } else {
            stats_.delivered.fetch_add(1, std::memory_order_relaxed);
          }
        } else {
          ++failed;
          if (first_error.empty()) first_error = d->errors[i].empty() ? "no delivery report" : d->errors[i];
        }
      }
    }
    if (failed == 0) return true;
    stats_.delivery_retries.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("role={} {} of {} answers not delivered ({}); retrying in {} ms", opts_.role, failed,
                 b.items.size(), first_error, delay);
    if (stopping()) {
      if (Clock::now() > pool_->stop_at + std::chrono::milliseconds(opts_.shutdown_grace_ms)) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(delay, 200)));
      delay = std::min(delay * 2, opts_.max_backoff_ms);
    } else {
      backoff(delay);
    }
  }
}

void Runtime::remember(Batch& b) {
  const std::string ttl = std::to_string(opts_.done_ttl_seconds);
  int delay = 50;
  while (true) {
    std::size_t n = 0;
    for (const auto& it : b.items) {
      if ((it.kind != Item::kRun && it.kind != Item::kCached) || !it.delivered) continue;
      if (it.kind == Item::kRun) {
        redis_->append({"SET", it.done_key, it.answer.bytes, "EX", ttl});
        ++n;
      }
      if (!it.running_key.empty()) {  // answered: no longer a start without an answer
        redis_->append({"DEL", it.running_key});
        ++n;
      }
    }
    if (n == 0) return;
    auto replies = redis_->exec();
    if (replies) {
      for (const auto& r : *replies) {
        if (r.is_error()) spdlog::warn("role={} caching an answer failed: {}", opts_.role, r.str);
      }
      return;
    }
    // Not fatal: a redelivery would run the agent again (at least once).
    stats_.redis_retries.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("role={} caching {} answers failed ({}); retrying in {} ms", opts_.role, n,
                 replies.status().to_string(), delay);
    if (stopping()) return;
    backoff(delay);
  }
}

void Runtime::commit(Batch& b, bool sync) {
  struct Range {
    int64_t first = INT64_MAX;
    int64_t last = -1;
    int64_t first_undelivered = INT64_MAX;
  };
  std::map<std::pair<std::string, int32_t>, Range> ranges;
  for (const auto& it : b.items) {
    auto& r = ranges[{it.msg->topic, it.msg->partition}];
    r.first = std::min(r.first, it.msg->offset);
    r.last = std::max(r.last, it.msg->offset);
    if (!it.delivered) r.first_undelivered = std::min(r.first_undelivered, it.msg->offset);
  }
  std::vector<kafka::TopicPartition> offsets;
  for (const auto& [tp, r] : ranges) {
    int64_t next = r.first_undelivered == INT64_MAX ? r.last + 1 : r.first_undelivered;
    if (next <= r.first) continue;  // nothing finished on this partition
    offsets.push_back({tp.first, tp.second, next});
  }
  if (offsets.empty()) return;
  if (Status s = consumer_->commit(offsets, !sync); !s) {
    spdlog::warn("role={} commit failed: {}", opts_.role, s.to_string());
  } else {
    stats_.commits.fetch_add(1, std::memory_order_relaxed);
  }
  for (const auto& o : offsets) {
    auto pos = std::find_if(last_commit_.begin(), last_commit_.end(), [&](const kafka::TopicPartition& x) {
      return x.topic == o.topic && x.partition == o.partition;
    });
    if (pos == last_commit_.end()) {
      last_commit_.push_back(o);
    } else {
      pos->offset = std::max(pos->offset, o.offset);
    }
  }
}

}  // namespace baton::worker
