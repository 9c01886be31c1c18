// Workflows applied over the control plane, kept in Redis so that every
// coordinator replica and every worker sees them (docs/workflows.md "Versions").
//
// Layout: hash keys::workflows(ns) ("baton:<ns>:workflows"), field
// "<name>@<version>" (keys::workflow_field), value the YAML text as applied.
// A (name, version) is written once and never changed: HSETNX, then a re-read
// and comparison of the parsed models (Workflow::to_json, not the text), so two
// replicas applying different content to the same version at once cannot both
// win, and re-applying identical content (any layout, comments) is a no-op.
// Applied workflows are parsed with the display name "<applied>" (their
// Workflow::source_path), which is how error messages and the API name them.
//
// Threads: a WorkflowStore is a light view over one redis::Client, which is not
// thread-safe: use it on the thread that owns the client. The Registry it fills
// is thread-safe. Nothing here throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/redis/client.h"
#include "common/util/status.h"
#include "common/workflow/registry.h"

namespace baton::coordinator {

// Workflow::source_path (and the <file> of parse errors) of applied workflows.
inline constexpr const char* kAppliedSource = "<applied>";

struct AppliedWorkflow {
  workflow::WorkflowPtr workflow;
  bool created = false;  // false: "unchanged", this content was already known
};

class WorkflowStore {
 public:
  WorkflowStore(redis::Client& redis, std::string ns) : redis_(redis), ns_(std::move(ns)) {}

  // Parses `yaml` and stores it under its name@version. Errors:
  //   kTooLarge        over limits::kMaxWorkflowFileBytes (checked before parsing);
  //   kInvalidArgument the parser's "<applied>:line:col: reason";
  //   kAlreadyExists   name@version is stored (or, with `registry`, loaded, e.g.
  //                    from a file) with different content: nothing is written;
  //   kUnavailable     Redis failed (the write may or may not have happened;
  //                    applying again is safe).
  // With `registry`: a conflict with its copy is refused before anything is
  // written, and the workflow is added to it on success. `created` is true only
  // when neither Redis nor `registry` knew this name@version before.
  Result<AppliedWorkflow> apply(std::string_view yaml, workflow::Registry* registry = nullptr);

  // Adds every stored workflow to `registry`. A stored entry that does not
  // parse, whose field does not match its name@version, or that conflicts with
  // the registry's copy is skipped with a warning (logged) and the rest still
  // load. Error only when Redis fails (kUnavailable).
  Status load_all(workflow::Registry& registry);
  // Like load_all, but fetches only the fields whose name@version `registry`
  // does not know yet (HKEYS, then HMGET of those): cheap when nothing is new.
  Status refresh(workflow::Registry& registry);

 private:
  // Parses and adds one stored entry; false (logged) when skipped.
  bool add_stored(workflow::Registry& registry, const std::string& field, const std::string& yaml);

  redis::Client& redis_;
  std::string ns_;
};

// Installs on `registry` a miss handler (Registry::set_miss_handler) that calls
// WorkflowStore::refresh when find() misses a name@version, at most once per
// `min_interval_ms` per missing name@version (so a flood of unknown names
// cannot hammer Redis). The handler owns its own Redis connection to `ep`
// (connected on first use, guarded by a mutex): find() may then be called from
// any thread. A Redis failure is logged and the lookup stays a miss.
void refresh_on_miss(workflow::Registry& registry, const redis::Endpoint& ep, std::string ns,
                     int64_t min_interval_ms = 1000);

}  // namespace baton::coordinator
