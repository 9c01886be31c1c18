// The Redis client against a real redis-server: replies of every type,
// pipelining, binary safety, reconnect after a server restart, timeouts, AUTH.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/redis/client.h"
#include "tests/support/process.h"
#include "tests/support/servers.h"
#include "tests/support/wait.h"

namespace baton::redis {
namespace {

using baton::testing::RedisServer;
using baton::testing::wait_until;
using namespace std::chrono_literals;

Endpoint endpoint_for(const RedisServer& s) {
  Endpoint ep;
  ep.port = s.port();
  return ep;
}

std::unique_ptr<Client> connect_or_die(const Endpoint& ep) {
  auto c = Client::connect(ep);
  EXPECT_TRUE(c.is_ok()) << c.status().to_string();
  return c.is_ok() ? std::move(c).value() : nullptr;
}

TEST(RedisEndpoint, ParsesHostPortAndUrl) {
  auto a = parse_endpoint("10.0.0.5:6380");
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->port, 6380);

  auto b = parse_endpoint("redis://redis.internal:7000");
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->host, "redis.internal");
  EXPECT_EQ(b->port, 7000);

  auto c = parse_endpoint("redis://alice:s3cret@localhost:6379/");
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_EQ(c->host, "localhost");
  EXPECT_EQ(c->user, "alice");
  EXPECT_EQ(c->password, "s3cret");

  auto d = parse_endpoint("[::1]:6390");
  ASSERT_TRUE(d.is_ok()) << d.status().to_string();
  EXPECT_EQ(d->host, "::1");
  EXPECT_EQ(d->port, 6390);

  auto e = parse_endpoint("cache");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->port, 6379);
}

TEST(RedisEndpoint, RejectsBadInput) {
  for (const char* bad : {"", ":6379", "host:", "host:0", "host:70000", "host:12x", "redis://", "[::1"}) {
    auto r = parse_endpoint(bad);
    EXPECT_FALSE(r.is_ok()) << "accepted '" << bad << "'";
    if (!r.is_ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    }
  }
}

TEST(RedisClient, ConnectToClosedPortIsUnavailable) {
  Endpoint ep;
  ep.port = baton::testing::free_port();
  auto c = Client::connect(ep);
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), Code::kUnavailable);
  EXPECT_NE(c.status().message().find(std::to_string(ep.port)), std::string::npos) << c.status().message();
}

TEST(RedisClient, NonPositiveTimeoutsMeanNone) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  Endpoint ep = endpoint_for(server);
  ep.connect_timeout_ms = 0;
  ep.command_timeout_ms = 0;
  auto c = connect_or_die(ep);
  ASSERT_TRUE(c);
  auto r = c->command({"PING"});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->str, "PONG");

  Endpoint closed;
  closed.port = baton::testing::free_port();
  closed.connect_timeout_ms = 0;
  auto refused = Client::connect(closed);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_EQ(refused.status().code(), Code::kUnavailable);
}

TEST(RedisClient, RepliesOfEveryType) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto c = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(c);

  auto pong = c->command({"PING"});
  ASSERT_TRUE(pong.is_ok()) << pong.status().to_string();
  EXPECT_EQ(pong->type, Reply::Type::kStatus);
  EXPECT_EQ(pong->str, "PONG");

  auto set = c->command({"SET", "k", "v"});
  ASSERT_TRUE(set.is_ok());
  EXPECT_TRUE(set->is_string());
  EXPECT_EQ(set->str, "OK");

  auto get = c->command({"GET", "k"});
  ASSERT_TRUE(get.is_ok());
  EXPECT_EQ(get->type, Reply::Type::kString);
  EXPECT_EQ(get->str, "v");

  auto missing = c->command({"GET", "nope"});
  ASSERT_TRUE(missing.is_ok());
  EXPECT_TRUE(missing->is_nil());

  auto incr = c->command({"INCRBY", "n", "41"});
  ASSERT_TRUE(incr.is_ok());
  EXPECT_EQ(incr->type, Reply::Type::kInteger);
  EXPECT_EQ(incr->integer, 41);

  ASSERT_TRUE(c->command({"RPUSH", "l", "a", "b", "c"}).is_ok());
  auto range = c->command({"LRANGE", "l", "0", "-1"});
  ASSERT_TRUE(range.is_ok());
  ASSERT_TRUE(range->is_array());
  ASSERT_EQ(range->elements.size(), 3u);
  EXPECT_EQ(range->elements[0].str, "a");
  EXPECT_EQ(range->elements[2].str, "c");

  auto empty = c->command({"LRANGE", "nolist", "0", "-1"});
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->is_array());
  EXPECT_TRUE(empty->elements.empty());

  // Nested arrays with a nil inside: XADD + XRANGE gives [[id, [f, v]]].
  auto id = c->command({"XADD", "s", "*", "kind", "start"});
  ASSERT_TRUE(id.is_ok());
  ASSERT_TRUE(id->is_string());
  auto xr = c->command({"XRANGE", "s", "-", "+"});
  ASSERT_TRUE(xr.is_ok());
  ASSERT_EQ(xr->elements.size(), 1u);
  ASSERT_EQ(xr->elements[0].elements.size(), 2u);
  EXPECT_EQ(xr->elements[0].elements[0].str, id->str);
  ASSERT_EQ(xr->elements[0].elements[1].elements.size(), 2u);
  EXPECT_EQ(xr->elements[0].elements[1].elements[1].str, "start");
  auto mget = c->command({"MGET", "k", "nope"});
  ASSERT_TRUE(mget.is_ok());
  ASSERT_EQ(mget->elements.size(), 2u);
  EXPECT_EQ(mget->elements[0].str, "v");
  EXPECT_TRUE(mget->elements[1].is_nil());
}

