// Bearer-token authentication and role-based authorization for the coordinator's
// HTTP control plane (docs/security.md).
//
// Roles are ordered viewer < approver < operator < admin; a caller may use an
// endpoint when its role is at least the endpoint's required_role(). Approvers
// also carry approver groups: they decide only their groups' gates
// (Principal::may_decide; the approval handler checks the group).
//
// An Authenticator is immutable once built: every method is const and safe to
// call from any number of threads at once (the HTTP server's workers). It holds
// only SHA-256 digests of the tokens, never the secrets. To rotate tokens, load
// a new one and swap it in (e.g. behind a std::shared_ptr<const Authenticator>).
//
// Nothing here throws or logs; failures are Status values (yaml-cpp exceptions
// are caught inside load()).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/http/http.h"
#include "common/util/status.h"

namespace baton::coordinator {

// Ordered: compare with <, >= (a scoped enum's built-in comparisons).
enum class Role { kViewer = 0, kApprover = 1, kOperator = 2, kAdmin = 3 };

// "viewer", "approver", "operator", "admin".
const char* to_string(Role r);
// The inverse of to_string (exact, lower-case); nullopt for anything else.
std::optional<Role> parse_role(std::string_view s);

// Who is calling. `groups` is non-empty only for approvers.
struct Principal {
  std::string name;  // the identity recorded in the audit trail
  Role role = Role::kViewer;
  std::vector<std::string> groups;

  // Whether this caller may approve or reject a gate of approver group `group`:
  // operators and admins decide every group, approvers only their own, viewers none.
  bool may_decide(std::string_view group) const;
};

// The largest bearer token accepted, in the file or in a request.
inline constexpr std::size_t kMaxTokenBytes = 4096;
// The largest token file (YAML) and the largest `token_file:` secret file read.
inline constexpr std::size_t kMaxTokenFileBytes = 1 << 20;

class Authenticator {
 public:
  // Loads a token file (format in docs/security.md). Errors: kInvalidArgument
  // with "file:line:col: message" for bad YAML, an unknown key or role, a
  // duplicate name or token, groups on a non-approver, an empty or malformed
  // token, an unreadable `token_file:` (its value's position); "file:1:1: ..."
  // when the file itself cannot be read or is too large. A relative
  // `token_file:` is resolved against the token file's directory.
  static Result<Authenticator> load(const std::string& path);
  // The same from YAML text; `file` only names it in messages and is the base
  // for relative `token_file:` paths.
  static Result<Authenticator> parse(std::string_view yaml, const std::string& file);

  // Authentication disabled (no token file configured): every caller is
  // {name "anonymous", role admin}, whatever headers it sends.
  static Authenticator open();

  bool enabled() const { return enabled_; }
  std::size_t size() const { return entries_.size(); }  // tokens loaded

  // The caller named by the request's `authorization: Bearer <token>` header
  // (scheme case-insensitive; http::Request header names are lower-case).
  // Any error means "not authenticated" (the HTTP layer answers 401); its code
  // is kPermissionDenied (status.h has no unauthenticated code) and the message
  // says whether the header was missing, malformed or the token unknown. The
  // lookup hashes the presented token and compares it with every known digest
  // in constant time, without stopping at a match.
  Result<Principal> authenticate(const http::Request& req) const;

 private:
  struct Entry {
    std::array<std::uint8_t, 32> digest;
    Principal who;
  };
  Authenticator() = default;

  bool enabled_ = false;
  std::vector<Entry> entries_;
};

// The minimal role an endpoint needs; nullopt: no authentication at all.
// The table (docs/security.md "Endpoints and roles"), first match wins:
//   GET|HEAD /healthz, /readyz, /metrics        -> nullopt (public)
//   GET|HEAD /v1 and /v1/...                    -> viewer
//   POST /v1/approvals/{id}, /{run}/{step}      -> approver (the handler checks the group)
//   POST /v1/exceptions/{run}                   -> operator
//   POST /v1/runs                               -> operator
//   PUT /v1/workflows                           -> admin
//   anything else (other methods, other paths)  -> admin
// Paths are matched as sent (not percent-decoded); a path segment that is empty,
// "." or ".." never matches a lower-role row, so it falls to admin.
std::optional<Role> required_role(std::string_view method, std::string_view path);

// The full check for the HTTP layer, run before routing. Returns nullopt when
// the request may proceed and fills `who`: the authenticated caller; with
// authentication disabled {anonymous, admin}; on a public endpoint
// {anonymous, viewer} (the header is not looked at there). Otherwise returns
// the response to send: 401 {"error":{"code":"unauthenticated",...}} with a
// `WWW-Authenticate: Bearer realm="baton"` header (plus error="invalid_token"
// when a token was presented but not accepted), or 403
// {"error":{"code":"forbidden",...}} when the caller's role is too low.
std::optional<http::Response> authorize(const Authenticator& a, const http::Request& req, Principal& who);

// ---- building blocks, public for tests and tools ----------------------------

// SHA-256 (FIPS 180-4) of `data`.
std::array<std::uint8_t, 32> sha256(std::string_view data);
// Lower-case hex of a digest (64 characters).
std::string to_hex(const std::array<std::uint8_t, 32>& digest);
// Equality whose running time depends only on the lengths, not on where the
// contents differ (unequal lengths return false at once).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace baton::coordinator
