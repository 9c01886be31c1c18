// End to end: examples/support-triage-llm with the real binaries (`batonctl
// dev`), its `llm` agents pointed by environment variables at a local stand-in
// that speaks the OpenAI chat-completions wire format. The stand-in plays the
// model: it classifies a ticket by the same keywords as examples/support-triage
// (so expected.jsonl is that example's) and drafts a reply naming the ticket.
// The first request of all gets a 500 (the agent retries it).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <string>

#include "common/http/http.h"
#include "common/redis/client.h"
#include "common/util/json.h"
#include "tests/support/fleet.h"
#include "tests/support/process.h"
#include "tests/support/provider_standin.h"
#include "tests/support/wait.h"

namespace baton::testing {
namespace {

using nlohmann::json;
using std::chrono::seconds;

constexpr const char* kNs = "llmex";
constexpr const char* kKey = "sk-e2e-NEVER-LOGGED-91c2";
constexpr const char* kModel = "standin-mini";

bool has_any(const std::string& text, std::initializer_list<const char*> words) {
  return std::any_of(words.begin(), words.end(), [&](const char* w) { return text.find(w) != std::string::npos; });
}

// The "model": the keyword rules of examples/support-triage, as JSON.
json classify(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  auto verdict = [](const char* intent, double confidence) { return json{{"intent", intent}, {"confidence", confidence}}; };
  if (text.find("delete") != std::string::npos && text.find("data") != std::string::npos) return verdict("compliance", 0.9);
  if (std::regex_search(text, std::regex(R"(\b(gdpr|dpa|data processing agreement|subject access)\b)")))
    return verdict("compliance", 0.95);
  if (has_any(text, {"refund", "invoice", "charged twice", "overcharged", "billing"})) return verdict("billing", 0.9);
  if (has_any(text, {"quote", "pricing", "enterprise plan", "more seats"})) return verdict("sales", 0.8);
  if (has_any(text, {"password", "log in", "login", "sign in", "how do i", "export"})) return verdict("general", 0.8);
  if (has_any(text, {"payment", "credit card"})) return verdict("billing", 0.5);
  return verdict("general", 0.3);
}

ProviderStandIn::Reply play_model(const ProviderStandIn::Call& c) {
  if (c.index == 0) return ProviderStandIn::openai_error(500, "server_error", "The server had an error");
  std::string user = c.last_user_text();
  if (c.body.contains("response_format")) return ProviderStandIn::openai_text(c.model(), classify(user).dump(), 180, 20);
  std::smatch m;
  std::string ticket = std::regex_search(user, m, std::regex(R"(Ticket (T-\d+))")) ? m[1].str() : "?";
  return ProviderStandIn::openai_text(c.model(), "Thanks for reaching out about ticket " + ticket + ".", 90, 40);
}

TEST(ExamplesLlm, SupportTriageWithLlmAgentsAgainstAStandInProvider) {
  ProviderStandIn provider(play_model);
  ASSERT_TRUE(provider.ok());
  // The deployment settings the example's workflow reads (README.md).
  ::setenv("BATON_LLM_BASE_URL", provider.base_url().c_str(), 1);
  ::setenv("BATON_LLM_MODEL", kModel, 1);
  ::setenv("BATON_LLM_API_KEY", kKey, 1);

  const std::string dir = example_dir("support-triage-llm");
  auto inputs = read_jsonl(dir + "/inputs.jsonl");
  auto expected = read_jsonl(dir + "/expected.jsonl");
  ASSERT_EQ(inputs.size(), 13u);
  ASSERT_EQ(expected.size(), inputs.size());

  DevFleet dev(dir, kNs);
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready());
  auto r = run_cli({bin_dir() + "/batonctl", "run", "support-triage-llm", "--api", dev.api(), "--inputs",
                    dir + "/inputs.jsonl", "--wait", "--timeout", "90", "-o", "json", "--expect",
                    dir + "/expected.jsonl"},
                   seconds(120));
  ASSERT_TRUE(r.exited) << r.err;
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0)
      << exit_text(r.status) << "\n" << r.out << r.err << "\nbatonctl dev log:\n" << read_file(dev.log());
  auto summary = parse_json_object(r.out);
  ASSERT_TRUE(summary.is_ok()) << r.out << r.err;
  EXPECT_EQ((*summary)["completed"], 9);
  EXPECT_EQ((*summary)["exceptions"], 4);
  EXPECT_TRUE((*summary)["mismatches"].empty()) << (*summary)["mismatches"].dump(2);

