// The workflows a process knows, by (name, version).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"
#include "common/workflow/workflow.h"

namespace baton::workflow {

// The workflows a process knows, by name and version. Thread-safe for reads
// after loading; load_dir is called at start-up.
class Registry {
 public:
  // Loads every *.yaml / *.yml file in `dir` (not recursive). Returns the first
  // error (file:line:col: reason); on error nothing is added.
  Status load_dir(const std::string& dir);
  // Adds one parsed workflow; refuses a (name, version) already present with
  // different content.
  Status add(WorkflowPtr wf);
  // version 0: the highest version loaded.
  WorkflowPtr find(std::string_view name, uint32_t version = 0) const;
  std::vector<WorkflowPtr> all() const;
  // Every role used by any loaded workflow, sorted, unique.
  std::vector<std::string> roles() const;

 private:
  std::map<std::string, std::map<uint32_t, WorkflowPtr>, std::less<>> by_name_;
};

}  // namespace baton::workflow
