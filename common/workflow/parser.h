// Parsing and validation of workflow YAML files (docs/workflows.md).
// Every refusal is a Status(kInvalidArgument) whose message is exactly
// "<file>:<line>:<col>: <reason>" (1-based line and column of the offending node).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"
#include "common/workflow/workflow.h"

namespace baton::workflow {

// Parses one document. `display_name` is used as <file> in messages.
// Caps: limits::kMaxWorkflowFileBytes bytes, limits::kMaxYamlDepth nesting.
Result<WorkflowPtr> parse_workflow(std::string_view text, const std::string& display_name);
Result<WorkflowPtr> parse_workflow_file(const std::string& path);

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
