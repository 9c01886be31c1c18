// The workflow parser (common/workflow/parser.h): the model it builds from valid
// files, and every refusal with its exact "file:line:col: reason" message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/util/limits.h"
#include "common/workflow/parser.h"
#include "common/workflow/workflow.h"

namespace baton::workflow {
namespace {

using nlohmann::json;

WorkflowPtr parse_ok(std::string_view yaml) {
  auto r = parse_workflow(yaml, "wf.yaml");
  EXPECT_TRUE(r.is_ok()) << r.status().message();
  return r.is_ok() ? r.value() : nullptr;
}

// The refusal message, or "<accepted>"; every refusal must be kInvalidArgument.
std::string refusal(std::string_view yaml) {
  auto r = parse_workflow(yaml, "wf.yaml");
  if (r.is_ok()) return "<accepted>";
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().message();
  return r.status().message();
}

// ---------------------------------------------------------------------------
// Valid files

TEST(WorkflowParse, MinimalFileGetsDefaults) {
  auto wf = parse_ok(R"(name: hello
steps:
  - id: greet
    role: greeter
)");
  ASSERT_NE(wf, nullptr);
  EXPECT_EQ(wf->name, "hello");
  EXPECT_EQ(wf->version, 1u);
  EXPECT_EQ(wf->description, "");
  EXPECT_EQ(wf->record_template, "");
  EXPECT_EQ(wf->dedupe_template, "");
  EXPECT_EQ(wf->trigger_topic, "");
  EXPECT_EQ(wf->max_steps, 100u);
  EXPECT_EQ(wf->source_path, "wf.yaml");
  ASSERT_EQ(wf->steps.size(), 1u);
  const Step& s = wf->steps[0];
  EXPECT_EQ(s.id, "greet");
  EXPECT_EQ(s.role, "greeter");
  EXPECT_FALSE(s.agent.has_value());
  EXPECT_TRUE(s.writes.empty());
  EXPECT_TRUE(s.output.empty());
  EXPECT_EQ(s.next, "");
  EXPECT_EQ(s.timeout_ms, 30000);
  EXPECT_EQ(s.retry.max_attempts, 3u);
  EXPECT_EQ(s.retry.backoff_ms, 1000);
  EXPECT_EQ(s.retry.max_backoff_ms, 60000);
  EXPECT_DOUBLE_EQ(s.retry.multiplier, 2.0);
  EXPECT_EQ(s.mark.line, 3);
  EXPECT_EQ(s.mark.col, 5);
}

// DESIGN.md §6 without the keys of later features (budget, route, approval,
// lock); `review` gets a role and stays unreachable, which is allowed.
constexpr std::string_view kDesignExample = R"(name: lead-to-meeting
version: 3
description: "Inbound lead: first touch, qualification, meeting"
trigger: { topic: crm.leads, dedupe: "{{input.lead_id}}" }   # or started over HTTP
record: "lead:{{input.lead_id}}"            # the shared record this run works on
max_steps: 50
steps:
  - id: respond
    role: responder
    agent: { kind: template, text: "Hi {{input.name}}", retries: 2, ratio: 0.5, strict: true, extra: null, code: "007", tags: [a, b], nested: { k: v } }
    writes: [first_touch, source, request]
    next: qualify
  - id: qualify
    role: qualifier
    writes: [score, reason, owner]
    output: { score: number, reason: string, owner: string, note: "string?", count: integer, ok: boolean, meta: object, items: array, raw: any }   # the contract
  - id: review
    role: reviewer
    next: book
  - id: book
    role: booker
    writes: [meeting_at]
    retry: { max_attempts: 3, backoff: 2s, max_backoff: 60s, multiplier: 1.5 }
    timeout: 30s
)";

TEST(WorkflowParse, DesignExampleParsesIntoTheModel) {
  auto wf = parse_ok(kDesignExample);
  ASSERT_NE(wf, nullptr);
  EXPECT_EQ(wf->name, "lead-to-meeting");
  EXPECT_EQ(wf->version, 3u);
  EXPECT_EQ(wf->description, "Inbound lead: first touch, qualification, meeting");
  EXPECT_EQ(wf->trigger_topic, "crm.leads");
  EXPECT_EQ(wf->dedupe_template, "{{input.lead_id}}");
  EXPECT_EQ(wf->record_template, "lead:{{input.lead_id}}");
  EXPECT_EQ(wf->max_steps, 50u);
  ASSERT_EQ(wf->steps.size(), 4u);

  const Step& respond = wf->steps[0];
  EXPECT_EQ(respond.id, "respond");
  EXPECT_EQ(respond.role, "responder");
  ASSERT_TRUE(respond.agent.has_value());
  EXPECT_EQ(respond.agent->kind, "template");
  EXPECT_EQ(respond.agent->config, json::parse(R"({"text": "Hi {{input.name}}", "retries": 2,
      "ratio": 0.5, "strict": true, "extra": null, "code": "007", "tags": ["a", "b"],
      "nested": {"k": "v"}})"));
  EXPECT_TRUE(respond.agent->config["retries"].is_number_integer());
  EXPECT_EQ(respond.writes, (std::vector<std::string>{"first_touch", "source", "request"}));
  EXPECT_EQ(respond.next, "qualify");
  EXPECT_EQ(respond.mark.line, 8);
  EXPECT_EQ(respond.mark.col, 5);

  const Step& qualify = wf->steps[1];
  EXPECT_EQ(qualify.role, "qualifier");
  EXPECT_FALSE(qualify.agent.has_value());
  EXPECT_EQ(qualify.next, "");
  std::vector<std::tuple<std::string, std::string, bool>> contract;
  for (const auto& f : qualify.output) contract.emplace_back(f.name, f.type, f.optional);
  EXPECT_EQ(contract, (std::vector<std::tuple<std::string, std::string, bool>>{{"score", "number", false},
                                                                               {"reason", "string", false},
                                                                               {"owner", "string", false},
                                                                               {"note", "string", true},
                                                                               {"count", "integer", false},
                                                                               {"ok", "boolean", false},
                                                                               {"meta", "object", false},
                                                                               {"items", "array", false},
                                                                               {"raw", "any", false}}));

  const Step& review = wf->steps[2];
  EXPECT_EQ(review.role, "reviewer");
  EXPECT_EQ(review.next, "book");

  const Step& book = wf->steps[3];
  EXPECT_EQ(book.writes, std::vector<std::string>{"meeting_at"});
  EXPECT_EQ(book.timeout_ms, 30000);
  EXPECT_EQ(book.retry.max_attempts, 3u);
  EXPECT_EQ(book.retry.backoff_ms, 2000);
  EXPECT_EQ(book.retry.max_backoff_ms, 60000);
  EXPECT_DOUBLE_EQ(book.retry.multiplier, 1.5);

  EXPECT_EQ(wf->find_step("book"), &book);
  EXPECT_EQ(wf->find_step("nope"), nullptr);
  EXPECT_EQ(wf->roles(), (std::vector<std::string>{"booker", "qualifier", "responder", "reviewer"}));
}

TEST(WorkflowParse, DurationUnits) {
  auto wf = parse_ok(R"(name: d
steps:
  - { id: a, role: r, timeout: 250ms, retry: { backoff: 0s, max_backoff: 5m } }
  - { id: b, role: r, timeout: 2s }
  - { id: c, role: r, timeout: 5m }
  - { id: d, role: r, timeout: 4h, retry: { backoff: 90s } }
  - { id: e, role: r, timeout: 8760h }
)");
  ASSERT_NE(wf, nullptr);
  EXPECT_EQ(wf->steps[0].timeout_ms, 250);
  EXPECT_EQ(wf->steps[0].retry.backoff_ms, 0);
  EXPECT_EQ(wf->steps[0].retry.max_backoff_ms, 300000);
  EXPECT_EQ(wf->steps[1].timeout_ms, 2000);
  EXPECT_EQ(wf->steps[2].timeout_ms, 300000);
  EXPECT_EQ(wf->steps[3].timeout_ms, 4 * 3600 * 1000);
  // A backoff above the default cap raises the (defaulted) cap with it.
  EXPECT_EQ(wf->steps[3].retry.backoff_ms, 90000);
  EXPECT_EQ(wf->steps[3].retry.max_backoff_ms, 90000);
  EXPECT_EQ(wf->steps[4].timeout_ms, int64_t{8760} * 3600 * 1000);
}

TEST(WorkflowParse, UnreachableStepsAndRoleListAreAllowed) {
  auto wf = parse_ok(R"(name: u
steps:
  - { id: a, role: x, next: c }
  - { id: b, role: y, next: c }
  - { id: c, role: x }
  - { id: d, role: a-role }
)");
  ASSERT_NE(wf, nullptr);
  EXPECT_EQ(wf->steps.size(), 4u);
  EXPECT_EQ(wf->roles(), (std::vector<std::string>{"a-role", "x", "y"}));
}

TEST(WorkflowParse, EmptyWritesNeedsNoRecordAndEmptyOutputIsNoContract) {
  auto wf = parse_ok(R"(name: e
steps:
  - { id: a, role: r, writes: [], output: {}, agent: { kind: echo } }
)");
  ASSERT_NE(wf, nullptr);
  EXPECT_TRUE(wf->steps[0].writes.empty());
  EXPECT_TRUE(wf->steps[0].output.empty());
  ASSERT_TRUE(wf->steps[0].agent.has_value());
  EXPECT_EQ(wf->steps[0].agent->config, json::object());
}

TEST(WorkflowParse, CanonicalFormIgnoresLayoutAndComments) {
  auto a = parse_ok(R"(name: c
version: 2
steps:
  - id: a
    role: r
    retry: { backoff: 2s, max_attempts: 4 }
)");
  auto b = parse_ok(R"(# the same, written differently
steps: [ { role: r, id: a, retry: { max_attempts: 4, backoff: 2000ms } } ]
version: 2
name: c
)");
  auto c = parse_ok(R"(name: c
version: 2
steps:
  - id: a
    role: r
    retry: { backoff: 2s, max_attempts: 5 }
)");
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->to_json(), b->to_json());
  EXPECT_NE(a->to_json(), c->to_json());
  EXPECT_EQ(a->to_json()["steps"][0]["retry"]["backoff_ms"], 2000);
}

