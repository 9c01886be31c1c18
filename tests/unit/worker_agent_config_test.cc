// config::expand_env and config::get_secret: deployment settings and secrets
// in agent configs.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "workers/agents/config.h"

namespace {

using baton::agent::config::expand_env;
using baton::agent::config::get_secret;

TEST(AgentConfigEnv, ExpandsSetVariablesDefaultsAndDollars) {
  ::setenv("BATON_T_URL", "http://127.0.0.1:9", 1);
  ::unsetenv("BATON_T_UNSET");
  ::setenv("BATON_T_EMPTY", "", 1);
  EXPECT_EQ(*expand_env("${BATON_T_URL}/v1", "llm: `base_url`"), "http://127.0.0.1:9/v1");
  EXPECT_EQ(*expand_env("${BATON_T_UNSET:-llama3.1}", "x"), "llama3.1");
  EXPECT_EQ(*expand_env("${BATON_T_EMPTY:-fallback}", "x"), "fallback");
  EXPECT_EQ(*expand_env("${BATON_T_UNSET:-}", "x"), "");
  EXPECT_EQ(*expand_env("cost $$5 and $HOME stays", "x"), "cost $5 and $HOME stays");
  EXPECT_EQ(*expand_env("no variables", "x"), "no variables");
}

TEST(AgentConfigEnv, RefusesUnsetUnterminatedAndBadNames) {
  ::unsetenv("BATON_T_UNSET");
  auto r = expand_env("${BATON_T_UNSET}/x", "llm: `base_url`");
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("llm: `base_url`"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("BATON_T_UNSET is not set"), std::string::npos) << r.status().message();
  EXPECT_FALSE(expand_env("${BATON_T_URL", "x"));
  EXPECT_FALSE(expand_env("${1ABC}", "x"));
  EXPECT_FALSE(expand_env("${A-B}", "x"));
}

TEST(AgentConfigSecret, ReadsEnvOrFileAndNeverEchoesTheValue) {
  ::setenv("BATON_T_KEY", "sk-test-123", 1);
  auto from_env = get_secret({{"api_key_env", "BATON_T_KEY"}}, "llm", "api_key");
  ASSERT_TRUE(from_env) << from_env.status().message();
  EXPECT_EQ(*from_env, "sk-test-123");

  std::string path = ::testing::TempDir() + "baton_secret_" + std::to_string(::getpid());
  { std::ofstream(path) << "sk-file-456\n"; }
  auto from_file = get_secret({{"api_key_file", path}}, "llm", "api_key");
  ASSERT_TRUE(from_file) << from_file.status().message();
  EXPECT_EQ(*from_file, "sk-file-456");

  EXPECT_EQ(*get_secret(nlohmann::json::object(), "llm", "api_key"), "");
  auto both = get_secret({{"api_key_env", "BATON_T_KEY"}, {"api_key_file", path}}, "llm", "api_key");
  ASSERT_FALSE(both);
  EXPECT_EQ(both.status().message().find("sk-"), std::string::npos);
  ::unlink(path.c_str());
  auto missing_file = get_secret({{"api_key_file", path}}, "llm", "api_key");
  ASSERT_FALSE(missing_file);
  EXPECT_NE(missing_file.status().message().find("cannot read"), std::string::npos);
  ::unsetenv("BATON_T_NOKEY");
  auto unset = get_secret({{"api_key_env", "BATON_T_NOKEY"}}, "llm", "api_key");
  ASSERT_FALSE(unset);
  EXPECT_NE(unset.status().message().find("BATON_T_NOKEY is not set"), std::string::npos);
}

}  // namespace
