// The llm agent against a local stand-in provider speaking the OpenAI chat
// completions and Anthropic messages wire formats on a loopback port.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "baton/agent.h"
#include "common/http/http.h"
#include "tests/support/provider_standin.h"

namespace {

using baton::agent::AgentOutput;
using baton::agent::AgentRegistry;
using baton::agent::OwnedInput;
using baton::agent::StepInfo;
using baton::testing::ProviderStandIn;
using nlohmann::json;

constexpr const char* kKey = "sk-standin-SECRET-7f3a";

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StepInfo classify_step() {
  StepInfo s;
  s.workflow = "support-triage-llm";
  s.version = 1;
  s.step = "classify";
  s.output = {{"intent", "string"}, {"confidence", "number"}, {"summary", "string?"}};
  return s;
}

baton::v1::Task task(const std::string& run = "run-1", int64_t deadline_in_ms = 30000) {
  baton::v1::Task t;
  t.set_run_id(run);
  t.set_step_id("classify");
  t.set_attempt(1);
  t.set_idempotency_key(run + ":classify:1");
  t.set_deadline_unix_ms(now_unix_ms() + deadline_in_ms);
  return t;
}

json ticket() { return {{"ticket_id", "T-1"}, {"subject", "Charged twice"}, {"message", "I was charged twice in May"}}; }

class LlmAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("BATON_TEST_LLM_KEY", kKey, 1);
    baton::agent::register_builtin_agents(registry_);
  }

  json base_config(const ProviderStandIn& p) {
    return {{"base_url", p.base_url()},
            {"api_key_env", "BATON_TEST_LLM_KEY"},
            {"model", "gpt-standin"},
            {"system", "You triage support tickets."},
            {"prompt", "Ticket {{input.ticket_id}}: {{input.subject}}\n{{input.message}}"},
            {"backoff_ms", 10},
            {"prices", {{"gpt-standin", {{"input", 0.15}, {"output", 0.6}}}, {"cheap", {{"input", 0.05}, {"output", 0.1}}}}}};
  }

  AgentOutput run(const json& cfg, const StepInfo& step = classify_step(), baton::v1::Task t = task()) {
    auto agent = registry_.create("llm", cfg, step);
    EXPECT_TRUE(agent) << agent.status().message();
    if (!agent) return AgentOutput::fail(AgentOutput::kFailed, "test", "no agent");
    OwnedInput in(std::move(t), ticket());
    return (*agent)->execute(in.view());
  }

  AgentRegistry registry_;
};

