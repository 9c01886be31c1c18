// The `exec` agent against real subprocesses (/bin/sh scripts): the task on
// stdin, one JSON object on stdout, exit codes, bad output, the timeout kill
// (no process left behind), and config refusals.
#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/process.h"
#include "workers/agents/exec.h"

namespace baton::agent {
namespace {

using nlohmann::json;

AgentPtr make(const json& cfg) {
  auto a = make_exec_agent(cfg);
  EXPECT_TRUE(a.is_ok()) << a.status().message();
  return a ? std::move(a).value() : nullptr;
}

AgentOutput run(Agent& a, const json& input = {{"name", "Ada"}}) {
  baton::v1::Task t;
  t.set_run_id("run-1");
  t.set_step_id("greet");
  t.set_attempt(2);
  t.add_writes("greeting");
  OwnedInput in(t, input, json::object(), json{{"owner", "sam"}});
  return a.execute(in.view());
}

json sh(const std::string& script, int64_t timeout_ms = 10000) {
  return {{"command", json::array({"/bin/sh", "-c", script})}, {"timeout_ms", timeout_ms}};
}

TEST(ExecAgent, TheTaskGoesInAndOneJsonObjectComesOut) {
  // The script echoes what it was given, so every field of the task is checked.
  auto a = make(sh("cat"));
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["run_id"], "run-1");
  EXPECT_EQ(out.output["step"], "greet");
  EXPECT_EQ(out.output["attempt"], 2);
  EXPECT_EQ(out.output["input"]["name"], "Ada");
  EXPECT_EQ(out.output["record"]["owner"], "sam");
  EXPECT_EQ(out.output["writes"], json::array({"greeting"}));
}

// The script never reads its stdin: the agent's write to the closed pipe must
// not raise SIGPIPE in the worker (the default action would kill it).
TEST(ExecAgent, EnvAndStderrDoNotDisturbTheOutput) {
  auto a = make({{"command", json::array({"/bin/sh", "-c", "echo working >&2; printf '{\"who\":\"%s\"}' \"$GREETER\""})},
                 {"env", {{"GREETER", "baton"}}}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output, json({{"who", "baton"}}));
  // A large task the command does not read: EPIPE, not a signal.
  json big = {{"blob", std::string(1 << 20, 'x')}};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run(*a, big).status, AgentOutput::kOk);
}

TEST(ExecAgent, BadJsonNonZeroExitAndRetryableExit) {
  auto bad = make(sh("cat >/dev/null; echo 'not json'; echo 'oops' >&2"));
  AgentOutput out = run(*bad);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, errors::kBadOutput);
  EXPECT_NE(out.error_message.find("oops"), std::string::npos) << out.error_message;

  auto array = make(sh("cat >/dev/null; echo '[1,2]'"));
  EXPECT_EQ(run(*array).error_code, errors::kBadOutput);

  auto fails = make(sh("cat >/dev/null; echo 'the CRM said no' >&2; exit 3"));
  out = run(*fails);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_EQ(out.error_code, "exec_failed");
  EXPECT_NE(out.error_message.find("exited with 3"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.find("the CRM said no"), std::string::npos) << out.error_message;
  EXPECT_NE(out.error_message.back(), '\n') << "the stderr tail ends the message without its newline";

  auto again = make(sh("cat >/dev/null; exit 75"));
  EXPECT_EQ(run(*again).status, AgentOutput::kRetryable);

  auto missing = make({{"command", json::array({"/nonexistent/agent"})}});
  out = run(*missing);
  EXPECT_EQ(out.status, AgentOutput::kFailed);
  EXPECT_NE(out.error_message.find("/nonexistent/agent"), std::string::npos) << out.error_message;
}

TEST(ExecAgent, TimeoutKillsTheCommandAndItsChildren) {
  const std::string dir = testing::make_temp_dir("baton-exec");
  // The command starts a child that would outlive it, records both pids and
  // ignores SIGTERM: only the SIGKILL of the group ends them.
  // `$$$$` is the shell's `$$` once the config's `$$` escapes are expanded.
  auto a = make(sh("trap '' TERM; sleep 60 & echo $! > " + dir + "/child; echo $$$$ > " + dir + "/self; wait", 300));
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  EXPECT_EQ(out.status, AgentOutput::kRetryable);
  EXPECT_EQ(out.error_code, "timeout");
  for (const char* f : {"/self", "/child"}) {
    std::ifstream in(dir + f);
    int pid = 0;
    in >> pid;
    ASSERT_GT(pid, 0) << f;
    // Gone (and reaped or re-parented and reaped by init): kill(pid, 0) fails.
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = kill(pid, 0) != 0 && errno == ESRCH;
      if (!gone) usleep(20000);
    }
    EXPECT_TRUE(gone) << f << " pid " << pid << " is still alive";
  }
  testing::remove_tree(dir);
}

