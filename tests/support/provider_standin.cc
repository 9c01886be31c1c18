#include "tests/support/provider_standin.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace baton::testing {
namespace {

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

std::string ProviderStandIn::Call::last_user_text() const {
  if (!body.is_object() || !body.contains("messages") || !body["messages"].is_array()) return "";
  const auto& msgs = body["messages"];
  for (auto it = msgs.rbegin(); it != msgs.rend(); ++it) {
    if (!it->is_object() || it->value("role", "") != "user") continue;
    const auto& c = (*it)["content"];
    if (c.is_string()) return c.get<std::string>();
    std::string text;
    if (c.is_array())
      for (const auto& block : c)
        if (block.is_object() && block.value("type", "") == "text") text += block.value("text", "");
    return text;
  }
  return "";
}

ProviderStandIn::ProviderStandIn(Script script) : script_(std::move(script)) {
  http::ServerOptions opts;
  opts.threads = 4;
  opts.max_body_bytes = 4u << 20;
  auto s = http::Server::start(opts, [this](const http::Request& r) { return handle(r); });
  if (!s) {
    ADD_FAILURE() << "provider stand-in: " << s.status().message();
    return;
  }
  server_ = std::move(s).value();
}

ProviderStandIn::~ProviderStandIn() {
  if (server_) server_->stop();
}

std::string ProviderStandIn::base_url() const {
  return server_ ? "http://127.0.0.1:" + std::to_string(server_->port()) + "/v1" : "";
}

std::vector<ProviderStandIn::Call> ProviderStandIn::calls() const {
  std::lock_guard lock(mu_);
  return calls_;
}

void ProviderStandIn::set_script(Script script) {
  std::lock_guard lock(mu_);
  script_ = std::move(script);
}

http::Response ProviderStandIn::handle(const http::Request& req) {
  Call call;
  if (req.method != "POST" || (req.path != "/v1/chat/completions" && req.path != "/v1/messages"))
    return http::json_error(404, "not_found", "no route " + req.method + " " + req.path);
  call.api = req.path == "/v1/messages" ? Api::kAnthropic : Api::kOpenAI;
  call.received_ms = steady_ms();
  call.path = req.path;
  call.headers = req.headers;
  call.body = nlohmann::json::parse(req.body, nullptr, false);
  if (call.body.is_discarded()) call.body = nullptr;
  Script script;
  {
    std::lock_guard lock(mu_);
    call.index = static_cast<int>(calls_.size());
    calls_.push_back(call);
    script = script_;
  }
  Reply reply = script ? script(call) : openai_error(500, "server_error", "no script");
  if (reply.delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(reply.delay_ms));
  http::Response resp;
  resp.status = reply.status;
  resp.body = reply.body;
  resp.headers = reply.headers;
  return resp;
}

ProviderStandIn::Reply ProviderStandIn::openai_text(const std::string& model, const std::string& content,
                                                    int tokens_in, int tokens_out) {
  nlohmann::json body = {
      {"id", "chatcmpl-standin"},
      {"object", "chat.completion"},
      {"created", 1700000000},
      {"model", model},
      {"choices",
       {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", content}}}, {"finish_reason", "stop"}}}},
      {"usage",
       {{"prompt_tokens", tokens_in}, {"completion_tokens", tokens_out}, {"total_tokens", tokens_in + tokens_out}}}};
  return Reply{200, body.dump(), {}, 0};
}

ProviderStandIn::Reply ProviderStandIn::openai_tool_calls(const std::string& model, const nlohmann::json& calls,
                                                          int tokens_in, int tokens_out) {
  nlohmann::json tool_calls = nlohmann::json::array();
  for (const auto& c : calls)
    tool_calls.push_back({{"id", c.at("id")},
                          {"type", "function"},
                          {"function", {{"name", c.at("name")}, {"arguments", c.at("arguments").dump()}}}});
  nlohmann::json body = {
      {"id", "chatcmpl-standin"},
      {"object", "chat.completion"},
      {"created", 1700000000},
      {"model", model},
      {"choices",
       {{{"index", 0},
         {"message", {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", tool_calls}}},
         {"finish_reason", "tool_calls"}}}},
      {"usage",
       {{"prompt_tokens", tokens_in}, {"completion_tokens", tokens_out}, {"total_tokens", tokens_in + tokens_out}}}};
  return Reply{200, body.dump(), {}, 0};
}

ProviderStandIn::Reply ProviderStandIn::openai_error(int status, const std::string& type, const std::string& message,
                                                     const std::string& retry_after) {
  nlohmann::json body = {{"error", {{"message", message}, {"type", type}, {"param", nullptr}, {"code", nullptr}}}};
  Reply r{status, body.dump(), {}, 0};
  if (!retry_after.empty()) r.headers["Retry-After"] = retry_after;
  return r;
}

ProviderStandIn::Reply ProviderStandIn::anthropic_text(const std::string& model, const std::string& text,
                                                       int tokens_in, int tokens_out) {
  nlohmann::json body = {{"id", "msg_standin"},
                         {"type", "message"},
                         {"role", "assistant"},
                         {"model", model},
                         {"content", {{{"type", "text"}, {"text", text}}}},
                         {"stop_reason", "end_turn"},
                         {"stop_sequence", nullptr},
                         {"usage", {{"input_tokens", tokens_in}, {"output_tokens", tokens_out}}}};
  return Reply{200, body.dump(), {}, 0};
}

ProviderStandIn::Reply ProviderStandIn::anthropic_tool_use(const std::string& model, const std::string& id,
                                                           const std::string& name, const nlohmann::json& input,
                                                           int tokens_in, int tokens_out) {
  nlohmann::json body = {
      {"id", "msg_standin"},
      {"type", "message"},
      {"role", "assistant"},
      {"model", model},
      {"content", {{{"type", "tool_use"}, {"id", id}, {"name", name}, {"input", input}}}},
      {"stop_reason", "tool_use"},
      {"stop_sequence", nullptr},
      {"usage", {{"input_tokens", tokens_in}, {"output_tokens", tokens_out}}}};
  return Reply{200, body.dump(), {}, 0};
}

ProviderStandIn::Reply ProviderStandIn::anthropic_error(int status, const std::string& type,
                                                        const std::string& message, const std::string& retry_after) {
  nlohmann::json body = {{"type", "error"}, {"error", {{"type", type}, {"message", message}}}};
  Reply r{status, body.dump(), {}, 0};
  if (!retry_after.empty()) r.headers["retry-after"] = retry_after;
  return r;
}

}  // namespace baton::testing