TEST_F(LlmAgentTest, OpenAIStructuredOutputWithUsageAndCost) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.92})", 120, 30);
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_code << ": " << out.error_message;
  EXPECT_EQ(out.output, (json{{"intent", "billing"}, {"confidence", 0.92}}));
  EXPECT_EQ(out.usage.tokens_in, 120u);
  EXPECT_EQ(out.usage.tokens_out, 30u);
  EXPECT_EQ(out.usage.cost_micros, 36u);  // 120 x 0.15 + 30 x 0.6 micro-USD
  EXPECT_EQ(out.usage.model, "gpt-standin");
  EXPECT_EQ(out.usage.model_reason, "primary");

  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 1u);
  const auto& c = calls[0];
  EXPECT_EQ(c.path, "/v1/chat/completions");
  EXPECT_EQ(c.headers.at("authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(c.model(), "gpt-standin");
  ASSERT_TRUE(c.body["messages"].is_array());
  ASSERT_EQ(c.body["messages"].size(), 2u);
  EXPECT_EQ(c.body["messages"][0]["role"], "system");
  std::string system = c.body["messages"][0]["content"];
  EXPECT_NE(system.find("You triage support tickets."), std::string::npos);
  EXPECT_NE(system.find("JSON object"), std::string::npos);
  EXPECT_EQ(c.last_user_text(), "Ticket T-1: Charged twice\nI was charged twice in May");
  const json& rf = c.body["response_format"];
  EXPECT_EQ(rf["type"], "json_schema");
  EXPECT_EQ(rf["json_schema"]["schema"]["required"], (json{"confidence", "intent"}));
  EXPECT_EQ(rf["json_schema"]["schema"]["properties"]["confidence"]["type"], "number");
  EXPECT_EQ(c.body["max_tokens"], 1024);
}

TEST_F(LlmAgentTest, AnthropicMessagesWithSystemAndKeyHeader) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::anthropic_text(c.model(), "```json\n{\"intent\": \"compliance\", \"confidence\": 0.8}\n```",
                                           50, 12);
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["api"] = "anthropic";
  cfg["model"] = "claude-standin";
  cfg["max_tokens"] = 300;
  cfg["temperature"] = 0;
  AgentOutput out = run(cfg);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_code << ": " << out.error_message;
  EXPECT_EQ(out.output, (json{{"intent", "compliance"}, {"confidence", 0.8}}));
  EXPECT_EQ(out.usage.tokens_in, 50u);
  EXPECT_EQ(out.usage.tokens_out, 12u);
  EXPECT_EQ(out.usage.cost_micros, 0u);  // no price for claude-standin
  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].path, "/v1/messages");
  EXPECT_EQ(calls[0].headers.at("x-api-key"), kKey);
  EXPECT_EQ(calls[0].headers.at("anthropic-version"), "2023-06-01");
  EXPECT_EQ(calls[0].headers.count("authorization"), 0u);
  EXPECT_EQ(calls[0].body["max_tokens"], 300);
  EXPECT_EQ(calls[0].body["temperature"], 0);
  std::string system = calls[0].body["system"];
  EXPECT_NE(system.find("You triage support tickets."), std::string::npos);
  EXPECT_NE(system.find("\"intent\""), std::string::npos);
  ASSERT_EQ(calls[0].body["messages"].size(), 1u);
  EXPECT_EQ(calls[0].body["messages"][0]["role"], "user");
}

TEST_F(LlmAgentTest, ReplyThatBreaksTheContractIsRepairedOnce) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.index == 0) return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":"high"})", 100, 20);
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.9})", 140, 20);
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["confidence"], 0.9);
  EXPECT_EQ(out.usage.tokens_in, 240u);
  EXPECT_EQ(out.usage.tokens_out, 40u);
  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 2u);
  // The repair request carries the model's answer and what was wrong with it.
  const json& msgs = calls[1].body["messages"];
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[2]["role"], "assistant");
  EXPECT_EQ(msgs[2]["content"], R"({"intent":"billing","confidence":"high"})");
  EXPECT_NE(calls[1].last_user_text().find("field 'confidence' should be number, got string"), std::string::npos)
      << calls[1].last_user_text();
}

TEST_F(LlmAgentTest, ReplyThatCannotBeRepairedFailsWithAContractViolation) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), "I think this is about billing.");
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg.erase("model");
  cfg["models"] = {"gpt-standin", "cheap"};  // a contract violation does not move down the chain
  AgentOutput out = run(cfg);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "contract_violation");
  EXPECT_NE(out.error_message.find("not a JSON object"), std::string::npos) << out.error_message;
  EXPECT_EQ(p.calls().size(), 2u);
  EXPECT_EQ(out.usage.tokens_in, 20u);  // both calls are paid for
}

// A reply nested deeper than limits::kMaxJsonDepth is not JSON to the agent:
// parsed without the cap it met the contract (the deep part is an extra field),
// became the step's output and overflowed the stack where the output is dumped.
TEST_F(LlmAgentTest, AReplyNestedTooDeeplyIsNotJsonAndCannotOverflowTheStack) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  ProviderStandIn p([&](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.9,"extra":)" + deep + "}");
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "contract_violation");
  EXPECT_NE(out.error_message.find("not a JSON object"), std::string::npos) << out.error_message.substr(0, 300);
  EXPECT_FALSE(out.output.dump().empty());

  // The whole provider body too deep: refused as a malformed reply, never parsed into a deep value.
  p.set_script([&](const ProviderStandIn::Call&) {
    ProviderStandIn::Reply r;
    r.body = R"({"choices":)" + deep + "}";
    return r;
  });
  out = run(base_config(p));
  EXPECT_NE(out.status, AgentOutput::kOk);
  EXPECT_FALSE(out.output.dump().empty());
}