// Deployment settings name the worker's environment: `${VAR}` and
// `${VAR:-default}` in every command element, env value and cwd, expanded
// once at construction; task data passes through untouched.
TEST(ExecAgent, ExpandsEnvironmentVariablesInCommandEnvAndCwd) {
  const std::string dir = testing::make_temp_dir("baton-exec-env");
  {
    std::ofstream script(dir + "/agent.sh");
    script << "cat >/dev/null\nprintf '{\"where\":\"%s\",\"mode\":\"%s\",\"pwd\":\"%s\",\"arg\":\"%s\"}' "
              "\"$WHERE\" \"$MODE\" \"$(pwd)\" \"$1\"\n";
  }
  ASSERT_EQ(setenv("BATON_T_EXEC_DIR", dir.c_str(), 1), 0);
  unsetenv("BATON_T_EXEC_UNSET");
  auto a = make({{"command", json::array({"/bin/sh", "${BATON_T_EXEC_DIR}/agent.sh", "${BATON_T_EXEC_UNSET:-fallback}"})},
                 {"env", {{"WHERE", "dir=${BATON_T_EXEC_DIR}"}, {"MODE", "${BATON_T_EXEC_UNSET:-fast}"}}},
                 {"cwd", "${BATON_T_EXEC_DIR}"}});
  ASSERT_TRUE(a);
  AgentOutput out = run(*a);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["where"], "dir=" + dir);
  EXPECT_EQ(out.output["mode"], "fast");
  EXPECT_EQ(out.output["arg"], "fallback");
  EXPECT_EQ(std::filesystem::weakly_canonical(out.output.value("pwd", "")), std::filesystem::weakly_canonical(dir));

  // `$$` is a literal `$`; a `$` not followed by `{` stays as it is.
  auto dollars = make(sh("cat >/dev/null; printf '{\"price\":\"$$5\",\"var\":\"$HOME\"}'"));
  out = run(*dollars);
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["price"], "$5");
  EXPECT_EQ(out.output["var"], "$HOME");

  // Task data is never expanded: the input reaches the command as written.
  auto echo = make(sh("cat"));
  out = run(*echo, {{"text", "${BATON_T_EXEC_DIR} and $$"}});
  ASSERT_EQ(out.status, AgentOutput::kOk) << out.error_message;
  EXPECT_EQ(out.output["input"]["text"], "${BATON_T_EXEC_DIR} and $$");
  unsetenv("BATON_T_EXEC_DIR");
  testing::remove_tree(dir);
}

TEST(ExecAgent, AnUnsetVariableRefusesTheConfigNamingTheKey) {
  unsetenv("BATON_T_EXEC_UNSET");
  auto cmd = make_exec_agent({{"command", json::array({"python3", "${BATON_T_EXEC_UNSET}/agents/x.py"})}});
  ASSERT_FALSE(cmd.is_ok());
  EXPECT_EQ(cmd.status().code(), Code::kInvalidArgument);
  EXPECT_NE(cmd.status().message().find("exec: `command[1]`"), std::string::npos) << cmd.status().message();
  EXPECT_NE(cmd.status().message().find("BATON_T_EXEC_UNSET"), std::string::npos) << cmd.status().message();

  auto env = make_exec_agent({{"command", "true"}, {"env", {{"PO_CSV", "${BATON_T_EXEC_UNSET}/po.csv"}}}});
  ASSERT_FALSE(env.is_ok());
  EXPECT_NE(env.status().message().find("exec: `env.PO_CSV`"), std::string::npos) << env.status().message();

  auto cwd = make_exec_agent({{"command", "true"}, {"cwd", "${BATON_T_EXEC_UNSET}"}});
  ASSERT_FALSE(cwd.is_ok());
  EXPECT_NE(cwd.status().message().find("exec: `cwd`"), std::string::npos) << cwd.status().message();

  auto unterminated = make_exec_agent({{"command", json::array({"/bin/sh", "${BATON_T_EXEC_DIR"})}});
  ASSERT_FALSE(unterminated.is_ok());
  EXPECT_NE(unterminated.status().message().find("command[1]"), std::string::npos)
      << unterminated.status().message();
  // A program that expands to nothing is no program.
  EXPECT_FALSE(make_exec_agent({{"command", json::array({"${BATON_T_EXEC_UNSET:-}"})}}).is_ok());
}

TEST(ExecAgent, ConfigRefusals) {
  EXPECT_FALSE(make_exec_agent(json::object()).is_ok());
  EXPECT_FALSE(make_exec_agent({{"command", json::array()}}).is_ok());
  EXPECT_FALSE(make_exec_agent({{"command", "x"}, {"timeout_ms", 0}}).is_ok());
  EXPECT_FALSE(make_exec_agent({{"command", "x"}, {"env", json::array()}}).is_ok());
  EXPECT_FALSE(make_exec_agent({{"command", "x"}, {"shell", true}}).is_ok());
  EXPECT_TRUE(make_exec_agent({{"command", "true"}}).is_ok());
}

}  // namespace
}  // namespace baton::agent
