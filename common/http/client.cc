// Blocking HTTP/1.1 client on Boost.Beast 1.74. One of the two files that
// include Beast. Each call runs its asynchronous operations on a private
// io_context under one deadline (timeout_ms covers resolve, connect, write and
// read), so a server that accepts and never answers cannot block the caller.
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cctype>
#include <charconv>
#include <chrono>
#include <optional>

#include "common/http/http.h"

namespace baton::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint64_t kMaxResponseBodyBytes = 64ull << 20;
constexpr std::uint32_t kMaxResponseHeaderBytes = 64 << 10;

struct Url {
  std::string host;  // without brackets
  std::string port = "80";
  std::string target = "/";
  std::string host_header;
};

Result<Url> parse_url(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() < kScheme.size() || !std::equal(kScheme.begin(), kScheme.end(), url.begin(), [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
      })) {
    return invalid("http: only http:// URLs are supported: '" + std::string(url) + "'");
  }
  std::string_view rest = url.substr(kScheme.size());
  auto end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (auto hash = target.find('#'); hash != std::string_view::npos) target = target.substr(0, hash);

  Url u;
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  u.host_header = std::string(authority);
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return invalid("http: bad host in '" + std::string(url) + "'");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view tail = authority.substr(close + 1);
    if (!tail.empty()) {
      if (tail.front() != ':') return invalid("http: bad host in '" + std::string(url) + "'");
      port = tail.substr(1);
    }
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    u.host = std::string(authority.substr(0, colon));
    port = authority.substr(colon + 1);
  } else {
    u.host = std::string(authority);
  }
  if (u.host.empty()) return invalid("http: no host in '" + std::string(url) + "'");
  if (!port.empty()) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p < 1 || p > 65535)
      return invalid("http: bad port in '" + std::string(url) + "'");
    u.port = std::string(port);
  }
  if (target.empty()) {
    u.target = "/";
  } else if (target.front() == '?') {
    u.target = "/" + std::string(target);
  } else {
    u.target = std::string(target);
  }
  return u;
}

bool has_ctl(std::string_view s) {
  for (char c : s) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

Result<ClientResponse> do_request(std::string_view method, std::string_view url, std::string_view body,
                                  int timeout_ms, const std::map<std::string, std::string>& headers) {
  if (timeout_ms <= 0) return invalid("http: timeout_ms must be positive");
  if (method.empty() || has_ctl(method) || method.find(' ') != std::string_view::npos)
    return invalid("http: bad method '" + std::string(method) + "'");
  auto parsed = parse_url(url);
  if (!parsed) return parsed.status();
  const Url& u = *parsed;
  if (has_ctl(u.target) || u.target.find(' ') != std::string::npos)
    return invalid("http: bad characters in target '" + u.target + "'");
  for (const auto& [name, value] : headers) {
    if (name.empty() || has_ctl(name) || has_ctl(value)) return invalid("http: bad header '" + name + "'");
  }

  bhttp::request<bhttp::string_body> req;
  const beast::string_view method_bv(method.data(), method.size());
  bhttp::verb verb = bhttp::string_to_verb(method_bv);
  if (verb == bhttp::verb::unknown) {
    req.method_string(method_bv);
  } else {
    req.method(verb);
  }
  req.target(u.target);
  req.version(11);
  req.set(bhttp::field::host, u.host_header);
  req.set(bhttp::field::user_agent, "baton");
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();

  const std::string where = std::string(method) + " " + std::string(url);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);

  asio::io_context ioc(1);
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  asio::steady_timer resolve_deadline(ioc);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(kMaxResponseBodyBytes);
  parser.header_limit(kMaxResponseHeaderBytes);

  std::optional<Status> failure;
  beast::error_code write_error;
  auto fail = [&](std::string_view stage, const beast::error_code& ec) {
    if (ec == beast::error::timeout || ec == asio::error::operation_aborted) {
      failure = unavailable("http: " + where + ": timed out after " + std::to_string(timeout_ms) + " ms (" +
                            std::string(stage) + ")");
    } else {
      failure = unavailable("http: " + where + ": " + std::string(stage) + ": " + ec.message());
    }
  };

  auto on_read = [&](beast::error_code ec, std::size_t) {
    if (ec) {
      // A server may refuse (413) and close while we are still sending: the
      // answer is what matters, the write error only when there is none.
      fail(write_error ? "write" : "read", write_error ? write_error : ec);
      return;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  };
  auto on_write = [&](beast::error_code ec, std::size_t) {
    if (ec == beast::error::timeout) return fail("write", ec);
    write_error = ec;  // broken pipe / reset: still try to read a response
    stream.expires_at(deadline);
    bhttp::async_read(stream, buffer, parser, on_read);
  };
  auto on_connect = [&](beast::error_code ec) {
    if (ec) return fail("connect", ec);
    beast::error_code ignored;
    stream.socket().set_option(tcp::no_delay(true), ignored);
    stream.expires_at(deadline);
    bhttp::async_write(stream, req, on_write);
  };

  beast::error_code ec;
  auto addr = asio::ip::make_address(u.host, ec);
  if (!ec) {
    stream.expires_at(deadline);
    stream.async_connect(tcp::endpoint(addr, static_cast<unsigned short>(std::stoi(u.port))), on_connect);
  } else {
    resolve_deadline.expires_at(deadline);
    resolve_deadline.async_wait([&](beast::error_code tec) {
      if (!tec) resolver.cancel();
    });
    resolver.async_resolve(u.host, u.port, [&](beast::error_code rec, tcp::resolver::results_type results) {
      resolve_deadline.cancel();
      if (rec) return fail("resolve", rec);
      stream.expires_at(deadline);
      stream.async_connect(results, [&](beast::error_code cec, const tcp::endpoint&) { on_connect(cec); });
    });
  }
  ioc.run();

  if (failure) return *failure;
  auto& res = parser.get();
  ClientResponse out;
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& field : res) {
    auto [it, fresh] = out.headers.try_emplace(lower(std::string_view(field.name_string().data(), field.name_string().size())), std::string(field.value()));
    if (!fresh) {
      it->second += ", ";
      it->second += std::string_view(field.value().data(), field.value().size());
    }
  }
  return out;
}

}  // namespace

Result<ClientResponse> request(std::string_view method, std::string_view url, std::string_view body, int timeout_ms,
                               const std::map<std::string, std::string>& headers) {
  try {
    return do_request(method, url, body, timeout_ms, headers);
  } catch (const std::exception& e) {  // allocation, thread or Beast surprises: never escape
    return internal("http: " + std::string(method) + " " + std::string(url) + ": " + e.what());
  }
}

}  // namespace baton::http
