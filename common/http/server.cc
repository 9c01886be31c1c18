// HTTP/1.1 server on Boost.Beast 1.74. One of the two files that include Beast.
//
// Threads: `threads` io_context threads; each connection runs on its own strand,
// so one connection's handlers never overlap and the user handler runs on an
// io thread (blocking it blocks that thread only).
// Per request: the header is read first (so a Content-Length over the body
// limit is refused before any of the body is read, and `Expect: 100-continue`
// is answered), then the body; one deadline (read_timeout_ms) covers both, and
// is also the idle limit between keep-alive requests and the write limit.
// Refusals (400, 413, 431) close the connection after a short lingering drain,
// so the client reads the error instead of a reset.
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/http/http.h"

namespace baton::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr std::uint32_t kHeaderLimit = 16 * 1024;
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XX decoding ('+' is a space in query strings); malformed escapes stay as is.
std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_is_space && c == '+' ? ' ' : c);
  }
  return out;
}

// "/a/b?x=1&y=%20" -> path "/a/b" (not decoded: "%2F" must not become a path
// separator), query {x: "1", y: " "}. A repeated parameter keeps its last value.
void parse_target(std::string_view target, std::string& path, std::map<std::string, std::string>& query) {
  auto q = target.find('?');
  path = std::string(target.substr(0, q));
  if (q == std::string_view::npos) return;
  std::string_view rest = target.substr(q + 1);
  if (auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    std::string_view part = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    std::string key = percent_decode(part.substr(0, eq), true);
    std::string value = eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1), true);
    query[std::move(key)] = std::move(value);
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_target).category();
}

class ServerImpl;

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, ServerImpl& server) : stream_(std::move(socket)), server_(server) {}
  ~Session();
  void start();
  // Only while no io thread runs (Server::stop()).
  void close_now() { stream_.close(); }

 private:
  void read_header();
  void on_header(beast::error_code ec, std::size_t);
  void on_continue(beast::error_code ec, std::size_t);
  void on_body(beast::error_code ec, std::size_t);
  bool handle_read_error(const beast::error_code& ec);
  void handle();
  void send(Response r, bool keep_alive, unsigned version, bool linger);
  void on_write(bool close, bool linger, beast::error_code ec, std::size_t);
  void refuse(int status, std::string_view code, std::string_view message);
  void drain();
  void on_drain(beast::error_code ec, std::size_t);

  beast::tcp_stream stream_;
  ServerImpl& server_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::response<bhttp::string_body> res_;
  std::array<char, 8192> scratch_{};
};

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerOptions& opts, Handler handler)
      : opts_(opts),
        handler_(std::move(handler)),
        work_(asio::make_work_guard(ioc_)),
        acceptor_(ioc_),
        accept_retry_(ioc_) {}
  ~ServerImpl() override { stop(); }

  Status open() {
    beast::error_code ec;
    tcp::endpoint ep;
    auto addr = asio::ip::make_address(opts_.host, ec);
    if (!ec) {
      ep = tcp::endpoint(addr, static_cast<unsigned short>(opts_.port));
    } else {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(opts_.host, std::to_string(opts_.port), ec);
      if (ec || results.empty()) return unavailable("http: cannot resolve '" + opts_.host + "': " + ec.message());
      ep = results.begin()->endpoint();
    }
    std::string where = "http: listen on " + opts_.host + ":" + std::to_string(opts_.port) + ": ";
    acceptor_.open(ep.protocol(), ec);
    if (ec) return unavailable(where + ec.message());
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    acceptor_.bind(ep, ec);
    if (ec) return unavailable(where + ec.message());
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return unavailable(where + ec.message());
    port_ = acceptor_.local_endpoint(ec).port();
    return Status::ok();
  }

  void run() {
    do_accept();
    int n = std::max(1, opts_.threads);
    threads_.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        for (;;) {
          try {
            ioc_.run();
            return;
          } catch (const std::exception& e) {  // a bug in a completion handler: log, keep serving
            spdlog::error("http server: unexpected exception on an io thread: {}", e.what());
          }
        }
      });
    }
  }

  int port() const override { return port_; }

  void stop() override {
    if (stopped_.exchange(true)) return;
    work_.reset();
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    // No io thread runs any more: close the acceptor and every connection
    // directly, then let the cancelled operations finish so sessions go now.
    beast::error_code ec;
    acceptor_.close(ec);
    accept_retry_.cancel();
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      live.reserve(sessions_.size());
      for (auto& [ptr, weak] : sessions_) {
        if (auto s = weak.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) s->close_now();
    live.clear();
    ioc_.restart();
    try {
      ioc_.poll();
    } catch (const std::exception& e) {
      spdlog::error("http server: exception while stopping: {}", e.what());
    }
  }

  bool stopping() const { return stopped_.load(std::memory_order_relaxed); }
  const ServerOptions& options() const { return opts_; }
  const Handler& handler() const { return handler_; }

  void add(Session* s, std::weak_ptr<Session> w) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.emplace(s, std::move(w));
  }
  void remove(Session* s) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.erase(s);
  }

 private:
  void do_accept() {
    acceptor_.async_accept(asio::make_strand(ioc_), [this](beast::error_code ec, tcp::socket socket) {
      if (stopping()) return;
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        // E.g. out of file descriptors: back off instead of spinning.
        spdlog::warn("http server: accept failed: {}", ec.message());
        accept_retry_.expires_after(std::chrono::milliseconds(50));
        accept_retry_.async_wait([this](beast::error_code wec) {
          if (!wec && !stopping()) do_accept();
        });
        return;
      }
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      std::make_shared<Session>(std::move(socket), *this)->start();
      do_accept();
    });
  }

  ServerOptions opts_;
  Handler handler_;
  // Sessions register here so stop() can close them; declared before ioc_
  // because sessions destroyed with ioc_ unregister themselves.
  std::mutex mu_;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;
  std::atomic<bool> stopped_{false};
  asio::io_context ioc_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_;
  std::vector<std::thread> threads_;
  int port_ = 0;
};

