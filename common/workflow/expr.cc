#include "common/workflow/expr.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

namespace baton::workflow {
namespace {

using nlohmann::json;

enum class Root : uint8_t { kInput, kOutput, kRecord, kRun };
constexpr std::string_view kRootNames[] = {"input", "output", "record", "run"};

// A number as JSON holds it. Two integers compare exactly (ids above 2^53 stay
// distinct); anything with a double compares as doubles.
struct Number {
  enum class Kind : uint8_t { kInt, kUnsigned, kDouble };
  Kind kind = Kind::kInt;
  union {
    int64_t i = 0;
    uint64_t u;
    double d;
  };
};

double as_double(const Number& n) {
  switch (n.kind) {
    case Number::Kind::kInt: return static_cast<double>(n.i);
    case Number::Kind::kUnsigned: return static_cast<double>(n.u);
    case Number::Kind::kDouble: return n.d;
  }
  return 0;
}

enum class Order : uint8_t { kLess, kEqual, kGreater, kUnordered };

template <class T>
Order order_of(T a, T b) {
  return a < b ? Order::kLess : (b < a ? Order::kGreater : Order::kEqual);
}

Order compare(const Number& a, const Number& b) {
  using K = Number::Kind;
  if (a.kind == K::kDouble || b.kind == K::kDouble) {
    double x = as_double(a), y = as_double(b);
    if (std::isnan(x) || std::isnan(y)) return Order::kUnordered;  // only from programmatic JSON
    return order_of(x, y);
  }
  if (a.kind == K::kInt && b.kind == K::kInt) return order_of(a.i, b.i);
  if (a.kind == K::kUnsigned && b.kind == K::kUnsigned) return order_of(a.u, b.u);
  if (a.kind == K::kInt) return a.i < 0 ? Order::kLess : order_of(static_cast<uint64_t>(a.i), b.u);
  return b.i < 0 ? Order::kGreater : order_of(a.u, static_cast<uint64_t>(b.i));
}

json to_json(const Number& n) {
  switch (n.kind) {
    case Number::Kind::kInt: return json(n.i);
    case Number::Kind::kUnsigned: return json(n.u);
    case Number::Kind::kDouble: return json(n.d);
  }
  return json();
}

// What evaluation works on: never a copy of JSON. Strings point into the scope or
// into the parsed literals; arrays and objects are the JSON node itself.
struct Value {
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kJson };
  Kind kind = Kind::kNull;
  bool b = false;
  Number n;
  std::string_view s;
  const json* j = nullptr;  // an array or an object

  static Value boolean(bool v) {
    Value r;
    r.kind = Kind::kBool;
    r.b = v;
    return r;
  }
};

Value from_json(const json* j) {
  Value v;
  if (j == nullptr) return v;
  switch (j->type()) {
    case json::value_t::boolean:
      return Value::boolean(j->get<bool>());
    case json::value_t::number_integer:
      v.kind = Value::Kind::kNumber;
      v.n.kind = Number::Kind::kInt;
      v.n.i = j->get<int64_t>();
      return v;
    case json::value_t::number_unsigned:
      v.kind = Value::Kind::kNumber;
      v.n.kind = Number::Kind::kUnsigned;
      v.n.u = j->get<uint64_t>();
      return v;
    case json::value_t::number_float:
      v.kind = Value::Kind::kNumber;
      v.n.kind = Number::Kind::kDouble;
      v.n.d = j->get<double>();
      return v;
    case json::value_t::string:
      v.kind = Value::Kind::kString;
      v.s = j->get_ref<const std::string&>();
      return v;
    case json::value_t::array:
    case json::value_t::object:
      v.kind = Value::Kind::kJson;
      v.j = j;
      return v;
    default:  // null, binary, discarded
      return v;
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::kNull: return false;
    case Value::Kind::kBool: return v.b;
    case Value::Kind::kNumber:
      switch (v.n.kind) {
        case Number::Kind::kInt: return v.n.i != 0;
        case Number::Kind::kUnsigned: return v.n.u != 0;
        case Number::Kind::kDouble: return v.n.d != 0 && !std::isnan(v.n.d);
      }
      return false;
    case Value::Kind::kString: return !v.s.empty();
    case Value::Kind::kJson: return !v.j->empty();
  }
  return false;
}

// JSON equality, numbers by value (1 == 1.0); different types are not equal.
bool equal(const Value& a, const Value& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Kind::kNull: return true;
    case Value::Kind::kBool: return a.b == b.b;
    case Value::Kind::kNumber: return compare(a.n, b.n) == Order::kEqual;
    case Value::Kind::kString: return a.s == b.s;
    case Value::Kind::kJson: return *a.j == *b.j;  // nlohmann also compares numbers by value
  }
  return false;
}

