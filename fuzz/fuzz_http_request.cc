// Raw bytes -> a common/http Server over loopback (request framing, header and
// body limits, keep-alive, pipelining) -> the coordinator's control-plane
// handler (coordinator/api.h Api::handle) with the example workflows loaded.
// The server's request parser is only reachable through its socket (Beast
// reads from the tcp stream), hence the loopback connection per input.
// No Redis and no Kafka: the Api's Redis endpoint is a closed port (calls that
// need Redis answer 503) and its producer is an in-memory fake that accepts
// every event. Contract checked: the server never crashes, leaks or hangs
// (every connection is answered and closed within 5 s of the client's EOF),
// whatever it sends starts as an HTTP/1.x response, and every event the Api
// produces decodes as a RunEvent (else the coordinator would DLQ it).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/http/http.h"
#include "common/kafka/kafka.h"
#include "coordinator/api.h"
#include "fuzz/fuzz_support.h"
#include "proto/baton/v1/baton.pb.h"

namespace {

using namespace baton;

class AcceptingProducer final : public kafka::Producer {
 public:
  Status produce(std::string_view, std::string_view, std::string_view payload, kafka::DeliveryCallback on_delivery,
                 const kafka::Headers&, int32_t) override {
    if (payload.size() > limits::kMaxMessageBytes) return Status(Code::kTooLarge, "payload too large");
    // What the API produces must decode at the coordinator (else: DLQ, a lost start or decision).
    baton::v1::RunEvent ev;
    fuzz::check(ev.ParseFromArray(payload.data(), static_cast<int>(payload.size())),
                "an event the API produces decodes as a RunEvent", payload);
    if (on_delivery) on_delivery(Status::ok());
    return Status::ok();
  }
  void poll(int) override {}
  Status flush(int) override { return Status::ok(); }
  Status warm_up(const std::vector<std::string>&, int) override { return Status::ok(); }
  Result<int32_t> partition_count(std::string_view, int) override { return 4; }
};

// A loopback port nothing listens on: bind one, then close it.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  fuzz::check(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind");
  fuzz::check(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0, "getsockname");
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Fixture {
  workflow::Registry registry;
  AcceptingProducer producer;
  std::atomic<bool> ready{true};
  std::unique_ptr<coordinator::Api> api;
  std::unique_ptr<http::Server> server;

  Fixture() {
    for (auto& wf : fuzz::example_workflows(/*pure_only=*/false)) (void)registry.add(wf);
    coordinator::ApiOptions ao;
    ao.ns = "fuzz";
    ao.redis.port = closed_port();
    ao.redis.connect_timeout_ms = 200;
    ao.redis.command_timeout_ms = 200;
    ao.produce_timeout_ms = 200;
    api = std::make_unique<coordinator::Api>(ao, registry, producer, ready);
    http::ServerOptions so;
    so.threads = 2;
    so.read_timeout_ms = 2000;
    auto s = http::Server::start(so, [this](const http::Request& r) { return api->handle(r); });
    fuzz::check(s.is_ok(), "server starts", s.status().to_string());
    server = std::move(s).value();
  }
};

// Sends `bytes`, half-closes, reads until the server closes. Returns what was
// read; aborts if the server has not closed within the deadline.
std::string exchange(int port, std::string_view bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  fuzz::check(fd >= 0, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  fuzz::check(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "connect to the server");
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::size_t sent = 0;
  bool write_open = true;
  char buf[16384];
  for (;;) {
    if (write_open && sent == bytes.size()) {
      ::shutdown(fd, SHUT_WR);
      write_open = false;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (write_open ? POLLOUT : 0)), 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    fuzz::check(left.count() > 0, "the server answers and closes within 5 s of the client's EOF", got);
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    if (p.revents & POLLIN) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;  // closed (or reset after a refusal)
      if (got.size() < (1u << 20)) got.append(buf, static_cast<std::size_t>(n));
    } else if (p.revents & (POLLERR | POLLHUP)) {
      break;
    }
    if (write_open && (p.revents & POLLOUT)) {
      ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0) {
        write_open = false;  // the server closed early (a refusal): read what it said
        ::shutdown(fd, SHUT_WR);
      } else {
        sent += static_cast<std::size_t>(n);
      }
    }
  }
  ::close(fd);
  return got;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();  // never destroyed: the server's threads outlive the run
  std::string got = exchange(fx->server->port(), fuzz::text_of(data, size));
  fuzz::check(got.empty() || got.rfind("HTTP/1.1 ", 0) == 0 || got.rfind("HTTP/1.0 ", 0) == 0,
              "the server answers in HTTP/1.x", got);
  return 0;
}