TEST(WorkflowParse, QuotedScalarsStayStringsInAgentConfig) {
  auto wf = parse_ok(R"(name: q
steps:
  - id: a
    role: r
    agent:
      kind: http
      port: "8080"
      count: 8080
      big: 18446744073709551615
      huge: 123456789012345678901234567890
      neg: -3
      flag: "true"
      inf: .inf
      exp: 1e3
      str: !!str 12
      text: |
        line one
        line two
)");
  ASSERT_NE(wf, nullptr);
  const json& c = wf->steps[0].agent->config;
  EXPECT_EQ(c["port"], "8080");
  EXPECT_EQ(c["count"], 8080);
  EXPECT_TRUE(c["big"].is_number_unsigned());
  EXPECT_TRUE(c["huge"].is_number_float());
  EXPECT_EQ(c["neg"], -3);
  EXPECT_EQ(c["flag"], "true");
  EXPECT_EQ(c["inf"], ".inf");  // JSON has no infinity: kept as text
  EXPECT_EQ(c["exp"], 1000.0);
  EXPECT_EQ(c["str"], "12");
  EXPECT_EQ(c["text"], "line one\nline two\n");
}

TEST(WorkflowParse, ParsedWorkflowIsSharedReadOnlyAcrossThreads) {
  auto wf = parse_ok(kDesignExample);
  ASSERT_NE(wf, nullptr);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        if (wf->find_step("book") != nullptr && wf->roles().size() == 4) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 800);
}

// ---------------------------------------------------------------------------
// Refusals: one case per reason, exact message.

