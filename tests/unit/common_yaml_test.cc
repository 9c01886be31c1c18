// load_all_yaml (common/util/yaml.h): yaml-cpp 0.7's LoadAll loops forever,
// allocating, on streams whose parser makes no progress ("," alone); found by
// fuzz/fuzz_workflow_parser (corpus file regression-yaml-comma-loop).
#include "common/util/yaml.h"

#include <gtest/gtest.h>

#include <string>

#include "common/workflow/parser.h"

namespace baton {
namespace {

std::string refusal(const std::string& yaml) {
  auto r = workflow::parse_workflow(yaml, "wf.yaml");
  return r.is_ok() ? "<accepted>" : r.status().message();
}

TEST(LoadAllYaml, AStreamThatMakesNoProgressIsASyntaxErrorAtTheToken) {
  try {
    (void)load_all_yaml(",");
    FAIL() << "no exception";
  } catch (const YAML::ParserException& e) {
    EXPECT_EQ(e.mark.line, 0);
    EXPECT_EQ(e.mark.column, 0);
    EXPECT_EQ(e.msg, "unexpected ','");
  }
  try {
    (void)load_all_yaml("'a',");
    FAIL() << "no exception";
  } catch (const YAML::ParserException& e) {
    EXPECT_EQ(e.mark.column, 3);
    EXPECT_EQ(e.msg, "unexpected ','");
  }
}

TEST(LoadAllYaml, OtherwiseItIsLoadAll) {
  auto docs = load_all_yaml("a: 1\n---\nb: [2, 3]\n");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0]["a"].as<int>(), 1);
  EXPECT_EQ(docs[1]["b"][1].as<int>(), 3);
  EXPECT_TRUE(load_all_yaml("").empty());
  EXPECT_THROW((void)load_all_yaml("x: 1\n]"), YAML::ParserException);  // LoadAll's own error
}

// What the fuzzer found (a workflow with a stray ',' at the top level), and the
// smallest form: refused with file:line:col instead of exhausting memory.
TEST(LoadAllYaml, TheWorkflowParserRefusesTheStreamsThatLooped) {
  EXPECT_EQ(refusal(","), "wf.yaml:1:1: YAML syntax error: unexpected ','");
  EXPECT_EQ(refusal("'a',"), "wf.yaml:1:4: YAML syntax error: unexpected ','");
  EXPECT_EQ(refusal(",ame: x\nsteps:\n  - { id: a, role: r }\n"), "wf.yaml:1:1: YAML syntax error: unexpected ','");
}

}  // namespace
}  // namespace baton
