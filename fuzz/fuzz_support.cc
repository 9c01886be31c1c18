#include "fuzz/fuzz_support.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/workflow/parser.h"

namespace baton::fuzz {

void quiet_logs() { spdlog::set_level(spdlog::level::off); }

std::vector<workflow::WorkflowPtr> example_workflows(bool pure_only) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const auto& dir : fs::directory_iterator(fs::path(BATON_SOURCE_DIR) / "examples")) {
    fs::path f = dir.path() / "workflow.yaml";
    if (fs::exists(f)) files.push_back(f);
  }
  std::sort(files.begin(), files.end());
  std::vector<workflow::WorkflowPtr> out;
  for (const auto& f : files) {
    auto wf = workflow::parse_workflow_file(f.string());
    if (!wf) {
      std::fprintf(stderr, "fuzz: %s\n", wf.status().to_string().c_str());
      std::abort();
    }
    bool pure = true;
    for (const auto& s : (*wf)->steps) {
      if (s.agent && (s.agent->kind == "exec" || s.agent->kind == "http" || s.agent->kind == "llm")) pure = false;
      if (s.agent && s.agent->kind != "echo" && s.agent->kind != "template" && s.agent->kind != "rules" &&
          s.agent->kind != "score" && s.agent->kind != "extract" && s.agent->kind != "validate" &&
          s.agent->kind != "plan")
        pure = false;  // a custom kind (e.g. an exec-backed agent of an example)
    }
    if (!pure_only || pure) out.push_back(std::move(wf).value());
  }
  if (out.empty()) {
    std::fprintf(stderr, "fuzz: no example workflow under %s/examples\n", BATON_SOURCE_DIR);
    std::abort();
  }
  return out;
}

void check(bool ok, const char* what, std::string_view detail) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: contract broken: %s: %.*s\n", what, static_cast<int>(std::min<std::size_t>(detail.size(), 2000)),
               detail.data());
  std::abort();
}

}  // namespace baton::fuzz