TEST(RedisClient, ServerErrorsAreErrorRepliesNotFailedCalls) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto c = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->command({"SET", "s", "text"}).is_ok());

  c->append({"INCR", "s"});
  c->append({"NOSUCHCOMMAND"});
  c->append({"GET", "s"});
  auto r = c->exec();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_TRUE((*r)[0].is_error());
  EXPECT_NE((*r)[0].str.find("not an integer"), std::string::npos) << (*r)[0].str;
  EXPECT_TRUE((*r)[1].is_error());
  EXPECT_EQ((*r)[2].str, "text");  // the connection stays usable after errors

  auto lua = c->command({"EVAL", "return redis.error_reply('FENCED 7')", "0"});
  ASSERT_TRUE(lua.is_ok());
  EXPECT_TRUE(lua->is_error());
  EXPECT_EQ(lua->str, "FENCED 7");
}

TEST(RedisClient, PipelinesTenThousandCommandsInOrder) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto c = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(c);

  constexpr int kN = 10000;
  std::vector<std::string> keys;
  keys.reserve(kN);
  for (int i = 0; i < kN; ++i) keys.push_back("key:" + std::to_string(i));
  for (int i = 0; i < kN; ++i) {
    if (i % 2 == 0) {
      c->append({"INCR", "counter"});
    } else {
      c->append({"SET", keys[static_cast<size_t>(i)], keys[static_cast<size_t>(i)]});
    }
  }
  EXPECT_EQ(c->pending(), static_cast<size_t>(kN));
  auto r = c->exec();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(c->pending(), 0u);
  ASSERT_EQ(r->size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) {
    const Reply& rep = (*r)[static_cast<size_t>(i)];
    if (i % 2 == 0) {
      ASSERT_EQ(rep.type, Reply::Type::kInteger) << i;
      ASSERT_EQ(rep.integer, i / 2 + 1) << i;
    } else {
      ASSERT_EQ(rep.str, "OK") << i;
    }
  }

  // And back: 10k GETs in one exec, each answer its own key.
  for (int i = 1; i < kN; i += 2) c->append({"GET", keys[static_cast<size_t>(i)]});
  auto g = c->exec();
  ASSERT_TRUE(g.is_ok()) << g.status().to_string();
  ASSERT_EQ(g->size(), static_cast<size_t>(kN / 2));
  for (size_t j = 0; j < g->size(); ++j) ASSERT_EQ((*g)[j].str, keys[2 * j + 1]);

  auto empty = c->exec();
  ASSERT_TRUE(empty.is_ok());
  EXPECT_TRUE(empty->empty());
}

TEST(RedisClient, ArgumentsAndValuesAreBinarySafe) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto c = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(c);

  std::string key("k\0ey\r\n", 6);
  std::string value;
  for (int i = 0; i < 256; ++i) value.push_back(static_cast<char>(i));
  value += std::string("\0\0$3\r\n*1\r\n", 11);
  std::string big(1 << 20, '\0');  // 1 MiB of NULs: crosses the reader's buffer size
  big[12345] = 'x';

  ASSERT_TRUE(c->command({"SET", key, value}).is_ok());
  ASSERT_TRUE(c->command({"SET", "big", big}).is_ok());
  c->append({"GET", key});
  c->append({"GET", "big"});
  c->append({"STRLEN", key});
  auto r = c->exec();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].str, value);
  EXPECT_EQ((*r)[1].str, big);
  EXPECT_EQ((*r)[2].integer, static_cast<int64_t>(value.size()));

  auto empty_arg = c->command({"SET", "e", ""});
  ASSERT_TRUE(empty_arg.is_ok());
  auto e = c->command({"GET", "e"});
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->type, Reply::Type::kString);
  EXPECT_EQ(e->str, "");
}

