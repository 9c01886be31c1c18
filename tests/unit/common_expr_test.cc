// Conditions (common/workflow/expr.h): grammar, semantics, errors with columns, limits.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "common/workflow/expr.h"

namespace baton::workflow {
namespace {

using nlohmann::json;

Condition parse_ok(std::string_view text) {
  auto r = Condition::parse(text);
  if (const auto* e = std::get_if<ExprError>(&r)) {
    ADD_FAILURE() << "'" << text << "' rejected: col " << e->col << ": " << e->message;
    return Condition();
  }
  return std::get<Condition>(r);
}

// "col N: message", or "<accepted>".
std::string error_of(std::string_view text) {
  auto r = Condition::parse(text);
  if (const auto* e = std::get_if<ExprError>(&r)) return "col " + std::to_string(e->col) + ": " + e->message;
  return "<accepted>";
}

const json kInput = json::parse(R"({"lead_id": "L-42", "amount": 120.5, "country": "NL"})");
const json kOutput = json::parse(R"({
  "score": 0.75, "count": 3, "zero": 0, "fzero": 0.0, "neg": -2, "yes": true, "no": false,
  "nothing": null, "empty": "", "text": "hello world", "digit": "0", "intent": "billing",
  "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-7", "qty": 0}],
  "matrix": [[1, 2], [3, 4]], "tags": ["vip", "eu", 7, null, {"k": 1}, [1, 2]],
  "none": [], "obj": {}, "meta": {"owner": "ada", "first-touch": "mail", "0": "zero key"},
  "big": 9007199254740993, "big2": 9007199254740992, "umax": 18446744073709551615,
  "approved": true, "confidence": 0.5, "spam": false, "unicode": "é"
})");
const json kRecord = json::parse(R"({"owner": "bob", "version": 4, "history": ["a", "b"]})");
const json kRun = json::parse(R"({"steps": {"qualify": {"score": 0.9}}, "attempt": 2})");
const ExprScope kScope{&kInput, &kOutput, &kRecord, &kRun};

bool eval(std::string_view text, const ExprScope& scope = kScope) { return parse_ok(text).eval(scope); }

// ---------------------------------------------------------------------------
// Literals and types

TEST(ExprLiteralTest, NumbersIntDecimalExponentNegative) {
  EXPECT_TRUE(eval("1 == 1"));
  EXPECT_TRUE(eval("1 == 1.0"));
  EXPECT_TRUE(eval("1.5e2 == 150"));
  EXPECT_TRUE(eval("15E-1 == 1.5"));
  EXPECT_TRUE(eval("2e+1 == 20"));
  EXPECT_TRUE(eval("-3 < -2.5"));
  EXPECT_TRUE(eval("-0 == 0"));
  EXPECT_TRUE(eval("-0.0 == 0"));
  EXPECT_TRUE(eval("output.neg == -2"));
  EXPECT_TRUE(eval("output.count == 3.0"));
  EXPECT_TRUE(eval("0.75 == output.score"));
  EXPECT_FALSE(eval("1 == 2"));
}

TEST(ExprLiteralTest, LargeIntegersCompareExactly) {
  EXPECT_TRUE(eval("output.big == 9007199254740993"));
  EXPECT_FALSE(eval("output.big == 9007199254740992"));
  EXPECT_FALSE(eval("output.big == output.big2"));
  EXPECT_TRUE(eval("output.big > output.big2"));
  EXPECT_TRUE(eval("output.umax == 18446744073709551615"));
  EXPECT_TRUE(eval("-1 < output.umax"));
  EXPECT_TRUE(eval("output.umax > 9223372036854775807"));
  EXPECT_FALSE(eval("output.umax < -1"));
  // Beyond 64 bits a literal is a double, like a JSON parser would make it.
  EXPECT_TRUE(eval("100000000000000000000 == 1e20"));
}

