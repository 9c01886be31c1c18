#include "workers/agents/llm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <optional>
#include <random>
#include <regex>
#include <thread>

#include <spdlog/spdlog.h>

#include "common/util/json.h"
#include "common/workflow/workflow.h"
#include "workers/agents/config.h"
#include "workers/agents/http.h"
#include "workers/net/http_client.h"

namespace baton::agent {
namespace {

using nlohmann::json;

constexpr const char* kKind = "llm";
constexpr int64_t kDeadlineMarginMs = 250;        // report before the coordinator's timeout
constexpr int64_t kNoDeadlineMs = 10 * 60 * 1000;  // a task without a deadline
constexpr std::size_t kErrorBodyBytes = 300;

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

enum class Api { kOpenAI, kAnthropic };

struct Price {
  double input = 0;   // USD per million prompt tokens
  double output = 0;  // USD per million completion tokens
};

struct ModelEntry {
  std::string model;
  Api api = Api::kOpenAI;
  std::string base_url;
  std::string api_key;  // secret: headers only
  std::optional<Price> price;
};

struct Tool {
  std::string name;
  std::string description;
  json parameters;
  std::shared_ptr<const HttpTool> http;
};

// One model's reply, API-independent.
struct Reply {
  std::string text;
  struct Call {
    std::string id;
    std::string name;
    std::string arguments;  // JSON text (OpenAI) or dumped input (Anthropic)
  };
  std::vector<Call> calls;
  json assistant;  // the assistant message to append before tool results
  uint64_t tokens_in = 0;
  uint64_t tokens_out = 0;
};

// How one model's conversation ended.
struct Outcome {
  enum Kind { kOk, kTransient, kPermanent, kFinal } kind = kOk;  // kFinal: the step fails, no fallback
  json output;
  std::string code;
  std::string message;
};

std::string cut(const std::string& s, std::size_t n) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

Result<Price> parse_price(const json& v, const std::string& what) {
  if (!v.is_object()) return invalid(what + " must be {input: USD per million tokens, output: ...}");
  if (Status s = config::check_object(v, what, {"input", "output"}); !s) return s;
  Price p;
  auto in = config::get_number(v, what, "input", 0.0);
  if (!in) return in.status();
  auto out = config::get_number(v, what, "output", 0.0);
  if (!out) return out.status();
  if (*in < 0 || *out < 0) return invalid(what + ": prices must not be negative");
  p.input = *in;
  p.output = *out;
  return p;
}

Result<Api> parse_api(const json& cfg, const std::string& what, Api fallback) {
  auto it = cfg.find("api");
  if (it == cfg.end() || it->is_null()) return fallback;
  if (!it->is_string()) return invalid(what + ": `api` must be openai or anthropic");
  const auto& v = it->get_ref<const std::string&>();
  if (v == "openai") return Api::kOpenAI;
  if (v == "anthropic") return Api::kAnthropic;
  return invalid(what + ": `api` must be openai or anthropic, got `" + v + "`");
}

std::string default_base_url(Api api) {
  return api == Api::kAnthropic ? "https://api.anthropic.com/v1" : "https://api.openai.com/v1";
}

// The JSON schema of an output contract.
json contract_schema(const std::vector<workflow::FieldContract>& contract) {
  json props = json::object();
  json required = json::array();
  for (const auto& f : contract) {
    json t = json::object();
    if (f.type != "any") t["type"] = f.type;
    props[f.name] = std::move(t);
    if (!f.optional) required.push_back(f.name);
  }
  return {{"type", "object"}, {"properties", props}, {"required", required}};
}

// Provider bodies, model replies and tool arguments are outside data: parsed
// with the nesting cap of every JSON we read (limits::kMaxJsonDepth), since a
// deeper value would overflow the stack later (dump, copy, compare recurse).
// Their size is already capped by the HTTP client. null when not JSON.
json parse_untrusted(std::string_view s) {
  auto r = parse_json(s, s.size(), limits::kMaxJsonDepth);
  return r ? std::move(r).value() : json();
}

// A JSON object out of a model's text: as is, inside ``` fences, or between the
// first '{' and the last '}'.
std::optional<json> json_in_text(const std::string& text) {
  auto try_parse = [](std::string_view s) -> std::optional<json> {
    json j = parse_untrusted(s);
    if (!j.is_object()) return std::nullopt;
    return j;
  };
  if (auto j = try_parse(text)) return j;
  auto open = text.find('{');
  auto close = text.rfind('}');
  if (open != std::string::npos && close != std::string::npos && close > open)
    return try_parse(std::string_view(text).substr(open, close - open + 1));
  return std::nullopt;
}

class LlmAgent : public Agent {
 public:
  struct Settings {
    std::optional<workflow::Template> system;
    workflow::Template prompt;
    std::optional<double> temperature;
    int64_t max_tokens = 1024;
    int64_t timeout_ms = 60000;
    int retries = 2;
    int64_t backoff_ms = 500;
    int64_t max_backoff_ms = 20000;
    std::string response_format = "json_schema";
    std::vector<ModelEntry> chain;
    std::map<std::string, Price> prices;
    std::vector<Tool> tools;
    int max_tool_calls = 4;
    std::string output_field = "text";
    std::vector<workflow::FieldContract> contract;
    std::string step;
  };