  // Every request: the key in the header only, the model from the environment.
  auto calls = provider.calls();
  // 13 classifications + 9 drafted replies + the retried 500.
  EXPECT_EQ(calls.size(), 13u + 9u + 1u);
  for (const auto& c : calls) {
    EXPECT_EQ(c.path, "/v1/chat/completions");
    EXPECT_EQ(c.model(), kModel);
    EXPECT_EQ(c.headers.at("authorization"), std::string("Bearer ") + kKey);
  }

  // A completed run: the desk's reply drafted by the model, usage in the run
  // and in the audit trail.
  auto ep = redis::parse_endpoint(dev.redis());
  ASSERT_TRUE(ep.is_ok());
  auto rc = redis::Client::connect(*ep);
  ASSERT_TRUE(rc.is_ok()) << rc.status().to_string();
  int checked = 0;
  for (const auto& run : (*summary)["runs"]) {
    std::string run_id = run.value("run_id", "");
    auto got = http::request("GET", dev.api() + "/v1/runs/" + run_id, "", 5000);
    ASSERT_TRUE(got.is_ok());
    auto view = parse_json_object(got->body);
    ASSERT_TRUE(view.is_ok()) << got->body;
    if ((*view)["input"].value("ticket_id", "") != "T-102") continue;
    ++checked;
    bool replied = false;
    for (const auto& s : (*view)["steps"]) {
      if (s["id"] == "billing") {
        EXPECT_EQ(s["output"].value("reply", ""), "Thanks for reaching out about ticket T-102.") << s.dump();
        replied = true;
      }
      if (s["id"] == "classify") {
        EXPECT_EQ(s["output"]["intent"], "billing") << s.dump();
      }
    }
    EXPECT_TRUE(replied) << got->body;
    int usage_entries = 0;
    for (const auto& a : read_run_audit(**rc, kNs, run_id)) {
      if (a.kind != "step_result" || !a.detail.contains("usage")) continue;
      ++usage_entries;
      EXPECT_EQ(a.detail["usage"]["model"], kModel) << a.detail.dump();
      EXPECT_EQ(a.detail["usage"]["model_reason"], "primary") << a.detail.dump();
      EXPECT_EQ(a.detail.value("agent", ""), "llm") << a.detail.dump();
      EXPECT_GT(a.detail["usage"]["tokens_in"].get<int>(), 0);
    }
    EXPECT_EQ(usage_entries, 2) << "classify and billing report usage";
  }
  EXPECT_EQ(checked, 1);

  // The API key is in no log of any process.
  std::string logs = read_file(dev.log());
  for (const auto& entry : std::filesystem::directory_iterator(dev.state_dir() + "/logs"))
    logs += read_file(entry.path().string());
  EXPECT_NE(logs.find("worker-triage"), std::string::npos);
  EXPECT_EQ(logs.find(kKey), std::string::npos);
  ::unsetenv("BATON_LLM_BASE_URL");
  ::unsetenv("BATON_LLM_MODEL");
  ::unsetenv("BATON_LLM_API_KEY");
}