TEST_F(LlmAgentTest, RateLimitIsRetriedAfterTheServersRetryAfter) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.index == 0) return ProviderStandIn::openai_error(429, "rate_limit_exceeded", "Rate limit reached", "1");
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"general","confidence":0.7})");
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));  // backoff_ms 10: only Retry-After explains a 1 s wait
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_GE(calls[1].received_ms - calls[0].received_ms, 1000);
  EXPECT_EQ(out.usage.model_reason, "primary");
}

TEST_F(LlmAgentTest, ServerErrorThenSuccess) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.index == 0) return ProviderStandIn::openai_error(500, "server_error", "The server had an error");
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"general","confidence":0.7})");
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(p.calls().size(), 2u);
  EXPECT_EQ(out.output["intent"], "general");
}

TEST_F(LlmAgentTest, TimeoutIsRetryable) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    auto r = ProviderStandIn::openai_text(c.model(), R"({"intent":"general","confidence":0.7})");
    r.delay_ms = 1500;
    return r;
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["timeout_ms"] = 200;
  cfg["retries"] = 1;
  AgentOutput out = run(cfg);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "llm_unavailable");
  EXPECT_NE(out.error_message.find("200 ms"), std::string::npos) << out.error_message;
  EXPECT_EQ(p.calls().size(), 2u);
}

TEST_F(LlmAgentTest, FailingModelFallsBackToTheNextAndSaysWhy) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.model() == "gpt-standin") return ProviderStandIn::openai_error(503, "overloaded", "Model overloaded");
    if (c.model() == "gone") return ProviderStandIn::openai_error(404, "model_not_found", "The model gone does not exist");
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.8})", 100, 10);
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg.erase("model");
  cfg["retries"] = 1;
  cfg["models"] = json::array({"gpt-standin", "gone", {{"model", "cheap"}, {"price", {{"input", 1}, {"output", 2}}}}});
  AgentOutput out = run(cfg);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.usage.model, "cheap");
  EXPECT_EQ(out.usage.cost_micros, 120u);  // the entry's own price wins over `prices`
  EXPECT_NE(out.usage.model_reason.find("fallback: gpt-standin http 503: Model overloaded"), std::string::npos)
      << out.usage.model_reason;
  EXPECT_NE(out.usage.model_reason.find("gone http 404"), std::string::npos) << out.usage.model_reason;
  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 4u);  // 503 twice (one retry), 404 once (no retry), then the answer
  EXPECT_EQ(calls[2].model(), "gone");
}

TEST_F(LlmAgentTest, AFallbackOnAnotherServerNeverGetsThePrimarysKey) {
  ProviderStandIn primary([](const ProviderStandIn::Call&) {
    return ProviderStandIn::openai_error(503, "overloaded", "Model overloaded");
  });
  ProviderStandIn local([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.8})");
  });
  ASSERT_TRUE(primary.ok() && local.ok());
  json cfg = base_config(primary);
  cfg.erase("model");
  cfg["retries"] = 0;
  cfg["models"] = json::array({"gpt-standin", {{"model", "llama-local"}, {"base_url", local.base_url()}}});
  AgentOutput out = run(cfg);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.usage.model, "llama-local");
  ASSERT_EQ(primary.calls().size(), 1u);
  EXPECT_EQ(primary.calls()[0].headers.at("authorization"), std::string("Bearer ") + kKey);
  ASSERT_EQ(local.calls().size(), 1u);
  EXPECT_EQ(local.calls()[0].headers.count("authorization"), 0u);
}

