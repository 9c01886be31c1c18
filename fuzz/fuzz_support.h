// Shared by the fuzz targets (fuzz/README.md): fixed inputs and a check that
// turns a broken contract into a crash libFuzzer reports.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/workflow/workflow.h"

namespace baton::fuzz {

// Silences spdlog (a fuzz run logs millions of refusals otherwise).
void quiet_logs();

// The example workflows (examples/*/workflow.yaml), parsed; aborts when one
// does not parse (the fuzz targets need them). `pure_only`: only those whose
// agents touch no network and start no process (no exec, http, llm agents).
std::vector<workflow::WorkflowPtr> example_workflows(bool pure_only);

// The input bytes as text.
inline std::string_view text_of(const uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Aborts with `what` (and the start of `detail`) when `ok` is false: a broken
// contract is a finding like a crash.
void check(bool ok, const char* what, std::string_view detail = {});

}  // namespace baton::fuzz
