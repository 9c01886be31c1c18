// Parsing and validation of workflow YAML files (docs/workflows.md).
// Every refusal is a Status(kInvalidArgument) whose message is exactly
// "<file>:<line>:<col>: <reason>" (1-based line and column of the offending node).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/util/status.h"
#include "common/workflow/registry.h"
#include "common/workflow/workflow.h"

namespace baton::workflow {

// Parses one document. `display_name` is used as <file> in messages.
// Caps: limits::kMaxWorkflowFileBytes bytes, limits::kMaxYamlDepth nesting.
Result<WorkflowPtr> parse_workflow(std::string_view text, const std::string& display_name);
Result<WorkflowPtr> parse_workflow_file(const std::string& path);

}  // namespace baton::workflow