  explicit LlmAgent(Settings s) : s_(std::move(s)) {
    if (!s_.contract.empty()) {
      schema_ = contract_schema(s_.contract);
      json_instruction_ =
          "Reply with only a JSON object (no prose, no code fences) that matches this JSON schema: " +
          schema_.dump();
    }
  }

  AgentOutput execute(const AgentInput& in) override {
    std::string system;
    if (s_.system) {
      auto r = s_.system->render(in.scope);
      if (!r) return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError, "system: " + r.status().message());
      system = std::move(r).value();
    }
    auto user = s_.prompt.render(in.scope);
    if (!user) return AgentOutput::fail(AgentOutput::kFailed, errors::kTemplateError, "prompt: " + user.status().message());
    if (!json_instruction_.empty()) system = system.empty() ? json_instruction_ : system + "\n\n" + json_instruction_;

    std::vector<ModelEntry> chain = s_.chain;
    std::string first_reason = "primary";
    if (in.task.models_size() > 0) {
      chain.clear();
      for (const auto& name : in.task.models()) {
        auto it = std::find_if(s_.chain.begin(), s_.chain.end(), [&](const ModelEntry& e) { return e.model == name; });
        ModelEntry e = it != s_.chain.end() ? *it : s_.chain.front();
        e.model = name;
        if (it == s_.chain.end()) e.price.reset();
        chain.push_back(std::move(e));
      }
      first_reason = "budget";
    }

    int64_t deadline = in.task.deadline_unix_ms() > 0 ? in.task.deadline_unix_ms() - kDeadlineMarginMs
                                                      : now_unix_ms() + kNoDeadlineMs;
    Usage usage;
    std::string failures;
    bool transient = false;
    for (std::size_t i = 0; i < chain.size(); ++i) {
      const ModelEntry& entry = chain[i];
      Outcome o = converse(entry, system, *user, in, deadline, usage);
      if (o.kind == Outcome::kOk || o.kind == Outcome::kFinal) {
        usage.model = entry.model;
        usage.model_reason = i == 0 ? first_reason : "fallback: " + failures;
        AgentOutput out = o.kind == Outcome::kOk ? AgentOutput::ok(std::move(o.output))
                                                 : AgentOutput::fail(AgentOutput::kFailed, o.code, o.message);
        out.usage = std::move(usage);
        return out;
      }
      spdlog::warn("llm step {} run {}: model {} failed: {}", in.task.step_id(), in.task.run_id(), entry.model,
                   o.message);
      if (!failures.empty()) failures += "; ";
      failures += entry.model + " " + o.message;
      transient = transient || o.kind == Outcome::kTransient;
      if (now_unix_ms() >= deadline) break;
    }
    AgentOutput out = transient ? AgentOutput::fail(AgentOutput::kRetryable, "llm_unavailable", failures)
                                : AgentOutput::fail(AgentOutput::kFailed, "llm_error", failures);
    usage.model = chain.empty() ? "" : chain.back().model;
    out.usage = std::move(usage);
    return out;
  }