// `item in container` / `container contains item`.
bool holds(const Value& container, const Value& item) {
  if (container.kind == Value::Kind::kJson) {
    if (container.j->is_array()) {
      for (const json& e : *container.j) {
        if (equal(from_json(&e), item)) return true;
      }
      return false;
    }
    return item.kind == Value::Kind::kString && container.j->find(item.s) != container.j->end();
  }
  return container.kind == Value::Kind::kString && item.kind == Value::Kind::kString &&
         container.s.find(item.s) != std::string_view::npos;
}

enum class Op : uint8_t {
  kNull, kTrue, kFalse, kNumber, kString, kList, kPath, kExists,
  kNot, kAnd, kOr,
  kEq, kNe, kLt, kLe, kGt, kGe, kIn, kContains,
};

// a/b by op: literal and path nodes index their table; kNot: a = operand;
// kAnd/kOr: kids[a .. a+b); comparisons: a = left, b = right.
struct Node {
  Op op;
  uint32_t a = 0;
  uint32_t b = 0;
};

struct Segment {
  std::string name;  // when !is_index
  uint32_t index = 0;
  bool is_index = false;
};

struct Path {
  Root root;
  uint32_t first = 0;  // into Impl::segments
  uint32_t count = 0;
};

}  // namespace

struct Condition::Impl {
  std::string text;
  std::vector<Node> nodes;
  std::vector<uint32_t> kids;
  std::vector<Number> numbers;
  std::vector<std::string> strings;
  std::vector<json> lists;  // list literals, as JSON arrays
  std::vector<Path> paths;
  std::vector<Segment> segments;
  uint32_t top = 0;
  uint8_t roots_read = 0;  // bit per Root
};