TEST(RedisClient, ReconnectsAfterServerRestart) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto c = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->command({"SET", "before", "1"}).is_ok());

  ASSERT_TRUE(server.restart());

  // The first call sees the dead connection (or, if the restart was quick
  // enough to be noticed only on write, may already succeed).
  auto first = c->command({"PING"});
  if (!first.is_ok()) {
    EXPECT_EQ(first.status().code(), Code::kUnavailable) << first.status().to_string();
  }
  EXPECT_EQ(c->pending(), 0u);

  std::string last;
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = c->command({"SET", "after", "2"});
        last = r.is_ok() ? r->str : r.status().to_string();
        return r.is_ok() && r->str == "OK";
      },
      10s, [&] { return last; }));
  auto after = c->command({"GET", "after"});
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(after->str, "2");
  auto before = c->command({"GET", "before"});  // no persistence in tests: gone
  ASSERT_TRUE(before.is_ok());
  EXPECT_TRUE(before->is_nil());
}

TEST(RedisClient, PipelineFailureDropsTheQueueAndReportsUnavailable) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  Endpoint ep = endpoint_for(server);
  ep.command_timeout_ms = 300;
  auto c = connect_or_die(ep);
  ASSERT_TRUE(c);

  // A blocking command that outlives the command timeout: the read times out,
  // the whole pipeline fails and nothing is half-returned.
  c->append({"SET", "x", "1"});
  c->append({"BLPOP", "never", "5"});
  c->append({"GET", "x"});
  auto r = c->exec();
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out"), std::string::npos) << r.status().message();
  EXPECT_EQ(c->pending(), 0u);

  // The next call reconnects on a fresh connection.
  auto x = c->command({"GET", "x"});
  ASSERT_TRUE(x.is_ok()) << x.status().to_string();
  EXPECT_EQ(x->str, "1");
}

TEST(RedisClient, AuthenticatesWithPasswordAndAclUser) {
  RedisServer server;
  ASSERT_TRUE(server.ok());
  auto admin = connect_or_die(endpoint_for(server));
  ASSERT_TRUE(admin);
  auto acl = admin->command({"ACL", "SETUSER", "worker", "on", ">w0rker", "~*", "+@all"});
  ASSERT_TRUE(acl.is_ok());
  ASSERT_FALSE(acl->is_error()) << acl->str;
  auto cfg = admin->command({"CONFIG", "SET", "requirepass", "topsecret"});
  ASSERT_TRUE(cfg.is_ok());
  ASSERT_FALSE(cfg->is_error()) << cfg->str;

  Endpoint none = endpoint_for(server);
  auto anon = Client::connect(none);  // connects; commands then need AUTH
  ASSERT_TRUE(anon.is_ok());
  auto denied = (*anon)->command({"GET", "k"});
  ASSERT_TRUE(denied.is_ok());
  EXPECT_TRUE(denied->is_error());
  EXPECT_NE(denied->str.find("NOAUTH"), std::string::npos) << denied->str;

  Endpoint wrong = endpoint_for(server);
  wrong.password = "nope";
  auto w = Client::connect(wrong);
  ASSERT_FALSE(w.is_ok());
  EXPECT_EQ(w.status().code(), Code::kUnavailable);
  EXPECT_NE(w.status().message().find("AUTH"), std::string::npos) << w.status().message();

  Endpoint good = endpoint_for(server);
  good.password = "topsecret";
  auto g = connect_or_die(good);
  ASSERT_TRUE(g);
  auto ping = g->command({"PING"});
  ASSERT_TRUE(ping.is_ok());
  EXPECT_EQ(ping->str, "PONG");

  Endpoint user = endpoint_for(server);
  user.user = "worker";
  user.password = "w0rker";
  auto u = connect_or_die(user);
  ASSERT_TRUE(u);
  auto who = u->command({"ACL", "WHOAMI"});
  ASSERT_TRUE(who.is_ok());
  EXPECT_EQ(who->str, "worker");
}

}  // namespace
}  // namespace baton::redis