 private:
  // One model, start to end: the first request, tool rounds, the repair round.
  Outcome converse(const ModelEntry& entry, const std::string& system, const std::string& user, const AgentInput& in,
                   int64_t deadline, Usage& usage) const {
    json messages = json::array();
    if (entry.api == Api::kOpenAI && !system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    messages.push_back({{"role", "user"}, {"content", user}});
    int tool_calls = 0;
    bool repaired = false;
    const int max_rounds = s_.max_tool_calls + 3;
    for (int round = 0; round < max_rounds; ++round) {
      json body = request_body(entry, system, messages);
      Reply reply;
      if (Outcome o = call(entry, body, deadline, reply); o.kind != Outcome::kOk) return o;
      usage.tokens_in += reply.tokens_in;
      usage.tokens_out += reply.tokens_out;
      usage.cost_micros += cost(entry, reply);

      if (!reply.calls.empty()) {
        if (s_.tools.empty())
          return {Outcome::kPermanent, {}, "", "asked for tool " + reply.calls.front().name + " but the step has no tools"};
        messages.push_back(reply.assistant);
        json anthropic_results = json::array();
        for (const auto& c : reply.calls) {
          if (++tool_calls > s_.max_tool_calls)
            return {Outcome::kFinal, {}, "tool_limit",
                    "the model asked for more than max_tool_calls (" + std::to_string(s_.max_tool_calls) + ") tool calls"};
          std::string result = run_tool(c, in, tool_calls, deadline);
          if (entry.api == Api::kOpenAI) {
            messages.push_back({{"role", "tool"}, {"tool_call_id", c.id}, {"content", result}});
          } else {
            anthropic_results.push_back({{"type", "tool_result"}, {"tool_use_id", c.id}, {"content", result}});
          }
        }
        if (entry.api == Api::kAnthropic) messages.push_back({{"role", "user"}, {"content", anthropic_results}});
        continue;
      }

      if (s_.contract.empty()) return {Outcome::kOk, json{{s_.output_field, reply.text}}, "", ""};
      std::string problem;
      auto parsed = json_in_text(reply.text);
      if (!parsed) {
        problem = "the reply is not a JSON object";
      } else {
        problem = workflow::check_contract(s_.contract, *parsed);
        if (problem.empty()) return {Outcome::kOk, std::move(*parsed), "", ""};
      }
      if (repaired)
        return {Outcome::kFinal, {}, "contract_violation",
                "after one repair round: " + problem + " (reply: " + cut(reply.text, kErrorBodyBytes) + ")"};
      repaired = true;
      messages.push_back({{"role", "assistant"}, {"content", reply.text}});
      messages.push_back({{"role", "user"},
                          {"content", "Your reply does not match the required format: " + problem + ". " +
                                          json_instruction_}});
    }
    return {Outcome::kFinal, {}, "tool_limit", "no answer within " + std::to_string(max_rounds) + " rounds"};
  }

  json request_body(const ModelEntry& entry, const std::string& system, const json& messages) const {
    json body = {{"model", entry.model}, {"messages", messages}, {"max_tokens", s_.max_tokens}};
    if (s_.temperature) body["temperature"] = *s_.temperature;
    if (entry.api == Api::kAnthropic) {
      if (!system.empty()) body["system"] = system;
      if (!s_.tools.empty()) {
        json tools = json::array();
        for (const auto& t : s_.tools)
          tools.push_back({{"name", t.name}, {"description", t.description}, {"input_schema", t.parameters}});
        body["tools"] = std::move(tools);
      }
      return body;
    }
    if (!s_.contract.empty()) {
      if (s_.response_format == "json_schema") {
        body["response_format"] = {{"type", "json_schema"},
                                   {"json_schema", {{"name", "output"}, {"schema", schema_}, {"strict", false}}}};
      } else if (s_.response_format == "json_object") {
        body["response_format"] = {{"type", "json_object"}};
      }
    }
    if (!s_.tools.empty()) {
      json tools = json::array();
      for (const auto& t : s_.tools)
        tools.push_back({{"type", "function"},
                         {"function", {{"name", t.name}, {"description", t.description}, {"parameters", t.parameters}}}});
      body["tools"] = std::move(tools);
    }
    return body;
  }

  // One request with retries. kOk fills `reply`.
  Outcome call(const ModelEntry& entry, const json& body, int64_t deadline, Reply& reply) const {
    net::HttpRequest req;
    req.method = "POST";
    req.url = entry.base_url + (entry.api == Api::kAnthropic ? "/messages" : "/chat/completions");
    req.body = body.dump();
    if (entry.api == Api::kAnthropic) {
      req.headers["anthropic-version"] = "2023-06-01";
      if (!entry.api_key.empty()) req.headers["x-api-key"] = entry.api_key;
    } else if (!entry.api_key.empty()) {
      req.headers["Authorization"] = "Bearer " + entry.api_key;
    }
    thread_local std::mt19937_64 rng(std::random_device{}());
    std::string last;
    for (int attempt = 1;; ++attempt) {
      int64_t remaining = deadline - now_unix_ms();
      if (remaining <= 0) return {Outcome::kTransient, {}, "", last.empty() ? "no time left before the step's deadline" : last};
      req.timeout_ms = std::min(s_.timeout_ms, remaining);
      auto r = net::send(req);
      std::optional<int64_t> retry_after;
      if (!r) {
        last = r.status().message();
        if (r.status().code() != Code::kTimeout && r.status().code() != Code::kUnavailable)
          return {Outcome::kPermanent, {}, "", last};
      } else if (r->status >= 200 && r->status < 300) {
        std::string problem = parse_reply(entry.api, r->body, reply);
        if (problem.empty()) return {Outcome::kOk, {}, "", ""};
        return {Outcome::kPermanent, {}, "", "unreadable reply: " + problem};
      } else {
        last = "http " + std::to_string(r->status) + ": " + error_message(r->body);
        if (!net::is_retryable_status(r->status)) return {Outcome::kPermanent, {}, "", last};
        retry_after = net::retry_after_ms(*r, now_unix_ms());
      }
      if (attempt > s_.retries) return {Outcome::kTransient, {}, "", last};
      int64_t wait = net::backoff_ms(attempt, s_.backoff_ms, s_.max_backoff_ms, retry_after, rng);
      if (now_unix_ms() + wait >= deadline)
        return {Outcome::kTransient, {}, "", last + " (a retry in " + std::to_string(wait) + " ms would pass the deadline)"};
      spdlog::debug("llm model {}: {}; retry {} in {} ms", entry.model, last, attempt, wait);
      std::this_thread::sleep_for(std::chrono::milliseconds(wait));
    }
  }

  // The provider's own error text (both APIs use error.message), else the body's start.
  static std::string error_message(const std::string& body) {
    json j = parse_untrusted(body);
    if (j.is_object() && j.contains("error") && j["error"].is_object() && j["error"].contains("message") &&
        j["error"]["message"].is_string())
      return cut(j["error"]["message"].get<std::string>(), kErrorBodyBytes);
    return cut(body, kErrorBodyBytes);
  }

  // "" on success, else what is wrong with the body.
  static std::string parse_reply(Api api, const std::string& body, Reply& reply) {
    json j = parse_untrusted(body);
    if (!j.is_object()) return "not a JSON object";
    auto u64 = [](const json& obj, const char* key) -> uint64_t {
      auto it = obj.find(key);
      return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>()
             : it != obj.end() && it->is_number_integer() && it->get<int64_t>() > 0 ? static_cast<uint64_t>(it->get<int64_t>())
                                                                                      : 0;
    };
    if (api == Api::kAnthropic) {
      if (!j.contains("content") || !j["content"].is_array()) return "no content array";
      for (const auto& block : j["content"]) {
        if (!block.is_object()) continue;
        std::string type = block.value("type", "");
        if (type == "text" && block.contains("text") && block["text"].is_string()) {
          reply.text += block["text"].get<std::string>();
        } else if (type == "tool_use") {
          reply.calls.push_back({block.value("id", ""), block.value("name", ""),
                                 block.contains("input") ? block["input"].dump() : "{}"});
        }
      }
      reply.assistant = {{"role", "assistant"}, {"content", j["content"]}};
      if (j.contains("usage") && j["usage"].is_object()) {
        reply.tokens_in = u64(j["usage"], "input_tokens");
        reply.tokens_out = u64(j["usage"], "output_tokens");
      }
      return "";
    }
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty() || !j["choices"][0].is_object() ||
        !j["choices"][0].contains("message") || !j["choices"][0]["message"].is_object())
      return "no choices[0].message";
    const json& msg = j["choices"][0]["message"];
    if (msg.contains("content")) {
      const json& c = msg["content"];
      if (c.is_string()) {
        reply.text = c.get<std::string>();
      } else if (c.is_array()) {
        for (const auto& part : c)
          if (part.is_object() && part.contains("text") && part["text"].is_string()) reply.text += part["text"].get<std::string>();
      }
    }
    if (msg.contains("tool_calls") && msg["tool_calls"].is_array()) {
      for (const auto& tc : msg["tool_calls"]) {
        if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object()) continue;
        const json& f = tc["function"];
        std::string args = "{}";
        if (f.contains("arguments")) args = f["arguments"].is_string() ? f["arguments"].get<std::string>() : f["arguments"].dump();
        reply.calls.push_back({tc.value("id", ""), f.value("name", ""), std::move(args)});
      }
    }
    reply.assistant = msg;
    if (!reply.assistant.contains("role")) reply.assistant["role"] = "assistant";
    if (j.contains("usage") && j["usage"].is_object()) {
      reply.tokens_in = u64(j["usage"], "prompt_tokens");
      reply.tokens_out = u64(j["usage"], "completion_tokens");
    }
    return "";
  }

