#include "core/decide/outcome.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

TEST(Outcome, ARelayedAnswerIsCountedByItsMethodAndStatus) {
  const FinishRecord r = finish_record(Outcome::relayed(200, true), "POST", false);
  EXPECT_EQ(r.method, MethodClass::post);
  EXPECT_EQ(r.status, 200U);
  EXPECT_EQ(r.line, FinishRecord::Line::access);
  EXPECT_TRUE(r.next_request);
}

TEST(Outcome, ACutBodyEndsTheConnection) {
  const FinishRecord r = finish_record(Outcome::relayed(502, false), "GET", false);
  EXPECT_EQ(r.method, MethodClass::get);
  EXPECT_EQ(r.status, 502U);
  EXPECT_FALSE(r.next_request);
}

TEST(Outcome, ALocalReplyIsFinishedLikeAnyRequest) {
  const FinishRecord r = finish_record(Outcome::local_reply(404, true), "DELETE", false);
  EXPECT_EQ(r.method, MethodClass::del);
  EXPECT_EQ(r.status, 404U);
  EXPECT_EQ(r.line, FinishRecord::Line::access);
  EXPECT_TRUE(r.next_request);
}

TEST(Outcome, AClientThatLeftIs499AndNoNextRequest) {
  const FinishRecord r = finish_record(Outcome::client_gone(), "POST", false);
  EXPECT_EQ(r.status, 499U);
  EXPECT_FALSE(r.next_request);
}

TEST(Outcome, ARequestRefusedBeforeItWasReadHasNoMethodAndItsOwnLine) {
  // Its head may be partial: the method is not read.
  const FinishRecord r = finish_record(Outcome::refused(431, "request head too large"), "POST", false);
  EXPECT_EQ(r.method, MethodClass::other);
  EXPECT_EQ(r.status, 431U);
  EXPECT_EQ(r.line, FinishRecord::Line::refused);
  EXPECT_FALSE(r.next_request);
}

TEST(Outcome, AClosedConnectionTakesNoNextRequest) {
  EXPECT_FALSE(finish_record(Outcome::relayed(200, true), "POST", /*closed=*/true).next_request);
  EXPECT_FALSE(finish_record(Outcome::local_reply(503, true), "POST", /*closed=*/true).next_request);
}

TEST(Outcome, KeepAliveIsOneRule) {
  EXPECT_TRUE(client_keep_alive(true, false, false));
  EXPECT_FALSE(client_keep_alive(false, false, false));  // the client asked to close
  EXPECT_FALSE(client_keep_alive(true, true, false));    // draining
  EXPECT_FALSE(client_keep_alive(true, false, true));    // the body ends with the connection
}
