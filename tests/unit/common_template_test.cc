// "{{path}}" templates (common/workflow/template.h).
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/workflow/template.h"

namespace baton::workflow {
namespace {

using nlohmann::json;

Template parse_ok(std::string_view text) {
  auto t = Template::parse(text);
  EXPECT_TRUE(t.is_ok()) << t.status().message();
  return t.is_ok() ? t.value() : Template();
}

std::string parse_error(std::string_view text) {
  auto t = Template::parse(text);
  if (t.is_ok()) return "<accepted>";
  EXPECT_EQ(t.status().code(), Code::kInvalidArgument);
  return t.status().message();
}

std::string render(std::string_view text, const json& scope) {
  auto r = parse_ok(text).render(scope);
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? r.value() : "<error>";
}

const json kScope = json::parse(R"({
  "input": {
    "lead_id": "L-42", "name": "Ada", "count": 7, "neg": -3, "big": 18446744073709551615,
    "score": 0.75, "whole": 3.0, "huge": 1e300, "yes": true, "no": false, "nothing": null,
    "tags": ["a", "b", {"c": 1}], "obj": {"k": "v", "n": [1, 2]}, "empty": ""
  },
  "steps": {"qualify": {"output": {"owner": "sam"}}}
})");

TEST(Template, LiteralOnlyAndEmpty) {
  Template empty = parse_ok("");
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.render(kScope).value(), "");
  EXPECT_TRUE(empty.paths().empty());

  Template lit = parse_ok("plain text } { }} {");
  EXPECT_FALSE(lit.empty());
  EXPECT_TRUE(lit.paths().empty());
  EXPECT_EQ(lit.render(kScope).value(), "plain text } { }} {");
  EXPECT_EQ(lit.source(), "plain text } { }} {");
}

TEST(Template, PathsInOrderWithSpacesInsideBraces) {
  Template t = parse_ok("lead:{{input.lead_id}}/{{  input.name\t}}-{{ steps.qualify.output.owner }}");
  EXPECT_EQ(t.paths(),
            (std::vector<std::string>{"input.lead_id", "input.name", "steps.qualify.output.owner"}));
  EXPECT_EQ(t.render(kScope).value(), "lead:L-42/Ada-sam");
  EXPECT_EQ(t.source(), "lead:{{input.lead_id}}/{{  input.name\t}}-{{ steps.qualify.output.owner }}");
}

TEST(Template, AdjacentAndWholeStringPaths) {
  EXPECT_EQ(render("{{input.name}}{{input.lead_id}}", kScope), "AdaL-42");
  EXPECT_EQ(render("{{input.lead_id}}", kScope), "L-42");
}

TEST(Template, RendersEachJsonTypeAsDocumented) {
  EXPECT_EQ(render("{{input.name}}", kScope), "Ada");  // strings unquoted
  EXPECT_EQ(render("{{input.empty}}", kScope), "");    // empty string is present
  EXPECT_EQ(render("{{input.count}}", kScope), "7");
  EXPECT_EQ(render("{{input.neg}}", kScope), "-3");
  EXPECT_EQ(render("{{input.big}}", kScope), "18446744073709551615");
  EXPECT_EQ(render("{{input.score}}", kScope), "0.75");
  EXPECT_EQ(render("{{input.whole}}", kScope), "3");  // integers without ".0"
  EXPECT_EQ(render("{{input.huge}}", kScope), "1e+300");
  EXPECT_EQ(render("{{input.yes}}/{{input.no}}", kScope), "true/false");
  EXPECT_EQ(render("{{input.tags}}", kScope), R"(["a","b",{"c":1}])");  // compact JSON
  EXPECT_EQ(render("{{input.obj}}", kScope), R"({"k":"v","n":[1,2]})");
}

TEST(Template, IndexesAsInJsonPath) {
  EXPECT_EQ(render("{{input.tags[1]}}", kScope), "b");
  EXPECT_EQ(render("{{input.tags[2].c}}", kScope), "1");
  EXPECT_EQ(render("{{input.obj.n[0]}}+{{input.obj.n[1]}}", kScope), "1+2");
}

