// JSON log lines stay valid JSON whatever the message holds.
#include "common/util/log.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <sstream>

namespace baton {
namespace {

TEST(JsonLogs, MessagesWithQuotesNewlinesAndControlsAreEscaped) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger logger("coordinator", sink);
  logger.set_formatter(make_json_formatter());
  logger.info("run_id={} said \"hi\\there\"\nnext line\t\x01 end", "r1");
  std::string line = out.str();
  ASSERT_FALSE(line.empty());
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  EXPECT_EQ(line.find('\n'), std::string::npos);  // one line
  auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["msg"], "run_id=r1 said \"hi\\there\"\nnext line\t\x01 end");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["component"], "coordinator");
}

}  // namespace
}  // namespace baton
