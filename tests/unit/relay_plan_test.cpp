#include "core/decide/relay_plan.hpp"

#include <gtest/gtest.h>

#include <string>

using namespace mcpproxy;

namespace {

http1::Head response(const std::string& wire, std::string_view method = "POST") {
  static std::string kept;  // the head's views point into it
  kept = wire;
  http1::Head h;
  EXPECT_EQ(http1::parse_response(kept, 16384, method, h), http1::Status::complete) << wire;
  return h;
}

RelayInputs http11() {
  RelayInputs in;
  in.client_version = 11;
  in.keep_alive = true;
  return in;
}

}  // namespace

TEST(RelayPlan, JsonWithLengthIsRelayedAsItCameAndKeepsBothConnections) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n");
  const RelayPlan p = plan_relay(h, http11());
  EXPECT_FALSE(p.sse);
  EXPECT_FALSE(p.chunked);
  EXPECT_FALSE(p.long_lived);
  EXPECT_TRUE(p.keep_alive);
  EXPECT_TRUE(p.pod_keep_alive);
  EXPECT_FALSE(p.frees_read_buffer);
  EXPECT_FALSE(p.leaves_drain);
  EXPECT_TRUE(p.head.http11);
  EXPECT_TRUE(p.head.keep_alive);
  EXPECT_FALSE(p.head.chunked);
}

TEST(RelayPlan, SseToAGetIsALongLivedStreamTheDrainDoesNotWaitFor) {
  const http1::Head h =
      response("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n", "GET");
  RelayInputs in = http11();
  in.is_get = true;
  const RelayPlan p = plan_relay(h, in);
  EXPECT_TRUE(p.sse);
  EXPECT_TRUE(p.long_lived);
  EXPECT_TRUE(p.chunked);
  EXPECT_TRUE(p.frees_read_buffer);
  EXPECT_TRUE(p.leaves_drain);
}

TEST(RelayPlan, SseToAPostIsACallInProgress) {
  const http1::Head h = response(
      "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n");
  const RelayPlan p = plan_relay(h, http11());
  EXPECT_TRUE(p.sse);
  EXPECT_FALSE(p.long_lived);  // read directly: its events come soon
  EXPECT_TRUE(p.frees_read_buffer);
  EXPECT_FALSE(p.leaves_drain);  // the drain waits for its result
}

TEST(RelayPlan, AnOpenEndedBodyEndsAnHttp10ClientsConnection) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
  RelayInputs in = http11();
  in.client_version = 10;
  const RelayPlan p = plan_relay(h, in);
  EXPECT_FALSE(p.chunked);  // HTTP/1.0 has no chunks: the body ends with the connection
  EXPECT_FALSE(p.keep_alive);
  EXPECT_FALSE(p.head.keep_alive);
  EXPECT_FALSE(p.head.http11);
}

TEST(RelayPlan, ABodyEndedByClosingGoesInChunksToAnHttp11Client) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
  const RelayPlan p = plan_relay(h, http11());
  EXPECT_TRUE(p.chunked);
  EXPECT_TRUE(p.keep_alive);  // the client's connection outlives the pod's
  EXPECT_FALSE(p.pod_keep_alive);
}

TEST(RelayPlan, DrainingClosesTheClientConnectionAfterTheAnswer) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  RelayInputs in = http11();
  in.draining = true;
  EXPECT_FALSE(plan_relay(h, in).keep_alive);
  in.draining = false;
  in.keep_alive = false;  // the client asked to close
  EXPECT_FALSE(plan_relay(h, in).keep_alive);
}

TEST(RelayPlan, TheClientKeepsTheSessionIdItKnows) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nMcp-Session-Id: pod-side\r\nContent-Length: 0\r\n\r\n");
  RelayInputs in = http11();
  in.client_session = "client-side";
  const RelayPlan p = plan_relay(h, in);
  ASSERT_TRUE(p.head.client_session.has_value());
  EXPECT_EQ(*p.head.client_session, "client-side");
}

TEST(RelayPlan, IsAFunctionOfItsInputs) {
  const http1::Head h = response("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", "GET");
  RelayInputs in = http11();
  in.is_get = true;
  const RelayPlan a = plan_relay(h, in);
  const RelayPlan b = plan_relay(h, in);
  EXPECT_EQ(a.sse, b.sse);
  EXPECT_EQ(a.chunked, b.chunked);
  EXPECT_EQ(a.keep_alive, b.keep_alive);
  EXPECT_EQ(a.long_lived, b.long_lived);
}
