// Redis key and Kafka topic layout (docs/ARCHITECTURE.md §3-4). The only place
// that spells a key or a topic name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace baton::keys {

// Kafka topics.
inline std::string tasks_topic(std::string_view ns, std::string_view role) {
  return "baton." + std::string(ns) + ".tasks." + std::string(role);
}
inline std::string events_topic(std::string_view ns) { return "baton." + std::string(ns) + ".events"; }
inline std::string triggers_topic(std::string_view ns) { return "baton." + std::string(ns) + ".triggers"; }
inline std::string audit_topic(std::string_view ns) { return "baton." + std::string(ns) + ".audit"; }
inline std::string dlq_topic(std::string_view ns) { return "baton." + std::string(ns) + ".dlq"; }
inline std::string worker_group(std::string_view ns, std::string_view role) {
  return "baton-worker." + std::string(ns) + "." + std::string(role);
}
inline std::string coordinator_group(std::string_view ns) {
  return "baton-coordinator." + std::string(ns);
}

// Redis keys. Run keys share the {run:<id>} hash tag, record keys {rec:<key>}.
inline std::string run(std::string_view ns, std::string_view id) {
  return "baton:" + std::string(ns) + ":{run:" + std::string(id) + "}";
}
inline std::string run_ctx(std::string_view ns, std::string_view id) { return run(ns, id) + ":ctx"; }
inline std::string run_outbox(std::string_view ns, std::string_view id) { return run(ns, id) + ":outbox"; }
inline std::string run_audit(std::string_view ns, std::string_view id) { return run(ns, id) + ":audit"; }
inline std::string record(std::string_view ns, std::string_view key) {
  return "baton:" + std::string(ns) + ":{rec:" + std::string(key) + "}";
}
// Idempotency memo of one record write (the reply of baton_record_write for
// "<run>:<step>:<attempt>"), its own key with a TTL, in the record's slot.
inline std::string record_write_memo(std::string_view ns, std::string_view key, std::string_view idempotency_key) {
  return record(ns, key) + ":w:" + std::string(idempotency_key);
}
inline std::string record_lock(std::string_view ns, std::string_view key) { return record(ns, key) + ":lock"; }
// `lock: record`: runs waiting for the record's lock (a list), and its fencing token counter.
inline std::string record_lock_queue(std::string_view ns, std::string_view key) { return record(ns, key) + ":lockq"; }
inline std::string record_fence(std::string_view ns, std::string_view key) { return record(ns, key) + ":fence"; }
// Held record locks by expiry (zset member: record key), for the expiry sweep.
inline std::string locks(std::string_view ns) { return "baton:" + std::string(ns) + ":locks"; }
inline std::string epoch(std::string_view ns, int32_t partition) {
  return "baton:" + std::string(ns) + ":epoch:" + std::to_string(partition);
}
inline std::string timers(std::string_view ns, int32_t partition) {
  return "baton:" + std::string(ns) + ":timers:" + std::to_string(partition);
}
inline std::string applied(std::string_view ns, int32_t partition) {
  return "baton:" + std::string(ns) + ":applied:" + std::to_string(partition);
}
// Set of run ids still in flight on an events partition (reloaded on assignment).
inline std::string active(std::string_view ns, int32_t partition) {
  return "baton:" + std::string(ns) + ":active:" + std::to_string(partition);
}
// Workflows applied over the control plane: hash, field "<name>@<version>",
// value the YAML text (coordinator/workflow_store.h). Read by every
// coordinator replica and every worker.
inline std::string workflows(std::string_view ns) { return "baton:" + std::string(ns) + ":workflows"; }
// The field of workflows(ns) holding one version: "<name>@<version>".
inline std::string workflow_field(std::string_view name, uint32_t version) {
  return std::string(name) + "@" + std::to_string(version);
}
// Last fire time (unix ms) a `schedule:` workflow was started for.
inline std::string schedule_last(std::string_view ns, std::string_view workflow) {
  return "baton:" + std::string(ns) + ":schedule:" + std::string(workflow);
}
inline std::string exceptions(std::string_view ns) { return "baton:" + std::string(ns) + ":exceptions"; }
// Open gates (approvals and sampled reviews): zset, member "<run>|<step instance>", score opened ms.
inline std::string approvals(std::string_view ns) { return "baton:" + std::string(ns) + ":approvals"; }
// Notifications waiting for the notifier (list of JSON items; docs/notifications.md).
inline std::string notify_queue(std::string_view ns) { return "baton:" + std::string(ns) + ":notify"; }
// The notifier's own keys (coordinator/notifier.h): the items one replica is
// delivering (list), deliveries waiting for a retry (zset by due ms), items that
// exhausted their retries or were refused (list), replicas' lease expiries (zset).
inline std::string notify_claimed(std::string_view ns, std::string_view replica) {
  return notify_queue(ns) + ":claimed:" + std::string(replica);
}
inline std::string notify_retry(std::string_view ns) { return notify_queue(ns) + ":retry"; }
inline std::string notify_dead(std::string_view ns) { return notify_queue(ns) + ":dead"; }
inline std::string notify_replicas(std::string_view ns) { return notify_queue(ns) + ":replicas"; }
// Every control-plane call with its caller (a capped stream).
inline std::string api_audit(std::string_view ns) { return "baton:" + std::string(ns) + ":api-audit"; }
// A workflow's spend (micro-USD) on one UTC day ("2026-11-22"): daily budgets.
inline std::string daily_spend(std::string_view ns, std::string_view workflow, std::string_view day) {
  return "baton:" + std::string(ns) + ":spend:" + std::string(workflow) + ":" + std::string(day);
}
inline std::string runs_index(std::string_view ns) { return "baton:" + std::string(ns) + ":runs"; }
// How many times a worker started the agent for one task attempt (poison
// tasks: a task whose agent killed its worker N times is failed, not run again).
inline std::string running(std::string_view ns, std::string_view run_id, std::string_view step,
                           uint32_t attempt) {
  return "baton:" + std::string(ns) + ":running:" + std::string(run_id) + ":" + std::string(step) + ":" +
         std::to_string(attempt);
}
inline std::string done(std::string_view ns, std::string_view run_id, std::string_view step,
                        uint32_t attempt) {
  return "baton:" + std::string(ns) + ":done:" + std::string(run_id) + ":" + std::string(step) + ":" +
         std::to_string(attempt);
}

}  // namespace baton::keys
