#include "coordinator/auth.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <unordered_map>
#include <utility>

#include "common/util/yaml.h"

namespace baton::coordinator {

// ---- SHA-256 (FIPS 180-4 §6.2) ------------------------------------------------
// Our own ~60 lines instead of linking libcrypto for one function: the project
// adds no dependencies, and the unit test checks the FIPS/NIST vectors.

namespace {

constexpr std::array<std::uint32_t, 64> kRoundConstants = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

void compress(std::array<std::uint32_t, 8>& h, const std::uint8_t* block) {
  std::array<std::uint32_t, 64> w{};
  for (int t = 0; t < 16; ++t) {
    w[t] = (std::uint32_t{block[4 * t]} << 24) | (std::uint32_t{block[4 * t + 1]} << 16) |
           (std::uint32_t{block[4 * t + 2]} << 8) | std::uint32_t{block[4 * t + 3]};
  }
  for (int t = 16; t < 64; ++t) {
    std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  std::uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (int t = 0; t < 64; ++t) {
    std::uint32_t t1 =
        k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kRoundConstants[t] + w[t];
    std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    k = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

}  // namespace

std::array<std::uint8_t, 32> sha256(std::string_view data) {
  std::array<std::uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::size_t n = data.size();
  std::size_t full = n / 64 * 64;
  for (std::size_t i = 0; i < full; i += 64) compress(h, p + i);
  // Padding: 0x80, zeros, then the length in bits as a 64-bit big-endian number;
  // one block, or two when fewer than 9 bytes are left in the first.
  std::array<std::uint8_t, 128> tail{};
  std::size_t rest = n - full;
  if (rest > 0) std::memcpy(tail.data(), p + full, rest);
  tail[rest] = 0x80;
  std::size_t tail_len = rest + 9 <= 64 ? 64 : 128;
  std::uint64_t bits = static_cast<std::uint64_t>(n) * 8;
  for (int i = 0; i < 8; ++i) tail[tail_len - 1 - i] = static_cast<std::uint8_t>(bits >> (8 * i));
  for (std::size_t i = 0; i < tail_len; i += 64) compress(h, tail.data() + i);

  std::array<std::uint8_t, 32> out{};
  for (int i = 0; i < 8; ++i) {
    out[4 * i] = static_cast<std::uint8_t>(h[i] >> 24);
    out[4 * i + 1] = static_cast<std::uint8_t>(h[i] >> 16);
    out[4 * i + 2] = static_cast<std::uint8_t>(h[i] >> 8);
    out[4 * i + 3] = static_cast<std::uint8_t>(h[i]);
  }
  return out;
}

std::string to_hex(const std::array<std::uint8_t, 32>& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (std::uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  // Accumulate every difference; the volatile keeps the compiler from turning
  // the loop back into an early-exit comparison.
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    diff = static_cast<unsigned char>(diff |
                                      (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i])));
  return diff == 0;
}

// ---- roles and principals -----------------------------------------------------

const char* to_string(Role r) {
  switch (r) {
    case Role::kViewer:
      return "viewer";
    case Role::kApprover:
      return "approver";
    case Role::kOperator:
      return "operator";
    case Role::kAdmin:
      return "admin";
  }
  return "unknown";
}

std::optional<Role> parse_role(std::string_view s) {
  for (Role r : {Role::kViewer, Role::kApprover, Role::kOperator, Role::kAdmin})
    if (s == to_string(r)) return r;
  return std::nullopt;
}

bool Principal::may_decide(std::string_view group) const {
  switch (role) {
    case Role::kViewer:
      return false;
    case Role::kApprover:
      for (const auto& g : groups)
        if (g == group) return true;
      return false;
    case Role::kOperator:
    case Role::kAdmin:
      return true;
  }
  return false;
}

// ---- the token file -----------------------------------------------------------

namespace {

constexpr std::size_t kMaxNameLength = 128;
constexpr std::size_t kMaxGroupLength = 64;  // as the workflow parser's ids
const char* const kAnonymous = "anonymous";

std::string code(std::string_view s) { return "`" + std::string(s) + "`"; }

// Identities: [A-Za-z0-9][A-Za-z0-9._@+-]* (people, e-mail addresses, services).
bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > kMaxNameLength) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '@' && c != '+' && c != '-'))) return false;
  }
  return true;
}

