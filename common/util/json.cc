#include "common/util/json.h"

#include <nlohmann/json.hpp>

#include <cstdint>

namespace baton {

Result<nlohmann::json> parse_json(std::string_view text, std::size_t max_bytes, int max_depth) {
  if (text.size() > max_bytes) {
    return Status(Code::kTooLarge, "JSON of " + std::to_string(text.size()) +
                                       " bytes exceeds the limit of " + std::to_string(max_bytes));
  }
  // Depth is checked while parsing: the callback sees every object/array start.
  int depth = 0;
  bool too_deep = false;
  auto cb = [&](int d, nlohmann::json::parse_event_t ev, nlohmann::json&) {
    if (ev == nlohmann::json::parse_event_t::object_start ||
        ev == nlohmann::json::parse_event_t::array_start) {
      depth = d + 1;
      if (depth > max_depth) too_deep = true;
    }
    return !too_deep;
  };
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (too_deep) {
    return Status(Code::kTooLarge, "JSON nesting exceeds the limit of " + std::to_string(max_depth));
  }
  if (j.is_discarded()) {
    // Re-run with exceptions only to obtain the position; inputs are size-capped.
    try {
      auto discard = nlohmann::json::parse(text.begin(), text.end());
      (void)discard;
    } catch (const nlohmann::json::parse_error& e) {
      // what() quotes the last bytes read, which may end inside a UTF-8
      // sequence; the message travels in protobuf strings and JSON bodies.
      return invalid("invalid JSON at byte " + std::to_string(e.byte) + ": " + valid_utf8(e.what()));
    } catch (const std::exception& e) {
      return invalid(std::string("invalid JSON: ") + valid_utf8(e.what()));
    }
    return invalid("invalid JSON");
  }
  return j;
}

Result<nlohmann::json> parse_json_object(std::string_view text, std::size_t max_bytes, int max_depth) {
  auto r = parse_json(text, max_bytes, max_depth);
  if (!r) return r;
  if (!r->is_object()) return invalid("expected a JSON object");
  return r;
}

Result<std::vector<JsonLine>> parse_jsonl(std::string_view text, std::string_view name) {
  std::vector<JsonLine> out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto j = parse_json_object(line);
    if (!j) {
      return Status(j.status().code(),
                    std::string(name) + ":" + std::to_string(line_no) + ": " + j.status().message());
    }
    out.push_back({line_no, std::move(j).value()});
  }
  return out;
}

std::string valid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size();
    for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    if (ok && len > 1) {
      // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
      uint32_t cp = c & (0xff >> (len + 1));
      for (std::size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
      static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
      ok = cp >= kMin[len] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
    }
    if (ok) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    }
  }
  return out;
}

const nlohmann::json* json_path(const nlohmann::json& root, std::string_view path) {
  const nlohmann::json* cur = &root;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '.') { ++i; continue; }
    if (path[i] == '[') {
      std::size_t close = path.find(']', i);
      if (close == std::string_view::npos) return nullptr;
      // "[]" is not index 0, and more than 9 digits could wrap around to a
      // small valid index: both are "missing".
      if (close == i + 1 || close - i - 1 > 9) return nullptr;
      std::size_t idx = 0;
      for (std::size_t k = i + 1; k < close; ++k) {
        if (path[k] < '0' || path[k] > '9') return nullptr;
        idx = idx * 10 + static_cast<std::size_t>(path[k] - '0');
      }
      if (!cur->is_array() || idx >= cur->size()) return nullptr;
      cur = &(*cur)[idx];
      i = close + 1;
      continue;
    }
    std::size_t end = path.find_first_of(".[", i);
    if (end == std::string_view::npos) end = path.size();
    std::string_view name = path.substr(i, end - i);
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(name);
    if (it == cur->end()) return nullptr;
    cur = &*it;
    i = end;
  }
  return cur;
}

}  // namespace baton
