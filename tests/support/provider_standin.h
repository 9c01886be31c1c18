// Test support: a local stand-in for an LLM provider, speaking the documented
// wire formats of OpenAI-compatible chat completions (POST
// /v1/chat/completions) and Anthropic Messages (POST /v1/messages) on a
// loopback port. A test scripts the replies; helpers build well-formed bodies
// (choices/message/tool_calls/usage; content blocks/tool_use/usage; and each
// API's error body). Every request is recorded.
//
// Threads: the script runs on the server's threads (4), concurrently; calls()
// is thread-safe. Stopped by the destructor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/http/http.h"

namespace baton::testing {

class ProviderStandIn {
 public:
  enum class Api { kOpenAI, kAnthropic };
  struct Call {
    Api api;
    int index = 0;               // 0-based, in arrival order
    int64_t received_ms = 0;     // steady clock
    std::string path;
    std::map<std::string, std::string> headers;  // lower-case names
    nlohmann::json body;         // the request body (null when it was not JSON)
    std::string model() const { return body.is_object() ? body.value("model", std::string()) : std::string(); }
    // The text of the last user message (string content or text blocks).
    std::string last_user_text() const;
  };
  struct Reply {
    int status = 200;
    std::string body;
    std::map<std::string, std::string> headers;
    int delay_ms = 0;  // sleep before answering (timeouts)
  };
  using Script = std::function<Reply(const Call&)>;

  // Starts on 127.0.0.1:<free port>. ADD_FAILURE and ok() false on error.
  explicit ProviderStandIn(Script script);
  ~ProviderStandIn();
  bool ok() const { return server_ != nullptr; }
  // "http://127.0.0.1:<port>/v1": the base URL both APIs are under.
  std::string base_url() const;
  std::vector<Call> calls() const;
  void set_script(Script script);

  // OpenAI chat completions.
  static Reply openai_text(const std::string& model, const std::string& content, int tokens_in = 10,
                           int tokens_out = 5);
  // `calls`: [{id, name, arguments(json)}]
  static Reply openai_tool_calls(const std::string& model, const nlohmann::json& calls, int tokens_in = 10,
                                 int tokens_out = 5);
  static Reply openai_error(int status, const std::string& type, const std::string& message,
                            const std::string& retry_after = "");
  // Anthropic messages.
  static Reply anthropic_text(const std::string& model, const std::string& text, int tokens_in = 10,
                              int tokens_out = 5);
  static Reply anthropic_tool_use(const std::string& model, const std::string& id, const std::string& name,
                                  const nlohmann::json& input, int tokens_in = 10, int tokens_out = 5);
  static Reply anthropic_error(int status, const std::string& type, const std::string& message,
                               const std::string& retry_after = "");

 private:
  http::Response handle(const http::Request& req);
  mutable std::mutex mu_;
  Script script_;
  std::vector<Call> calls_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace baton::testing