TEST(WorkflowRefusal, YamlSyntaxError) {
  // yaml-cpp reports where it noticed: at the end of the input.
  EXPECT_EQ(refusal("name: x\nsteps: [a, b\n"),
            "wf.yaml:3:1: YAML syntax error: end of sequence flow not found");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r}]]\n"),
            "wf.yaml:2:26: YAML syntax error: illegal flow end");
  EXPECT_EQ(refusal("name: x\nsteps: *nope\n"),
            "wf.yaml:2:8: YAML syntax error: the referenced anchor is not defined");
  EXPECT_EQ(refusal("name: x\n\tsteps: []\n"),
            "wf.yaml:2:1: YAML syntax error: illegal tab when looking for indentation");
  EXPECT_EQ(refusal("name: x\n  bad: indent\n"), "wf.yaml:2:6: YAML syntax error: illegal map value");
}

TEST(WorkflowRefusal, FileTooBigIsRefusedBeforeParsing) {
  // Not even valid YAML: the size is checked first.
  std::string big(limits::kMaxWorkflowFileBytes + 1, '[');
  EXPECT_EQ(refusal(big), "wf.yaml:1:1: file is 262145 bytes, more than the limit of 262144");
  std::string at_limit = "name: x\nsteps: [{id: a, role: r}]\n";
  at_limit.resize(limits::kMaxWorkflowFileBytes, ' ');
  EXPECT_NE(parse_ok(at_limit), nullptr);
}

TEST(WorkflowRefusal, NestingTooDeep) {
  // The top-level map is level 1, the list after `description:` level 2; the
  // 32nd '[' opens level 33, at column 13 + 32.
  std::string deep = "name: x\nsteps: [{id: a, role: r}]\ndescription: " + std::string(40, '[') +
                     std::string(40, ']') + "\n";
  EXPECT_EQ(refusal(deep), "wf.yaml:3:45: nesting is deeper than 32 levels");
  std::string ok_depth = "name: x\nsteps: [{id: a, role: r, agent: {kind: k, d: " + std::string(28, '[') +
                         std::string(28, ']') + "}}]\n";
  EXPECT_NE(parse_ok(ok_depth), nullptr);  // 4 levels + 28 = 32
}

TEST(WorkflowRefusal, VeryDeepNestingIsRefusedNotACrash) {
  // yaml-cpp's own recursion guard stops these before our check can; the
  // position is where its scanner was (approximate: here the end of input).
  std::string deep = "name: x\ndescription: " + std::string(100000, '[') + "\n";
  EXPECT_EQ(refusal(deep), "wf.yaml:3:1: nesting is deeper than 32 levels");
  std::string closed = "name: x\ndescription: " + std::string(3000, '[') + std::string(3000, ']');
  std::string msg = refusal(closed);
  EXPECT_EQ(msg.rfind("wf.yaml:2:", 0), 0u) << msg;
  EXPECT_NE(msg.find(": nesting is deeper than 32 levels"), std::string::npos) << msg;
}

TEST(WorkflowRefusal, AliasExpansionIsBounded) {
  std::string yaml = "name: x\nsteps: [{id: a, role: r}]\n";
  yaml += "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n";
  for (int i = 1; i <= 6; ++i) {
    std::string prev = "*l" + std::to_string(i - 1);
    yaml += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) yaml += (k ? ", " : "") + prev;
    yaml += "]\n";
  }
  // The 100001st visit is the 7th `a` of l0 (reached through the aliases).
  std::string msg = refusal(yaml);
  EXPECT_EQ(msg, "wf.yaml:3:28: the document has more than 100000 nodes (each use of an alias counts)");
}

TEST(WorkflowRefusal, TopLevelNotAMap) {
  EXPECT_EQ(refusal("- a\n- b\n"), "wf.yaml:1:1: the top level must be a map, got a list");
  EXPECT_EQ(refusal("hello\n"), "wf.yaml:1:1: the top level must be a map, got \"hello\"");
  EXPECT_EQ(refusal("---\n"), "wf.yaml:1:1: the top level must be a map, got null");
}

TEST(WorkflowRefusal, EmptyFile) {
  EXPECT_EQ(refusal(""), "wf.yaml:1:1: the file is empty: expected a map with `name` and `steps`");
  EXPECT_EQ(refusal("# just a comment\n"),
            "wf.yaml:1:1: the file is empty: expected a map with `name` and `steps`");
}

TEST(WorkflowRefusal, MoreThanOneDocument) {
  EXPECT_EQ(refusal("name: a\nsteps: [{id: a, role: r}]\n---\nname: b\n"),
            "wf.yaml:4:1: only one YAML document per file is allowed");
}

TEST(WorkflowRefusal, UnknownTopLevelKey) {
  EXPECT_EQ(refusal(R"(name: x
stesp: []
)"),
            "wf.yaml:2:1: unknown key `stesp` at the top level (allowed: name, version, "
            "description, trigger, record, max_steps, steps, schedule, window, budget)");
}

TEST(WorkflowRefusal, UnknownKeySaysWhereItBelongs) {
  EXPECT_EQ(refusal(R"(name: x
next: a
)"),
            "wf.yaml:2:1: unknown key `next` at the top level (allowed: name, version, "
            "description, trigger, record, max_steps, steps, schedule, window, budget); `next` belongs in a step");
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
    max_attempts: 3
)"),
            "wf.yaml:5:5: unknown key `max_attempts` in a step (allowed: id, role, agent, writes, "
            "output, next, timeout, retry, route, handoff, parallel, join, loop, planner, approval, approve_when, "
            "review_sample, review, on_collision, lock); `max_attempts` belongs in `retry`");
}

TEST(WorkflowRefusal, UnknownStepKey) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    rol: r
)"),
            "wf.yaml:4:5: unknown key `rol` in a step (allowed: id, role, agent, writes, output, "
            "next, timeout, retry, route, handoff, parallel, join, loop, planner, approval, approve_when, "
            "review_sample, review, on_collision, lock)");
}

