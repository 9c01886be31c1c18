// Status and Result<T>: the one error type used across Baton.
// Expected failures (broker, Redis, network, bad payload, bad config) are values;
// foreign error codes are translated once, in the adapter that sees them.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace baton {

enum class Code {
  kOk = 0,
  kInvalidArgument,   // bad input from a caller (config, API body, message)
  kNotFound,
  kAlreadyExists,
  kUnavailable,       // Redis/Kafka/network down: retry later
  kFenced,            // a newer owner holds the partition (epoch check failed)
  kCollision,         // record version changed since it was read
  kPermissionDenied,  // write outside the step's `writes`
  kTimeout,
  kTooLarge,          // size cap exceeded before parsing
  kInternal,
};

const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status invalid(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).is_ok()); }  // NOLINT

  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace baton
