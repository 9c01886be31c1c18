// The workflows a process knows, by (name, version).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"
#include "common/workflow/workflow.h"

namespace baton::workflow {

// The workflows a process knows, by name and version.
//
// Threads: every member may be called from any thread at any time; readers
// (find, contains, all, roles) run concurrently with each other and with add /
// add_yaml / load_dir (a std::shared_mutex). Workflows are immutable and shared:
// a WorkflowPtr returned by find() stays valid whatever is added later.
// Nothing is ever removed, so a (name, version) once known stays known with the
// same content.
class Registry {
 public:
  // Called by find() when (name, version) is not known (version 0: no version
  // of `name`), outside the registry's lock, on the caller's thread. It may add
  // workflows (e.g. fetch them from a shared store); find() then looks again,
  // once. It must not throw and should bound its own cost (rate limiting).
  using MissHandler = std::function<void(std::string_view name, uint32_t version)>;

  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Loads every *.yaml / *.yml file in `dir` (not recursive). Returns the first
  // error (file:line:col: reason); on error nothing is added.
  Status load_dir(const std::string& dir);
  // Adds one parsed workflow. Idempotent: the same (name, version) with equal
  // content (Workflow::to_json) is accepted and the first copy kept; different
  // content is refused with kAlreadyExists ("<source>:1:1: workflow ... is
  // already loaded from <other> with different content (bump `version`)").
  Status add(WorkflowPtr wf);
  // parse_workflow(yaml, display_name) then add(); parse errors are returned as
  // the parser gives them (kInvalidArgument, "<display_name>:line:col: reason").
  Status add_yaml(std::string_view yaml, const std::string& display_name);
  // version 0: the highest version known. nullptr when unknown, after the miss
  // handler (if any) had its chance.
  WorkflowPtr find(std::string_view name, uint32_t version = 0) const;
  // Like find() but never calls the miss handler (version 0: any version).
  bool contains(std::string_view name, uint32_t version) const;
  // Sorted by name, then version.
  std::vector<WorkflowPtr> all() const;
  // Every role used by any loaded workflow, sorted, unique.
  std::vector<std::string> roles() const;

  // Installs (or, with nullptr, removes) the miss handler; any thread. A
  // find() already past its lookup may still call the previous handler.
  void set_miss_handler(MissHandler handler);

 private:
  WorkflowPtr find_locked(std::string_view name, uint32_t version) const;
  Status add_locked(WorkflowPtr wf);

  mutable std::shared_mutex mu_;
  std::map<std::string, std::map<uint32_t, WorkflowPtr>, std::less<>> by_name_;
  MissHandler on_miss_;
};

}  // namespace baton::workflow