TEST_F(LlmAgentTest, EveryModelFailingPermanentlyFailsTheStep) {
  ProviderStandIn p([](const ProviderStandIn::Call&) {
    return ProviderStandIn::openai_error(401, "invalid_api_key", "Incorrect API key provided");
  });
  ASSERT_TRUE(p.ok());
  AgentOutput out = run(base_config(p));
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "llm_error");
  EXPECT_NE(out.error_message.find("http 401: Incorrect API key provided"), std::string::npos) << out.error_message;
  EXPECT_EQ(p.calls().size(), 1u);
}

TEST_F(LlmAgentTest, RunBudgetSwitchesToTheTasksModels) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.8})", 1000, 100);
  });
  ASSERT_TRUE(p.ok());
  baton::v1::Task t = task();
  t.add_models("cheap");
  AgentOutput out = run(base_config(p), classify_step(), t);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.usage.model, "cheap");
  EXPECT_EQ(out.usage.model_reason, "budget");
  EXPECT_EQ(out.usage.cost_micros, 60u);  // 1000 x 0.05 + 100 x 0.1
  ASSERT_EQ(p.calls().size(), 1u);
  EXPECT_EQ(p.calls()[0].model(), "cheap");
}

TEST_F(LlmAgentTest, WithoutAContractTheTextIsTheOutput) {
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_text(c.model(), "Hi Ana, we refunded the second charge.");
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["output_field"] = "reply";
  AgentOutput out = run(cfg, StepInfo{});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, (json{{"reply", "Hi Ana, we refunded the second charge."}}));
  EXPECT_FALSE(p.calls()[0].body.contains("response_format"));
}

// A fake order system the model's tool reads.
struct OrderSystem {
  std::mutex mu;
  std::vector<baton::http::Request> requests;
  std::unique_ptr<baton::http::Server> server;
  OrderSystem() {
    auto s = baton::http::Server::start({}, [this](const baton::http::Request& r) {
      std::lock_guard lock(mu);
      requests.push_back(r);
      baton::http::Response resp;
      resp.body = json{{"order", {{"id", "A-1"}, {"status", "refunded"}, {"amount", 49}}}}.dump();
      return resp;
    });
    if (s) server = std::move(s).value();
  }
  ~OrderSystem() {
    if (server) server->stop();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server->port()); }
};

json lookup_tool(const OrderSystem& orders) {
  return {{"name", "lookup_order"},
          {"description", "Look up an order by id"},
          {"parameters",
           {{"type", "object"}, {"properties", {{"order_id", {{"type", "string"}}}}}, {"required", {"order_id"}}}},
          {"http",
           {{"method", "GET"},
            {"url", orders.url() + "/orders/{{args.order_id}}?ticket={{input.ticket_id}}"},
            {"output", {{"status", "body.order.status"}, {"amount", "body.order.amount"}}}}}};
}

TEST_F(LlmAgentTest, OpenAIToolCallRound) {
  OrderSystem orders;
  ASSERT_TRUE(orders.server);
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.index == 0)
      return ProviderStandIn::openai_tool_calls(
          c.model(), json::array({{{"id", "call_1"}, {"name", "lookup_order"}, {"arguments", {{"order_id", "A-1"}}}}}));
    return ProviderStandIn::openai_text(c.model(), R"({"intent":"billing","confidence":0.95,"summary":"refunded"})");
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["tools"] = json::array({lookup_tool(orders)});
  AgentOutput out = run(cfg);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_code << ": " << out.error_message;
  EXPECT_EQ(out.output["summary"], "refunded");

  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].body["tools"][0]["function"]["name"], "lookup_order");
  EXPECT_EQ(calls[0].body["tools"][0]["function"]["parameters"]["required"], (json{"order_id"}));
  const json& msgs = calls[1].body["messages"];
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[2]["role"], "assistant");
  EXPECT_EQ(msgs[2]["tool_calls"][0]["id"], "call_1");
  EXPECT_EQ(msgs[3]["role"], "tool");
  EXPECT_EQ(msgs[3]["tool_call_id"], "call_1");
  EXPECT_EQ(json::parse(msgs[3]["content"].get<std::string>()), (json{{"status", "refunded"}, {"amount", 49}}));

  std::lock_guard lock(orders.mu);
  ASSERT_EQ(orders.requests.size(), 1u);
  EXPECT_EQ(orders.requests[0].path, "/orders/A-1");
  EXPECT_EQ(orders.requests[0].query.at("ticket"), "T-1");
  EXPECT_EQ(orders.requests[0].headers.at("idempotency-key"), "run-1:classify:1:tool:1");
}