namespace {

using Impl = Condition::Impl;

// ---------------------------------------------------------------------------
// Evaluation

const json* resolve(const Impl& m, const Path& p, const ExprScope& scope) {
  const json* cur = nullptr;
  switch (p.root) {
    case Root::kInput: cur = scope.input; break;
    case Root::kOutput: cur = scope.output; break;
    case Root::kRecord: cur = scope.record; break;
    case Root::kRun: cur = scope.run; break;
  }
  for (uint32_t k = p.first; cur != nullptr && k < p.first + p.count; ++k) {
    const Segment& s = m.segments[k];
    if (s.is_index) {
      cur = cur->is_array() && s.index < cur->size() ? &(*cur)[s.index] : nullptr;
    } else if (cur->is_object()) {
      auto it = cur->find(s.name);
      cur = it == cur->end() ? nullptr : &*it;
    } else {
      cur = nullptr;
    }
  }
  return cur;
}

// Recursion depth is bounded by the parser's nesting limit.
Value eval_node(const Impl& m, uint32_t index, const ExprScope& scope) {
  const Node& n = m.nodes[index];
  switch (n.op) {
    case Op::kNull: return Value();
    case Op::kTrue: return Value::boolean(true);
    case Op::kFalse: return Value::boolean(false);
    case Op::kNumber: {
      Value v;
      v.kind = Value::Kind::kNumber;
      v.n = m.numbers[n.a];
      return v;
    }
    case Op::kString: {
      Value v;
      v.kind = Value::Kind::kString;
      v.s = m.strings[n.a];
      return v;
    }
    case Op::kList: {
      Value v;
      v.kind = Value::Kind::kJson;
      v.j = &m.lists[n.a];
      return v;
    }
    case Op::kPath: return from_json(resolve(m, m.paths[n.a], scope));
    case Op::kExists: {
      const json* j = resolve(m, m.paths[n.a], scope);
      return Value::boolean(j != nullptr && !j->is_null());
    }
    case Op::kNot: return Value::boolean(!truthy(eval_node(m, n.a, scope)));
    case Op::kAnd:
      for (uint32_t k = n.a; k < n.a + n.b; ++k) {
        if (!truthy(eval_node(m, m.kids[k], scope))) return Value::boolean(false);
      }
      return Value::boolean(true);
    case Op::kOr:
      for (uint32_t k = n.a; k < n.a + n.b; ++k) {
        if (truthy(eval_node(m, m.kids[k], scope))) return Value::boolean(true);
      }
      return Value::boolean(false);
    default: break;
  }
  Value l = eval_node(m, n.a, scope);
  Value r = eval_node(m, n.b, scope);
  switch (n.op) {
    case Op::kEq: return Value::boolean(equal(l, r));
    case Op::kNe: return Value::boolean(!equal(l, r));
    case Op::kIn: return Value::boolean(holds(r, l));
    case Op::kContains: return Value::boolean(holds(l, r));
    default: break;
  }
  Order o = Order::kUnordered;
  if (l.kind == Value::Kind::kNumber && r.kind == Value::Kind::kNumber) {
    o = compare(l.n, r.n);
  } else if (l.kind == Value::Kind::kString && r.kind == Value::Kind::kString) {
    int c = l.s.compare(r.s);  // char_traits<char>: unsigned byte order
    o = c < 0 ? Order::kLess : (c > 0 ? Order::kGreater : Order::kEqual);
  }
  switch (n.op) {
    case Op::kLt: return Value::boolean(o == Order::kLess);
    case Op::kLe: return Value::boolean(o == Order::kLess || o == Order::kEqual);
    case Op::kGt: return Value::boolean(o == Order::kGreater);
    case Op::kGe: return Value::boolean(o == Order::kGreater || o == Order::kEqual);
    default: return Value();
  }
}

// ---------------------------------------------------------------------------
// Lexer and parser

enum class Tok : uint8_t {
  kEnd, kNumber, kString, kPath,
  kLParen, kRParen, kLBracket, kRBracket, kComma,
  kAnd, kOr, kNot, kIn, kContains, kTrue, kFalse, kNull, kExists,
  kEq, kNe, kLt, kLe, kGt, kGe,
};

struct Token {
  Tok kind = Tok::kEnd;
  std::size_t pos = 0;  // byte offset in the text
  std::size_t len = 0;
  Number number;        // kNumber
  std::string str;      // kString, decoded
  uint32_t path = 0;    // kPath: into Impl::paths
};

struct Keyword {
  std::string_view word;
  Tok kind;
};
constexpr Keyword kKeywords[] = {
    {"and", Tok::kAnd},   {"or", Tok::kOr},       {"not", Tok::kNot},           {"in", Tok::kIn},
    {"true", Tok::kTrue}, {"false", Tok::kFalse}, {"null", Tok::kNull},         {"exists", Tok::kExists},
    {"contains", Tok::kContains},
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_word_char(char c) { return is_alpha(c) || is_digit(c); }
bool is_name_char(char c) { return is_word_char(c) || c == '-'; }

std::optional<Op> comparison_op(Tok t) {
  switch (t) {
    case Tok::kEq: return Op::kEq;
    case Tok::kNe: return Op::kNe;
    case Tok::kLt: return Op::kLt;
    case Tok::kLe: return Op::kLe;
    case Tok::kGt: return Op::kGt;
    case Tok::kGe: return Op::kGe;
    case Tok::kIn: return Op::kIn;
    case Tok::kContains: return Op::kContains;
    default: return std::nullopt;
  }
}

// Recursive descent over a lazily lexed token stream, so that the first error by
// position is the one reported. Every function returns false / kFail after
// recording the error in err_.
class Parser {
 public:
  Parser(std::string_view text, Impl& m) : text_(text), m_(m) {}

  std::optional<ExprError> run() {
    if (!lex(cur_)) return err_;
    int top = parse_or();
    if (top < 0) return err_;
    if (cur_.kind != Tok::kEnd) {
      fail(cur_.pos, "unexpected '" + token_text(cur_) + "'");
      return err_;
    }
    m_.top = static_cast<uint32_t>(top);
    return std::nullopt;
  }

 private:
  static constexpr int kFail = -1;

  bool fail(std::size_t pos, std::string message) {
    if (!err_) err_ = ExprError{static_cast<int>(pos) + 1, std::move(message)};
    return false;
  }

  std::string token_text(const Token& t) const {
    constexpr std::size_t kMaxShown = 24;
    std::string_view s = text_.substr(t.pos, t.len);
    if (s.size() > kMaxShown) return std::string(s.substr(0, kMaxShown)) + "...";
    return std::string(s);
  }

  int add(Node n) {
    m_.nodes.push_back(n);
    return static_cast<int>(m_.nodes.size() - 1);
  }

  bool enter(std::size_t pos) {
    if (++depth_ > kMaxExpressionDepth) {
      return fail(pos, "expression nested too deeply (limit " + std::to_string(kMaxExpressionDepth) + ")");
    }
    return true;
  }
  void leave() { --depth_; }

  // ---- lexer

  bool advance() {
    prev_ = std::move(cur_);
    has_prev_ = true;
    cur_ = Token();
    return lex(cur_);
  }

  bool lex(Token& t) {
    while (i_ < text_.size() && (text_[i_] == ' ' || text_[i_] == '\t' || text_[i_] == '\n' || text_[i_] == '\r')) {
      ++i_;
    }
    t.pos = i_;
    if (i_ >= text_.size()) {
      t.kind = Tok::kEnd;
      return true;
    }
    char c = text_[i_];
    char next = i_ + 1 < text_.size() ? text_[i_ + 1] : '\0';
    auto simple = [&](Tok kind, std::size_t len) {
      t.kind = kind;
      t.len = len;
      i_ += len;
      return true;
    };
    switch (c) {
      case '(': return simple(Tok::kLParen, 1);
      case ')': return simple(Tok::kRParen, 1);
      case '[': return simple(Tok::kLBracket, 1);
      case ']': return simple(Tok::kRBracket, 1);
      case ',': return simple(Tok::kComma, 1);
      case '=':
        if (next == '=') return simple(Tok::kEq, 2);
        return fail(i_, "use '==' instead of '='");
      case '!':
        if (next == '=') return simple(Tok::kNe, 2);
        return fail(i_, "use 'not' instead of '!'");
      case '<': return next == '=' ? simple(Tok::kLe, 2) : simple(Tok::kLt, 1);
      case '>': return next == '=' ? simple(Tok::kGe, 2) : simple(Tok::kGt, 1);
      case '&': return fail(i_, next == '&' ? "use 'and' instead of '&&'" : "use 'and' instead of '&'");
      case '|': return fail(i_, next == '|' ? "use 'or' instead of '||'" : "use 'or' instead of '|'");
      case '"':
      case '\'': return lex_string(t);
      default: break;
    }
    if (c == '-' || is_digit(c)) return lex_number(t);
    if (is_alpha(c)) return lex_word(t);
    if (static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7f) {
      return fail(i_, std::string("unexpected '") + c + "'");
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned>(static_cast<unsigned char>(c)));
    return fail(i_, std::string("unexpected character (byte 0x") + hex + ")");
  }

  bool lex_string(Token& t) {
    const char quote = text_[i_];
    std::size_t start = i_++;
    std::string out;
    while (true) {
      if (i_ >= text_.size()) return fail(start, "unterminated string");
      char c = text_[i_];
      if (c == quote) {
        ++i_;
        break;
      }
      if (c != '\\') {
        out.push_back(c);
        ++i_;
        continue;
      }
      if (i_ + 1 >= text_.size()) return fail(start, "unterminated string");
      char e = text_[i_ + 1];
      switch (e) {
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'n': out.push_back('\n'); break;
        case 't': out.push_back('\t'); break;
        default:
          return fail(i_, std::string("unknown escape '\\") + e + "' (use \\\\ \\' \\\" \\n or \\t)");
      }
      i_ += 2;
    }
    t.kind = Tok::kString;
    t.len = i_ - start;
    t.str = std::move(out);
    return true;
  }

  // digits [ "." digits ] [ ("e"|"E") ["+"|"-"] digits ], with an optional leading "-".
  bool lex_number(Token& t) {
    std::size_t start = i_;
    auto digits = [&] {
      std::size_t s = i_;
      while (i_ < text_.size() && is_digit(text_[i_])) ++i_;
      return i_ > s;
    };
    auto invalid = [&] {
      while (i_ < text_.size() && (is_name_char(text_[i_]) || text_[i_] == '.')) ++i_;
      return fail(start, "invalid number '" + std::string(text_.substr(start, i_ - start)) + "'");
    };
    if (text_[i_] == '-') {
      ++i_;
      if (i_ >= text_.size() || !is_digit(text_[i_])) return fail(start, "'-' applies only to number literals");
    }
    digits();
    bool integral = true;
    if (i_ < text_.size() && text_[i_] == '.') {
      integral = false;
      ++i_;
      if (!digits()) return invalid();
    }
    if (i_ < text_.size() && (text_[i_] == 'e' || text_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < text_.size() && (text_[i_] == '+' || text_[i_] == '-')) ++i_;
      if (!digits()) return invalid();
    }
    if (i_ < text_.size() && (is_name_char(text_[i_]) || text_[i_] == '.')) return invalid();

    std::string_view s = text_.substr(start, i_ - start);
    const char* b = s.data();
    const char* e = s.data() + s.size();
    t.kind = Tok::kNumber;
    t.len = s.size();
    if (integral) {
      int64_t v = 0;
      if (auto r = std::from_chars(b, e, v); r.ec == std::errc() && r.ptr == e) {
        t.number.kind = Number::Kind::kInt;
        t.number.i = v;
        return true;
      }
      uint64_t u = 0;
      if (auto r = std::from_chars(b, e, u); r.ec == std::errc() && r.ptr == e) {
        t.number.kind = Number::Kind::kUnsigned;
        t.number.u = u;
        return true;
      }
      // Too big for 64 bits: falls through to a double, as a JSON parser would.
    }
    double d = 0;
    auto r = std::from_chars(b, e, d);
    if (r.ec != std::errc() || r.ptr != e || !std::isfinite(d)) {
      return fail(start, "number out of range '" + std::string(s) + "'");
    }
    t.number.kind = Number::Kind::kDouble;
    t.number.d = d;
    return true;
  }

  bool lex_word(Token& t) {
    std::size_t start = i_;
    while (i_ < text_.size() && is_word_char(text_[i_])) ++i_;
    std::string_view word = text_.substr(start, i_ - start);
    t.len = word.size();
    for (const Keyword& k : kKeywords) {
      if (k.word == word) {
        t.kind = k.kind;
        return true;
      }
    }
    for (std::size_t r = 0; r < std::size(kRootNames); ++r) {
      if (kRootNames[r] == word) return lex_path(t, static_cast<Root>(r));
    }
    std::string lower(word);
    for (char& c : lower) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    for (const Keyword& k : kKeywords) {
      if (k.word == lower) {
        return fail(start, "unknown name '" + std::string(word) + "' (keywords are lowercase: '" + lower + "')");
      }
    }
    return fail(start, "unknown name '" + std::string(word) + "' (use input., output., record. or run.)");
  }

  // After the root: ( "." name | "[" digits "]" )*, no spaces inside.
  bool lex_path(Token& t, Root root) {
    Path p{root, static_cast<uint32_t>(m_.segments.size()), 0};
    while (i_ < text_.size() && (text_[i_] == '.' || text_[i_] == '[')) {
      Segment seg;
      if (text_[i_] == '.') {
        std::size_t s = ++i_;
        if (i_ >= text_.size() || text_[i_] == '-' || !is_name_char(text_[i_])) {
          return fail(s, "expected a name after '.'");
        }
        while (i_ < text_.size() && is_name_char(text_[i_])) ++i_;
        seg.name = std::string(text_.substr(s, i_ - s));
      } else {
        std::size_t s = ++i_;
        if (i_ < text_.size() && text_[i_] == '-') return fail(s, "index must be a non-negative integer");
        while (i_ < text_.size() && is_digit(text_[i_])) ++i_;
        if (i_ == s) return fail(s, "expected an index after '['");
        if (i_ - s > 9) return fail(s, "index too large");
        if (i_ >= text_.size() || text_[i_] != ']') return fail(i_, "expected ']'");
        uint32_t v = 0;
        std::from_chars(text_.data() + s, text_.data() + i_, v);
        ++i_;
        seg.index = v;
        seg.is_index = true;
      }
      m_.segments.push_back(std::move(seg));
      ++p.count;
    }
    m_.roots_read |= static_cast<uint8_t>(1u << static_cast<unsigned>(root));
    m_.paths.push_back(p);
    t.kind = Tok::kPath;
    t.len = i_ - t.pos;
    t.path = static_cast<uint32_t>(m_.paths.size() - 1);
    return true;
  }

  // ---- grammar: or < and < not < comparison < primary

  int parse_or() { return parse_chain(Tok::kOr, Op::kOr, &Parser::parse_and); }
  int parse_and() { return parse_chain(Tok::kAnd, Op::kAnd, &Parser::parse_not); }

  // a OP b OP c ... as one n-ary node, so long chains do not nest.
  int parse_chain(Tok tok, Op op, int (Parser::*operand)()) {
    int first = (this->*operand)();
    if (first < 0 || cur_.kind != tok) return first;
    std::vector<uint32_t> items{static_cast<uint32_t>(first)};
    while (cur_.kind == tok) {
      if (!advance()) return kFail;
      int next = (this->*operand)();
      if (next < 0) return kFail;
      items.push_back(static_cast<uint32_t>(next));
    }
    Node n{op, static_cast<uint32_t>(m_.kids.size()), static_cast<uint32_t>(items.size())};
    m_.kids.insert(m_.kids.end(), items.begin(), items.end());
    return add(n);
  }

  int parse_not() {
    if (cur_.kind != Tok::kNot) return parse_comparison();
    if (!enter(cur_.pos) || !advance()) return kFail;
    int operand = parse_not();
    leave();
    if (operand < 0) return kFail;
    return add(Node{Op::kNot, static_cast<uint32_t>(operand), 0});
  }

  int parse_comparison() {
    int left = parse_primary();
    if (left < 0) return kFail;
    std::optional<Op> op = comparison_op(cur_.kind);
    if (!op) return left;
    if (!advance()) return kFail;
    int right = parse_primary();
    if (right < 0) return kFail;
    if (comparison_op(cur_.kind)) {
      fail(cur_.pos, "comparison operators do not chain; add parentheses");
      return kFail;
    }
    return add(Node{*op, static_cast<uint32_t>(left), static_cast<uint32_t>(right)});
  }

  int expected_expression() {
    if (!has_prev_) {
      if (cur_.kind == Tok::kEnd) {
        fail(cur_.pos, "empty expression");
      } else {
        fail(cur_.pos, "expected an expression before '" + token_text(cur_) + "'");
      }
    } else {
      fail(cur_.pos, "expected an expression after '" + token_text(prev_) + "'");
    }
    return kFail;
  }

  int parse_primary() {
    switch (cur_.kind) {
      case Tok::kNumber: {
        m_.numbers.push_back(cur_.number);
        int n = add(Node{Op::kNumber, static_cast<uint32_t>(m_.numbers.size() - 1), 0});
        return advance() ? n : kFail;
      }
      case Tok::kString: {
        m_.strings.push_back(std::move(cur_.str));
        int n = add(Node{Op::kString, static_cast<uint32_t>(m_.strings.size() - 1), 0});
        return advance() ? n : kFail;
      }
      case Tok::kTrue:
      case Tok::kFalse:
      case Tok::kNull: {
        Op op = cur_.kind == Tok::kTrue ? Op::kTrue : (cur_.kind == Tok::kFalse ? Op::kFalse : Op::kNull);
        int n = add(Node{op, 0, 0});
        return advance() ? n : kFail;
      }
      case Tok::kPath: {
        int n = add(Node{Op::kPath, cur_.path, 0});
        return advance() ? n : kFail;
      }
      case Tok::kLParen: {
        if (!enter(cur_.pos) || !advance()) return kFail;
        int inner = parse_or();
        if (inner < 0) return kFail;
        if (cur_.kind != Tok::kRParen) {
          fail(cur_.pos, "expected ')'");
          return kFail;
        }
        leave();
        return advance() ? inner : kFail;
      }
      case Tok::kLBracket: {
        json list;
        if (!parse_list(list)) return kFail;
        m_.lists.push_back(std::move(list));
        return add(Node{Op::kList, static_cast<uint32_t>(m_.lists.size() - 1), 0});
      }
      case Tok::kExists: {
        if (!advance()) return kFail;
        if (cur_.kind != Tok::kLParen) {
          fail(cur_.pos, "expected '(' after 'exists'");
          return kFail;
        }
        if (!advance()) return kFail;
        if (cur_.kind != Tok::kPath) {
          fail(cur_.pos, "exists() takes a path, e.g. exists(output.x)");
          return kFail;
        }
        uint32_t path = cur_.path;
        if (!advance()) return kFail;
        if (cur_.kind != Tok::kRParen) {
          fail(cur_.pos, "expected ')'");
          return kFail;
        }
        int n = add(Node{Op::kExists, path, 0});
        return advance() ? n : kFail;
      }
      case Tok::kNot:
        fail(cur_.pos, "put 'not ...' in parentheses here");
        return kFail;
      default:
        return expected_expression();
    }
  }

  // "[" [ literal ( "," literal )* ] "]" with cur_ at "[". Items are literals
  // (nested lists too), so the list is a constant built once.
  bool parse_list(json& out) {
    if (!enter(cur_.pos) || !advance()) return false;
    out = json::array();
    if (cur_.kind == Tok::kRBracket) {
      leave();
      return advance();
    }
    while (true) {
      bool advanced = false;  // a nested list moves past its own ']'
      switch (cur_.kind) {
        case Tok::kNumber: out.push_back(to_json(cur_.number)); break;
        case Tok::kString: out.push_back(cur_.str); break;
        case Tok::kTrue: out.push_back(true); break;
        case Tok::kFalse: out.push_back(false); break;
        case Tok::kNull: out.push_back(nullptr); break;
        case Tok::kLBracket: {
          json inner;
          if (!parse_list(inner)) return false;
          out.push_back(std::move(inner));
          advanced = true;
          break;
        }
        case Tok::kPath:
        case Tok::kLParen:
        case Tok::kExists:
        case Tok::kNot:
          return fail(cur_.pos, "list items must be literals (numbers, strings, true, false, null)");
        default:
          return fail(cur_.pos, "expected a list item after '" + token_text(prev_) + "'");
      }
      if (!advanced && !advance()) return false;
      if (cur_.kind == Tok::kComma) {
        if (!advance()) return false;
        continue;
      }
      if (cur_.kind == Tok::kRBracket) break;
      return fail(cur_.pos, "expected ',' or ']'");
    }
    leave();
    return advance();
  }

  std::string_view text_;
  Impl& m_;
  std::size_t i_ = 0;  // lexer position
  Token cur_;
  Token prev_;
  bool has_prev_ = false;
  int depth_ = 0;
  std::optional<ExprError> err_;
};

}  // namespace

std::variant<Condition, ExprError> Condition::parse(std::string_view text) {
  if (text.size() > kMaxExpressionLength) {
    return ExprError{static_cast<int>(kMaxExpressionLength) + 1,
                     "expression too long (" + std::to_string(text.size()) + " characters, limit " +
                         std::to_string(kMaxExpressionLength) + ")"};
  }
  auto impl = std::make_shared<Impl>();
  impl->text = std::string(text);
  Parser parser(impl->text, *impl);
  if (std::optional<ExprError> err = parser.run()) return std::move(*err);
  return Condition(std::move(impl));
}

bool Condition::eval(const ExprScope& scope) const noexcept {
  if (!impl_) return false;
  return truthy(eval_node(*impl_, impl_->top, scope));
}

const std::string& Condition::text() const {
  static const std::string kEmpty;
  return impl_ ? impl_->text : kEmpty;
}

bool Condition::reads(std::string_view root) const {
  if (!impl_) return false;
  for (std::size_t r = 0; r < std::size(kRootNames); ++r) {
    if (kRootNames[r] == root) return (impl_->roots_read >> r) & 1u;
  }
  return false;
}

}  // namespace baton::workflow