TEST(WorkflowRefusal, UnknownTriggerAndRetryKeys) {
  EXPECT_EQ(refusal(R"(name: x
trigger: { topic: t, dedup: "{{input.id}}" }
steps: [{id: a, role: r}]
)"),
            "wf.yaml:2:22: unknown key `dedup` in `trigger` (allowed: topic, dedupe)");
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
    retry: { attempts: 3 }
)"),
            "wf.yaml:5:14: unknown key `attempts` in `retry` (allowed: max_attempts, backoff, "
            "max_backoff, multiplier)");
}

TEST(WorkflowRefusal, PlannedTopLevelKeys) {
  for (const char* key : {"agents"}) {
    std::string yaml = std::string("name: x\n") + key + ": {}\nsteps: [{id: a, role: r}]\n";
    EXPECT_EQ(refusal(yaml), std::string("wf.yaml:2:1: `") + key + "` is not supported yet (planned)");
  }
}

TEST(WorkflowRefusal, PlannedStepKeys) {
  for (const char* key : {"input"}) {
    std::string yaml = std::string("name: x\nsteps:\n  - id: a\n    role: r\n    ") + key + ": x\n";
    EXPECT_EQ(refusal(yaml), std::string("wf.yaml:5:5: `") + key + "` is not supported yet (planned)");
  }
  // The DESIGN.md gate example as written parses now.
  EXPECT_EQ(refusal(R"(name: lead-to-meeting
steps:
  - id: review
    approval: { group: sales-lead, sla: 4h, on_timeout: exception }
    next: book
  - id: book
    role: b
)"),
            "<accepted>");
}

TEST(WorkflowRefusal, WrongTypes) {
  EXPECT_EQ(refusal("name: [a]\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:1:7: `name` must be a string, got a list");
  EXPECT_EQ(refusal("name:\nsteps: [{id: a, role: r}]\n"), "wf.yaml:1:1: `name` must be a string, got null");
  EXPECT_EQ(refusal("name: x\nversion: \"3\"\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:10: `version` must be a positive integer, got \"3\"");
  EXPECT_EQ(refusal("name: x\nversion: 0\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:10: `version` must be a positive integer, got 0");
  EXPECT_EQ(refusal("name: x\nversion: 1.5\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:10: `version` must be a positive integer, got 1.5");
  EXPECT_EQ(refusal("name: x\nversion: 4294967296\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:10: `version` must be at most 4294967295, got 4294967296");
  EXPECT_EQ(refusal("name: x\nmax_steps: -1\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:12: `max_steps` must be a positive integer, got -1");
  EXPECT_EQ(refusal("name: x\ndescription: { a: b }\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:14: `description` must be a string, got a map");
  EXPECT_EQ(refusal("name: x\ntrigger: crm.leads\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:10: `trigger` must be a map (keys: topic, dedupe), got \"crm.leads\"");
  EXPECT_EQ(refusal("name: x\ntrigger: { topic: \"a b\" }\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:19: `trigger.topic` must be a Kafka topic name ([A-Za-z0-9._-], at most 249 "
            "characters), got \"a b\"");
  EXPECT_EQ(refusal("name: x\nsteps: {}\n"),
            "wf.yaml:2:8: `steps` must be a non-empty list of steps, got an empty map");
  EXPECT_EQ(refusal("name: x\nsteps: []\n"),
            "wf.yaml:2:8: `steps` must be a non-empty list of steps, got an empty list");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - greet\n"),
            "wf.yaml:3:5: each step must be a map with `id` and `role`, got \"greet\"");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    agent: echo\n"),
            "wf.yaml:5:12: `agent` must be a map with `kind`, got \"echo\"");
  EXPECT_EQ(refusal("name: x\nrecord: r\nsteps:\n  - id: a\n    role: r\n    writes: score\n"),
            "wf.yaml:6:13: `writes` must be a list of field names, got \"score\"");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    output: [score]\n"),
            "wf.yaml:5:13: `output` must be a map of field: type, got a list");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    retry: 3\n"),
            "wf.yaml:5:12: `retry` must be a map (keys: max_attempts, backoff, max_backoff, "
            "multiplier), got 3");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    next: [b]\n"),
            "wf.yaml:5:11: `next` must be a string, got a list");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    retry: { multiplier: 0.5 }\n"),
            "wf.yaml:5:26: `retry.multiplier` must be a number from 1 to 100, got 0.5");
  EXPECT_EQ(refusal("name: x\nsteps:\n  - id: a\n    role: r\n    retry: { multiplier: fast }\n"),
            "wf.yaml:5:26: `retry.multiplier` must be a number from 1 to 100, got \"fast\"");
}

TEST(WorkflowRefusal, InvalidNames) {
  EXPECT_EQ(refusal("name: Lead\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:1:7: `name` must match [a-z0-9][a-z0-9_-]* (at most 64 characters), got "
            "\"Lead\"");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: -a, role: r}]\n"),
            "wf.yaml:2:14: `id` must match [a-z0-9][a-z0-9_-]* (at most 64 characters), got \"-a\"");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: \"sales team\"}]\n"),
            "wf.yaml:2:23: `role` must match [a-z0-9][a-z0-9_-]* (at most 64 characters), got "
            "\"sales team\"");
  std::string long_name(65, 'a');
  EXPECT_EQ(refusal("name: " + long_name + "\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:1:7: `name` must match [a-z0-9][a-z0-9_-]* (at most 64 characters), got \"" +
                std::string(40, 'a') + "...\"");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, agent: {kind: My.Kind}}]\n"),
            "wf.yaml:2:40: `agent.kind` must match [a-z0-9][a-z0-9_-]* (at most 64 characters), "
            "got \"My.Kind\"");
}

