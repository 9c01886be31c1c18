// Test support: poll a condition with a deadline (never a bare sleep).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace baton::testing {

// Polls `cond` every `every` until it returns true or `timeout` passes. On
// timeout the failure says what `describe` reports as last seen.
inline ::testing::AssertionResult wait_until(
    const std::function<bool()>& cond, std::chrono::milliseconds timeout,
    const std::function<std::string()>& describe = [] { return std::string(); },
    std::chrono::milliseconds every = std::chrono::milliseconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return ::testing::AssertionSuccess();
    if (std::chrono::steady_clock::now() >= deadline) {
      return ::testing::AssertionFailure()
             << "condition not met within " << timeout.count() << " ms; last seen: " << describe();
    }
    std::this_thread::sleep_for(every);
  }
}

}  // namespace baton::testing
