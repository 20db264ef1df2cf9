#include "core/decide/route.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

namespace {
Classified session(std::string id = "s1") {
  Classified c;
  c.cls = RequestClass::session;
  c.session_id = std::move(id);
  return c;
}
SessionRecord on_pod(int ordinal, std::string init = R"({"method":"initialize"})") {
  SessionRecord r;
  r.ordinal = ordinal;
  r.init = std::move(init);
  return r;
}
}  // namespace

TEST(Route, MalformedSessionIdIsRefusedWith400) {
  Classified c;
  c.cls = RequestClass::malformed_session_id;
  const Route r = route_request(c, nullptr, 3);
  EXPECT_EQ(r.kind, Route::Kind::refuse);
  EXPECT_EQ(r.refusal.status, 400U);
  EXPECT_EQ(r.refusal.code, -32600);
}

TEST(Route, UnknownSessionIsTheSpecs404) {
  const Route r = route_request(session(), nullptr, 3);
  EXPECT_EQ(r.kind, Route::Kind::refuse);
  EXPECT_EQ(r.refusal.status, 404U);
  EXPECT_EQ(r.refusal.code, -32001);
  EXPECT_EQ(r.refusal.message, "Session not found");
}

TEST(Route, KnownSessionGoesToItsPod) {
  const SessionRecord rec = on_pod(2);
  const Route r = route_request(session(), &rec, 3);
  EXPECT_EQ(r.kind, Route::Kind::forward);
  EXPECT_EQ(r.ordinal, 2);
}

TEST(Route, SessionPastTheReplicasIsLost) {
  const SessionRecord rec = on_pod(2);
  const Route r = route_request(session(), &rec, 2);
  EXPECT_EQ(r.kind, Route::Kind::lost);
  EXPECT_EQ(r.cause, LostCause::scaled_down);
  EXPECT_EQ(r.ordinal, 2);
}

TEST(Route, NewAndSessionlessRequestsArePlaced) {
  for (const auto cls : {RequestClass::new_session, RequestClass::sessionless}) {
    Classified c;
    c.cls = cls;
    EXPECT_EQ(route_request(c, nullptr, 3).kind, Route::Kind::place);
  }
}

TEST(Route, RecoveryNeedsThePolicyAnInitializeAndNotDeleteOrLegacy) {
  const SessionRecord rec = on_pod(0);
  const SessionRecord bare = on_pod(0, "");
  EXPECT_TRUE(can_recover(OnLost::reinitialize, &rec, false, "POST"));
  EXPECT_TRUE(can_recover(OnLost::reinitialize, &rec, false, "GET"));
  EXPECT_FALSE(can_recover(OnLost::not_found, &rec, false, "POST"));
  EXPECT_FALSE(can_recover(OnLost::reinitialize, &bare, false, "POST"));
  // A cached copy whose initialize is in Redis: recoverable (session_lost reads the record).
  EXPECT_TRUE(can_recover(OnLost::reinitialize, &bare, false, "POST", /*init_in_store=*/true));
  EXPECT_FALSE(can_recover(OnLost::not_found, &bare, false, "POST", /*init_in_store=*/true));
  EXPECT_FALSE(can_recover(OnLost::reinitialize, &rec, true, "POST"));
  EXPECT_FALSE(can_recover(OnLost::reinitialize, &rec, false, "DELETE"));
  EXPECT_FALSE(can_recover(OnLost::reinitialize, nullptr, false, "POST"));
}

namespace {
ResponseFacts facts(RequestClass cls, std::string_view method, unsigned status) {
  ResponseFacts f;
  f.cls = cls;
  f.method = method;
  f.target = "/mcp";
  f.status = status;
  f.legacy_sse_path = "/sse";
  return f;
}
}  // namespace

TEST(ResponseAction, NewSessionIsRecordedWhenThePodMintsAValidId) {
  auto f = facts(RequestClass::new_session, "POST", 200);
  EXPECT_EQ(response_action(f), ResponseAction::relay);  // no id: a stateless server
  f.session_header = "abc-123";
  EXPECT_EQ(response_action(f), ResponseAction::record_new_session);
  f.session_header = "bad id";
  EXPECT_EQ(response_action(f), ResponseAction::reject_bad_session_id);
}