TEST(WorkflowRefusal, MissingRequiredKeys) {
  EXPECT_EQ(refusal("version: 2\nsteps: [{id: a, role: r}]\n"), "wf.yaml:1:1: missing required key `name`");
  EXPECT_EQ(refusal("name: x\nversion: 2\n"), "wf.yaml:1:1: missing required key `steps`");
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
  - role: r
    next: a
)"),
            "wf.yaml:5:5: step is missing required key `id`");
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    next: b
)"),
            "wf.yaml:3:5: step `a` is missing required key `role` (or `approval` for a person's decision)");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, agent: {model: m}}]\n"),
            "wf.yaml:2:33: `agent` is missing required key `kind`");
}

TEST(WorkflowRefusal, DuplicateStepId) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
  - id: b
    role: r
  - id: a
    role: s
)"),
            "wf.yaml:7:9: duplicate step id `a` (first defined at line 3)");
}

TEST(WorkflowRefusal, DuplicateMapKey) {
  EXPECT_EQ(refusal(R"(name: x
steps: [{id: a, role: r}]
name: y
)"),
            "wf.yaml:3:1: duplicate key `name` (first at line 1)");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, agent: {kind: k, a: 1, a: 2}}]\n"),
            "wf.yaml:2:49: duplicate key `a` (first at line 2)");
}

TEST(WorkflowRefusal, NonScalarKey) {
  EXPECT_EQ(refusal("name: x\n? [a, b]\n: c\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:3: map keys must be strings, got a list");
}

TEST(WorkflowRefusal, NextNamesUnknownStep) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: respond
    role: r
    next: qualfy
  - id: qualify
    role: q
)"),
            "wf.yaml:5:11: `next` names unknown step `qualfy`");
}

TEST(WorkflowRefusal, NextCycle) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: respond
    role: r
    next: qualify
  - id: qualify
    role: q
    next: respond
)"),
            "wf.yaml:8:11: cycle respond -> qualify -> respond has no exit (use `loop`, or `route` with a "
            "condition)");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, next: a}]\n"),
            "wf.yaml:2:32: cycle a -> a has no exit (use `loop`, or `route` with a condition)");
  // A cycle that the entry step only leads into.
  EXPECT_EQ(refusal(R"(name: x
steps:
  - { id: a, role: r, next: b }
  - { id: b, role: r, next: c }
  - { id: c, role: r, next: d }
  - { id: d, role: r, next: b }
)"),
            "wf.yaml:6:29: cycle b -> c -> d -> b has no exit (use `loop`, or `route` with a condition)");
}

TEST(WorkflowRefusal, WritesWithoutRecord) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
    writes: [score]
)"),
            "wf.yaml:5:5: `writes` needs a top-level `record` (the key of the shared record the step "
            "writes to)");
}

TEST(WorkflowRefusal, BadWritesEntries) {
  EXPECT_EQ(refusal("name: x\nrecord: r\nsteps: [{id: a, role: r, writes: [_v]}]\n"),
            "wf.yaml:3:35: `writes` entries must be field names matching [A-Za-z0-9][A-Za-z0-9_-]* "
            "(at most 64 characters), got \"_v\"");
  EXPECT_EQ(refusal("name: x\nrecord: r\nsteps: [{id: a, role: r, writes: [a, [b]]}]\n"),
            "wf.yaml:3:38: `writes` entries must be field names matching [A-Za-z0-9][A-Za-z0-9_-]* "
            "(at most 64 characters), got a list");
  EXPECT_EQ(refusal("name: x\nrecord: r\nsteps: [{id: a, role: r, writes: [score, score]}]\n"),
            "wf.yaml:3:42: `writes` lists `score` twice");
}

TEST(WorkflowRefusal, InvalidTemplates) {
  EXPECT_EQ(refusal(R"(name: x
record: "lead:{{input.lead_id"
steps: [{id: a, role: r}]
)"),
            "wf.yaml:2:15: invalid template in `record`: unclosed {{");
  EXPECT_EQ(refusal(R"(name: x
trigger: { dedupe: "{{ }}" }
steps: [{id: a, role: r}]
)"),
            "wf.yaml:2:21: invalid template in `trigger.dedupe`: empty path in {{ }}");
  EXPECT_EQ(refusal(R"(name: x
record: lead:{{input lead}}
steps: [{id: a, role: r}]
)"),
            "wf.yaml:2:14: invalid template in `record`: invalid path `input lead` (expected names "
            "joined by dots, with optional [index])");
  EXPECT_EQ(refusal("name: x\nrecord: \"\"\nsteps: [{id: a, role: r}]\n"),
            "wf.yaml:2:9: `record` must not be empty");
  // In a literal block the position is the line and column inside the block.
  EXPECT_EQ(refusal(R"(name: x
record: |-
  lead:
    {{input
steps: [{id: a, role: r}]
)"),
            "wf.yaml:4:5: invalid template in `record`: unclosed {{");
}

TEST(WorkflowRefusal, BadDurations) {
  auto with_timeout = [](const std::string& t) {
    return "name: x\nsteps:\n  - id: a\n    role: r\n    timeout: " + t + "\n";
  };
  const std::string expect =
      "wf.yaml:5:14: `timeout` must be a duration: an integer with a unit ms, s, m or h (e.g. 250ms, "
      "30s, 5m, 4h), got ";
  EXPECT_EQ(refusal(with_timeout("30")), expect + "30");  // a bare integer
  EXPECT_EQ(refusal(with_timeout("1.5s")), expect + "\"1.5s\"");
  EXPECT_EQ(refusal(with_timeout("30sec")), expect + "\"30sec\"");
  EXPECT_EQ(refusal(with_timeout("-5s")), expect + "\"-5s\"");
  EXPECT_EQ(refusal(with_timeout("s")), expect + "\"s\"");
  EXPECT_EQ(refusal(with_timeout("2d")), expect + "\"2d\"");
  EXPECT_EQ(refusal(with_timeout("0s")), "wf.yaml:5:14: `timeout` must be longer than 0, got \"0s\"");
  EXPECT_EQ(refusal(with_timeout("8761h")), "wf.yaml:5:14: `timeout` must be at most 8760h, got \"8761h\"");
  EXPECT_EQ(refusal(with_timeout("99999999999999999999ms")),
            "wf.yaml:5:14: `timeout` must be at most 8760h, got \"99999999999999999999ms\"");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, retry: {backoff: 2}}]\n"),
            "wf.yaml:2:43: `retry.backoff` must be a duration: an integer with a unit ms, s, m or h "
            "(e.g. 250ms, 30s, 5m, 4h), got 2");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, retry: {backoff: 2s, max_backoff: 1s}}]\n"),
            "wf.yaml:2:60: `retry.max_backoff` must not be shorter than `retry.backoff`, got \"1s\"");
}