// Approver groups use the workflow's id syntax (`approval: {group: ...}`).
bool valid_group(std::string_view s) {
  if (s.empty() || s.size() > kMaxGroupLength) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

// A token travels in a header: visible ASCII, no spaces. The reason, or "".
std::string token_problem(std::string_view t) {
  if (t.empty()) return "is empty";
  if (t.size() > kMaxTokenBytes) return "is longer than " + std::to_string(kMaxTokenBytes) + " bytes";
  for (char c : t)
    if (c < 0x21 || c > 0x7e)
      return "may hold only visible ASCII characters (no spaces or control characters)";
  return "";
}

bool is_null(const YAML::Node& n) { return !n.IsDefined() || n.IsNull(); }

// Reads at most `cap` bytes of a file; the error says why it could not.
Result<std::string> read_capped(const std::string& path, std::size_t cap) {
  std::error_code ec;
  auto st = std::filesystem::status(path, ec);  // follows symlinks (Kubernetes secret volumes)
  if (ec) return invalid(ec.message());
  if (!std::filesystem::is_regular_file(st)) return invalid("not a regular file");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return invalid(std::strerror(errno));
  std::string out;
  char buf[8192];
  bool too_large = false;
  bool failed = false;
  while (true) {
    std::size_t got = std::fread(buf, 1, sizeof buf, f);
    out.append(buf, got);
    if (out.size() > cap) {
      too_large = true;
      break;
    }
    if (got < sizeof buf) {
      failed = std::ferror(f) != 0;
      break;
    }
  }
  std::fclose(f);
  if (too_large) return Status(Code::kTooLarge, "larger than " + std::to_string(cap) + " bytes");
  if (failed) return invalid("read error");
  return out;
}

struct Parsed {
  std::array<std::uint8_t, 32> digest;
  Principal who;
};

// One key: value pair of a map.
struct Entry {
  YAML::Node key;
  YAML::Node value;
  std::string name;
  // A missing value ("role:") has the mark of whatever follows; point at the key.
  YAML::Mark where() const { return is_null(value) ? key.Mark() : value.Mark(); }
};

class TokenFileParser {
 public:
  explicit TokenFileParser(std::string file) : file_(std::move(file)) {}

  Result<std::vector<Parsed>> run(std::string_view text) {
    if (text.size() > kMaxTokenFileBytes) {
      fail_at(1, 1, "the file is larger than " + std::to_string(kMaxTokenFileBytes) + " bytes");
      return err_;
    }
    std::vector<YAML::Node> docs;
    try {
      docs = load_all_yaml(std::string(text));
    } catch (const YAML::Exception& e) {
      fail(e.mark, "YAML syntax error: " + e.msg);
      return err_;
    }
    if (docs.empty() || (docs.size() == 1 && is_null(docs[0]))) {
      fail_at(1, 1, "the file is empty: expected a map with `tokens: [...]`");
      return err_;
    }
    if (docs.size() > 1) {
      fail(docs[1].Mark(), "only one YAML document per file is allowed");
      return err_;
    }
    if (!parse_root(docs[0])) return err_;
    return std::move(out_);
  }

 private:
  bool fail_at(int line, int col, const std::string& reason) {
    err_ = invalid(file_ + ":" + std::to_string(line) + ":" + std::to_string(col) + ": " + reason);
    return false;
  }
  bool fail(const YAML::Mark& m, const std::string& reason) {
    if (m.is_null() || m.line < 0) return fail_at(1, 1, reason);
    return fail_at(m.line + 1, m.column + 1, reason);
  }
  bool fail(const YAML::Node& n, const std::string& reason) { return fail(n.Mark(), reason); }

  // The pairs of a map; refuses non-scalar keys, duplicate keys (yaml-cpp keeps
  // both and the later would be silently ignored) and keys not in `allowed`.
  bool entries(const YAML::Node& map, const std::vector<std::string>& allowed, std::string_view where,
               std::vector<Entry>& out) {
    std::unordered_map<std::string, int> first_line;
    for (auto it = map.begin(); it != map.end(); ++it) {
      YAML::Node k = it->first;
      YAML::Node v = it->second;
      if (!k.IsScalar()) return fail(k, "map keys must be strings");
      std::string name = k.Scalar();
      auto [pos, inserted] = first_line.emplace(name, k.Mark().line + 1);
      if (!inserted)
        return fail(k,
                    "duplicate key " + code(name) + " (first at line " + std::to_string(pos->second) + ")");
      bool known = false;
      for (const auto& a : allowed) known = known || a == name;
      if (!known) {
        std::string list;
        for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
        return fail(k, "unknown key " + code(name) + " " + std::string(where) + " (allowed: " + list + ")");
      }
      out.push_back({k, v, std::move(name)});
    }
    return true;
  }

  bool get_string(const Entry& e, std::string& out) {
    if (is_null(e.value)) return fail(e.where(), code(e.name) + " needs a value");
    if (!e.value.IsScalar()) return fail(e.value, code(e.name) + " must be a string");
    out = e.value.Scalar();
    return true;
  }

  bool parse_root(const YAML::Node& root) {
    if (!root.IsMap()) return fail(root, "the top level must be a map with `tokens: [...]`");
    std::vector<Entry> es;
    if (!entries(root, {"tokens"}, "at the top level", es)) return false;
    if (es.empty()) return fail(root, "missing `tokens: [...]`");
    const Entry& t = es[0];
    if (!t.value.IsSequence())
      return fail(t.where(), "`tokens` must be a list of {name, role, token...} maps");
    if (t.value.size() == 0) return fail(t.where(), "`tokens` is empty: nobody could call the API");
    for (auto it = t.value.begin(); it != t.value.end(); ++it)
      if (!parse_token(*it)) return false;
    return true;
  }

  bool parse_token(const YAML::Node& item) {
    if (!item.IsMap())
      return fail(item, "each entry of `tokens` must be a map with `name`, `role` and a token");
    std::vector<Entry> es;
    if (!entries(item, {"name", "role", "groups", "token", "token_sha256", "token_file"}, "in a token entry",
                 es))
      return false;
    const Entry* name = nullptr;
    const Entry* role = nullptr;
    const Entry* groups = nullptr;
    const Entry* secret = nullptr;  // token, token_sha256 or token_file
    for (const auto& e : es) {
      if (e.name == "name") {
        name = &e;
      } else if (e.name == "role") {
        role = &e;
      } else if (e.name == "groups") {
        groups = &e;
      } else if (secret) {
        return fail(e.key, "give only one of `token`, `token_sha256` and `token_file` (" +
                               code(secret->name) + " is already set)");
      } else {
        secret = &e;
      }
    }

    Parsed p;
    if (!name) return fail(item, "a token entry needs `name` (the caller's identity)");
    if (!get_string(*name, p.who.name)) return false;
    if (!valid_name(p.who.name))
      return fail(name->where(), "`name` must match [A-Za-z0-9][A-Za-z0-9._@+-]* (at most " +
                                     std::to_string(kMaxNameLength) + " characters)");
    if (p.who.name == kAnonymous)
      return fail(name->where(), "`name` anonymous is reserved for callers when authentication is off");
    if (auto [pos, fresh] = names_.emplace(p.who.name, name->key.Mark().line + 1); !fresh)
      return fail(name->where(), "duplicate name " + code(p.who.name) + " (first at line " +
                                     std::to_string(pos->second) + ")");

    if (!role)
      return fail(
          item, "the entry for " + code(p.who.name) + " needs `role` (viewer, approver, operator or admin)");
    std::string role_text;
    if (!get_string(*role, role_text)) return false;
    auto r = parse_role(role_text);
    if (!r)
      return fail(role->where(),
                  "unknown role " + code(role_text) + " (viewer, approver, operator or admin)");
    p.who.role = *r;

    if (groups && p.who.role != Role::kApprover) {
      return fail(groups->key, std::string("`groups` is only for approvers: ") +
                                   (p.who.role == Role::kViewer ? "a viewer decides no gate"
                                                                : std::string("an ") + to_string(p.who.role) +
                                                                      " decides every group"));
    }
    if (p.who.role == Role::kApprover) {
      if (!groups)
        return fail(role->where(), "an approver needs `groups: [...]` (the approver groups it decides)");
      if (!parse_groups(*groups, p.who.groups)) return false;
    }

    if (!secret)
      return fail(item, "the entry for " + code(p.who.name) +
                            " needs one of `token`, `token_sha256` or `token_file`");
    if (!parse_secret(*secret, p.digest)) return false;
    // Unique tokens: otherwise one secret would name two identities.
    if (auto [pos, fresh] = digests_.emplace(to_hex(p.digest), p.who.name); !fresh)
      return fail(secret->where(), "the token of " + code(p.who.name) + " is the same as the token of " +
                                       code(pos->second) + ": every caller needs its own token");
    out_.push_back(std::move(p));
    return true;
  }

  bool parse_groups(const Entry& e, std::vector<std::string>& out) {
    if (!e.value.IsSequence() || e.value.size() == 0)
      return fail(e.where(), "`groups` must be a non-empty list of approver group names");
    for (auto it = e.value.begin(); it != e.value.end(); ++it) {
      YAML::Node g = *it;
      if (!g.IsScalar() || !valid_group(g.Scalar()))
        return fail(g, "an approver group must match [a-z0-9][a-z0-9_-]* (at most " +
                           std::to_string(kMaxGroupLength) +
                           " characters), as `approval.group` in workflows");
      for (const auto& seen : out)
        if (seen == g.Scalar()) return fail(g, "group " + code(seen) + " is listed twice");
      out.push_back(g.Scalar());
    }
    return true;
  }

  // Never echoes a secret in a message.
  bool parse_secret(const Entry& e, std::array<std::uint8_t, 32>& digest) {
    std::string text;
    if (!get_string(e, text)) return false;
    if (e.name == "token") {
      if (std::string why = token_problem(text); !why.empty()) return fail(e.where(), "`token` " + why);
      digest = sha256(text);
      return true;
    }
    if (e.name == "token_sha256") {
      if (text.size() != 64)
        return fail(e.where(), "`token_sha256` must be 64 hex digits (the SHA-256 of the token)");
      for (std::size_t i = 0; i < 32; ++i) {
        int hi = hex_value(text[2 * i]);
        int lo = hex_value(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
          return fail(e.where(), "`token_sha256` must be 64 hex digits (the SHA-256 of the token)");
        digest[i] = static_cast<std::uint8_t>(hi * 16 + lo);
      }
      return true;
    }
    // token_file: the secret alone in a file (a mounted Kubernetes Secret key).
    if (text.empty()) return fail(e.where(), "`token_file` needs a path");
    std::filesystem::path path(text);
    if (path.is_relative()) path = std::filesystem::path(file_).parent_path() / path;
    auto content = read_capped(path.string(), kMaxTokenBytes + 2);
    if (!content) {
      std::string why = content.status().code() == Code::kTooLarge
                            ? "the token in it is longer than " + std::to_string(kMaxTokenBytes) + " bytes"
                            : content.status().message();
      return fail(e.where(), "cannot use token_file " + path.string() + ": " + why);
    }
    std::string secret = std::move(content).value();
    // One trailing newline (`echo secret > file`, or CRLF) is not part of the token.
    if (!secret.empty() && secret.back() == '\n') secret.pop_back();
    if (!secret.empty() && secret.back() == '\r') secret.pop_back();
    if (std::string why = token_problem(secret); !why.empty())
      return fail(e.where(), "the token in token_file " + path.string() + " " + why);
    digest = sha256(secret);
    return true;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::string file_;
  Status err_;
  std::vector<Parsed> out_;
  std::map<std::string, int> names_;            // name -> line
  std::map<std::string, std::string> digests_;  // hex digest -> name
};

}  // namespace

Result<Authenticator> Authenticator::parse(std::string_view yaml, const std::string& file) {
  auto parsed = TokenFileParser(file).run(yaml);
  if (!parsed) return parsed.status();
  Authenticator a;
  a.enabled_ = true;
  for (auto& p : *parsed) a.entries_.push_back({p.digest, std::move(p.who)});
  return a;
}

Result<Authenticator> Authenticator::load(const std::string& path) {
  auto text = read_capped(path, kMaxTokenFileBytes);
  if (!text) {
    std::string why = text.status().code() == Code::kTooLarge
                          ? "the file is " + text.status().message()
                          : "cannot read the token file: " + text.status().message();
    return invalid(path + ":1:1: " + why);
  }
  return parse(*text, path);
}

Authenticator Authenticator::open() { return Authenticator(); }

// ---- requests -----------------------------------------------------------------

namespace {

Status unauthenticated(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] - 'A' + 'a') : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] - 'A' + 'a') : b[i];
    if (x != y) return false;
  }
  return true;
}