TEST_F(LlmAgentTest, AnthropicToolUseRound) {
  OrderSystem orders;
  ASSERT_TRUE(orders.server);
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    if (c.index == 0) return ProviderStandIn::anthropic_tool_use(c.model(), "toolu_1", "lookup_order", {{"order_id", "A-1"}});
    return ProviderStandIn::anthropic_text(c.model(), R"({"intent":"billing","confidence":0.9})");
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["api"] = "anthropic";
  cfg["tools"] = json::array({lookup_tool(orders)});
  AgentOutput out = run(cfg);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_code << ": " << out.error_message;
  auto calls = p.calls();
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[0].body["tools"][0]["name"], "lookup_order");
  EXPECT_TRUE(calls[0].body["tools"][0]["input_schema"].is_object());
  const json& msgs = calls[1].body["messages"];
  ASSERT_EQ(msgs.size(), 3u);
  EXPECT_EQ(msgs[1]["role"], "assistant");
  EXPECT_EQ(msgs[1]["content"][0]["type"], "tool_use");
  EXPECT_EQ(msgs[2]["role"], "user");
  EXPECT_EQ(msgs[2]["content"][0]["type"], "tool_result");
  EXPECT_EQ(msgs[2]["content"][0]["tool_use_id"], "toolu_1");
  EXPECT_EQ(json::parse(msgs[2]["content"][0]["content"].get<std::string>())["status"], "refunded");
}

TEST_F(LlmAgentTest, ToolCallsAreBounded) {
  OrderSystem orders;
  ASSERT_TRUE(orders.server);
  ProviderStandIn p([](const ProviderStandIn::Call& c) {
    return ProviderStandIn::openai_tool_calls(
        c.model(),
        json::array({{{"id", "call_" + std::to_string(c.index)}, {"name", "lookup_order"}, {"arguments", {{"order_id", "A-1"}}}}}));
  });
  ASSERT_TRUE(p.ok());
  json cfg = base_config(p);
  cfg["tools"] = json::array({lookup_tool(orders)});
  cfg["max_tool_calls"] = 2;
  AgentOutput out = run(cfg);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "tool_limit");
  EXPECT_EQ(p.calls().size(), 3u);
  std::lock_guard lock(orders.mu);
  EXPECT_EQ(orders.requests.size(), 2u);
}

