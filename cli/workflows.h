// `batonctl workflows validate|apply|list` (docs: cli/README.md). Results go to
// stdout, errors to stderr. Each returns the process exit code.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/util/status.h"

namespace baton::cli {

// Offline: parses each file. Prints "FILE: ok (name@version, N steps, roles:
// a,b)" to stdout, or the parser's "file:line:col: reason" to stderr.
// Exit 0 when every file is valid, 1 otherwise (also when `files` is empty).
int workflows_validate(const std::vector<std::string>& files);

// PUT /v1/workflows with the file's text. Prints "created name@version" or
// "unchanged name@version"; the API's refusal (400 invalid_workflow with
// file:line:col, 409 conflict, 413) or an unreachable API to stderr, exit 1.
// A file over limits::kMaxWorkflowFileBytes is refused before sending.
int workflows_apply(const std::string& api, const std::string& file);

// GET /v1/workflows. output "text": a table NAME VERSION STEPS ROLES SOURCE;
// "json": the API's JSON as received. Exit 0, or 1 on an API error.
int workflows_list(const std::string& api, const std::string& output);

// The table of `workflows_list` from a GET /v1/workflows body (pure; for tests).
std::string render_workflow_table(const nlohmann::json& body);

}  // namespace baton::cli
