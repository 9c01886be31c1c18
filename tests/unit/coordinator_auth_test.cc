// Control-plane authentication and roles: the token file, bearer tokens, the
// endpoint table and the 401/403 answers. No servers: http::Request values.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "coordinator/auth.h"
#include "tests/support/process.h"

namespace baton::coordinator {
namespace {

using nlohmann::json;

// ---- SHA-256 and the comparison ---------------------------------------------

TEST(AuthSha256, FipsVectors) {
  // FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA256-2B.pdf") and the empty message.
  EXPECT_EQ(to_hex(sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(to_hex(sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(to_hex(sha256(std::string(1000000, 'a'))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(AuthSha256, PaddingBoundaries) {
  // Lengths around the one-block/two-block padding split (55/56) and block edges.
  const std::pair<std::size_t, const char*> cases[] = {
      {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
      {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
      {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
      {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
      {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
      {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
      {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
      {128, "6836cf13bac400e9105071cd6af47084dfacad4e5e302c94bfed24e013afb73e"},
  };
  for (const auto& [n, hex] : cases) EXPECT_EQ(to_hex(sha256(std::string(n, 'a'))), hex) << n << " bytes";
}

TEST(AuthCompare, ConstantTimeEqualIsEquality) {
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("secret", "secret"));
  EXPECT_FALSE(constant_time_equal("secret", "Secret"));   // first byte
  EXPECT_FALSE(constant_time_equal("secret", "secreT"));   // last byte
  EXPECT_FALSE(constant_time_equal("secret", "secret2"));  // lengths
  EXPECT_FALSE(constant_time_equal("", "x"));
  std::string a("a\0b", 3), b("a\0c", 3);
  EXPECT_FALSE(constant_time_equal(a, b));  // past an embedded NUL
  EXPECT_TRUE(constant_time_equal(a, std::string("a\0b", 3)));
  // Every single-bit difference in every position is seen.
  std::string base(40, '\x5a');
  for (std::size_t i = 0; i < base.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string other = base;
      other[i] = static_cast<char>(other[i] ^ (1 << bit));
      EXPECT_FALSE(constant_time_equal(base, other)) << i << "/" << bit;
    }
  }
}

// ---- roles ---------------------------------------------------------------------

TEST(AuthRoles, OrderedViewerApproverOperatorAdmin) {
  EXPECT_LT(Role::kViewer, Role::kApprover);
  EXPECT_LT(Role::kApprover, Role::kOperator);
  EXPECT_LT(Role::kOperator, Role::kAdmin);
  for (Role r : {Role::kViewer, Role::kApprover, Role::kOperator, Role::kAdmin}) {
    auto back = parse_role(to_string(r));
    ASSERT_TRUE(back.has_value()) << to_string(r);
    EXPECT_EQ(*back, r);
  }
  EXPECT_STREQ(to_string(Role::kApprover), "approver");
  EXPECT_FALSE(parse_role("Admin").has_value());
  EXPECT_FALSE(parse_role("root").has_value());
  EXPECT_FALSE(parse_role("").has_value());
}

TEST(AuthRoles, MayDecideByGroup) {
  Principal approver{"alice", Role::kApprover, {"sales-managers", "legal"}};
  EXPECT_TRUE(approver.may_decide("sales-managers"));
  EXPECT_TRUE(approver.may_decide("legal"));
  EXPECT_FALSE(approver.may_decide("finance"));
  EXPECT_FALSE(approver.may_decide("sales"));  // no prefix matching
  EXPECT_FALSE(approver.may_decide(""));
  Principal viewer{"vic", Role::kViewer, {}};
  EXPECT_FALSE(viewer.may_decide("sales-managers"));
  Principal op{"ops", Role::kOperator, {}};
  EXPECT_TRUE(op.may_decide("sales-managers"));
  EXPECT_TRUE(op.may_decide("finance"));
  Principal admin{"root", Role::kAdmin, {}};
  EXPECT_TRUE(admin.may_decide("anything"));
}

// ---- the token file --------------------------------------------------------------

class TokenFiles : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = baton::testing::make_temp_dir("baton-auth"); }
  void TearDown() override { baton::testing::remove_tree(dir_); }

  std::string write(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/" + name;
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out << content;
    EXPECT_TRUE(out.good()) << path;
    return path;
  }

  std::string dir_;
};

http::Request with_auth(const std::string& value, std::string method = "GET",
                        std::string path = "/v1/runs/r1") {
  http::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = r.path;
  r.headers["authorization"] = value;
  return r;
}

http::Request bare(std::string method, std::string path) {
  http::Request r;
  r.method = std::move(method);
  r.path = std::move(path);
  r.target = r.path;
  return r;
}

// sha256("carol-secret")
constexpr const char* kCarolDigest = "9e1d0a638ff9fd18986d8057aef3c36871aa54b27a6fcc6411fb32f8325675e2";

TEST_F(TokenFiles, GoodFileWithEveryTokenForm) {
  write("secrets/ops-token", "ops-secret\n");                 // `echo ops-secret > file`
  write("dora-token", "dora-secret\r\n");                     // CRLF
  std::string abs_secret = write("vic-token", "vic-secret");  // no newline
  std::string path = write("tokens.yaml", R"(# control-plane callers
tokens:
  - name: alice
    role: approver
    groups: [sales-managers, legal]
    token: "plain-secret"
  - name: carol
    role: admin
    token_sha256: ")" + std::string(kCarolDigest) +
                                              R"("
  - name: ops
    role: operator
    token_file: secrets/ops-token
  - name: dora@example.com
    role: approver
    groups:
      - finance
    token_file: dora-token
  - name: vic
    role: viewer
    token_file: )" + abs_secret + "\n");
  auto a = Authenticator::load(path);
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_TRUE(a->enabled());
  EXPECT_EQ(a->size(), 5u);

  auto alice = a->authenticate(with_auth("Bearer plain-secret"));
  ASSERT_TRUE(alice.is_ok()) << alice.status().to_string();
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->role, Role::kApprover);
  EXPECT_EQ(alice->groups, (std::vector<std::string>{"sales-managers", "legal"}));

  auto carol = a->authenticate(with_auth("Bearer carol-secret"));  // matched through its digest
  ASSERT_TRUE(carol.is_ok()) << carol.status().to_string();
  EXPECT_EQ(carol->name, "carol");
  EXPECT_EQ(carol->role, Role::kAdmin);
  EXPECT_TRUE(carol->groups.empty());
  // The digest itself is not a token.
  EXPECT_FALSE(a->authenticate(with_auth(std::string("Bearer ") + kCarolDigest)).is_ok());

  auto ops = a->authenticate(with_auth("Bearer ops-secret"));  // the trailing newline is not part of it
  ASSERT_TRUE(ops.is_ok()) << ops.status().to_string();
  EXPECT_EQ(ops->name, "ops");
  EXPECT_EQ(ops->role, Role::kOperator);

  auto dora = a->authenticate(with_auth("Bearer dora-secret"));
  ASSERT_TRUE(dora.is_ok()) << dora.status().to_string();
  EXPECT_EQ(dora->name, "dora@example.com");
  EXPECT_EQ(dora->groups, std::vector<std::string>{"finance"});

  auto vic = a->authenticate(with_auth("Bearer vic-secret"));
  ASSERT_TRUE(vic.is_ok()) << vic.status().to_string();
  EXPECT_EQ(vic->role, Role::kViewer);
}

TEST_F(TokenFiles, UpperCaseDigestAndNumericTokenText) {
  std::string upper = kCarolDigest;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto a = Authenticator::parse("tokens:\n  - {name: carol, role: admin, token_sha256: " + upper +
                                    "}\n  - {name: bot, role: viewer, token: 12345}\n",
                                "t.yaml");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->authenticate(with_auth("Bearer carol-secret"))->name, "carol");
  EXPECT_EQ(a->authenticate(with_auth("Bearer 12345"))->name, "bot");  // a plain scalar's text is the token
}

TEST_F(TokenFiles, LoadErrorsNameTheFile) {
  auto missing = Authenticator::load(dir_ + "/nope.yaml");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(missing.status().message().rfind(dir_ + "/nope.yaml:1:1: cannot read the token file", 0), 0u)
      << missing.status().message();

  auto is_dir = Authenticator::load(dir_);
  ASSERT_FALSE(is_dir.is_ok());
  EXPECT_NE(is_dir.status().message().find(":1:1: cannot read the token file: not a regular file"),
            std::string::npos)
      << is_dir.status().message();

  std::string big = write("big.yaml", "# " + std::string(kMaxTokenFileBytes, 'x') + "\n");
  auto too_big = Authenticator::load(big);
  ASSERT_FALSE(too_big.is_ok());
  EXPECT_EQ(too_big.status().message().rfind(big + ":1:1: the file is larger than", 0), 0u)
      << too_big.status().message();
}

struct BadCase {
  const char* what;
  std::string yaml;
  const char* where;  // "line:col"
  std::string says;   // a part of the message
};

TEST_F(TokenFiles, EachBadInputGivesFileLineCol) {
  write("empty-token", "\n");
  write("spaced-token", "two words\n");
  std::string long_token = write("long-token", std::string(kMaxTokenBytes + 1, 'x'));
  (void)long_token;
  const std::string d = "d8f1b3e7d2c44e0f9c0b6a1e5f3d2c1b0a9e8d7c6b5a49382716051423324150";  // some digest
  const BadCase cases[] = {
      {"yaml syntax", "tokens:\n  - name: [unclosed\n", "3:1", "YAML syntax error"},
      {"empty file", "", "1:1", "the file is empty"},
      {"only a comment", "# nothing\n", "1:1", "the file is empty"},
      {"two documents", "tokens: []\n---\ntokens: []\n", "3:1", "only one YAML document"},
      {"top level list", "- a\n- b\n", "1:1", "the top level must be a map"},
      {"unknown top key", "tokens:\n  - {name: a, role: admin, token: t}\nusers: []\n", "3:1",
       "unknown key `users` at the top level (allowed: tokens)"},
      {"missing tokens", "{}\n", "1:1", "missing `tokens"},
      {"tokens not a list", "tokens: alice\n", "1:9", "`tokens` must be a list"},
      {"tokens null", "tokens:\n", "1:1", "`tokens` must be a list"},
      {"tokens empty", "tokens: []\n", "1:9", "`tokens` is empty"},
      {"entry not a map", "tokens:\n  - alice\n", "2:5", "must be a map"},
      {"typo key", "tokens:\n  - name: a\n    role: admin\n    tokn: t\n", "4:5",
       "unknown key `tokn` in a token entry (allowed: name, role, groups, token, token_sha256, token_file)"},
      {"duplicate key", "tokens:\n  - name: a\n    role: admin\n    role: viewer\n    token: t\n", "4:5",
       "duplicate key `role` (first at line 3)"},
      {"missing name", "tokens:\n  - role: admin\n    token: t\n", "2:5", "needs `name`"},
      {"null name", "tokens:\n  - name:\n    role: admin\n    token: t\n", "2:5", "`name` needs a value"},
      {"name a list", "tokens:\n  - name: [a]\n    role: admin\n    token: t\n", "2:11",
       "`name` must be a string"},
      {"bad name", "tokens:\n  - name: al ice\n    role: admin\n    token: t\n", "2:11", "`name` must match"},
      {"reserved name", "tokens:\n  - name: anonymous\n    role: admin\n    token: t\n", "2:11", "reserved"},
      {"duplicate name",
       "tokens:\n  - {name: a, role: admin, token: t1}\n  - {name: a, role: viewer, token: t2}\n", "3:12",
       "duplicate name `a` (first at line 2)"},
      {"missing role", "tokens:\n  - name: a\n    token: t\n", "2:5", "needs `role`"},
      {"unknown role", "tokens:\n  - name: a\n    role: superuser\n    token: t\n", "3:11",
       "unknown role `superuser` (viewer, approver, operator or admin)"},
      {"groups on operator", "tokens:\n  - name: a\n    role: operator\n    groups: [x]\n    token: t\n",
       "4:5", "`groups` is only for approvers: an operator decides every group"},
      {"groups on viewer", "tokens:\n  - name: a\n    role: viewer\n    groups: [x]\n    token: t\n", "4:5",
       "a viewer decides no gate"},
      {"approver without groups", "tokens:\n  - name: a\n    role: approver\n    token: t\n", "3:11",
       "an approver needs `groups"},
      {"groups empty", "tokens:\n  - name: a\n    role: approver\n    groups: []\n    token: t\n", "4:13",
       "`groups` must be a non-empty list"},
      {"groups a string", "tokens:\n  - name: a\n    role: approver\n    groups: sales\n    token: t\n",
       "4:13", "`groups` must be a non-empty list"},
      {"bad group",
       "tokens:\n  - name: a\n    role: approver\n    groups: [sales, Sales_Team]\n    token: t\n", "4:21",
       "an approver group must match [a-z0-9][a-z0-9_-]*"},
      {"duplicate group",
       "tokens:\n  - name: a\n    role: approver\n    groups: [sales, sales]\n    token: t\n", "4:21",
       "group `sales` is listed twice"},
      {"no token", "tokens:\n  - name: a\n    role: admin\n", "2:5",
       "needs one of `token`, `token_sha256` or"},
      {"two tokens", "tokens:\n  - name: a\n    role: admin\n    token: t\n    token_sha256: " + d + "\n",
       "5:5", "give only one of `token`, `token_sha256` and `token_file` (`token` is already set)"},
      {"empty token", "tokens:\n  - name: a\n    role: admin\n    token: \"\"\n", "4:12", "`token` is empty"},
      {"null token", "tokens:\n  - name: a\n    role: admin\n    token:\n", "4:5", "`token` needs a value"},
      {"token with a space", "tokens:\n  - name: a\n    role: admin\n    token: \"two words\"\n", "4:12",
       "`token` may hold only visible ASCII"},
      {"token too long",
       "tokens:\n  - name: a\n    role: admin\n    token: " + std::string(kMaxTokenBytes + 1, 'x') + "\n",
       "4:12", "`token` is longer than 4096 bytes"},
      {"short digest", "tokens:\n  - name: a\n    role: admin\n    token_sha256: abc123\n", "4:19",
       "`token_sha256` must be 64 hex digits"},
      {"non-hex digest",
       "tokens:\n  - name: a\n    role: admin\n    token_sha256: " + std::string(63, 'a') + "g\n", "4:19",
       "`token_sha256` must be 64 hex digits"},
      {"duplicate token",
       "tokens:\n  - {name: a, role: admin, token: same-secret}\n  - {name: b, role: viewer, token: "
       "same-secret}\n",
       "3:36", "the token of `b` is the same as the token of `a`"},
      {"duplicate token via digest",
       "tokens:\n  - {name: carol, role: admin, token: carol-secret}\n  - {name: b, role: viewer, "
       "token_sha256: " +
           std::string(kCarolDigest) + "}\n",
       "3:43", "the token of `b` is the same as the token of `carol`"},
      {"token_file missing", "tokens:\n  - name: a\n    role: admin\n    token_file: nope\n", "4:17",
       "cannot use token_file " + dir_ + "/nope: "},
      {"token_file a directory", "tokens:\n  - name: a\n    role: admin\n    token_file: .\n", "4:17",
       "not a regular file"},
      {"token_file empty", "tokens:\n  - name: a\n    role: admin\n    token_file: empty-token\n", "4:17",
       "the token in token_file " + dir_ + "/empty-token is empty"},
      {"token_file with a space", "tokens:\n  - name: a\n    role: admin\n    token_file: spaced-token\n",
       "4:17", "may hold only visible ASCII"},
      {"token_file too long", "tokens:\n  - name: a\n    role: admin\n    token_file: long-token\n", "4:17",
       "longer than 4096 bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    std::string path = write("bad.yaml", c.yaml);
    auto a = Authenticator::load(path);
    ASSERT_FALSE(a.is_ok()) << c.what;
    EXPECT_EQ(a.status().code(), Code::kInvalidArgument);
    const std::string& m = a.status().message();
    EXPECT_EQ(m.rfind(path + ":" + c.where + ": ", 0), 0u) << m;
    EXPECT_NE(m.find(c.says), std::string::npos) << m;
    // A message never repeats a secret.
    EXPECT_EQ(m.find("same-secret"), std::string::npos) << m;
    EXPECT_EQ(m.find("carol-secret"), std::string::npos) << m;
    EXPECT_EQ(m.find("two words"), std::string::npos) << m;
  }
}

// ---- authenticate ------------------------------------------------------------------

Authenticator sample() {
  auto a = Authenticator::parse(R"(tokens:
  - {name: alice, role: approver, groups: [sales-managers], token: alice-secret}
  - {name: vic, role: viewer, token: vic-secret}
  - {name: ops, role: operator, token: ops-secret}
  - {name: root, role: admin, token: root-secret}
)",
                                "sample.yaml");
  EXPECT_TRUE(a.is_ok()) << a.status().to_string();
  return std::move(a).value();
}

TEST(AuthAuthenticate, HeaderForms) {
  Authenticator a = sample();
  EXPECT_EQ(a.authenticate(with_auth("Bearer alice-secret"))->name, "alice");
  EXPECT_EQ(a.authenticate(with_auth("bearer alice-secret"))->name, "alice");  // scheme is case-insensitive
  EXPECT_EQ(a.authenticate(with_auth("BEARER  alice-secret "))->name, "alice");
  EXPECT_EQ(a.authenticate(with_auth("Bearer\talice-secret"))->name, "alice");

  auto expect_denied = [&](const http::Request& r, const std::string& says) {
    auto p = a.authenticate(r);
    ASSERT_FALSE(p.is_ok()) << says;
    EXPECT_EQ(p.status().code(), Code::kPermissionDenied);
    EXPECT_NE(p.status().message().find(says), std::string::npos) << p.status().message();
  };
  expect_denied(bare("GET", "/v1/runs"), "missing `Authorization: Bearer <token>` header");
  expect_denied(with_auth("Basic YWxpY2U6c2VjcmV0"), "must use the Bearer scheme");
  expect_denied(with_auth("alice-secret"), "must use the Bearer scheme");
  expect_denied(with_auth("Bearer"), "malformed bearer token");
  expect_denied(with_auth("Bearer "), "malformed bearer token");
  expect_denied(with_auth("Bearer alice-secret extra"), "malformed bearer token");
  // Two Authorization headers arrive joined with ", " (common/http/server.cc).
  expect_denied(with_auth("Bearer alice-secret, Bearer vic-secret"), "malformed bearer token");
  expect_denied(with_auth("Bearer " + std::string(kMaxTokenBytes + 1, 'x')), "malformed bearer token");
  expect_denied(with_auth("Bearer wrong-secret"), "the bearer token is not known");
  expect_denied(with_auth("Bearer alice-secre"), "the bearer token is not known");
  expect_denied(with_auth("Bearer Alice-secret"),
                "the bearer token is not known");  // tokens are case-sensitive
}

TEST(AuthAuthenticate, OpenLetsEveryoneInAsAnonymousAdmin) {
  Authenticator a = Authenticator::open();
  EXPECT_FALSE(a.enabled());
  for (const auto& r : {bare("POST", "/v1/runs"), with_auth("Bearer whatever"), with_auth("Basic x")}) {
    auto p = a.authenticate(r);
    ASSERT_TRUE(p.is_ok());
    EXPECT_EQ(p->name, "anonymous");
    EXPECT_EQ(p->role, Role::kAdmin);
  }
}

// ---- the endpoint table --------------------------------------------------------------

TEST(AuthRequiredRole, EveryEndpointClass) {
  struct Row {
    const char* method;
    const char* path;
    std::optional<Role> need;
  };
  const Row rows[] = {
      // public
      {"GET", "/healthz", std::nullopt},
      {"GET", "/readyz", std::nullopt},
      {"GET", "/metrics", std::nullopt},
      {"HEAD", "/healthz", std::nullopt},
      // reads
      {"GET", "/v1", Role::kViewer},
      {"GET", "/v1/runs", Role::kViewer},
      {"GET", "/v1/runs/r-1", Role::kViewer},
      {"GET", "/v1/runs/r-1/audit", Role::kViewer},
      {"GET", "/v1/approvals", Role::kViewer},
      {"GET", "/v1/exceptions", Role::kViewer},
      {"GET", "/v1/workflows", Role::kViewer},
      {"GET", "/v1/workflows/lead/2", Role::kViewer},
      {"GET", "/v1/stats", Role::kViewer},
      {"HEAD", "/v1/runs/r-1", Role::kViewer},
      // approvals
      {"POST", "/v1/approvals/r-1/approve-step", Role::kApprover},
      {"POST", "/v1/approvals/gate-7", Role::kApprover},
      // operators
      {"POST", "/v1/exceptions/r-1", Role::kOperator},
      {"POST", "/v1/runs", Role::kOperator},
      // admin
      {"PUT", "/v1/workflows", Role::kAdmin},
      {"PUT", "/v1/workflows/lead", Role::kAdmin},
      {"POST", "/v1/workflows", Role::kAdmin},
      {"DELETE", "/v1/runs/r-1", Role::kAdmin},
      {"POST", "/v1/runs/r-1", Role::kAdmin},
      {"POST", "/v1/exceptions", Role::kAdmin},
      {"POST", "/v1/approvals", Role::kAdmin},
      {"POST", "/v1/approvals/a/b/c/d", Role::kAdmin},
      {"POST", "/v1/stats", Role::kAdmin},
      {"PATCH", "/v1/runs", Role::kAdmin},
      {"post", "/v1/runs", Role::kAdmin},  // methods are case-sensitive
      // not under /v1 and not public: default deny
      {"POST", "/healthz", Role::kAdmin},
      {"GET", "/", Role::kAdmin},
      {"GET", "/v1x/runs", Role::kAdmin},
      {"GET", "/v2/runs", Role::kAdmin},
      {"GET", "/metrics/extra", Role::kAdmin},
      // odd segments never match a lower row
      {"POST", "/v1/runs/", Role::kAdmin},
      {"POST", "/v1//runs", Role::kAdmin},
      {"POST", "/v1/approvals/../workflows", Role::kAdmin},
      {"POST", "/v1/exceptions/..", Role::kAdmin},
      {"POST", "/v1/approvals/./x", Role::kAdmin},
      {"GET", "/v1/runs/../../x", Role::kAdmin},
      {"GET", "/v1/", Role::kAdmin},
  };
  for (const auto& r : rows) {
    auto got = required_role(r.method, r.path);
    EXPECT_EQ(got, r.need) << r.method << " " << r.path << ": got " << (got ? to_string(*got) : "public")
                           << ", want " << (r.need ? to_string(*r.need) : "public");
  }
}

// ---- authorize ----------------------------------------------------------------------

json body_of(const http::Response& r) { return json::parse(r.body); }

TEST(AuthAuthorize, UnauthenticatedGets401WithChallenge) {
  Authenticator a = sample();
  Principal who;
  auto no_header = authorize(a, bare("GET", "/v1/runs/r1"), who);
  ASSERT_TRUE(no_header.has_value());
  EXPECT_EQ(no_header->status, 401);
  EXPECT_EQ(body_of(*no_header)["error"]["code"], "unauthenticated");
  EXPECT_EQ(no_header->headers.at("WWW-Authenticate"), R"(Bearer realm="baton")");

  auto wrong = authorize(a, with_auth("Bearer not-a-token", "POST", "/v1/runs"), who);
  ASSERT_TRUE(wrong.has_value());
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(body_of(*wrong)["error"]["code"], "unauthenticated");
  EXPECT_EQ(body_of(*wrong)["error"]["message"], "the bearer token is not known");
  EXPECT_EQ(wrong->headers.at("WWW-Authenticate"), R"(Bearer realm="baton", error="invalid_token")");

  auto basic = authorize(a, with_auth("Basic YWxpY2U6c2VjcmV0", "GET", "/v1/runs"), who);
  ASSERT_TRUE(basic.has_value());
  EXPECT_EQ(basic->status, 401);
  EXPECT_EQ(basic->headers.at("WWW-Authenticate"), R"(Bearer realm="baton")");
}

TEST(AuthAuthorize, LowRoleGets403) {
  Authenticator a = sample();
  Principal who;
  auto viewer_post = authorize(a, with_auth("Bearer vic-secret", "POST", "/v1/runs"), who);
  ASSERT_TRUE(viewer_post.has_value());
  EXPECT_EQ(viewer_post->status, 403);
  json b = body_of(*viewer_post);
  EXPECT_EQ(b["error"]["code"], "forbidden");
  EXPECT_EQ(b["error"]["message"], "vic has role viewer; POST /v1/runs needs operator or above");
  EXPECT_EQ(viewer_post->headers.count("WWW-Authenticate"), 0u);

  auto approver_exception = authorize(a, with_auth("Bearer alice-secret", "POST", "/v1/exceptions/r1"), who);
  ASSERT_TRUE(approver_exception.has_value());
  EXPECT_EQ(approver_exception->status, 403);

  auto operator_apply = authorize(a, with_auth("Bearer ops-secret", "PUT", "/v1/workflows"), who);
  ASSERT_TRUE(operator_apply.has_value());
  EXPECT_EQ(operator_apply->status, 403);
  EXPECT_EQ(body_of(*operator_apply)["error"]["message"],
            "ops has role operator; PUT /v1/workflows needs admin or above");

  auto viewer_decides = authorize(a, with_auth("Bearer vic-secret", "POST", "/v1/approvals/r1/gate"), who);
  ASSERT_TRUE(viewer_decides.has_value());
  EXPECT_EQ(viewer_decides->status, 403);
}

TEST(AuthAuthorize, AllowedCallersPassWithTheirIdentity) {
  Authenticator a = sample();
  Principal who;
  EXPECT_FALSE(authorize(a, with_auth("Bearer root-secret", "PUT", "/v1/workflows"), who).has_value());
  EXPECT_EQ(who.name, "root");
  EXPECT_EQ(who.role, Role::kAdmin);

  EXPECT_FALSE(authorize(a, with_auth("Bearer root-secret", "GET", "/v1/runs/r1"), who).has_value());
  EXPECT_EQ(who.name, "root");  // higher roles use lower endpoints

  EXPECT_FALSE(authorize(a, with_auth("Bearer ops-secret", "POST", "/v1/exceptions/r1"), who).has_value());
  EXPECT_EQ(who.name, "ops");
  EXPECT_FALSE(authorize(a, with_auth("Bearer ops-secret", "POST", "/v1/runs"), who).has_value());

  EXPECT_FALSE(authorize(a, with_auth("Bearer vic-secret", "GET", "/v1/exceptions"), who).has_value());
  EXPECT_EQ(who.name, "vic");
  EXPECT_EQ(who.role, Role::kViewer);

  // The approver passes the role check; the handler then checks the gate's group.
  EXPECT_FALSE(
      authorize(a, with_auth("Bearer alice-secret", "POST", "/v1/approvals/r1/gate"), who).has_value());
  EXPECT_EQ(who.name, "alice");
  EXPECT_TRUE(who.may_decide("sales-managers"));
  EXPECT_FALSE(who.may_decide("finance"));
}

TEST(AuthAuthorize, PublicEndpointsAndDisabledAuth) {
  Authenticator a = sample();
  Principal who{"stale", Role::kAdmin, {"x"}};
  // No header needed, and a bad one does not fail a probe.
  EXPECT_FALSE(authorize(a, bare("GET", "/healthz"), who).has_value());
  EXPECT_EQ(who.name, "anonymous");
  EXPECT_EQ(who.role, Role::kViewer);
  EXPECT_FALSE(authorize(a, with_auth("Bearer junk", "GET", "/metrics"), who).has_value());
  EXPECT_FALSE(authorize(a, bare("GET", "/readyz"), who).has_value());

  Authenticator off = Authenticator::open();
  EXPECT_FALSE(authorize(off, bare("PUT", "/v1/workflows"), who).has_value());
  EXPECT_EQ(who.name, "anonymous");
  EXPECT_EQ(who.role, Role::kAdmin);
  EXPECT_FALSE(authorize(off, bare("GET", "/healthz"), who).has_value());
  EXPECT_EQ(who.role, Role::kAdmin);
}

}  // namespace
}  // namespace baton::coordinator