// "Bearer <token>": whether the header names the Bearer scheme, and the token
// after it (empty when there is none).
struct BearerHeader {
  bool present = false;  // an Authorization header at all
  bool bearer = false;   // ... with the Bearer scheme
  std::string_view token;
};

BearerHeader bearer_of(const http::Request& req) {
  BearerHeader h;
  auto it = req.headers.find("authorization");
  if (it == req.headers.end()) return h;
  h.present = true;
  std::string_view v = trim(it->second);
  std::size_t sp = 0;
  while (sp < v.size() && !is_space(v[sp])) ++sp;
  if (!iequals(v.substr(0, sp), "bearer")) return h;
  h.bearer = true;
  h.token = trim(v.substr(sp));
  return h;
}

std::string clip(std::string_view s, std::size_t n = 200) {
  return s.size() <= n ? std::string(s) : std::string(s.substr(0, n)) + "...";
}

}  // namespace

Result<Principal> Authenticator::authenticate(const http::Request& req) const {
  if (!enabled_) return Principal{kAnonymous, Role::kAdmin, {}};
  BearerHeader h = bearer_of(req);
  if (!h.present) return unauthenticated("missing `Authorization: Bearer <token>` header");
  if (!h.bearer)
    return unauthenticated("the Authorization header must use the Bearer scheme: `Bearer <token>`");
  if (!token_problem(h.token).empty()) return unauthenticated("malformed bearer token");
  auto digest = sha256(h.token);
  std::string_view presented(reinterpret_cast<const char*>(digest.data()), digest.size());
  // Compare with every digest, never stopping early: the time taken does not
  // depend on which entry (if any) matched.
  const Entry* found = nullptr;
  for (const auto& e : entries_) {
    bool same = constant_time_equal(
        presented, std::string_view(reinterpret_cast<const char*>(e.digest.data()), e.digest.size()));
    found = same ? &e : found;
  }
  if (!found) return unauthenticated("the bearer token is not known");
  return found->who;
}

