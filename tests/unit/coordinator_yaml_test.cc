// The coordinator's own YAML files (tokens, webhooks) go through
// load_all_yaml too: a stream yaml-cpp 0.7 would loop on is a syntax error.
#include <gtest/gtest.h>

#include "coordinator/auth.h"
#include "coordinator/notifier.h"

namespace baton::coordinator {
namespace {

TEST(CoordinatorYaml, ATokenFileYamlCppWouldLoopOnIsRefused) {
  auto r = Authenticator::parse(",", "tokens.yaml");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "tokens.yaml:1:1: YAML syntax error: unexpected ','");
}

TEST(CoordinatorYaml, AWebhookFileYamlCppWouldLoopOnIsRefused) {
  auto r = parse_webhooks("'a',", "webhooks.yaml");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().message(), "webhooks.yaml:1:4: YAML syntax error: unexpected ','");
}

}  // namespace
}  // namespace baton::coordinator