TEST(WorkflowRefusal, BadContractType) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
    output: { score: num }
)"),
            "wf.yaml:5:22: `output.score` must be one of string, number, integer, boolean, object, "
            "array, any (with ? for optional), got \"num\"");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, output: {owner: {name: string}}}]\n"),
            "wf.yaml:2:42: `output.owner` must be one of string, number, integer, boolean, object, "
            "array, any (with ? for optional), got a map");
  EXPECT_EQ(refusal("name: x\nsteps: [{id: a, role: r, output: {\"a.b\": string}}]\n"),
            "wf.yaml:2:35: `output` field names must match [A-Za-z0-9][A-Za-z0-9_-]* (at most 64 "
            "characters), got \"a.b\"");
}

TEST(WorkflowRefusal, MaxAttemptsZero) {
  EXPECT_EQ(refusal(R"(name: x
steps:
  - id: a
    role: r
    retry: { max_attempts: 0 }
)"),
            "wf.yaml:5:28: `retry.max_attempts` must be a positive integer, got 0");
}

// Whatever the bytes, parse_workflow returns (never throws, never crashes) and
// every refusal carries the "wf.yaml:<line>:<col>: " prefix.
TEST(WorkflowRefusal, MutatedInputsAreRefusedWithAPosition) {
  const std::string base(kDesignExample);
  const std::string alphabet = "{}[]:,-#&*!|>'\"\n\t ?%@`{{}}";
  uint32_t seed = 12345;
  auto next = [&] {
    seed = seed * 1664525u + 1013904223u;
    return seed >> 8;
  };
  int accepted = 0, refused = 0;
  for (int round = 0; round < 2000; ++round) {
    std::string text = base;
    int edits = 1 + static_cast<int>(next() % 4);
    for (int k = 0; k < edits; ++k) {
      std::size_t at = next() % text.size();
      switch (next() % 3) {
        case 0:
          text[at] = alphabet[next() % alphabet.size()];
          break;
        case 1:
          text.insert(at, 1, alphabet[next() % alphabet.size()]);
          break;
        default:
          text.erase(at, 1 + next() % 8);
          break;
      }
      if (text.empty()) text = "x";
    }
    auto r = parse_workflow(text, "wf.yaml");
    if (r.is_ok()) {
      ++accepted;
      continue;
    }
    ++refused;
    const std::string& m = r.status().message();
    ASSERT_EQ(r.status().code(), Code::kInvalidArgument) << m << "\n--- input:\n" << text;
    // "wf.yaml:" <digits> ":" <digits> ": " <reason>
    std::size_t p = 8;
    ASSERT_EQ(m.rfind("wf.yaml:", 0), 0u) << m;
    std::size_t d1 = m.find_first_not_of("0123456789", p);
    ASSERT_TRUE(d1 > p && d1 < m.size() && m[d1] == ':') << m;
    std::size_t d2 = m.find_first_not_of("0123456789", d1 + 1);
    ASSERT_TRUE(d2 > d1 + 1 && m.compare(d2, 2, ": ") == 0 && m.size() > d2 + 2) << m;
    ASSERT_NE(m.substr(0, d2), "wf.yaml:0:0") << m;
  }
  // Both outcomes happen, so the loop really exercised the refusals.
  EXPECT_GT(accepted, 0);
  EXPECT_GT(refused, 1000);
}

// ---------------------------------------------------------------------------
// Files and the Registry

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/baton-wf-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    char* p = ::mkdtemp(buf.data());
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path_ + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

 private:
  std::string path_;
};

std::string simple(const std::string& name, int version, const std::string& role,
                   const std::string& comment = "") {
  return comment + "name: " + name + "\nversion: " + std::to_string(version) +
         "\nsteps:\n  - id: a\n    role: " + role + "\n";
}

TEST(WorkflowFile, ParsesAFileUsingItsPathInMessages) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string good = dir.write("good.yaml", simple("g", 1, "r"));
  auto r = parse_workflow_file(good);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_EQ(r.value()->source_path, good);

  std::string bad = dir.write("bad.yaml", "name: g\n");
  auto b = parse_workflow_file(bad);
  ASSERT_FALSE(b.is_ok());
  EXPECT_EQ(b.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(b.status().message(), bad + ":1:1: missing required key `steps`");
}

TEST(WorkflowFile, MissingFileAndDirectory) {
  TempDir dir;
  auto r = parse_workflow_file(dir.path() + "/nope.yaml");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_EQ(r.status().message().rfind(dir.path() + "/nope.yaml: ", 0), 0u);

  auto d = parse_workflow_file(dir.path());
  ASSERT_FALSE(d.is_ok());
  EXPECT_EQ(d.status().message(), dir.path() + ": not a regular file");
}

TEST(WorkflowFile, TooBigFileIsRefusedBeforeReading) {
  TempDir dir;
  std::string p = dir.write("big.yaml", std::string(limits::kMaxWorkflowFileBytes + 10, '#'));
  auto r = parse_workflow_file(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), p + ":1:1: file is 262154 bytes, more than the limit of 262144");
}