std::optional<Role> required_role(std::string_view method, std::string_view path) {
  const bool read = method == "GET" || method == "HEAD";
  if (read && (path == "/healthz" || path == "/readyz" || path == "/metrics")) return std::nullopt;
  if (path != "/v1" && path.rfind("/v1/", 0) != 0) return Role::kAdmin;

  std::vector<std::string_view> seg;  // the segments after "/v1"
  std::string_view rest = path.substr(3);
  while (!rest.empty()) {
    rest.remove_prefix(1);  // the '/'
    std::size_t end = rest.find('/');
    std::string_view s = rest.substr(0, end);
    if (s.empty() || s == "." || s == "..") return Role::kAdmin;
    seg.push_back(s);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  if (read) return Role::kViewer;
  if (method == "POST" && !seg.empty()) {
    if (seg[0] == "approvals" && (seg.size() == 2 || seg.size() == 3)) return Role::kApprover;
    if (seg[0] == "exceptions" && seg.size() == 2) return Role::kOperator;
    if (seg[0] == "runs" && seg.size() == 1) return Role::kOperator;
  }
  // PUT /v1/workflows and everything not listed.
  return Role::kAdmin;
}

std::optional<http::Response> authorize(const Authenticator& a, const http::Request& req, Principal& who) {
  if (!a.enabled()) {
    who = Principal{kAnonymous, Role::kAdmin, {}};
    return std::nullopt;
  }
  std::optional<Role> need = required_role(req.method, req.path);
  if (!need) {
    who = Principal{kAnonymous, Role::kViewer, {}};
    return std::nullopt;
  }
  auto p = a.authenticate(req);
  if (!p) {
    http::Response r = http::json_error(401, "unauthenticated", p.status().message());
    // RFC 6750 §3: no error attribute when no token was offered at all.
    r.headers["WWW-Authenticate"] =
        bearer_of(req).bearer ? R"(Bearer realm="baton", error="invalid_token")" : R"(Bearer realm="baton")";
    return r;
  }
  if (p->role < *need) {
    return http::json_error(403, "forbidden",
                            p->name + " has role " + to_string(p->role) + "; " + clip(req.method, 16) + " " +
                                clip(req.path) + " needs " + to_string(*need) + " or above");
  }
  who = std::move(p).value();
  return std::nullopt;
}

}  // namespace baton::coordinator
