// How a request to start a run (HTTP or the triggers topic) becomes a
// RunStarted event: its dedupe key and the run id derived from it. Shared by
// the API and the trigger consumer so both map the same input to the same run.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "common/util/status.h"
#include "common/workflow/workflow.h"
#include "proto/baton/v1/baton.pb.h"

namespace baton::coordinator {

// `given` when non-empty, else the workflow's trigger.dedupe template rendered
// over {"input": input} (kNotFound naming the missing value), else "".
Result<std::string> start_dedupe_key(const workflow::Workflow& wf, const nlohmann::json& input,
                                     std::string_view given);

// A RunStarted event for `wf`. The run id is run_id_for_dedupe(wf, dedupe), or
// random when `dedupe` is empty (then nothing deduplicates the start).
baton::v1::RunEvent make_start_event(const workflow::Workflow& wf, std::string input_json, const std::string& dedupe,
                                     std::string requested_by);

}  // namespace baton::coordinator