TEST(Registry, LoadsYamlAndYmlSortedAndFindsVersions) {
  TempDir dir;
  dir.write("b.yaml", simple("alpha", 2, "writer"));
  dir.write("a.yml", simple("alpha", 1, "reader"));
  dir.write("c.yaml", simple("beta", 7, "reader"));
  dir.write("notes.txt", "not: a workflow\n");
  dir.write(".#c.yaml", "garbage [");  // editor lock file
  std::filesystem::create_directory(dir.path() + "/sub.yaml");

  Registry reg;
  Status s = reg.load_dir(dir.path());
  ASSERT_TRUE(s.is_ok()) << s.message();
  ASSERT_NE(reg.find("alpha"), nullptr);
  EXPECT_EQ(reg.find("alpha")->version, 2u);
  EXPECT_EQ(reg.find("alpha", 0)->version, 2u);
  EXPECT_EQ(reg.find("alpha", 1)->steps[0].role, "reader");
  EXPECT_EQ(reg.find("alpha", 3), nullptr);
  EXPECT_EQ(reg.find("beta")->version, 7u);
  EXPECT_EQ(reg.find("gamma"), nullptr);
  std::vector<std::string> all;
  for (const auto& wf : reg.all()) all.push_back(wf->name + "@" + std::to_string(wf->version));
  EXPECT_EQ(all, (std::vector<std::string>{"alpha@1", "alpha@2", "beta@7"}));
  EXPECT_EQ(reg.roles(), (std::vector<std::string>{"reader", "writer"}));
}

TEST(Registry, SameVersionWithSameContentIsAccepted) {
  TempDir dir;
  dir.write("a.yaml", simple("alpha", 1, "r"));
  dir.write("b.yaml", simple("alpha", 1, "r", "# a copy, with a comment\n"));
  Registry reg;
  Status s = reg.load_dir(dir.path());
  ASSERT_TRUE(s.is_ok()) << s.message();
  EXPECT_EQ(reg.all().size(), 1u);
  EXPECT_EQ(reg.find("alpha")->source_path, dir.path() + "/a.yaml");  // the first one stays
}

TEST(Registry, SameVersionWithDifferentContentIsRefusedAndNothingIsAdded) {
  TempDir first;
  first.write("x.yaml", simple("other", 1, "r"));
  Registry reg;
  ASSERT_TRUE(reg.load_dir(first.path()).is_ok());

  TempDir dir;
  dir.write("a.yaml", simple("alpha", 1, "r"));
  dir.write("b.yaml", simple("alpha", 1, "s"));
  Status s = reg.load_dir(dir.path());
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_EQ(s.message(), dir.path() + "/b.yaml:1:1: workflow `alpha` version 1 is already loaded from " +
                             dir.path() + "/a.yaml with different content (bump `version`)");
  EXPECT_EQ(reg.find("alpha"), nullptr);
  EXPECT_NE(reg.find("other"), nullptr);
  EXPECT_EQ(reg.all().size(), 1u);
}

TEST(Registry, InvalidFileFailsTheWholeLoad) {
  TempDir dir;
  dir.write("a.yaml", simple("alpha", 1, "r"));
  dir.write("b.yaml", "name: beta\nsteps:\n  - id: a\n    role: r\n    timeout: 30\n");
  Registry reg;
  Status s = reg.load_dir(dir.path());
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), dir.path() +
                             "/b.yaml:5:14: `timeout` must be a duration: an integer with a unit ms, "
                             "s, m or h (e.g. 250ms, 30s, 5m, 4h), got 30");
  EXPECT_TRUE(reg.all().empty());
}

TEST(Registry, MissingDirectory) {
  Registry reg;
  Status s = reg.load_dir("/nonexistent/baton-workflows");
  ASSERT_FALSE(s.is_ok());
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message().rfind("/nonexistent/baton-workflows: cannot read directory: ", 0), 0u);
}

TEST(Registry, AddRefusesNullAndConflicts) {
  Registry reg;
  EXPECT_EQ(reg.add(nullptr).code(), Code::kInvalidArgument);
  auto a = parse_workflow(simple("alpha", 1, "r"), "one.yaml");
  auto b = parse_workflow(simple("alpha", 1, "s"), "two.yaml");
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_TRUE(reg.add(a.value()).is_ok());
  EXPECT_TRUE(reg.add(a.value()).is_ok());
  Status s = reg.add(b.value());
  EXPECT_EQ(s.code(), Code::kAlreadyExists);
  EXPECT_EQ(s.message(),
            "two.yaml:1:1: workflow `alpha` version 1 is already loaded from one.yaml with different "
            "content (bump `version`)");
  EXPECT_EQ(reg.find("alpha")->steps[0].role, "r");
}

TEST(Registry, LoadsFixtureDir) {
  const char* src = std::getenv("BATON_SOURCE_DIR");
  std::filesystem::path dir = src != nullptr
                                  ? std::filesystem::path(src) / "tests/unit/testdata/workflows"
                                  : std::filesystem::path(__FILE__).parent_path() / "testdata/workflows";
  Registry reg;
  Status s = reg.load_dir(dir.string());
  ASSERT_TRUE(s.is_ok()) << s.message();
  ASSERT_NE(reg.find("lead-to-meeting"), nullptr);
  EXPECT_EQ(reg.find("lead-to-meeting")->version, 3u);
  ASSERT_NE(reg.find("invoice-processing", 1), nullptr);
  EXPECT_EQ(reg.find("invoice-processing")->steps[0].agent->config["fields"]["amount"], "Total: ([0-9.]+)");
  EXPECT_EQ(reg.roles(), (std::vector<std::string>{"booker", "extractor", "poster", "qualifier", "responder",
                                                   "validator"}));
}

TEST(Registry, ConcurrentReadsAfterLoading) {
  Registry reg;
  for (int v = 1; v <= 5; ++v) {
    auto wf = parse_workflow(simple("alpha", v, "r" + std::to_string(v)), "mem.yaml");
    ASSERT_TRUE(wf.is_ok());
    ASSERT_TRUE(reg.add(wf.value()).is_ok());
  }
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 500; ++i) {
        auto latest = reg.find("alpha");
        auto v2 = reg.find("alpha", 2);
        if (latest && latest->version == 5 && v2 && v2->steps[0].role == "r2" && reg.roles().size() == 5)
          ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 2000);
}

}  // namespace
}  // namespace baton::workflow