TEST(Template, MissingOrNullIsNotFound) {
  Template t = parse_ok("lead:{{ input.missing }}");
  auto r = t.render(kScope);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message(), "missing value for {{input.missing}}");

  auto n = parse_ok("{{input.nothing}}").render(kScope);
  ASSERT_FALSE(n.is_ok());
  EXPECT_EQ(n.status().code(), Code::kNotFound);
  EXPECT_EQ(n.status().message(), "missing value for {{input.nothing}}");

  auto idx = parse_ok("{{input.tags[9]}}").render(kScope);
  EXPECT_EQ(idx.status().message(), "missing value for {{input.tags[9]}}");
  auto through_string = parse_ok("{{input.name.first}}").render(kScope);
  EXPECT_EQ(through_string.status().message(), "missing value for {{input.name.first}}");
  // The first missing path is reported.
  auto first = parse_ok("{{input.name}} {{a.b}} {{c.d}}").render(kScope);
  EXPECT_EQ(first.status().message(), "missing value for {{a.b}}");
  // A scope that is not an object has nothing in it.
  EXPECT_EQ(parse_ok("{{input}}").render(json::array()).status().code(), Code::kNotFound);
}

TEST(Template, LenientRenderSubstitutesEmpty) {
  Template t = parse_ok("Hi {{input.name}}{{input.missing}}, {{input.nothing}}score {{input.count}}");
  EXPECT_EQ(t.render_lenient(kScope), "Hi Ada, score 7");
  EXPECT_EQ(t.render_lenient(json()), "Hi , score ");
}

TEST(Template, ParseErrors) {
  EXPECT_EQ(parse_error("lead:{{input.lead_id"), "column 6: unclosed {{");
  EXPECT_EQ(parse_error("{{a}} {{"), "column 7: unclosed {{");
  EXPECT_EQ(parse_error("x{{}}"), "column 2: empty path in {{ }}");
  EXPECT_EQ(parse_error("{{   }}"), "column 1: empty path in {{ }}");
  const std::string tail = "` (expected names joined by dots, with optional [index])";
  EXPECT_EQ(parse_error("{{input lead}}"), "column 1: invalid path `input lead" + tail);
  EXPECT_EQ(parse_error("ab{{a..b}}"), "column 3: invalid path `a..b" + tail);
  EXPECT_EQ(parse_error("{{a.}}"), "column 1: invalid path `a." + tail);
  EXPECT_EQ(parse_error("{{.a}}"), "column 1: invalid path `.a" + tail);
  EXPECT_EQ(parse_error("{{a[]}}"), "column 1: invalid path `a[]" + tail);
  EXPECT_EQ(parse_error("{{a[x]}}"), "column 1: invalid path `a[x]" + tail);
  EXPECT_EQ(parse_error("{{a[1}}"), "column 1: invalid path `a[1" + tail);
  EXPECT_EQ(parse_error("{{a[1234567890]}}"), "column 1: invalid path `a[1234567890]" + tail);
  EXPECT_EQ(parse_error("{{[0]}}"), "column 1: invalid path `[0]" + tail);
  EXPECT_EQ(parse_error("{{ {{a}} }}"), "column 1: invalid path `{{a" + tail);
}

TEST(Template, InvalidUtf8InValuesDoesNotThrow) {
  json scope = {{"v", {{"s", std::string("bad\xff")}}}};
  auto r = parse_ok("{{v}}").render(scope);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r.value(), "{\"s\":\"bad\xEF\xBF\xBD\"}");              // replaced by U+FFFD
  EXPECT_EQ(parse_ok("{{v.s}}").render(scope).value(), "bad\xff");  // strings pass through
}

TEST(Template, RenderIsConstAndThreadSafe) {
  const Template t = parse_ok("lead:{{input.lead_id}}:{{input.count}}");
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      json scope = {{"input", {{"lead_id", "L" + std::to_string(k)}, {"count", k}}}};
      std::string want = "lead:L" + std::to_string(k) + ":" + std::to_string(k);
      for (int i = 0; i < 500; ++i) {
        auto r = t.render(scope);
        if (r.is_ok() && r.value() == want) ++good;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(good.load(), 2000);
}

}  // namespace
}  // namespace baton::workflow
