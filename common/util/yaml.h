// A bounded YAML::LoadAll. yaml-cpp 0.7's LoadAll never returns on some
// malformed streams ("," alone, "'a',"): its parser reports a document without
// consuming the offending token, LoadAll asks for the next one, forever,
// keeping a null node each time until memory runs out (yaml-cpp issue #1040,
// fixed upstream after 0.8 by PR #1319; found by fuzz/fuzz_workflow_parser).
// load_all_yaml first walks the stream's events without building nodes and
// throws YAML::ParserException ("unexpected '<c>'", at the token) when a
// document starts where the previous one started (no progress); only a stream
// that ends is handed to YAML::LoadAll. Same results and exceptions as
// YAML::LoadAll otherwise (the walk costs one more parse). Any thread.
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace baton {

std::vector<YAML::Node> load_all_yaml(const std::string& text);

}  // namespace baton
