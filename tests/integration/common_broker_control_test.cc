// baton-broker's fault-control API (--control-file): each call has an effect
// a real librdkafka producer sees, and bad requests get 400 JSON errors.
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/http/http.h"
#include "tests/support/process.h"
#include "tests/support/wait.h"

namespace baton {
namespace {

using namespace std::chrono_literals;
using testing::read_file;
using testing::wait_until;

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// A broker with the control API, started by hand; stopped by the destructor.
class ControlledBroker {
 public:
  explicit ControlledBroker(int brokers = 1) {
    dir_ = testing::make_temp_dir("baton-broker-control");
    std::vector<std::string> argv = {testing::bin_dir() + "/baton-broker", "--bootstrap-file", dir_ + "/bootstrap",
                                     "--control-file", dir_ + "/control", "--brokers", std::to_string(brokers),
                                     "--namespace", "ctl", "--partitions", "2"};
    if (!proc_.start(argv, dir_ + "/broker.log")) return;
    ok_ = wait_until([&] { return !read_file(dir_ + "/bootstrap").empty(); }, 15s);
    bootstrap_ = trim(read_file(dir_ + "/bootstrap"));
    control_ = trim(read_file(dir_ + "/control"));
  }
  ~ControlledBroker() {
    proc_.stop();
    testing::remove_tree(dir_);
  }
  bool ok() const { return ok_ && !control_.empty(); }
  const std::string& bootstrap() const { return bootstrap_; }
  // POSTs `body` to /v1/<path>; returns {status, parsed body}.
  std::pair<int, nlohmann::json> post(const std::string& path, const std::string& body) {
    auto r = http::request("POST", "http://" + control_ + "/v1/" + path, body, 5000);
    if (!r.is_ok()) return {0, nullptr};
    return {r.value().status, nlohmann::json::parse(r.value().body, nullptr, false)};
  }

 private:
  testing::Process proc_;
  std::string dir_, bootstrap_, control_;
  bool ok_ = false;
};

// A plain (non-idempotent) librdkafka producer; produce_one() waits, bounded,
// for the delivery report and returns its error.
class RawProducer {
 public:
  RawProducer(const std::string& bootstrap, int message_timeout_ms) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "message.timeout.ms", std::to_string(message_timeout_ms).c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "retry.backoff.ms", "50", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "0", err, sizeof err);
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      auto* self = static_cast<RawProducer*>(opaque);
      self->last_ = m->err;
      self->done_ = true;
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  }
  ~RawProducer() {
    if (rk_ != nullptr) {
      rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_flush(rk_, 1000);
      rd_kafka_destroy(rk_);
    }
  }
  rd_kafka_resp_err_t produce_one(const std::string& topic, int partition, std::chrono::milliseconds wait) {
    done_ = false;
    last_ = RD_KAFKA_RESP_ERR__FAIL;
    rd_kafka_resp_err_t e = rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
                                              RD_KAFKA_V_VALUE(const_cast<char*>("x"), 1),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) return e;
    auto deadline = std::chrono::steady_clock::now() + wait;
    while (!done_ && std::chrono::steady_clock::now() < deadline) rd_kafka_poll(rk_, 50);
    return done_ ? last_.load() : RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE;
  }
  // Leader broker id of topic[partition] per fresh metadata (-2 on error).
  int leader(const std::string& topic, int partition) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    int out = -2;
    if (rd_kafka_metadata(rk_, 0, t, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < md->topic_cnt; ++i)
        for (int p = 0; p < md->topics[i].partition_cnt; ++p)
          if (md->topics[i].partitions[p].id == partition) out = md->topics[i].partitions[p].leader;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return out;
  }
  bool ok() const { return rk_ != nullptr; }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> done_{false};
  std::atomic<rd_kafka_resp_err_t> last_{RD_KAFKA_RESP_ERR_NO_ERROR};
};

const std::string kTopic = "baton.ctl.events";

