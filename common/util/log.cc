#include "common/util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdlib>

namespace baton {

void init_logging(const std::string& component, const std::string& level) {
  auto logger = spdlog::stderr_color_mt(component);
  const char* fmt_env = std::getenv("BATON_LOG_FORMAT");
  std::string fmt = fmt_env ? fmt_env : (isatty(STDERR_FILENO) ? "text" : "json");
  if (fmt == "json") {
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%e","level":"%l","component":"%n","msg":"%v"})");
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
