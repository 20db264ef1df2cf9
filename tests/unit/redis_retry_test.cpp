// RedisRetry (how a Redis connection is retried and what of it is logged) and the reading of
// a misconfigured Redis's answers, with no server.
#include "core/tables/redis_retry.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;
using namespace std::chrono_literals;
using Kind = RedisRetry::Report::Kind;

namespace {

const RedisRetry::time_point t0 = std::chrono::steady_clock::time_point{} + 1h;

TEST(RedisRetry, TheWaitDoublesFromTheFloorToTheCapJitteredDownToHalf) {
  const std::vector<duration> full = {100ms, 200ms, 400ms, 800ms, 800ms, 800ms};
  for (std::size_t i = 0; i < full.size(); ++i) {
    RedisRetry low(800ms);
    RedisRetry high(800ms);
    for (std::size_t j = 0; j < i; ++j) {
      low.failed("refused", t0, 0.0);
      high.failed("refused", t0, 0.999999);
    }
    EXPECT_EQ(low.failed("refused", t0, 0.0).wait, full[i] / 2) << i;
    EXPECT_LE(high.failed("refused", t0, 0.999999).wait, full[i]) << i;
  }
}

TEST(RedisRetry, AConnectionDroppedRightAfterItsSetupDoesNotResetTheWait) {
  // The finding: a good handshake reset the wait, so a server that sent a protocol error
  // right after it was reconnected every 100 ms forever.
  RedisRetry retry(5s);
  auto now = t0;
  duration last{0};
  for (int i = 0; i < 8; ++i) {
    retry.connected(now);
    now += 1ms;
    const duration wait = retry.failed("protocol error", now, 0.0).wait;
    EXPECT_GE(wait, last) << i;
    last = wait;
    now += wait;
  }
  EXPECT_EQ(last, 2500ms) << "at the cap (5 s, jittered down to half)";
}

TEST(RedisRetry, AConnectionThatLastedStartsTheNextOutageAtTheFloor) {
  RedisRetry retry(1s);
  for (int i = 0; i < 5; ++i) retry.failed("refused", t0, 0.0);
  retry.connected(t0);
  const auto next = retry.failed("End of file", t0 + 1s, 0.0);
  EXPECT_EQ(next.wait, 50ms);
  ASSERT_TRUE(next.report.has_value());
  EXPECT_EQ(next.report->kind, Kind::lost);
  EXPECT_EQ(next.report->attempts, 1U);
}

TEST(RedisRetry, AnOutageIsLoggedOncePerChangeAndSummarisedNotLoggedPerAttempt) {
  RedisRetry retry(5s);
  auto now = t0;
  const auto fail = [&](const std::string& detail) {
    now += 100ms;
    return retry.failed(detail, now, 0.5).report;
  };
  auto r = fail("Connection refused");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Kind::failing);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(fail("Connection refused").has_value()) << i;
  r = fail("timed out");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Kind::changed);
  EXPECT_FALSE(fail("Connection refused").has_value()) << "logged in this outage already";
  EXPECT_FALSE(fail("timed out").has_value());
  now += RedisRetry::kSummaryEvery;
  r = fail("timed out");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, Kind::still_failing);
  EXPECT_EQ(r->attempts, 15U);
  EXPECT_EQ(r->unlogged, 2U) << "the attempts since the last line, this one aside";
  EXPECT_EQ(retry.detail(), "timed out");
  EXPECT_FALSE(retry.ever_up());
}

TEST(RedisRetry, ConnectedIsLoggedOncePerOutageNotPerFlap) {
  RedisRetry retry(5s);
  auto now = t0;
  auto c = retry.connected(now);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, Kind::connected);
  auto f = retry.failed("protocol error", now + 1ms, 0.5).report;
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Kind::lost);
  for (int i = 0; i < 20; ++i) {
    now += 1s;
    EXPECT_FALSE(retry.connected(now).has_value()) << i;
    EXPECT_FALSE(retry.failed("protocol error", now + 1ms, 0.5).report.has_value()) << i;
  }
  EXPECT_TRUE(retry.ever_up());
  // The server heals: the connection lasts, the next loss is a new outage, and its first
  // connection is logged again.
  now += 1s;
  EXPECT_FALSE(retry.connected(now).has_value()) << "still the same outage until it lasts";
  now += 10s;
  f = retry.failed("End of file", now, 0.5).report;
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->kind, Kind::lost);
  retry.failed("Connection refused", now + 100ms, 0.5);
  c = retry.connected(now + 300ms);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->kind, Kind::reconnected);
  EXPECT_EQ(c->attempts, 2U);
}