// Budgets with real usage: an expensive first answer puts the run over its
// budget; with `on_exceeded: fallback` the remaining llm steps get the
// workflow's fallback models (the stand-in sees them), with `exception` the run
// stops before its second step.
TEST(ExamplesLlm, RunBudgetSwitchesLaterStepsToTheFallbackModelOrStopsTheRun) {
  ProviderStandIn provider([](const ProviderStandIn::Call& c) {
    if (c.model() == "big") return ProviderStandIn::openai_text(c.model(), "a long, expensive draft", 10000, 2000);
    return ProviderStandIn::openai_text(c.model(), "a cheap pass", 100, 20);
  });
  ASSERT_TRUE(provider.ok());
  const std::string dir = make_temp_dir("baton-budget");
  auto workflow = [&](const std::string& name, const std::string& on_exceeded) {
    std::string steps;
    const std::vector<std::pair<std::string, std::string>> chain = {{"draft", "check"}, {"check", "polish"}, {"polish", ""}};
    for (const auto& [id, next] : chain) {
      steps += "  - id: " + id + "\n    role: writer\n" + (next.empty() ? "" : "    next: " + next + "\n") +
               "    agent:\n      kind: llm\n" +
               "      base_url: \"" + provider.base_url() + "\"\n      model: big\n" +
               "      prompt: \"" + id + " {{input.topic}}\"\n" +
               "      prices: { big: { input: 10, output: 30 }, small: { input: 0.1, output: 0.2 } }\n" +
               "    timeout: 30s\n";
    }
    std::ofstream(dir + "/" + name + ".yaml")
        << ("name: " + name + "\nversion: 1\nbudget:\n  run: { max_cost: 0.10 }\n  on_exceeded: " + on_exceeded +
                (on_exceeded == "fallback" ? "\n  fallback_models: [small]" : "") + "\nsteps:\n" + steps);
  };
  workflow("budget-fallback", "fallback");
  workflow("budget-strict", "exception");

  DevFleet dev(dir, "budget");
  ASSERT_TRUE(dev.start());
  ASSERT_TRUE(dev.wait_ready()) << read_file(dev.log());
  auto start = [&](const std::string& wf) {
    auto r = http::request("POST", dev.api() + "/v1/runs", json{{"workflow", wf}, {"input", {{"topic", wf}}}}.dump());
    EXPECT_TRUE(r && r->status == 202) << (r ? r->body : r.status().to_string());
    return r && r->status == 202 ? json::parse(r->body).value("run_id", "") : std::string();
  };
  auto settle = [&](const std::string& id) {
    json view;
    EXPECT_TRUE(wait_until(
        [&] {
          auto r = http::request("GET", dev.api() + "/v1/runs/" + id, "", 5000);
          view = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
          return view.is_object() && view.value("status", "") != "running";
        },
        seconds(60)))
        << view.dump();
    return view;
  };
  auto ep = redis::parse_endpoint(dev.redis());
  ASSERT_TRUE(ep.is_ok());
  auto rc = redis::Client::connect(*ep);
  ASSERT_TRUE(rc.is_ok());

  std::string fallback = start("budget-fallback");
  ASSERT_FALSE(fallback.empty());
  json done = settle(fallback);
  EXPECT_EQ(done.value("status", ""), "completed") << done.dump();
  std::vector<std::string> models;
  for (const auto& c : provider.calls()) models.push_back(c.model());
  EXPECT_EQ(models, (std::vector<std::string>{"big", "small", "small"}));
  std::vector<std::string> reasons;
  bool switched = false;
  for (const auto& a : read_run_audit(**rc, "budget", fallback)) {
    if (a.kind == "budget_fallback") switched = true;
    if (a.kind == "step_result" && a.detail.contains("usage"))
      reasons.push_back(a.detail["usage"].value("model", "") + "/" + a.detail["usage"].value("model_reason", ""));
  }
  EXPECT_TRUE(switched);
  EXPECT_EQ(reasons, (std::vector<std::string>{"big/primary", "small/budget", "small/budget"}));

  std::string strict = start("budget-strict");
  ASSERT_FALSE(strict.empty());
  done = settle(strict);
  EXPECT_EQ(done.value("status", ""), "exception") << done.dump();
  EXPECT_EQ(provider.calls().size(), 4u) << "the strict run stopped after its first, expensive step";
  bool exceeded = false;
  for (const auto& a : read_run_audit(**rc, "budget", strict)) exceeded = exceeded || a.kind == "budget_exceeded";
  EXPECT_TRUE(exceeded);
  auto q = http::request("GET", dev.api() + "/v1/exceptions", "", 5000);
  ASSERT_TRUE(q && q->status == 200);
  EXPECT_NE(q->body.find("budget_exceeded"), std::string::npos) << q->body;
  remove_tree(dir);
}

}  // namespace
}  // namespace baton::testing