namespace baton::workflow {
namespace {

std::string pattern_refusal(const std::string& yaml) {
  auto r = parse_workflow(yaml, "wf.yaml");
  return r ? std::string("<accepted>") : r.status().message();
}

TEST(PatternRefusal, EveryInvalidPatternConfigIsRefusedWithItsPosition) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"(name: x
steps:
  - id: fan
    parallel: [a, b]
    join: { mode: most }
  - { id: a, role: r }
  - { id: b, role: r }
)",
       "wf.yaml:5:19: unknown join mode \"most\" (use all, any or quorum(n))"},
      {R"(name: x
steps:
  - id: fan
    parallel: [a, b]
    join: { mode: quorum(3) }
  - { id: a, role: r }
  - { id: b, role: r }
)",
       "wf.yaml:5:11: `join.mode` quorum(3) needs at most 2 (the number of branches)"},
      {R"(name: x
steps:
  - id: t
    role: r
    handoff: { from_output: who, allowed: [billing, legal] }
  - { id: billing, role: b }
)",
       "wf.yaml:5:5: `handoff.allowed` names unknown step `legal`"},
      {R"(name: x
steps:
  - id: l
    loop: { maker: a, checker: b, until: "output.ok" }
  - { id: a, role: r }
  - { id: b, role: r }
)",
       "wf.yaml:4:11: `loop` is missing required key `max_rounds`"},
      {R"(name: x
steps:
  - id: p
    role: planner
    planner: { allowed: [a] }
  - { id: a, role: r }
)",
       "wf.yaml:5:14: `planner` is missing required key `max_steps` (the bound on planned steps)"},
      {R"(name: x
steps:
  - id: a
    role: r
    route:
      - { when: "output.score >> 2", to: b }
  - { id: b, role: r }
)",
       "<condition error>"},
      {R"(name: x
steps:
  - id: a
    role: r
    route:
      - { when: "output.ok", to: nowhere }
)",
       "wf.yaml:6:34: `route.to` names unknown step `nowhere` (or use end, exception)"},
      {R"(name: x
steps:
  - id: a
    role: r
    route:
      - { else: end }
      - { when: "output.ok", to: a }
)",
       "wf.yaml:7:9: `else` must be the last `route` entry"},
      {R"(name: x
steps:
  - id: a
    role: r
    next: b
    route: [{ else: end }]
  - { id: b, role: r }
)",
       "wf.yaml:6:5: step `a` may have only one of `next`, `route` and `handoff`"},
      {R"(name: x
steps:
  - id: fan
    role: r
    parallel: [a, b]
  - { id: a, role: r }
  - { id: b, role: r }
)",
       "wf.yaml:4:5: `role` is not allowed in a `parallel` step (the coordinator runs it; its branches have roles)"},
      {R"(name: x
steps:
  - id: fan
    parallel: [a, b]
  - { id: a, role: r, next: b }
  - { id: b, role: r }
)",
       "wf.yaml:5:5: step `a` is a branch of `fan` and cannot have `next`, `route` or `handoff` (its parent decides "
       "what follows)"},
      {R"(name: x
steps:
  - { id: end, role: r }
)",
       "wf.yaml:3:11: step id `end` is reserved (a built-in route target)"},
      {R"(name: x
schedule: { cron: "0 25 * * *", timezone: UTC }
steps:
  - { id: a, role: r }
)",
       "wf.yaml:2:22: invalid `schedule.cron`: hour: 25 is out of range 0-23"},
      {R"(name: x
schedule: { cron: "0 9 * * *", timezone: Mars/Olympus }
steps:
  - { id: a, role: r }
)",
       "wf.yaml:2:42: invalid `schedule`: unknown time zone 'Mars/Olympus'"},
      {R"(name: x
window: { days: [mon, funday], from: "09:00", to: "17:00" }
steps:
  - { id: a, role: r }
)",
       "wf.yaml:2:9: invalid `window`: unknown day 'funday' (use mon, tue, wed, thu, fri, sat, sun)"},
  };
  for (const auto& [yaml, want] : cases) {
    std::string got = pattern_refusal(yaml);
    if (want == "<condition error>") {
      EXPECT_EQ(got.rfind("wf.yaml:6:", 0), 0u) << got;
      EXPECT_NE(got.find("invalid condition in `route.when`"), std::string::npos) << got;
    } else {
      EXPECT_EQ(got, want) << yaml;
    }
  }
}

TEST(PatternParse, ModelsAndCanonicalForm) {
  auto wf = parse_workflow(R"(name: x
schedule: { cron: "0 9 * * MON-FRI", timezone: Europe/Paris, input: { period: week } }
steps:
  - id: fan
    parallel: [a, { step: b, on_failure: ignore }]
    join: { mode: any }
    next: l
  - { id: a, role: r }
  - { id: b, role: r }
  - id: l
    loop: { maker: m, checker: c, until: "output.ok", max_rounds: 2 }
  - { id: m, role: r }
  - { id: c, role: r }
)",
                           "wf.yaml");
  ASSERT_TRUE(wf) << wf.status().message();
  const Step* fan = (*wf)->find_step("fan");
  EXPECT_EQ(fan->kind, StepKind::kParallel);
  EXPECT_EQ(fan->join.mode, JoinMode::kAny);
  EXPECT_TRUE(fan->parallel[0].ignore_failure);  // default for any
  EXPECT_TRUE((*wf)->is_sub_step("m"));
  EXPECT_FALSE((*wf)->is_sub_step("l"));
  EXPECT_EQ((*wf)->roles(), std::vector<std::string>{"r"});
  auto j = (*wf)->to_json();
  EXPECT_EQ(j["schedule"]["cron"], "0 9 * * MON-FRI");
  EXPECT_EQ(j["schedule"]["input"]["period"], "week");
  EXPECT_EQ(j["steps"][3]["loop"]["until"], "output.ok");
}

}  // namespace
}  // namespace baton::workflow