Session::~Session() { server_.remove(this); }

void Session::start() {
  server_.add(this, weak_from_this());
  asio::dispatch(stream_.get_executor(), beast::bind_front_handler(&Session::read_header, shared_from_this()));
}

void Session::read_header() {
  if (server_.stopping()) return;
  parser_.emplace();
  parser_->header_limit(kHeaderLimit);
  parser_->body_limit(server_.options().max_body_bytes);
  stream_.expires_after(std::chrono::milliseconds(server_.options().read_timeout_ms));
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           beast::bind_front_handler(&Session::on_header, shared_from_this()));
}

// Returns true when the error was dealt with (connection closing).
bool Session::handle_read_error(const beast::error_code& ec) {
  if (!ec) return false;
  if (ec == bhttp::error::body_limit) {
    refuse(413, "too_large",
           "request body exceeds " + std::to_string(server_.options().max_body_bytes) + " bytes");
  } else if (ec == bhttp::error::header_limit) {
    refuse(431, "header_too_large", "request header exceeds " + std::to_string(kHeaderLimit) + " bytes");
  } else if (is_http_error(ec) && ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
    refuse(400, "bad_request", "malformed HTTP request: " + ec.message());
  } else {
    // Peer closed, timed out, reset, or the server is stopping.
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }
  return true;
}

void Session::on_header(beast::error_code ec, std::size_t) {
  if (server_.stopping() || handle_read_error(ec)) return;
  if (parser_->is_done()) return handle();
  auto expect = parser_->get()[bhttp::field::expect];
  if (beast::iequals(expect, "100-continue")) {
    asio::async_write(stream_, asio::buffer(kContinue, sizeof(kContinue) - 1),
                      beast::bind_front_handler(&Session::on_continue, shared_from_this()));
    return;
  }
  bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
}

void Session::on_continue(beast::error_code ec, std::size_t) {
  if (server_.stopping()) return;
  if (ec) {
    stream_.close();
    return;
  }
  bhttp::async_read(stream_, buffer_, *parser_, beast::bind_front_handler(&Session::on_body, shared_from_this()));
}

void Session::on_body(beast::error_code ec, std::size_t) {
  if (server_.stopping() || handle_read_error(ec)) return;
  handle();
}