TEST(BrokerControl, DownFailsProduceAndUpRestoresIt) {
  ControlledBroker b;
  ASSERT_TRUE(b.ok());
  RawProducer p(b.bootstrap(), 1500);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p.produce_one(kTopic, 0, 10s), RD_KAFKA_RESP_ERR_NO_ERROR);
  auto down = b.post("broker/down", R"({"broker":1})");
  ASSERT_EQ(down.first, 200);
  EXPECT_EQ(down.second["state"], "down");
  EXPECT_NE(p.produce_one(kTopic, 0, 10s), RD_KAFKA_RESP_ERR_NO_ERROR);  // times out: nobody answers
  ASSERT_EQ(b.post("broker/up", R"({"broker":1})").first, 200);
  // After up the client reconnects; bounded retries until one is delivered.
  EXPECT_TRUE(wait_until([&] { return p.produce_one(kTopic, 0, 5s) == RD_KAFKA_RESP_ERR_NO_ERROR; }, 30s, [] {
    return std::string("no delivery after up");
  }, 10ms));
}

TEST(BrokerControl, PushedRequestErrorsAreSeenByTheProducer) {
  ControlledBroker b;
  ASSERT_TRUE(b.ok());
  RawProducer p(b.bootstrap(), 10000);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p.produce_one(kTopic, 0, 10s), RD_KAFKA_RESP_ERR_NO_ERROR);
  // Produce is API key 0; TOPIC_AUTHORIZATION_FAILED (29) is not retried.
  auto r = b.post("errors", R"({"api_key":0,"errors":[29]})");
  ASSERT_EQ(r.first, 200);
  EXPECT_EQ(r.second["count"], 1);
  EXPECT_EQ(p.produce_one(kTopic, 0, 15s), RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  // The stack is used up: a fresh producer (the old one caches the topic's
  // authorization error) is delivered.
  RawProducer p2(b.bootstrap(), 10000);
  EXPECT_EQ(p2.produce_one(kTopic, 0, 15s), RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST(BrokerControl, RttLongerThanTheMessageTimeoutFailsDelivery) {
  ControlledBroker b;
  ASSERT_TRUE(b.ok());
  RawProducer p(b.bootstrap(), 1000);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p.produce_one(kTopic, 0, 10s), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(b.post("broker/rtt", R"({"broker":1,"rtt_ms":5000})").first, 200);
  EXPECT_NE(p.produce_one(kTopic, 0, 15s), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(b.post("broker/rtt", R"({"broker":1,"rtt_ms":0})").first, 200);
  EXPECT_TRUE(wait_until([&] { return p.produce_one(kTopic, 0, 8s) == RD_KAFKA_RESP_ERR_NO_ERROR; }, 40s, [] {
    return std::string("no delivery after rtt reset");
  }, 10ms));
}

TEST(BrokerControl, PartitionLeaderMoveShowsInMetadata) {
  ControlledBroker b(2);
  ASSERT_TRUE(b.ok());
  RawProducer p(b.bootstrap(), 10000);
  ASSERT_TRUE(p.ok());
  for (int target : {1, 2}) {
    auto r = b.post("partition/leader", R"({"topic":")" + kTopic + R"(","partition":0,"broker":)" +
                                            std::to_string(target) + "}");
    ASSERT_EQ(r.first, 200);
    EXPECT_TRUE(wait_until([&] { return p.leader(kTopic, 0) == target; }, 10s));
    EXPECT_EQ(p.produce_one(kTopic, 0, 15s), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
}

TEST(BrokerControl, BadRequestsGet400JsonErrors) {
  ControlledBroker b(2);
  ASSERT_TRUE(b.ok());
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"broker/down", "not json"},
      {"broker/down", "[1]"},
      {"broker/down", R"({"broker":3})"},
      {"broker/up", R"({"broker":"1"})"},
      {"broker/rtt", R"({"broker":1})"},
      {"broker/rtt", R"({"broker":1,"rtt_ms":-5})"},
      {"errors", R"({"api_key":0,"errors":[]})"},
      {"errors", R"({"api_key":0,"errors":["x"]})"},
      {"errors", R"({"errors":[6]})"},
      {"partition/leader", R"({"topic":"bad topic","partition":0,"broker":1})"},
      {"partition/leader", R"({"topic":"baton.ctl.events","partition":0,"broker":0})"},
      {"partition/leader", R"({"topic":"baton.ctl.events","partition":99,"broker":1})"},
  };
  for (const auto& [path, body] : bad) {
    auto r = b.post(path, body);
    EXPECT_EQ(r.first, 400) << path << " " << body;
    EXPECT_TRUE(r.second.is_object() && r.second.contains("error")) << path << " " << body;
  }
  EXPECT_EQ(b.post("nope", "{}").first, 404);
}

}  // namespace
}  // namespace baton
