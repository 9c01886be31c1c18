// valid_utf8 (common/util/json.h) and the parse_json messages that use it:
// outside bytes copied into protobuf strings or JSON must be UTF-8.
#include <gtest/gtest.h>

#include <string>

#include "common/util/json.h"

namespace baton {
namespace {

const std::string kReplacement = "\xEF\xBF\xBD";

TEST(ValidUtf8, KeepsWellFormedTextAsItIs) {
  EXPECT_EQ(valid_utf8(""), "");
  EXPECT_EQ(valid_utf8("plain ascii"), "plain ascii");
  const std::string mixed = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80 \xDE\x93";  // é € 😀 U+0793
  EXPECT_EQ(valid_utf8(mixed), mixed);
}

TEST(ValidUtf8, ReplacesEachBadByte) {
  EXPECT_EQ(valid_utf8("a\xDE"), "a" + kReplacement);                        // cut sequence at the end
  EXPECT_EQ(valid_utf8("\xDE\"x"), kReplacement + "\"x");                   // lead byte, no continuation
  EXPECT_EQ(valid_utf8("\x93z"), kReplacement + "z");                       // lone continuation byte
  EXPECT_EQ(valid_utf8("\xC0\xAF"), kReplacement + kReplacement);           // overlong '/'
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), kReplacement + kReplacement + kReplacement);  // UTF-16 surrogate
  EXPECT_EQ(valid_utf8("\xF4\x90\x80\x80"), kReplacement + kReplacement + kReplacement + kReplacement);  // past U+10FFFF
  EXPECT_EQ(valid_utf8("\xFF"), kReplacement);
}

// nlohmann's message quotes the last bytes read, which here end inside the
// two-byte sequence \xDE\x93: the message was not UTF-8 (found by fuzz_worker_task).
TEST(ValidUtf8, ParseJsonErrorsAreUtf8) {
  auto r = parse_json("{\"a\":1,\xDE\x93x\":2}");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(valid_utf8(r.status().message()), r.status().message());
  EXPECT_NE(r.status().message().find("invalid JSON at byte"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace baton
