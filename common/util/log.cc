#include "common/util/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace baton {

namespace {

// %j: the message escaped as the inside of a JSON string, so a message with
// quotes, backslashes or newlines still makes one valid JSON line.
class JsonEscapedMessage : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view("\\\"")); break;
        case '\\': dest.append(std::string_view("\\\\")); break;
        case '\n': dest.append(std::string_view("\\n")); break;
        case '\r': dest.append(std::string_view("\\r")); break;
        case '\t': dest.append(std::string_view("\\t")); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
            dest.append(std::string_view(buf, 6));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<spdlog::custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }
};

}  // namespace

std::unique_ptr<spdlog::formatter> make_json_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<JsonEscapedMessage>('j').set_pattern(
      R"({"ts":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","component":"%n","msg":"%j"})");
  return f;
}

void init_logging(const std::string& component, const std::string& level) {
  auto logger = spdlog::stderr_color_mt(component);
  const char* fmt_env = std::getenv("BATON_LOG_FORMAT");
  std::string fmt = fmt_env ? fmt_env : (isatty(STDERR_FILENO) ? "text" : "json");
  if (fmt == "json") {
    logger->set_formatter(make_json_formatter());
  } else {
    logger->set_pattern("%H:%M:%S.%e %^%l%$ [%n] %v");
  }
  std::string lvl = level;
  if (lvl.empty()) {
    const char* e = std::getenv("BATON_LOG_LEVEL");
    lvl = e ? e : "info";
  }
  logger->set_level(spdlog::level::from_str(lvl));
  spdlog::set_default_logger(logger);
}

}  // namespace baton
