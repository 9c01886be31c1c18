#include "common/util/status.h"

namespace baton {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kAlreadyExists: return "already_exists";
    case Code::kUnavailable: return "unavailable";
    case Code::kFenced: return "fenced";
    case Code::kCollision: return "collision";
    case Code::kPermissionDenied: return "permission_denied";
    case Code::kTimeout: return "timeout";
    case Code::kTooLarge: return "too_large";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

}  // namespace baton
