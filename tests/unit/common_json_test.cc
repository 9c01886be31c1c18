// Bounded JSON parsing and json_path (common/util/json.h).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "common/util/json.h"

namespace baton {
namespace {

using nlohmann::json;

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST(ParseJson, ParsesValidDocuments) {
  auto r = parse_json(R"({"a": [1, 2.5, "x", true, null], "b": {"c": -7}})");
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ((*r)["a"][1], 2.5);
  EXPECT_EQ((*r)["b"]["c"], -7);
  EXPECT_TRUE((*r)["a"][4].is_null());

  auto scalar = parse_json("42");
  ASSERT_TRUE(scalar.is_ok());
  EXPECT_EQ(scalar.value(), 42);
}

TEST(ParseJson, SyntaxErrorGivesBytePosition) {
  auto r = parse_json(R"({"a": tru})");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message().rfind("invalid JSON at byte 10: ", 0), 0u) << r.status().message();

  auto trailing = parse_json("{} x");
  ASSERT_FALSE(trailing.is_ok());
  EXPECT_EQ(trailing.status().message().rfind("invalid JSON at byte 4: ", 0), 0u)
      << trailing.status().message();

  auto empty = parse_json("");
  ASSERT_FALSE(empty.is_ok());
  EXPECT_EQ(empty.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(empty.status().message().rfind("invalid JSON at byte 1: ", 0), 0u) << empty.status().message();
}

TEST(ParseJson, NumberOverflowIsInvalidNotAThrow) {
  auto r = parse_json("[1e400]");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(ParseJson, TooLargeIsRefusedBeforeParsing) {
  auto r = parse_json("[1, 2, 3]", 8);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_EQ(r.status().message(), "JSON of 9 bytes exceeds the limit of 8");
  EXPECT_TRUE(parse_json("[1, 2, 3]", 9).is_ok());

  std::string big(limits::kMaxJsonBodyBytes + 1, ' ');
  EXPECT_EQ(parse_json(big).status().code(), Code::kTooLarge);
}

TEST(ParseJson, DepthIsCappedExactly) {
  EXPECT_TRUE(parse_json(nested_arrays(3), 1000, 3).is_ok());
  auto r = parse_json(nested_arrays(4), 1000, 3);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_EQ(r.status().message(), "JSON nesting exceeds the limit of 3");

  // Objects count too, mixed with arrays.
  EXPECT_TRUE(parse_json(R"({"a": [{"b": 1}]})", 1000, 3).is_ok());
  EXPECT_EQ(parse_json(R"({"a": [{"b": {}}]})", 1000, 3).status().code(), Code::kTooLarge);

  // The default limit.
  EXPECT_TRUE(parse_json(nested_arrays(limits::kMaxJsonDepth)).is_ok());
  EXPECT_EQ(parse_json(nested_arrays(limits::kMaxJsonDepth + 1)).status().message(),
            "JSON nesting exceeds the limit of 64");
}

TEST(ParseJson, VeryDeepInputDoesNotCrash) {
  std::string deep = nested_arrays(100000);
  auto r = parse_json(deep, deep.size());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  // Deep and broken: still a clean refusal.
  auto broken = parse_json(std::string(100000, '['), 200000);
  ASSERT_FALSE(broken.is_ok());
}

TEST(ParseJsonObject, RequiresAnObject) {
  EXPECT_TRUE(parse_json_object(R"({"a": 1})").is_ok());
  auto arr = parse_json_object("[1]");
  ASSERT_FALSE(arr.is_ok());
  EXPECT_EQ(arr.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(arr.status().message(), "expected a JSON object");
  EXPECT_EQ(parse_json_object("nope").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(parse_json_object("{}", 1).status().code(), Code::kTooLarge);
}

const json kDoc = json::parse(R"({
  "a": {"b": [10, {"c": "deep"}, [7, 8]]},
  "s": "text", "n": null, "": "empty key"
})");

TEST(JsonPath, FollowsDotsAndIndexes) {
  ASSERT_NE(json_path(kDoc, "a.b"), nullptr);
  EXPECT_EQ(*json_path(kDoc, "a.b[0]"), 10);
  EXPECT_EQ(*json_path(kDoc, "a.b[1].c"), "deep");
  EXPECT_EQ(*json_path(kDoc, "a.b[2][1]"), 8);
  EXPECT_EQ(*json_path(kDoc, "s"), "text");
  EXPECT_EQ(json_path(kDoc, ""), &kDoc);  // the empty path is the root
  // A null value is present (callers decide what null means).
  ASSERT_NE(json_path(kDoc, "n"), nullptr);
  EXPECT_TRUE(json_path(kDoc, "n")->is_null());
}

TEST(JsonPath, MissingPartsGiveNull) {
  EXPECT_EQ(json_path(kDoc, "x"), nullptr);
  EXPECT_EQ(json_path(kDoc, "a.x"), nullptr);
  EXPECT_EQ(json_path(kDoc, "a.b[3]"), nullptr);    // out of range
  EXPECT_EQ(json_path(kDoc, "a[0]"), nullptr);      // index on an object
  EXPECT_EQ(json_path(kDoc, "s.x"), nullptr);       // key on a string
  EXPECT_EQ(json_path(kDoc, "a.b[0].c"), nullptr);  // key on a number
  EXPECT_EQ(json_path(kDoc, "a.b[-1]"), nullptr);
  EXPECT_EQ(json_path(kDoc, "a.b[x]"), nullptr);
  EXPECT_EQ(json_path(kDoc, "a.b[1"), nullptr);  // unclosed
  EXPECT_EQ(json_path(json::array({1}), "[0]") != nullptr, true);
}

// Regression: "[]" used to resolve as index 0.
TEST(JsonPath, EmptyIndexIsMissing) { EXPECT_EQ(json_path(kDoc, "a.b[]"), nullptr); }

// Regression: an index of 2^64 + 1 used to wrap around to 1 and return an element.
TEST(JsonPath, HugeIndexDoesNotWrapAround) {
  EXPECT_EQ(json_path(kDoc, "a.b[18446744073709551617]"), nullptr);
  EXPECT_EQ(json_path(kDoc, "a.b[0000000001]"), nullptr);  // more than 9 digits
  EXPECT_EQ(*json_path(kDoc, "a.b[000000001]"), json::parse(R"({"c": "deep"})"));
}

}  // namespace
}  // namespace baton

namespace baton {
namespace {

TEST(JsonLines, ParsesObjectsSkipsBlankLinesAndNamesTheBadLine) {
  auto ok = parse_jsonl("{\"a\":1}\n\n  \r\n{\"b\":2}", "in.jsonl");
  ASSERT_TRUE(ok) << ok.status().to_string();
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[0].line, 1u);
  EXPECT_EQ((*ok)[0].value["a"], 1);
  EXPECT_EQ((*ok)[1].line, 4u);
  EXPECT_EQ((*ok)[1].value["b"], 2);
  auto bad = parse_jsonl("{\"a\":1}\n[1,2]\n", "in.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().message(), "in.jsonl:2: expected a JSON object");
  auto broken = parse_jsonl("{\"a\":1}\n{\"a\":\n", "x");
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.status().message().rfind("x:2: invalid JSON", 0), 0u) << broken.status().message();
  auto empty = parse_jsonl("", "x");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace baton