  uint64_t cost(const ModelEntry& entry, const Reply& reply) const {
    const Price* p = entry.price ? &*entry.price : nullptr;
    if (!p) {
      auto it = s_.prices.find(entry.model);
      if (it == s_.prices.end()) return 0;
      p = &it->second;
    }
    // USD per million tokens x tokens = micro-USD.
    double micros = p->input * static_cast<double>(reply.tokens_in) + p->output * static_cast<double>(reply.tokens_out);
    return static_cast<uint64_t>(std::llround(micros));
  }

  // Runs one tool call; what goes back to the model (JSON text).
  std::string run_tool(const Reply::Call& c, const AgentInput& in, int n, int64_t deadline) const {
    auto it = std::find_if(s_.tools.begin(), s_.tools.end(), [&](const Tool& t) { return t.name == c.name; });
    if (it == s_.tools.end()) return json{{"error", "unknown_tool"}, {"message", "no tool named " + c.name}}.dump();
    json args = parse_untrusted(c.arguments);
    if (!args.is_object())
      return json{{"error", "bad_arguments"}, {"message", "the arguments are not a JSON object"}}.dump();
    json scope = in.scope;
    scope["args"] = std::move(args);
    std::string key = in.task.idempotency_key().empty()
                          ? in.task.run_id() + ":" + in.task.step_id() + ":" + std::to_string(in.task.attempt())
                          : in.task.idempotency_key();
    AgentOutput out = it->http->call(scope, key + ":tool:" + std::to_string(n), deadline);
    spdlog::info("llm step {} run {}: tool {} -> {}", in.task.step_id(), in.task.run_id(), c.name,
                 status_name(out.status));
    if (out.status == AgentOutput::kOk) return out.output.dump();
    return json{{"error", out.error_code}, {"message", out.error_message}}.dump();
  }