TEST_F(LlmAgentTest, TheApiKeyNeverAppearsInLogsOutputsOrErrors) {
  auto stream = std::make_shared<std::ostringstream>();
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*stream);
  auto logger = std::make_shared<spdlog::logger>("capture", sink);
  logger->set_level(spdlog::level::trace);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  std::string everything;
  {
    ProviderStandIn p([](const ProviderStandIn::Call& c) {
      switch (c.index) {
        case 0: return ProviderStandIn::openai_error(500, "server_error", "boom");
        case 1: return ProviderStandIn::openai_error(401, "invalid_api_key", "Incorrect API key provided");
        case 2: return ProviderStandIn::openai_text(c.model(), "not json");
        default: return ProviderStandIn::openai_text(c.model(), "still not json");
      }
    });
    ASSERT_TRUE(p.ok());
    json cfg = base_config(p);
    cfg.erase("model");
    cfg["models"] = {"gpt-standin", "cheap"};
    AgentOutput out = run(cfg);
    EXPECT_EQ(out.error_code, "contract_violation");
    everything += out.output.dump() + out.error_message + out.usage.model_reason;
    // The key reached the provider, in the header only.
    for (const auto& c : p.calls()) {
      EXPECT_EQ(c.headers.at("authorization"), std::string("Bearer ") + kKey);
      EXPECT_EQ(c.body.dump().find(kKey), std::string::npos);
    }
    // A refused config names the variable, never a value.
    json bad = base_config(p);
    bad["api_key_file"] = "/nonexistent";
    auto refused = registry_.create("llm", bad, classify_step());
    ASSERT_FALSE(refused);
    everything += refused.status().message();
  }
  spdlog::set_default_logger(previous);
  everything += stream->str();
  EXPECT_NE(stream->str().find("gpt-standin"), std::string::npos) << "the failures were logged";
  EXPECT_EQ(everything.find(kKey), std::string::npos) << everything;
}

TEST_F(LlmAgentTest, BadConfigsAreRefusedNamingTheKey) {
  auto refusal = [&](json cfg) {
    auto r = registry_.create("llm", cfg, classify_step());
    return r ? std::string("accepted") : r.status().message();
  };
  json ok = {{"model", "m"}, {"prompt", "{{input.subject}}"}, {"base_url", "http://127.0.0.1:1/v1"}};
  EXPECT_EQ(refusal(ok), "accepted");
  json c = ok;
  c.erase("model");
  EXPECT_NE(refusal(c).find("`model`"), std::string::npos);
  c = ok;
  c["models"] = {"a"};
  EXPECT_NE(refusal(c).find("not both"), std::string::npos) << refusal(c);
  c = ok;
  c["api"] = "gemini";
  EXPECT_NE(refusal(c).find("`api`"), std::string::npos);
  c = ok;
  c["base_url"] = "ftp://x";
  EXPECT_NE(refusal(c).find("base_url"), std::string::npos);
  c = ok;
  c["promt"] = "typo";
  EXPECT_NE(refusal(c).find("unknown key `promt`"), std::string::npos);
  c = ok;
  c["temperature"] = 3;
  EXPECT_NE(refusal(c).find("temperature"), std::string::npos);
  c = ok;
  c["prompt"] = "{{ticket.subject}}";
  EXPECT_NE(refusal(c).find("ticket.subject"), std::string::npos) << refusal(c);
  c = ok;
  ::unsetenv("BATON_TEST_UNSET");
  c["api_key_env"] = "BATON_TEST_UNSET";
  EXPECT_NE(refusal(c).find("BATON_TEST_UNSET is not set"), std::string::npos);
  c = ok;
  c["base_url"] = "${BATON_TEST_UNSET}/v1";
  EXPECT_NE(refusal(c).find("BATON_TEST_UNSET"), std::string::npos);
  c = ok;
  c["base_url"] = "${BATON_TEST_UNSET:-http://localhost:11434/v1}";
  EXPECT_EQ(refusal(c), "accepted");
  c = ok;
  c["tools"] = json::array({{{"name", "t"}, {"http", {{"url", "http://x/{{args.id}}"}, {"bogus", 1}}}}});
  EXPECT_NE(refusal(c).find("bogus"), std::string::npos) << refusal(c);
  c = ok;
  c["api_key"] = "sk-literal-123";
  EXPECT_NE(refusal(c).find("must name an environment variable"), std::string::npos) << refusal(c);
  EXPECT_EQ(refusal(c).find("sk-literal"), std::string::npos) << refusal(c);
  c["api_key"] = "${BATON_TEST_UNSET:-}";
  EXPECT_EQ(refusal(c), "accepted");
  c = ok;
  c["response_format"] = "xml";
  EXPECT_NE(refusal(c).find("response_format"), std::string::npos);
}

}  // namespace
