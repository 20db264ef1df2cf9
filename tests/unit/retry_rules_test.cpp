#include "core/decide/retry_rules.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

namespace {
Classified of(RequestClass cls) {
  Classified c;
  c.cls = cls;
  return c;
}
}  // namespace

TEST(RetryRules, APlacedRequestIsPlacedAgainOnceOnAnotherPod) {
  RetryRules rules;
  EXPECT_TRUE(rules.place_again(of(RequestClass::new_session), 3));
  EXPECT_FALSE(rules.place_again(of(RequestClass::new_session), 3));
  RetryRules sessionless;
  EXPECT_TRUE(sessionless.place_again(of(RequestClass::sessionless), 2));
  EXPECT_FALSE(sessionless.place_again(of(RequestClass::sessionless), 2));
}

TEST(RetryRules, ASessionsRequestHasOnePodAndIsNotPlacedAgain) {
  RetryRules rules;
  EXPECT_FALSE(rules.place_again(of(RequestClass::session), 3));
}

TEST(RetryRules, WithOnePodThereIsNoOtherToPlaceOn) {
  RetryRules rules;
  EXPECT_FALSE(rules.place_again(of(RequestClass::new_session), 1));
  EXPECT_EQ(connect_attempts(of(RequestClass::new_session), 1), 1);
  EXPECT_EQ(connect_attempts(of(RequestClass::new_session), 5), 2);
}

TEST(RetryRules, AStalePooledConnectionIsSentAgainOnceOnAFreshOne) {
  RetryRules rules;
  EXPECT_FALSE(rules.fresh_connection());
  EXPECT_TRUE(rules.send_again(/*reused=*/true, /*anything_received=*/false, /*malformed=*/false, /*closed=*/true));
  EXPECT_TRUE(rules.fresh_connection());
  // Once only: the fresh connection's failure is the pod's.
  EXPECT_FALSE(rules.send_again(true, false, false, true));
}

TEST(RetryRules, OnlyARequestThePodNeverSawIsSentAgain) {
  EXPECT_FALSE(RetryRules().send_again(/*reused=*/false, false, false, true));           // a new connection failed
  EXPECT_FALSE(RetryRules().send_again(true, /*anything_received=*/true, false, true));  // the pod answered part
  EXPECT_FALSE(RetryRules().send_again(true, false, /*malformed=*/true, true));          // an answer, if a bad one
  EXPECT_FALSE(RetryRules().send_again(true, false, false, /*closed_by_pod=*/false));    // a timeout, say
  EXPECT_TRUE(pooled_connection_was_stale(true, false, true));
  EXPECT_FALSE(pooled_connection_was_stale(true, true, true));
}