TEST(ResponseAction, PodsLostSessionIsRecoveredOnceOrForgotten) {
  auto f = facts(RequestClass::session, "POST", 404);
  f.may_recover = true;
  f.recoverable = true;
  EXPECT_EQ(response_action(f), ResponseAction::recover);
  f.may_recover = false;  // a replay after a recovery: no second one
  EXPECT_EQ(response_action(f), ResponseAction::forget_lost);
  f.may_recover = true;
  f.recoverable = false;
  EXPECT_EQ(response_action(f), ResponseAction::forget_lost);
}

TEST(ResponseAction, DeleteForgetsOnSuccessOnly) {
  EXPECT_EQ(response_action(facts(RequestClass::session, "DELETE", 200)), ResponseAction::forget_deleted);
  EXPECT_EQ(response_action(facts(RequestClass::session, "DELETE", 204)), ResponseAction::forget_deleted);
  EXPECT_EQ(response_action(facts(RequestClass::session, "DELETE", 405)), ResponseAction::relay);
  EXPECT_EQ(response_action(facts(RequestClass::session, "DELETE", 404)), ResponseAction::forget_lost);
  EXPECT_EQ(response_action(facts(RequestClass::session, "POST", 200)), ResponseAction::relay);
  EXPECT_EQ(response_action(facts(RequestClass::session, "POST", 500)), ResponseAction::relay);
}

TEST(ResponseAction, ASessionKeepsItsId) {
  auto f = facts(RequestClass::session, "POST", 200);
  f.session = "sess-1";
  f.session_header = "sess-1";  // repeated on an answer: the same session
  EXPECT_EQ(response_action(f), ResponseAction::relay);
  f.session_header = "sess-2";  // a new id mid-session: not the client's to learn
  EXPECT_EQ(response_action(f), ResponseAction::reject_renamed_session);
  f.method = "DELETE";
  EXPECT_EQ(response_action(f), ResponseAction::reject_renamed_session);
  f.status = 404;  // the pod does not know the session: lost, whatever it says beside
  EXPECT_EQ(response_action(f), ResponseAction::forget_lost);
}

TEST(ResponseAction, LegacyStreamIsTappedOnItsPathOnly) {
  auto f = facts(RequestClass::sessionless, "GET", 200);
  f.target = "/sse";
  EXPECT_EQ(response_action(f), ResponseAction::tap_legacy_stream);
  f.target = "/sse?x=1";
  EXPECT_EQ(response_action(f), ResponseAction::tap_legacy_stream);
  f.target = "/sse2";
  EXPECT_EQ(response_action(f), ResponseAction::relay);
  f.target = "/sse";
  f.status = 405;
  EXPECT_EQ(response_action(f), ResponseAction::relay);
  f.status = 200;
  f.method = "POST";
  EXPECT_EQ(response_action(f), ResponseAction::relay);
}

TEST(Route, WhatMakesAnUnreachableSessionLost) {
  using namespace std::chrono_literals;
  // A name that no longer resolves: a pod being replaced until the grace has passed, then gone.
  const Unreachable replaced = judge_unreachable(ConnectFailure::no_such_pod, 5s, 15s);
  EXPECT_FALSE(replaced.lost);
  EXPECT_EQ(replaced.refusal.status, 503U);
  EXPECT_EQ(replaced.refusal.retry_after, 1U);
  const Unreachable gone = judge_unreachable(ConnectFailure::no_such_pod, 15s, 15s);
  EXPECT_TRUE(gone.lost);
  EXPECT_EQ(gone.cause, LostCause::no_such_pod);
  // DNS that cannot answer says nothing of the pod.
  EXPECT_FALSE(judge_unreachable(ConnectFailure::dns, 1h, 15s).lost);
  // Refusals: a restart until the grace has passed, then gone.
  const Unreachable restarting = judge_unreachable(ConnectFailure::refused, 14s, 15s);
  EXPECT_FALSE(restarting.lost);
  EXPECT_EQ(restarting.refusal.status, 503U);
  EXPECT_EQ(restarting.refusal.retry_after, 1U);
  const Unreachable away = judge_unreachable(ConnectFailure::refused, 15s, 15s);
  EXPECT_TRUE(away.lost);
  EXPECT_EQ(away.cause, LostCause::unreachable);
  // The proxy's own trouble is never the session's, however long it lasts.
  const Unreachable local = judge_unreachable(ConnectFailure::local, 1h, 15s);
  EXPECT_FALSE(local.lost);
  EXPECT_EQ(local.refusal.status, 503U);
  EXPECT_EQ(local.refusal.retry_after, 1U);
}