  Settings s_;
  json schema_;
  std::string json_instruction_;
};

// The API key of a provider entry: `api_key_env`, `api_key_file`, or
// `api_key: "${NAME}"` ("${NAME:-}" when the server may need none, e.g. Ollama).
// A literal key in a workflow file is refused without echoing it.
Result<std::string> read_api_key(const json& cfg, const std::string& what) {
  auto secret = config::get_secret(cfg, what, "api_key");
  if (!secret) return secret.status();
  auto it = cfg.find("api_key");
  if (it == cfg.end() || it->is_null()) return secret;
  if (cfg.contains("api_key_env") || cfg.contains("api_key_file"))
    return invalid(what + ": give one of `api_key`, `api_key_env`, `api_key_file`");
  static const std::regex kEnvRef(R"(^\$\{[A-Za-z_][A-Za-z0-9_]*(:-)?\}$)");
  if (!it->is_string() || !std::regex_match(it->get_ref<const std::string&>(), kEnvRef))
    return invalid(what + ": `api_key` must name an environment variable, as \"${NAME}\" (or \"${NAME:-}\" when the "
                          "server needs no key); keys do not belong in workflow files");
  return config::expand_env(it->get_ref<const std::string&>(), what + ": `api_key`");
}

Result<ModelEntry> parse_entry(const json& v, const ModelEntry& defaults, const std::string& what) {
  ModelEntry e = defaults;
  if (v.is_string()) {
    auto m = config::expand_env(v.get<std::string>(), what);
    if (!m) return m.status();
    if (m->empty()) return invalid(what + " is empty");
    e.model = std::move(m).value();
    return e;
  }
  if (!v.is_object()) return invalid(what + " must be a model name or a map with `model`");
  if (Status s = config::check_object(v, what, {"model", "api", "base_url", "api_key", "api_key_env", "api_key_file", "price"}); !s)
    return s;
  auto model = config::get_string(v, what, "model");
  if (!model) return model.status();
  auto m = config::expand_env(*model, what + ": `model`");
  if (!m) return m.status();
  if (m->empty()) return invalid(what + ": `model` is empty");
  e.model = std::move(m).value();
  auto api = parse_api(v, what, defaults.api);
  if (!api) return api.status();
  if (*api != defaults.api && !v.contains("base_url")) e.base_url = default_base_url(*api);
  e.api = *api;
  if (v.contains("base_url")) {
    auto url = config::get_string(v, what, "base_url");
    if (!url) return url.status();
    auto expanded = config::expand_env(*url, what + ": `base_url`");
    if (!expanded) return expanded.status();
    e.base_url = std::move(expanded).value();
  }
  auto key = read_api_key(v, what);
  if (!key) return key.status();
  // An entry that points somewhere else never inherits the default key: it would
  // hand one provider's secret to another.
  bool own_key = v.contains("api_key") || v.contains("api_key_env") || v.contains("api_key_file");
  bool elsewhere = e.base_url != defaults.base_url || e.api != defaults.api;
  if (own_key || elsewhere) e.api_key = own_key ? std::move(key).value() : std::string();
  if (v.contains("price")) {
    auto p = parse_price(v["price"], what + ": `price`");
    if (!p) return p.status();
    e.price = *p;
  }
  return e;
}