void Session::handle() {
  auto& msg = parser_->get();
  Request req;
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  parse_target(req.target, req.path, req.query);
  for (const auto& field : msg) {
    std::string name = lower(std::string_view(field.name_string().data(), field.name_string().size()));
    auto [it, fresh] = req.headers.try_emplace(std::move(name), std::string(field.value()));
    if (!fresh) {
      it->second += ", ";
      it->second += std::string_view(field.value().data(), field.value().size());
    }
  }
  req.body = std::move(msg.body());
  bool keep_alive = msg.keep_alive();
  unsigned version = msg.version();

  Response resp;
  try {
    resp = server_.handler()(req);
  } catch (const std::exception& e) {
    spdlog::error("http handler threw on {} {}: {}", req.method, req.path, e.what());
    resp = json_error(500, "internal", "internal error");
  } catch (...) {
    spdlog::error("http handler threw a non-exception on {} {}", req.method, req.path);
    resp = json_error(500, "internal", "internal error");
  }
  send(std::move(resp), keep_alive, version, false);
}

void Session::send(Response r, bool keep_alive, unsigned version, bool linger) {
  res_ = {};
  try {
    res_.version(version == 10 ? 10 : 11);
    res_.result(r.status >= 100 && r.status <= 999 ? static_cast<unsigned>(r.status) : 500u);
    for (const auto& [name, value] : r.headers) res_.set(name, value);
    if (!r.content_type.empty()) res_.set(bhttp::field::content_type, r.content_type);
    res_.set(bhttp::field::server, "baton");
    res_.body() = std::move(r.body);
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
  } catch (const std::exception& e) {  // e.g. a header name Beast refuses
    spdlog::error("http: cannot build response: {}", e.what());
    res_ = {};
    res_.version(11);
    res_.result(bhttp::status::internal_server_error);
    res_.set(bhttp::field::content_type, "application/json");
    res_.body() = json_error(500, "internal", "internal error").body;
    res_.keep_alive(false);
    res_.prepare_payload();
    keep_alive = false;
  }
  stream_.expires_after(std::chrono::milliseconds(server_.options().read_timeout_ms));
  bhttp::async_write(stream_, res_,
                     beast::bind_front_handler(&Session::on_write, shared_from_this(), !keep_alive, linger));
}

void Session::on_write(bool close, bool linger, beast::error_code ec, std::size_t) {
  if (server_.stopping()) return;
  if (ec) {
    stream_.close();
    return;
  }
  if (linger) return drain();
  if (close) {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
    return;
  }
  read_header();
}

void Session::refuse(int status, std::string_view code, std::string_view message) {
  unsigned version = 11;
  if (parser_ && parser_->is_header_done()) version = parser_->get().version();
  send(json_error(status, code, message), false, version, true);
}

// After a refusal: stop sending, read and discard what the client still sends
// (for a short while) and close, so the refusal is not lost to a reset.
void Session::drain() {
  beast::error_code ignored;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream_.expires_after(kLingerTime);
  stream_.async_read_some(asio::buffer(scratch_), beast::bind_front_handler(&Session::on_drain, shared_from_this()));
}

void Session::on_drain(beast::error_code ec, std::size_t) {
  if (server_.stopping()) return;
  if (ec) {
    stream_.close();
    return;
  }
  stream_.async_read_some(asio::buffer(scratch_), beast::bind_front_handler(&Session::on_drain, shared_from_this()));
}

}  // namespace

Response json_error(int status, std::string_view code, std::string_view message) {
  nlohmann::json j = {{"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
  Response r;
  r.status = status;
  r.content_type = "application/json";
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return r;
}

Result<std::unique_ptr<Server>> Server::start(const ServerOptions& opts, Handler handler) {
  if (!handler) return invalid("http: no handler");
  if (opts.read_timeout_ms <= 0) return invalid("http: read_timeout_ms must be positive");
  try {
    auto server = std::make_unique<ServerImpl>(opts, std::move(handler));
    Status st = server->open();
    if (!st) return st;
    server->run();
    return std::unique_ptr<Server>(std::move(server));
  } catch (const std::exception& e) {  // thread creation, allocation
    return internal(std::string("http: cannot start server: ") + e.what());
  }
}

}  // namespace baton::http