TEST(RedisRetry, RetryNowStartsAtTheFloorAndPacedGrowsWithoutAReport) {
  RedisRetry retry(5s);
  for (int i = 0; i < 6; ++i) retry.failed("refused", t0, 0.0);
  retry.retry_now();
  EXPECT_EQ(retry.failed("refused", t0, 0.0).wait, 50ms);
  RedisRetry paced(5s);
  EXPECT_EQ(paced.paced(t0, 0.0), 50ms);
  EXPECT_EQ(paced.paced(t0, 0.0), 100ms);
  EXPECT_EQ(paced.detail(), "");
}

TEST(RedisRetry, ReasonsHaveStableLabels) {
  EXPECT_EQ(to_string(RedisRetryReason::connect_failed), "connect_failed");
  EXPECT_EQ(to_string(RedisRetryReason::protocol_error), "protocol_error");
  EXPECT_EQ(to_string(RedisRetryReason::slot_map), "slot_map");
}

RedisReply error(const std::string& text) {
  RedisReply r;
  r.type = RedisReply::Type::error;
  r.str = text;
  return r;
}

RedisReply address(const std::string& host, const std::string& port) {
  RedisReply r;
  r.type = RedisReply::Type::array;
  r.elements.resize(2);
  r.elements[0].type = RedisReply::Type::string;
  r.elements[0].str = host;
  r.elements[1].type = RedisReply::Type::string;
  r.elements[1].str = port;
  return r;
}

TEST(SentinelAnswers, EachAnswerIsReadForWhatItSaysAboutTheConfig) {
  const auto primary = read_sentinel_answer({address("10.0.0.5", "6379")}, false);
  EXPECT_EQ(primary.kind, SentinelAnswer::Kind::primary);
  EXPECT_EQ(primary.host, "10.0.0.5");
  EXPECT_EQ(primary.port, "6379");
  EXPECT_EQ(read_sentinel_answer({RedisReply{}}, false).kind, SentinelAnswer::Kind::unknown_master);
  EXPECT_EQ(read_sentinel_answer({error("ERR unknown command 'SENTINEL', with args beginning with: ")}, false).kind,
            SentinelAnswer::Kind::not_a_sentinel);
  EXPECT_EQ(read_sentinel_answer({error("NOAUTH Authentication required.")}, false).kind,
            SentinelAnswer::Kind::auth_refused);
  EXPECT_EQ(read_sentinel_answer({error("WRONGPASS invalid username-password pair"), error("NOAUTH")}, true).kind,
            SentinelAnswer::Kind::auth_refused);
  EXPECT_EQ(read_sentinel_answer({error("LOADING Redis is loading the dataset in memory")}, false).kind,
            SentinelAnswer::Kind::other);
}

TEST(SentinelAnswers, TheVerdictNamesTheMisconfigurationOrTheOutage) {
  SentinelAnswer unreachable{SentinelAnswer::Kind::unreachable, "Connection refused", "", ""};
  SentinelAnswer unknown{SentinelAnswer::Kind::unknown_master, "", "", ""};
  SentinelAnswer plain{SentinelAnswer::Kind::not_a_sentinel, "ERR unknown command 'SENTINEL'", "", ""};
  SentinelAnswer loading{SentinelAnswer::Kind::other, "LOADING", "", ""};

  auto v = judge_sentinels({{"s0:26379", unreachable}, {"s1:26379", unreachable}}, "mymaster");
  EXPECT_TRUE(v.misconfigured);
  EXPECT_EQ(v.reason, "no sentinel reachable (s0:26379: Connection refused; s1:26379: Connection refused)");

  v = judge_sentinels({{"s0:26379", unreachable}, {"s1:26379", unknown}}, "mymaster");
  EXPECT_TRUE(v.misconfigured);
  EXPECT_NE(v.reason.find("sentinel s1:26379 knows no master 'mymaster'"), std::string::npos) << v.reason;

  v = judge_sentinels({{"redis:6379", plain}}, "mymaster");
  EXPECT_TRUE(v.misconfigured);
  EXPECT_NE(v.reason.find("redis:6379 is not a sentinel"), std::string::npos) << v.reason;

  v = judge_sentinels({{"s0:26379", unreachable}, {"s1:26379", loading}}, "mymaster");
  EXPECT_FALSE(v.misconfigured) << "a sentinel that answers, not yet usefully, is an outage";
  EXPECT_NE(v.reason.find("sentinel s1:26379: LOADING"), std::string::npos) << v.reason;
}

TEST(ClusterAnswers, ANodeThatIsNotAClusterNodeIsToldApart) {
  EXPECT_TRUE(says_not_a_cluster("ERR This instance has cluster support disabled"));
  EXPECT_TRUE(says_not_a_cluster("ERR unknown command 'CLUSTER', with args beginning with: 'SLOTS'"));
  EXPECT_FALSE(says_not_a_cluster("LOADING Redis is loading the dataset in memory"));
  EXPECT_FALSE(says_not_a_cluster("CLUSTERDOWN The cluster is down"));
}

}  // namespace