Status check_base_url(std::string& url, const std::string& what) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return invalid(what + ": `base_url` must start with http:// or https://, got `" + url + "`");
  return Status::ok();
}

}  // namespace

FactoryResult make_llm_agent(const json& cfg, const StepInfo& step) {
  if (Status s = config::check_object(cfg, kKind,
                                      {"api", "base_url", "api_key", "api_key_env", "api_key_file", "model", "models", "system",
                                       "prompt", "temperature", "max_tokens", "timeout_ms", "retries", "backoff_ms",
                                       "max_backoff_ms", "response_format", "prices", "tools", "max_tool_calls",
                                       "output_field"});
      !s)
    return s;
  LlmAgent::Settings s;
  s.step = step.step;
  ModelEntry defaults;
  auto api = parse_api(cfg, kKind, Api::kOpenAI);
  if (!api) return api.status();
  defaults.api = *api;
  auto base = config::get_string(cfg, kKind, "base_url", default_base_url(*api));
  if (!base) return base.status();
  auto expanded = config::expand_env(*base, "llm: `base_url`");
  if (!expanded) return expanded.status();
  defaults.base_url = std::move(expanded).value();
  auto key = read_api_key(cfg, kKind);
  if (!key) return key.status();
  defaults.api_key = std::move(key).value();

  bool has_model = cfg.contains("model") && !cfg["model"].is_null();
  bool has_models = cfg.contains("models") && !cfg["models"].is_null();
  if (has_model && has_models) return invalid("llm: give `model` (one model) or `models` (a fallback chain), not both");
  if (!has_model && !has_models) return invalid("llm: `model` (or `models`, a fallback chain) is required");
  if (has_model) {
    auto e = parse_entry(cfg["model"], defaults, "llm: `model`");
    if (!e) return e.status();
    s.chain.push_back(std::move(e).value());
  } else {
    const json& list = cfg["models"];
    if (!list.is_array() || list.empty()) return invalid("llm: `models` must be a non-empty list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto e = parse_entry(list[i], defaults, "llm: `models[" + std::to_string(i) + "]`");
      if (!e) return e.status();
      s.chain.push_back(std::move(e).value());
    }
  }
  for (auto& e : s.chain)
    if (Status st = check_base_url(e.base_url, "llm: model " + e.model); !st) return st;

  auto prompt = config::get_template(cfg, kKind, "prompt");
  if (!prompt) return prompt.status();
  s.prompt = std::move(prompt).value();
  if (cfg.contains("system") && !cfg["system"].is_null()) {
    auto system = config::get_template(cfg, kKind, "system");
    if (!system) return system.status();
    s.system = std::move(system).value();
  }
  if (cfg.contains("temperature") && !cfg["temperature"].is_null()) {
    auto t = config::get_number(cfg, kKind, "temperature");
    if (!t) return t.status();
    if (*t < 0 || *t > 2) return invalid("llm: `temperature` must be within 0..2");
    s.temperature = *t;
  }
  struct IntKey {
    const char* key;
    int64_t* into;
    int64_t min, max;
  };
  int64_t retries = s.retries, max_tool_calls = s.max_tool_calls;
  for (IntKey k : {IntKey{"max_tokens", &s.max_tokens, 1, 1000000}, IntKey{"timeout_ms", &s.timeout_ms, 1, 3600000},
                   IntKey{"retries", &retries, 0, 10}, IntKey{"backoff_ms", &s.backoff_ms, 1, 600000},
                   IntKey{"max_backoff_ms", &s.max_backoff_ms, 1, 3600000},
                   IntKey{"max_tool_calls", &max_tool_calls, 0, 50}}) {
    auto v = config::get_number(cfg, kKind, k.key, static_cast<double>(*k.into));
    if (!v) return v.status();
    if (*v != std::floor(*v) || *v < static_cast<double>(k.min) || *v > static_cast<double>(k.max))
      return invalid(std::string("llm: `") + k.key + "` must be a whole number within " + std::to_string(k.min) +
                     ".." + std::to_string(k.max));
    *k.into = static_cast<int64_t>(*v);
  }
  s.retries = static_cast<int>(retries);
  s.max_tool_calls = static_cast<int>(max_tool_calls);
  auto rf = config::get_string(cfg, kKind, "response_format", std::string("json_schema"));
  if (!rf) return rf.status();
  if (*rf != "json_schema" && *rf != "json_object" && *rf != "none")
    return invalid("llm: `response_format` must be json_schema, json_object or none");
  s.response_format = *rf;
  auto field = config::get_string(cfg, kKind, "output_field", std::string("text"));
  if (!field) return field.status();
  if (field->empty()) return invalid("llm: `output_field` is empty");
  s.output_field = *field;

  if (cfg.contains("prices") && !cfg["prices"].is_null()) {
    if (!cfg["prices"].is_object()) return invalid("llm: `prices` must map a model name to {input, output}");
    for (const auto& [model, v] : cfg["prices"].items()) {
      auto p = parse_price(v, "llm: `prices." + model + "`");
      if (!p) return p.status();
      s.prices[model] = *p;
    }
  }

  if (cfg.contains("tools") && !cfg["tools"].is_null()) {
    if (!cfg["tools"].is_array()) return invalid("llm: `tools` must be a list of {name, description, parameters, http}");
    for (std::size_t i = 0; i < cfg["tools"].size(); ++i) {
      const json& t = cfg["tools"][i];
      std::string what = "llm: `tools[" + std::to_string(i) + "]`";
      if (Status st = config::check_object(t, what, {"name", "description", "parameters", "http"}); !st) return st;
      Tool tool;
      auto name = config::get_string(t, what, "name");
      if (!name) return name.status();
      bool name_ok = !name->empty() && name->size() <= 64;
      for (char c : *name) name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
      if (!name_ok) return invalid(what + ": `name` must be 1-64 letters, digits, _ or -");
      for (const auto& other : s.tools)
        if (other.name == *name) return invalid(what + ": a second tool named " + *name);
      tool.name = *name;
      auto desc = config::get_string(t, what, "description", std::string());
      if (!desc) return desc.status();
      tool.description = *desc;
      tool.parameters = t.contains("parameters") ? t["parameters"] : json{{"type", "object"}, {"properties", json::object()}};
      if (!tool.parameters.is_object()) return invalid(what + ": `parameters` must be a JSON schema object");
      if (!t.contains("http")) return invalid(what + ": `http` (the call the tool makes) is required");
      auto http = HttpTool::create(t["http"], "llm: tools." + tool.name, /*allow_args=*/true);
      if (!http) return http.status();
      tool.http = std::move(http).value();
      s.tools.push_back(std::move(tool));
    }
  }

  if (step.output.is_object()) {
    for (const auto& [name, type] : step.output.items()) {
      workflow::FieldContract f;
      f.name = name;
      f.type = type.is_string() ? type.get<std::string>() : "any";
      if (!f.type.empty() && f.type.back() == '?') {
        f.optional = true;
        f.type.pop_back();
      }
      s.contract.push_back(std::move(f));
    }
  }
  return AgentPtr(new LlmAgent(std::move(s)));
}

}  // namespace baton::agent