TEST(ExprLiteralTest, StringsWithEscapesAndBothQuotes) {
  EXPECT_TRUE(eval("'billing' == \"billing\""));
  EXPECT_TRUE(eval("output.intent == 'billing'"));
  EXPECT_FALSE(eval("output.intent == 'Billing'"));
  const json out = json::parse(R"({"s": "it's \"q\" a\\b\nline\ttab"})");
  ExprScope scope{nullptr, &out, nullptr, nullptr};
  EXPECT_TRUE(eval(R"(output.s == 'it\'s "q" a\\b\nline\ttab')", scope));
  EXPECT_TRUE(eval(R"(output.s == "it's \"q\" a\\b\nline\ttab")", scope));
  EXPECT_FALSE(eval(R"(output.s == 'it\'s "q" a\\b\\nline\ttab')", scope));
  EXPECT_TRUE(eval("'' == output.empty"));
  EXPECT_TRUE(eval("'é' == output.unicode"));
}

TEST(ExprLiteralTest, TrueFalseNull) {
  EXPECT_TRUE(eval("true"));
  EXPECT_FALSE(eval("false"));
  EXPECT_FALSE(eval("null"));
  EXPECT_TRUE(eval("null == null"));
  EXPECT_TRUE(eval("output.yes == true"));
  EXPECT_TRUE(eval("output.no == false"));
  EXPECT_TRUE(eval("output.nothing == null"));
  EXPECT_FALSE(eval("output.no == null"));
}

TEST(ExprTypeTest, DifferentTypesAreNotEqual) {
  EXPECT_FALSE(eval("1 == '1'"));
  EXPECT_TRUE(eval("1 != '1'"));
  EXPECT_FALSE(eval("true == 1"));
  EXPECT_FALSE(eval("false == 0"));
  EXPECT_FALSE(eval("null == 0"));
  EXPECT_FALSE(eval("null == ''"));
  EXPECT_FALSE(eval("output.none == null"));
  EXPECT_FALSE(eval("output.obj == output.none"));
  EXPECT_TRUE(eval("output.digit != 0"));
}

TEST(ExprTypeTest, ArraysAndObjectsCompareAsJson) {
  EXPECT_TRUE(eval("output.matrix[0] == [1, 2]"));
  EXPECT_TRUE(eval("output.matrix[0] == [1.0, 2]"));
  EXPECT_FALSE(eval("output.matrix[0] == [2, 1]"));
  EXPECT_TRUE(eval("output.none == []"));
  EXPECT_TRUE(eval("output.items[0] == output.items[0]"));
  EXPECT_FALSE(eval("output.items[0] == output.items[1]"));
  EXPECT_TRUE(eval("output.items[0] != output.items[1]"));
}

TEST(ExprTypeTest, OrderingNumbersAndStrings) {
  EXPECT_TRUE(eval("output.score >= 0.7"));
  EXPECT_FALSE(eval("output.score >= 0.8"));
  EXPECT_TRUE(eval("output.score > 0.7 and output.score < 0.76"));
  EXPECT_TRUE(eval("output.count <= 3 and output.count >= 3"));
  EXPECT_FALSE(eval("output.count < 3"));
  EXPECT_TRUE(eval("2 < 10"));       // numeric, not textual
  EXPECT_FALSE(eval("'2' < '10'"));  // textual
  EXPECT_TRUE(eval("'abc' < 'abd'"));
  EXPECT_TRUE(eval("'ab' < 'abc'"));
  EXPECT_TRUE(eval("'B' < 'a'"));                // byte order
  EXPECT_TRUE(eval("output.unicode > 'z'"));     // 0xC3 > 'z': bytes are unsigned
  EXPECT_TRUE(eval("'x' <= 'x' and 'x' >= 'x'"));
}

TEST(ExprTypeTest, OrderingMixedTypesOrNullIsFalse) {
  for (const char* op : {"<", "<=", ">", ">="}) {
    EXPECT_FALSE(eval(std::string("1 ") + op + " '1'")) << op;
    EXPECT_FALSE(eval(std::string("'1' ") + op + " 1")) << op;
    EXPECT_FALSE(eval(std::string("null ") + op + " 0")) << op;
    EXPECT_FALSE(eval(std::string("null ") + op + " null")) << op;
    EXPECT_FALSE(eval(std::string("true ") + op + " false")) << op;
    EXPECT_FALSE(eval(std::string("output.missing ") + op + " 1")) << op;
    EXPECT_FALSE(eval(std::string("output.none ") + op + " output.none")) << op;
    EXPECT_FALSE(eval(std::string("[1] ") + op + " [1]")) << op;
  }
  // ... so `not (a < b)` is not `a >= b` when the types differ.
  EXPECT_TRUE(eval("not (output.missing < 1) and not (output.missing >= 1)"));
}

// ---------------------------------------------------------------------------
// Paths

TEST(ExprPathTest, AllFourRootsResolve) {
  EXPECT_TRUE(eval("input.lead_id == 'L-42'"));
  EXPECT_TRUE(eval("input.amount > 100"));
  EXPECT_TRUE(eval("record.owner == 'bob' and record.version == 4"));
  EXPECT_TRUE(eval("run.steps.qualify.score == 0.9"));
  EXPECT_TRUE(eval("run.attempt == 2"));
  EXPECT_TRUE(eval("output.meta.first-touch == 'mail'"));  // '-' inside a name
  EXPECT_TRUE(eval("output.meta.0 == 'zero key'"));        // a name may start with a digit
  EXPECT_TRUE(eval("output.meta.first_touch == null"));
}

TEST(ExprPathTest, IndexesIntoArrays) {
  EXPECT_TRUE(eval("output.items[0].sku == 'A-1'"));
  EXPECT_TRUE(eval("output.items[1].qty == 0"));
  EXPECT_TRUE(eval("output.matrix[1][0] == 3"));
  EXPECT_TRUE(eval("record.history[1] == 'b'"));
  const json arr = json::parse(R"([10, 20])");
  ExprScope scope{nullptr, &arr, nullptr, nullptr};
  EXPECT_TRUE(eval("output[1] == 20", scope));
  EXPECT_TRUE(eval("output == [10, 20]", scope));
}

TEST(ExprPathTest, MissingPathsAreNull) {
  EXPECT_TRUE(eval("output.missing == null"));
  EXPECT_TRUE(eval("output.missing.deeper.still == null"));
  EXPECT_TRUE(eval("output.items[2] == null"));            // out of range
  EXPECT_TRUE(eval("output.items[999999999].sku == null"));
  EXPECT_TRUE(eval("output.text[0] == null"));             // index into a string
  EXPECT_TRUE(eval("output.meta[0] == null"));             // index into an object
  EXPECT_TRUE(eval("output.items.sku == null"));           // name on an array
  EXPECT_TRUE(eval("output.count.value == null"));         // name on a number
  EXPECT_TRUE(eval("output.nothing.x == null"));           // through null
  EXPECT_FALSE(eval("output.missing"));
  EXPECT_FALSE(eval("output.missing == 0"));
  EXPECT_TRUE(eval("output.missing != 0"));
}

TEST(ExprPathTest, NullRootsReadAsNull) {
  ExprScope empty;
  EXPECT_TRUE(eval("input.x == null and output == null and record.a[0] == null and run.steps == null", empty));
  EXPECT_FALSE(eval("exists(output)", empty));
  EXPECT_FALSE(eval("output.score >= 0.7", empty));
  ExprScope only_output{nullptr, &kOutput, nullptr, nullptr};
  EXPECT_TRUE(eval("output.count == 3 and record.owner == null", only_output));
}

// ---------------------------------------------------------------------------
// in, contains, exists

TEST(ExprInTest, ArrayMembershipUsesJsonEquality) {
  EXPECT_TRUE(eval("output.intent in ['billing', 'refund']"));
  EXPECT_FALSE(eval("output.intent in ['refund', 'sales']"));
  EXPECT_FALSE(eval("output.intent in []"));
  EXPECT_TRUE(eval("'vip' in output.tags"));
  EXPECT_TRUE(eval("7 in output.tags"));
  EXPECT_TRUE(eval("7.0 in output.tags"));
  EXPECT_FALSE(eval("'7' in output.tags"));
  EXPECT_TRUE(eval("null in output.tags"));
  EXPECT_FALSE(eval("null in output.none"));
  EXPECT_TRUE(eval("[1, 2] in output.tags"));
  EXPECT_TRUE(eval("output.matrix[1] in [[1, 2], [3, 4]]"));
  EXPECT_TRUE(eval("output.tags[4] in output.tags"));  // an object element
  EXPECT_TRUE(eval("output.count in [1, 2, 3]"));
  EXPECT_TRUE(eval("output.count in [-1, 3.0]"));
  EXPECT_TRUE(eval("true in [false, true] and not (1 in [true])"));
}

TEST(ExprInTest, SubstringAndObjectKey) {
  EXPECT_TRUE(eval("'world' in output.text"));
  EXPECT_TRUE(eval("'' in output.text"));
  EXPECT_FALSE(eval("'World' in output.text"));
  EXPECT_TRUE(eval("'owner' in output.meta"));
  EXPECT_TRUE(eval("'first-touch' in output.meta"));
  EXPECT_FALSE(eval("'ada' in output.meta"));  // keys, not values
  EXPECT_FALSE(eval("0 in output.meta"));      // keys are strings
}

TEST(ExprInTest, AnythingElseIsFalse) {
  EXPECT_FALSE(eval("1 in 1"));
  EXPECT_FALSE(eval("'1' in 1"));
  EXPECT_FALSE(eval("0 in output.digit"));  // number in a string
  EXPECT_FALSE(eval("'a' in null"));
  EXPECT_FALSE(eval("'a' in output.missing"));
  EXPECT_FALSE(eval("output.missing in output.text"));
  EXPECT_FALSE(eval("true in true"));
}

TEST(ExprContainsTest, MirrorsIn) {
  EXPECT_TRUE(eval("output.tags contains 'eu'"));
  EXPECT_FALSE(eval("output.tags contains 'us'"));
  EXPECT_TRUE(eval("output.text contains 'lo wo'"));
  EXPECT_TRUE(eval("output.meta contains 'owner'"));
  EXPECT_TRUE(eval("['billing', 'refund'] contains output.intent"));
  EXPECT_FALSE(eval("'eu' contains output.tags"));
  EXPECT_FALSE(eval("output.missing contains 'x'"));
  EXPECT_FALSE(eval("output.count contains 3"));
  for (const char* item : {"'eu'", "7", "'x'", "null", "'owner'", "'hello'"}) {
    for (const char* container : {"output.tags", "output.meta", "output.text", "output.count"}) {
      std::string in = std::string(item) + " in " + container;
      std::string contains = std::string(container) + " contains " + item;
      EXPECT_EQ(eval(in), eval(contains)) << in;
    }
  }
}

TEST(ExprExistsTest, TrueForPresentNonNull) {
  EXPECT_TRUE(eval("exists(output.score)"));
  EXPECT_TRUE(eval("exists(output.no)"));     // false is a value
  EXPECT_TRUE(eval("exists(output.zero)"));
  EXPECT_TRUE(eval("exists(output.empty)"));
  EXPECT_TRUE(eval("exists(output.none)"));
  EXPECT_TRUE(eval("exists( output.items[1].qty )"));
  EXPECT_TRUE(eval("exists(output)"));
  EXPECT_FALSE(eval("exists(output.nothing)"));  // null
  EXPECT_FALSE(eval("exists(output.missing)"));
  EXPECT_FALSE(eval("exists(output.items[2])"));
  EXPECT_TRUE(eval("exists(record.owner) and not output.spam"));
  EXPECT_TRUE(eval("not exists(record.deleted_at)"));
}

// ---------------------------------------------------------------------------
// Logic

TEST(ExprLogicTest, TruthinessOfEveryKind) {
  for (const char* falsy : {"null", "false", "0", "0.0", "-0", "''", "[]", "output.zero", "output.fzero",
                            "output.empty", "output.none", "output.obj", "output.nothing", "output.missing"}) {
    EXPECT_FALSE(eval(falsy)) << falsy;
    EXPECT_TRUE(eval(std::string("not ") + falsy)) << falsy;
  }
  for (const char* truthy : {"true", "1", "-1", "0.001", "'0'", "' '", "[0]", "[null]", "output.digit",
                             "output.meta", "output.tags", "output.neg", "output.items[0]"}) {
    EXPECT_TRUE(eval(truthy)) << truthy;
    EXPECT_FALSE(eval(std::string("not ") + truthy)) << truthy;
  }
}

TEST(ExprLogicTest, AndOrUseTruthinessAndYieldBooleans) {
  EXPECT_TRUE(eval("output.count and output.text"));
  EXPECT_FALSE(eval("output.count and output.empty"));
  EXPECT_TRUE(eval("output.zero or output.tags"));
  EXPECT_FALSE(eval("output.zero or output.none or output.missing"));
  EXPECT_TRUE(eval("(output.count and output.text) == true"));  // a boolean, not the last operand
  EXPECT_TRUE(eval("(output.zero or 'x') == true"));
  EXPECT_TRUE(eval("(1 and 0) == false"));
}

TEST(ExprLogicTest, Precedence) {
  // not binds looser than comparison: not (1 == 2), not ((not 1) == 2).
  EXPECT_TRUE(eval("not 1 == 2"));
  EXPECT_TRUE(eval("not output.count == 4"));
  EXPECT_FALSE(eval("not output.count == 3"));
  // and binds tighter than or: true or (false and false).
  EXPECT_TRUE(eval("true or false and false"));
  EXPECT_FALSE(eval("(true or false) and false"));
  EXPECT_TRUE(eval("false and false or true"));
  EXPECT_FALSE(eval("false and (false or true)"));
  // not binds tighter than and / or.
  EXPECT_TRUE(eval("not false and true"));
  EXPECT_FALSE(eval("not (false or true)"));
  EXPECT_TRUE(eval("not false or false"));
  EXPECT_TRUE(eval("not not true"));
  EXPECT_FALSE(eval("not not not true"));
  // in / contains are comparisons.
  EXPECT_TRUE(eval("not 'x' in output.tags and 'eu' in output.tags"));
}

TEST(ExprLogicTest, ShortCircuitGuardsLaterOperands) {
  // The right side is only looked at when it decides the result; guarded reads
  // on absent data are safe either way (missing is null), and long chains work.
  EXPECT_FALSE(eval("exists(output.missing) and output.missing[0].sku == 'A-1'"));
  EXPECT_TRUE(eval("not exists(output.missing) or output.missing.x > 1"));
  EXPECT_TRUE(eval("output.yes or output.missing.x"));
  EXPECT_FALSE(eval("output.no and output.yes"));
  std::string chain = "output.count == 0";
  for (int i = 1; i <= 150; ++i) chain += " or output.count == " + std::to_string(i);
  ASSERT_LT(chain.size(), kMaxExpressionLength);
  EXPECT_TRUE(eval(chain));
  std::string all = "output.count == 3";
  for (int i = 0; i < 300; ++i) all += " and 1";
  EXPECT_TRUE(eval(all));
  EXPECT_FALSE(eval(all + " and output.no"));
  EXPECT_FALSE(eval("output.count == 0 or output.count == 1 or output.count == 2"));
}

TEST(ExprGrammarTest, WhitespaceAndParentheses) {
  EXPECT_TRUE(eval("  ( ( output.count==3 ) )  "));
  EXPECT_TRUE(eval("output.count\n==\t3\r\n"));
  EXPECT_TRUE(eval("(output.intent)in['billing']"));
  EXPECT_TRUE(eval("exists(output.score)and(output.score>0.7)"));
}

TEST(ExprGrammarTest, DocumentedExamples) {
  const json out = json::parse(R"({"confidence": 0.55, "intent": "refund", "spam": false})");
  const json rec = json::parse(R"({"owner": "ada"})");
  ExprScope scope{nullptr, &out, &rec, nullptr};
  EXPECT_TRUE(eval("output.confidence < 0.6", scope));
  EXPECT_TRUE(eval(R"(output.intent in ["billing", "refund"])", scope));
  EXPECT_TRUE(eval("exists(record.owner) and not output.spam", scope));
  const json spam = json::parse(R"({"spam": true})");
  EXPECT_FALSE(eval("exists(record.owner) and not output.spam", ExprScope{nullptr, &spam, &rec, nullptr}));
  EXPECT_FALSE(eval("exists(record.owner) and not output.spam", ExprScope{nullptr, &out, nullptr, nullptr}));
  // The rest of the examples in docs/conditions.md, over this file's scope.
  EXPECT_FALSE(eval("output.score >= 0.4 and output.score < 0.7"));
  EXPECT_TRUE(eval("output.items[0].sku == 'A-1'"));
  EXPECT_TRUE(eval(R"(run.steps.qualify.score > 0.9 or input.country in ["NL", "BE"])"));
  EXPECT_TRUE(eval(R"(output.tags contains "vip")"));
  EXPECT_TRUE(eval("not (output.total > 1000 and record.approved_by == null)"));
  EXPECT_TRUE(eval("output.approved"));
}

// ---------------------------------------------------------------------------
// The object

TEST(ExprConditionTest, TextReadsAndCopies) {
  Condition c = parse_ok("exists(record.owner) and output.x in [1] or run.attempt > 1");
  EXPECT_EQ(c.text(), "exists(record.owner) and output.x in [1] or run.attempt > 1");
  EXPECT_FALSE(c.empty());
  EXPECT_TRUE(c.reads("record"));
  EXPECT_TRUE(c.reads("output"));
  EXPECT_TRUE(c.reads("run"));
  EXPECT_FALSE(c.reads("input"));
  EXPECT_FALSE(c.reads("foo"));
  EXPECT_FALSE(c.reads(""));
  EXPECT_FALSE(parse_ok("'record.owner' == 'input'").reads("record"));  // strings are not paths
  EXPECT_TRUE(parse_ok("exists(input)").reads("input"));

  Condition copy = c;
  EXPECT_EQ(&copy.text(), &c.text());  // the parsed form is shared, not copied
  EXPECT_TRUE(copy.eval(kScope));
  ExprScope later{nullptr, nullptr, nullptr, nullptr};
  EXPECT_FALSE(copy.eval(later));

  Condition none;
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(none.text(), "");
  EXPECT_FALSE(none.eval(kScope));
  EXPECT_FALSE(none.reads("output"));
}

TEST(ExprConditionTest, ConcurrentEvalsAgree) {
  Condition c = parse_ok("output.intent in ['billing', 'refund'] and output.items[0].qty >= 2");
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (!c.eval(kScope)) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

// ---------------------------------------------------------------------------
// Errors: exact message and column

TEST(ExprErrorTest, StructureErrors) {
  EXPECT_EQ(error_of(""), "col 1: empty expression");
  EXPECT_EQ(error_of("   "), "col 4: empty expression");
  EXPECT_EQ(error_of("(output.a == 1"), "col 15: expected ')'");
  EXPECT_EQ(error_of("(output.a == 1 output.b"), "col 16: expected ')'");
  EXPECT_EQ(error_of("()"), "col 2: expected an expression after '('");
  EXPECT_EQ(error_of("output.a and"), "col 13: expected an expression after 'and'");
  EXPECT_EQ(error_of("output.a and )"), "col 14: expected an expression after 'and'");
  EXPECT_EQ(error_of("output.a or or output.b"), "col 13: expected an expression after 'or'");
  EXPECT_EQ(error_of("not"), "col 4: expected an expression after 'not'");
  EXPECT_EQ(error_of("output.a =="), "col 12: expected an expression after '=='");
  EXPECT_EQ(error_of("output.a in"), "col 12: expected an expression after 'in'");
  EXPECT_EQ(error_of("and output.a"), "col 1: expected an expression before 'and'");
  EXPECT_EQ(error_of("== 1"), "col 1: expected an expression before '=='");
  EXPECT_EQ(error_of("output.a output.b"), "col 10: unexpected 'output.b'");
  EXPECT_EQ(error_of("output.a 5"), "col 10: unexpected '5'");
  EXPECT_EQ(error_of("output.a == 1)"), "col 14: unexpected ')'");
  EXPECT_EQ(error_of("output.a 'a very long string literal here'"),
            "col 10: unexpected ''a very long string lite...'");
  EXPECT_EQ(error_of("output.a == 1 == 2"), "col 15: comparison operators do not chain; add parentheses");
  EXPECT_EQ(error_of("1 < output.a < 3"), "col 14: comparison operators do not chain; add parentheses");
  EXPECT_EQ(error_of("'a' in output.b in output.c"), "col 17: comparison operators do not chain; add parentheses");
  EXPECT_EQ(error_of("output.a == not output.b"), "col 13: put 'not ...' in parentheses here");
}

TEST(ExprErrorTest, WrongSpellingsGetAHint) {
  EXPECT_EQ(error_of("output.a && output.b"), "col 10: use 'and' instead of '&&'");
  EXPECT_EQ(error_of("output.a || output.b"), "col 10: use 'or' instead of '||'");
  EXPECT_EQ(error_of("output.a & output.b"), "col 10: use 'and' instead of '&'");
  EXPECT_EQ(error_of("output.a | output.b"), "col 10: use 'or' instead of '|'");
  EXPECT_EQ(error_of("!output.a"), "col 1: use 'not' instead of '!'");
  EXPECT_EQ(error_of("output.a = 1"), "col 10: use '==' instead of '='");
  EXPECT_EQ(error_of("output.a AND output.b"), "col 10: unknown name 'AND' (keywords are lowercase: 'and')");
  EXPECT_EQ(error_of("True"), "col 1: unknown name 'True' (keywords are lowercase: 'true')");
  EXPECT_EQ(error_of("foo == 1"), "col 1: unknown name 'foo' (use input., output., record. or run.)");
  EXPECT_EQ(error_of("output.a == foo.bar"), "col 13: unknown name 'foo' (use input., output., record. or run.)");
  EXPECT_EQ(error_of("Output.a"), "col 1: unknown name 'Output' (use input., output., record. or run.)");
  EXPECT_EQ(error_of("steps.a == 1"), "col 1: unknown name 'steps' (use input., output., record. or run.)");
  EXPECT_EQ(error_of("-output.a < 1"), "col 1: '-' applies only to number literals");
  EXPECT_EQ(error_of("output.a > - 1"), "col 12: '-' applies only to number literals");
  EXPECT_EQ(error_of("output.a # c"), "col 10: unexpected '#'");
  EXPECT_EQ(error_of("output.a == \xc3\xa9"), "col 13: unexpected character (byte 0xc3)");
}

TEST(ExprErrorTest, LiteralErrors) {
  EXPECT_EQ(error_of("output.a == 'abc"), "col 13: unterminated string");
  EXPECT_EQ(error_of("output.a == \"abc'"), "col 13: unterminated string");
  EXPECT_EQ(error_of("'abc\\"), "col 1: unterminated string");
  EXPECT_EQ(error_of("'a\\qb'"), "col 3: unknown escape '\\q' (use \\\\ \\' \\\" \\n or \\t)");
  EXPECT_EQ(error_of("output.a == 1."), "col 13: invalid number '1.'");
  EXPECT_EQ(error_of("1e == 1"), "col 1: invalid number '1e'");
  EXPECT_EQ(error_of("1e+ == 1"), "col 1: invalid number '1e+'");
  EXPECT_EQ(error_of("1abc"), "col 1: invalid number '1abc'");
  EXPECT_EQ(error_of("1.2.3 == 1"), "col 1: invalid number '1.2.3'");
  EXPECT_EQ(error_of("output.a == .5"), "col 13: unexpected '.'");
  EXPECT_EQ(error_of("output.a < 1e999"), "col 12: number out of range '1e999'");
  EXPECT_EQ(error_of("[output.a]"), "col 2: list items must be literals (numbers, strings, true, false, null)");
  EXPECT_EQ(error_of("1 in [1, (2)]"), "col 10: list items must be literals (numbers, strings, true, false, null)");
  EXPECT_EQ(error_of("1 in [1, ]"), "col 10: expected a list item after ','");
  EXPECT_EQ(error_of("1 in [1,"), "col 9: expected a list item after ','");
  EXPECT_EQ(error_of("1 in [1 2]"), "col 9: expected ',' or ']'");
  EXPECT_EQ(error_of("1 in [1"), "col 8: expected ',' or ']'");
  EXPECT_EQ(error_of("1 in [[1], [2]"), "col 15: expected ',' or ']'");
}

TEST(ExprErrorTest, PathAndExistsErrors) {
  EXPECT_EQ(error_of("output."), "col 8: expected a name after '.'");
  EXPECT_EQ(error_of("output.a. == 1"), "col 10: expected a name after '.'");
  EXPECT_EQ(error_of("output.-a"), "col 8: expected a name after '.'");
  EXPECT_EQ(error_of("output..a"), "col 8: expected a name after '.'");
  EXPECT_EQ(error_of("output["), "col 8: expected an index after '['");
  EXPECT_EQ(error_of("output.items[x]"), "col 14: expected an index after '['");
  EXPECT_EQ(error_of("output.items[-1]"), "col 14: index must be a non-negative integer");
  EXPECT_EQ(error_of("output.items[1234567890]"), "col 14: index too large");
  EXPECT_EQ(error_of("output.items[1"), "col 15: expected ']'");
  EXPECT_EQ(error_of("output.items[1 ]"), "col 15: expected ']'");
  EXPECT_EQ(error_of("exists output.a"), "col 8: expected '(' after 'exists'");
  EXPECT_EQ(error_of("exists(1)"), "col 8: exists() takes a path, e.g. exists(output.x)");
  EXPECT_EQ(error_of("exists()"), "col 8: exists() takes a path, e.g. exists(output.x)");
  EXPECT_EQ(error_of("exists(output.a"), "col 16: expected ')'");
  EXPECT_EQ(error_of("exists(output.a, output.b)"), "col 16: expected ')'");
}

TEST(ExprErrorTest, FirstErrorByPositionWins) {
  EXPECT_EQ(error_of(") && x"), "col 1: expected an expression before ')'");
  EXPECT_EQ(error_of("(output.a && 'abc"), "col 11: use 'and' instead of '&&'");
}

// ---------------------------------------------------------------------------
// Limits

TEST(ExprLimitTest, TextLength) {
  std::string text = "output.text == '" + std::string(kMaxExpressionLength - 17, 'x') + "'";
  ASSERT_EQ(text.size(), kMaxExpressionLength);
  EXPECT_FALSE(eval(text));
  EXPECT_EQ(error_of(text + " "), "col 4097: expression too long (4097 characters, limit 4096)");
  std::string huge(1'000'000, '(');
  EXPECT_EQ(error_of(huge), "col 4097: expression too long (1000000 characters, limit 4096)");
}

TEST(ExprLimitTest, NestingDepthOfParentheses) {
  auto nested = [](int n) { return std::string(n, '(') + "output.count == 3" + std::string(n, ')'); };
  EXPECT_TRUE(eval(nested(kMaxExpressionDepth)));
  EXPECT_EQ(error_of(nested(kMaxExpressionDepth + 1)), "col 65: expression nested too deeply (limit 64)");
  EXPECT_EQ(error_of(std::string(4000, '(')), "col 65: expression nested too deeply (limit 64)");
}

TEST(ExprLimitTest, NestingDepthOfNotAndLists) {
  std::string nots;
  for (int i = 0; i < kMaxExpressionDepth; ++i) nots += "not ";
  EXPECT_TRUE(eval(nots + "true"));  // an even number of nots
  EXPECT_EQ(error_of(nots + "not true"), "col 257: expression nested too deeply (limit 64)");

  auto lists = [](int n) { return "1 in " + std::string(n, '[') + "1" + std::string(n, ']'); };
  EXPECT_FALSE(eval(lists(kMaxExpressionDepth)));
  EXPECT_TRUE(eval("[[1]] in [[[1]]]"));
  EXPECT_EQ(error_of(lists(kMaxExpressionDepth + 1)), "col 70: expression nested too deeply (limit 64)");

  // Parentheses, not and lists share one budget.
  std::string mixed;
  for (int i = 0; i < 32; ++i) mixed += "(not ";
  EXPECT_EQ(error_of(mixed + "[1]" + std::string(32, ')')), "col 161: expression nested too deeply (limit 64)");
  std::string ok;
  for (int i = 0; i < 32; ++i) ok += "(not ";
  EXPECT_TRUE(eval(ok + "true" + std::string(32, ')')));
}

// ---------------------------------------------------------------------------
// Robustness: random token soup is either rejected with a column inside the text
// (or just past it) and a message, or accepted and evaluated; never a crash.

TEST(ExprRobustnessTest, RandomInputsParseOrFailCleanly) {
  const std::vector<std::string> pieces = {
      "output.items[0].sku", "output.tags", "record.owner", "run.steps.x", "input", "output.meta.0",
      "exists(", "exists", "(", ")", "[", "]", ",", "and", "or", "not", "in", "contains", "==", "!=",
      "<", "<=", ">", ">=", "=", "!", "&&", "'s\'q'", "\"d\"", "'open", "1", "-2.5e3", "1e999", "true",
      "null", "foo", "AND", ".", "-", "#", " ", "\n", "\xc3", "output.", "output[", "[1,", "1.2.3"};
  std::mt19937 rng(12345);
  std::uniform_int_distribution<std::size_t> pick(0, pieces.size() - 1);
  std::uniform_int_distribution<int> length(0, 12);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text;
    for (int n = length(rng); n > 0; --n) text += pieces[pick(rng)] + (rng() % 2 ? " " : "");
    auto r = Condition::parse(text);
    if (const auto* e = std::get_if<ExprError>(&r)) {
      ASSERT_GE(e->col, 1) << text;
      ASSERT_LE(e->col, static_cast<int>(text.size()) + 1) << text;
      ASSERT_FALSE(e->message.empty()) << text;
    } else {
      const Condition& c = std::get<Condition>(r);
      ASSERT_EQ(c.text(), text);
      bool first = c.eval(kScope);
      ASSERT_EQ(c.eval(kScope), first) << text;  // deterministic
      c.eval(ExprScope{});
      ++accepted;
    }
  }
  EXPECT_GT(accepted, 100);  // the soup does contain valid expressions
}

}  // namespace
}  // namespace baton::workflow
