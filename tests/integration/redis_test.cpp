// The redis session store against a real redis-server on 127.0.0.1: records, replicas that
// share them, a Redis that is flushed, down or slow, placement by the shared counts.
#include "redis_support.hpp"

using namespace redis_test;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

// ---- the proxy with the redis store ------------------------------------------------------

class RedisProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>();
    backend_ = std::make_unique<SampleBackend>(3);
  }
  std::unique_ptr<Proxy> proxy(const std::string& name = "redis-proxy", std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"--replicas",
                                  "3",
                                  "--backend-url-template",
                                  backend_->url_template(),
                                  "--session-store",
                                  "redis",
                                  "--redis-url",
                                  redis_->url(1),
                                  "--threads",
                                  "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Proxy>(args, name);
  }
  // Ends a session on its pod behind the proxies' backs, as a pod restart would.
  void forget_on_pod(const std::string& pod, const std::string& sid) const {
    const std::string ip = "127.0.1." + pod.substr(pod.find('-') + 1);
    ASSERT_EQ(request(backend_->port, "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}, ip).status, 200);
  }
  // {live sessions, initializes so far} summed over the pods.
  std::pair<int, int> pod_stats() const {
    std::pair<int, int> sum{0, 0};
    for (int i = 0; i < 3; ++i) {
      const json s =
          json::parse(request(backend_->port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(i)).body);
      sum.first += s["sessions"].get<int>();
      sum.second += s["initializes"].get<int>();
    }
    return sum;
  }
  std::string key(const std::string& sid) const { return "mcp-session-proxy:session:" + sid; }
  std::string in_db1(std::vector<std::string> args) const {
    // Another connection, in the proxy's database.
    return redis_cmd_db(1, std::move(args));
  }
  std::string redis_cmd_db(int db, std::vector<std::string> args) const {
    (void)db;
    // redis_cmd speaks to db 0; MOVE-free check: use a Lua script that selects the db.
    std::vector<std::string> eval = {"EVAL", "redis.call('SELECT', ARGV[1]); return redis.call(unpack(KEYS))",
                                     std::to_string(args.size())};
    eval.insert(eval.end(), args.begin(), args.end());
    eval.push_back("1");
    return redis_cmd(redis_->port, eval);
  }
  std::unique_ptr<RedisServer> redis_;
  std::unique_ptr<SampleBackend> backend_;
};

TEST_F(RedisProxyTest, RecordIsWrittenWithTtlBeforeTheInitializeAnswer) {
  auto a = proxy();
  const std::string sid = initialize(a->port);
  ASSERT_FALSE(sid.empty());
  // No wait: the record is in Redis by the time the client holds the answer.
  const std::string value = in_db1({"GET", key(sid)});
  const json rec = json::parse(value);
  EXPECT_EQ(rec["v"], 1);
  EXPECT_GE(rec["ordinal"].get<int>(), 0);
  EXPECT_NE(rec["init"].get<std::string>().find("initialize"), std::string::npos);
  const long ttl = std::stol(in_db1({"PTTL", key(sid)}));
  EXPECT_GT(ttl, 7000 * 1000L);
  EXPECT_LE(ttl, 7200 * 1000L);
}

TEST_F(RedisProxyTest, KillDashNineAndRestartKeepsEverySession) {
  auto a = proxy();
  std::vector<std::pair<std::string, std::string>> sessions;  // sid, pod
  for (int i = 0; i < 12; ++i) {
    const std::string sid = initialize(a->port);
    ASSERT_FALSE(sid.empty());
    for (int k = 1; k <= 3; ++k) ASSERT_EQ(whoami(a->port, sid).second, k);
    sessions.emplace_back(sid, whoami(a->port, sid).first);
  }
  a->process->signal(SIGKILL);
  a->process->wait(10s);
  auto b = proxy("redis-proxy-restarted");
  int continued = 0;
  for (const auto& [sid, pod] : sessions) {
    const auto [now_pod, counter] = whoami(b->port, sid);
    continued += now_pod == pod && counter == 5;  // 4 calls before the crash
  }
  EXPECT_EQ(continued, 12);
  const std::string m = b->metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_session_cache_misses_total").value_or(0), 12) << "one Redis lookup per session";
  EXPECT_EQ(metric(m, R"(mcp_proxy_store_operations_total{op="get",result="ok"})").value_or(0), 12);
}

TEST_F(RedisProxyTest, TwoReplicasShareSessionsFromTheFirstRequest) {
  auto a = proxy("replica-a");
  auto b = proxy("replica-b");
  for (int i = 0; i < 6; ++i) {
    const std::string sid = initialize(a->port);
    ASSERT_FALSE(sid.empty());
    // The very next request goes to the other replica.
    const auto first = whoami(b->port, sid);
    ASSERT_EQ(first.second, 1);
    const auto second = whoami(a->port, sid);
    EXPECT_EQ(second, std::make_pair(first.first, 2));
    EXPECT_EQ(whoami(b->port, sid), std::make_pair(first.first, 3));
  }
  // DELETE through B; A learns it at the latest from the pod's 404.
  const std::string sid = initialize(a->port);
  ASSERT_EQ(whoami(a->port, sid).second, 1);
  EXPECT_EQ(request(b->port, "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}).status, 200);
  EXPECT_EQ(in_db1({"EXISTS", key(sid)}), "0");
}

// Redis loses every record (FLUSHALL, as a restart without persistence would): each
// replica sees the table marker change and writes back the sessions it holds; a replica
// started afterwards routes every one of them to its pod.
TEST_F(RedisProxyTest, AFlushedTableIsWrittenBackByTheReplicasThatHoldIt) {
  auto a = proxy("heal-a", {"--redis-counts-interval", "100ms"});
  auto b = proxy("heal-b", {"--redis-counts-interval", "100ms"});
  std::vector<std::pair<std::string, std::string>> sessions;  // sid, pod
  for (int i = 0; i < 20; ++i) {
    const std::string sid = initialize(i % 2 == 0 ? a->port : b->port);
    ASSERT_FALSE(sid.empty());
    const auto [pod, counter] = whoami(i % 2 == 0 ? a->port : b->port, sid);
    ASSERT_EQ(counter, 1);
    sessions.emplace_back(sid, pod);
  }
  ASSERT_EQ(redis_cmd(redis_->port, {"FLUSHALL"}), "OK");
  const auto flushed = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] {
    for (const auto& s : sessions) {
      if (in_db1({"EXISTS", key(s.first)}) != "1") return false;
    }
    return true;
  }));
  const auto took = std::chrono::steady_clock::now() - flushed;
  EXPECT_LT(took, 2s) << "within a few counts intervals of 100 ms";
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_store_records_restored_total").value_or(0) +
                metric(b->metrics(), "mcp_proxy_store_records_restored_total").value_or(0),
            20);
  auto c = proxy("heal-c");
  int routed = 0;
  for (const auto& [sid, pod] : sessions) routed += whoami(c->port, sid) == std::make_pair(pod, 2) ? 1 : 0;
  EXPECT_EQ(routed, 20) << "every session on its own pod, its state intact";
}

// One record gone while the marker stays (a failover to a replica that had not got the
// last write): the next TTL refresh finds it missing and writes it back.
TEST_F(RedisProxyTest, ARecordMissingAtItsRefreshIsWrittenBack) {
  auto a = proxy("refresh-heal", {"--session-ttl", "2s"});  // refreshed every 200 ms of use
  const std::string sid = initialize(a->port);
  ASSERT_FALSE(sid.empty());
  const auto [pod, first] = whoami(a->port, sid);
  ASSERT_EQ(first, 1);
  ASSERT_EQ(in_db1({"DEL", key(sid)}), "1");
  int calls = 1;
  EXPECT_TRUE(eventually([&] {
    EXPECT_EQ(whoami(a->port, sid), std::make_pair(pod, ++calls));
    return in_db1({"EXISTS", key(sid)}) == "1";
  }));
  // Counted when the proxy reads SET NX's reply, which may come after the key is visible
  // (seen under ASan in CI).
  EXPECT_TRUE(
      eventually([&] { return metric(a->metrics(), "mcp_proxy_store_records_restored_total").value_or(0) == 1; }));
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_store_records_restored_total").value_or(0), 1);
  auto b = proxy("refresh-heal-b", {"--session-ttl", "2s"});
  EXPECT_EQ(whoami(b->port, sid), std::make_pair(pod, calls + 1));
}

TEST_F(RedisProxyTest, WarmCacheMakesNoRedisRoundTrip) {
  auto a = proxy();
  const std::string sid = initialize(a->port);
  ASSERT_EQ(whoami(a->port, sid).second, 1);
  auto ops = [&] {
    const std::string m = a->metrics();
    double total = 0;
    for (const char* op : {"get", "set", "del", "expire"}) {
      for (const char* r : {"ok", "miss", "error"}) {
        total += metric(m, std::string("mcp_proxy_store_operations_total{op=\"") + op + "\",result=\"" + r + "\"}")
                     .value_or(0);
      }
    }
    return total;
  };
  // A record whose SET timed out on a loaded machine is queued and written later, by the
  // flusher, not by a request: counted before the requests, not during them.
  ASSERT_TRUE(eventually([&] { return metric(a->metrics(), "mcp_proxy_store_queue_depth").value_or(-1) == 0; }));
  const double before = ops();
  for (int i = 0; i < 200; ++i) ASSERT_EQ(whoami(a->port, sid).second, i + 2);
  EXPECT_EQ(ops() - before, 0) << "200 requests on a warm cache, no Redis command";
}

TEST_F(RedisProxyTest, RedisDownKeepsServingAndQueuedRecordsArriveLater) {
  auto a = proxy();
  const std::string live = initialize(a->port);
  ASSERT_EQ(whoami(a->port, live).second, 1);
  redis_->kill();
  ASSERT_TRUE(eventually([&] { return metric(a->metrics(), "mcp_proxy_redis_up").value_or(1) == 0; }));
  const Response ready = request(a->admin, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << "still serving";
  EXPECT_NE(ready.body.find("redis: DOWN"), std::string::npos) << ready.body;
  // Cached sessions keep routing; a new session is created and used.
  EXPECT_EQ(whoami(a->port, live).second, 2);
  const std::string fresh = initialize(a->port);
  ASSERT_FALSE(fresh.empty());
  EXPECT_EQ(whoami(a->port, fresh).second, 1);
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_store_queue_depth").value_or(0), 1);
  // An id this process has not cached while Redis is down may be another replica's live
  // session: 503 with Retry-After, never the 404 that would make its client drop it.
  const Response unknown = request(a->port, "POST", "/mcp", call(2), {{"Mcp-Session-Id", "never-issued"}});
  EXPECT_EQ(unknown.status, 503) << unknown.body;
  EXPECT_EQ(unknown.header("retry-after"), "1");
  EXPECT_EQ(json::parse(unknown.body)["error"]["code"], -32603);
  redis_->restart();
  EXPECT_TRUE(eventually([&] { return in_db1({"EXISTS", key(fresh)}) == "1"; }));
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_store_queue_depth").value_or(-1), 0);
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_redis_up").value_or(0), 1);
}

TEST_F(RedisProxyTest, AStoreThatDoesNotAnswerInTimeIsA503NeverA404) {
  auto a = proxy("a");
  const std::string sid = initialize(a->port);
  ASSERT_EQ(whoami(a->port, sid).second, 1);
  // A second replica that has not seen the session must ask Redis, which is paused.
  auto b = proxy("b");
  ASSERT_EQ(redis_cmd(redis_->port, {"CLIENT", "PAUSE", "1500", "ALL"}), "OK");
  const Response paused = request(b->port, "POST", "/mcp", call(3), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(paused.status, 503) << paused.body;
  EXPECT_EQ(paused.header("retry-after"), "1");
  EXPECT_EQ(metric_sum(b->metrics(), "mcp_proxy_sessions_lost_total"), 0);
  // Once Redis answers again (the pause ends), the session goes on, on its pod, with its state.
  EXPECT_TRUE(eventually([&] { return whoami(b->port, sid).second == 2; }));
  EXPECT_EQ(whoami(a->port, sid).second, 3);
  EXPECT_EQ(in_db1({"EXISTS", key(sid)}), "1");
}

TEST_F(RedisProxyTest, TwoReplicasRecoveringOneSessionAtOnceEndOnOnePod) {
  // A command deadline above the write pause below: the moves wait for Redis, not fail.
  auto a = proxy("replica-a", {"--redis-command-timeout", "5s"});
  auto b = proxy("replica-b", {"--redis-command-timeout", "5s"});
  const std::string sid = initialize(a->port);
  const auto [pod, first] = whoami(a->port, sid);
  ASSERT_EQ(first, 1);
  ASSERT_EQ(whoami(b->port, sid), std::make_pair(pod, 2));  // both replicas hold it now
  forget_on_pod(pod, sid);
  // Writes pause (reads go on): both replicas read the record, find the session lost and
  // re-initialize it, each on a pod of its own; the compare-and-sets run when the pause
  // ends, and exactly one of them wins.
  ASSERT_EQ(redis_cmd(redis_->port, {"CLIENT", "PAUSE", "1000", "WRITE"}), "OK");
  std::vector<std::pair<std::string, int>> answers(20);
  std::vector<std::thread> clients;
  for (int i = 0; i < 20; ++i) {
    clients.emplace_back([&, i] { answers[i] = whoami(i % 2 == 0 ? a->port : b->port, sid, 100 + i); });
  }
  for (auto& c : clients) c.join();
  std::set<std::string> pods;
  std::set<int> counters;
  for (const auto& [p, counter] : answers) {
    EXPECT_FALSE(p.empty()) << "status " << -counter;
    pods.insert(p);
    counters.insert(counter);
  }
  EXPECT_EQ(pods.size(), 1U) << "one pod for the session, whichever replica a request went through";
  EXPECT_EQ(counters.size(), 20U) << "one server-side session: every call counted once, in one place";
  EXPECT_EQ(*counters.rbegin(), 20);
  const std::string ma = a->metrics();
  const std::string mb = b->metrics();
  EXPECT_EQ(metric(ma, "mcp_proxy_sessions_recovered_total").value_or(0) +
                metric(mb, "mcp_proxy_sessions_recovered_total").value_or(0),
            1);
  EXPECT_EQ(metric(ma, "mcp_proxy_recovery_conflicts_total").value_or(0) +
                metric(mb, "mcp_proxy_recovery_conflicts_total").value_or(0),
            1)
      << "the loser of the compare-and-set followed the winner";
  // The loser ended the session it opened: one live session on the pods, three initializes.
  EXPECT_EQ(pod_stats(), std::make_pair(1, 3));
  const json rec = json::parse(in_db1({"GET", key(sid)}));
  EXPECT_EQ(rec["epoch"], 1);
  EXPECT_EQ("pod-" + std::to_string(rec["ordinal"].get<int>()), *pods.begin());
  EXPECT_EQ(whoami(a->port, sid), std::make_pair(*pods.begin(), 21));
  EXPECT_EQ(whoami(b->port, sid), std::make_pair(*pods.begin(), 22));
}

TEST_F(RedisProxyTest, AHundredConcurrentRequestsOfALostSessionCauseOneInitializeWithEitherStore) {
  for (const std::string store : {"memory", "redis"}) {
    SCOPED_TRACE(store);
    std::vector<std::string> args{"--replicas", "3", "--backend-url-template", backend_->url_template(),
                                  "--threads",  "2", "--session-store",        store};
    if (store == "redis") args.insert(args.end(), {"--redis-url", redis_->url(1)});
    Proxy p(args, "hundred-" + store);
    const std::string sid = initialize(p.port);
    const auto [pod, first] = whoami(p.port, sid);
    ASSERT_EQ(first, 1);
    forget_on_pod(pod, sid);
    const int initializes_before = pod_stats().second;
    std::vector<std::pair<std::string, int>> answers(100);
    std::vector<std::thread> clients;
    for (int i = 0; i < 100; ++i) clients.emplace_back([&, i] { answers[i] = whoami(p.port, sid, 100 + i); });
    for (auto& c : clients) c.join();
    std::set<std::string> pods;
    std::set<int> counters;
    for (const auto& [on, counter] : answers) {
      EXPECT_FALSE(on.empty()) << "status " << -counter;
      pods.insert(on);
      counters.insert(counter);
    }
    EXPECT_EQ(pod_stats().second, initializes_before + 1) << "one re-initialize for a hundred requests";
    EXPECT_EQ(pods.size(), 1U);
    EXPECT_EQ(counters.size(), 100U) << "every request answered once, in the one new session";
    const std::string m = p.metrics();
    EXPECT_EQ(metric(m, "mcp_proxy_sessions_recovered_total").value_or(0), 1);
    EXPECT_EQ(metric(m, R"(mcp_proxy_sessions_lost_total{cause="pod_answered_404"})").value_or(0), 1);
  }
}

TEST_F(RedisProxyTest, APodLosingASessionWhileRedisCannotBeAskedIsA503NeverA404) {
  auto a = proxy();
  const std::string sid = initialize(a->port);
  const auto [pod, first] = whoami(a->port, sid);
  ASSERT_EQ(first, 1);
  forget_on_pod(pod, sid);
  // What to replay (and whether another replica moved it) is in Redis, which does not answer.
  ASSERT_EQ(redis_cmd(redis_->port, {"CLIENT", "PAUSE", "1500", "ALL"}), "OK");
  // Several requests at once: one asks Redis, the others wait for it; none may get a 404.
  std::vector<Response> answers(8);
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) {
    clients.emplace_back([&, i] {
      answers[i] = request(a->port, "POST", "/mcp", call(30 + i), {{"Mcp-Session-Id", sid}});
    });
  }
  for (auto& c : clients) c.join();
  for (const Response& r : answers) {
    EXPECT_EQ(r.status, 503) << r.body;
    EXPECT_EQ(r.header("retry-after"), "1");
  }
  EXPECT_EQ(metric_sum(a->metrics(), "mcp_proxy_sessions_lost_total"), 0);
  // Redis answers again: the session is recovered on another pod and goes on.
  std::pair<std::string, int> after;
  EXPECT_TRUE(eventually([&] {
    after = whoami(a->port, sid, 4);
    return !after.first.empty();
  }));
  EXPECT_NE(after.first, pod);
  EXPECT_EQ(after.second, 1) << "a new server-side session";
  EXPECT_EQ(metric(a->metrics(), R"(mcp_proxy_sessions_lost_total{cause="pod_answered_404"})").value_or(0), 1);
  EXPECT_EQ(metric(a->metrics(), "mcp_proxy_sessions_recovered_total").value_or(0), 1);
}

// Live sessions on each of `pods` pods of a sample backend.
std::vector<int> live_per_pod(const SampleBackend& backend, int pods) {
  std::vector<int> out;
  for (int i = 0; i < pods; ++i) {
    const Response r = request(backend.port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(i));
    out.push_back(r.status == 200 ? json::parse(r.body)["sessions"].get<int>() : -1);
  }
  return out;
}

TEST(RedisPlacement, TwoReplicasPlacingAtOnceKeepFivePodsWithinTwoPercentOfTheMean) {
  RedisServer redis;
  SampleBackend backend(5);
  auto replica = [&](const std::string& name) {
    return std::make_unique<Proxy>(
        std::vector<std::string>{"--replicas", "5", "--backend-url-template", backend.url_template(), "--session-store",
                                 "redis", "--redis-url", redis.url(), "--threads", "2"},
        name);
  };
  auto a = replica("balance-a");
  auto b = replica("balance-b");
  // 3000 initializes, half through each replica, four clients on each at once.
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      const std::uint16_t port = c % 2 == 0 ? a->port : b->port;
      for (int i = 0; i < 375; ++i) failed += initialize(port).empty() ? 1 : 0;
    });
  }
  for (auto& c : clients) c.join();
  ASSERT_EQ(failed.load(), 0);
  const std::vector<int> live = live_per_pod(backend, 5);
  const int busiest = *std::max_element(live.begin(), live.end());
  std::string spread;
  for (int n : live) spread += std::to_string(n) + " ";
  EXPECT_EQ(std::accumulate(live.begin(), live.end(), 0), 3000) << spread;
  EXPECT_LE(busiest, 612) << "busiest pod <= 1.02 x the mean of 600; per pod: " << spread;
  // Both replicas see the shared counts (the pods' truth) once they have read them.
  for (const Proxy* p : {a.get(), b.get()}) {
    EXPECT_TRUE(eventually([&] {
      const json pods = json::parse(request(p->admin, "GET", "/pods").body);
      for (int o = 0; o < 5; ++o) {
        if (pods[o]["sessions"].get<int>() != live[o]) return false;
      }
      return true;
    })) << request(p->admin, "GET", "/pods").body
        << " vs " << spread;
  }
}

TEST(RedisPlacement, CountsFollowTheTtlAndOutliveTheProxyThatPlacedThem) {
  RedisServer redis;
  SampleBackend backend(2);
  auto replica = [&](const std::string& name, const std::string& ttl) {
    return std::make_unique<Proxy>(
        std::vector<std::string>{"--replicas", "2", "--backend-url-template", backend.url_template(), "--session-store",
                                 "redis", "--redis-url", redis.url(), "--session-ttl", ttl, "--redis-counts-interval",
                                 "100ms"},
        name);
  };
  const auto total = [](const Proxy& p) { return metric_sum(p.metrics(), "mcp_proxy_sessions"); };
  auto a = replica("counts-a", "2h");
  for (int i = 0; i < 10; ++i) ASSERT_FALSE(initialize(a->port).empty());
  // The proxy that placed them dies; another one counts them from Redis.
  a->process->signal(SIGKILL);
  a->process->wait(10s);
  auto b = replica("counts-b", "1s");
  EXPECT_TRUE(eventually([&] { return total(*b) == 10; })) << b->metrics();
  // Sessions that end by TTL (no DELETE) leave the counts: b's own, with a 1 s TTL.
  for (int i = 0; i < 4; ++i) ASSERT_FALSE(initialize(b->port).empty());
  EXPECT_TRUE(eventually([&] { return total(*b) == 14; }));
  EXPECT_TRUE(eventually([&] { return total(*b) == 10; }, 10s)) << "the 1 s sessions expired: " << b->metrics();
}

TEST_F(RedisProxyTest, ABindingHoldsAcrossReplicasAndRedisKeepsNoCredential) {
  const std::string secret = std::string(MCPPROXY_TEST_TMP_DIR) + "/binding-secret";
  { std::ofstream(secret) << "0123456789abcdef0123456789abcdef\n"; }
  const std::vector<std::string> bound = {"--session-binding", "authorization", "--session-binding-secret-file",
                                          secret};
  auto a = proxy("bound-a", bound);
  auto b = proxy("bound-b", bound);
  const Response init = request(a->port, "POST", "/mcp", kInit, {{"Authorization", "Bearer alice-token"}});
  ASSERT_EQ(init.status, 200);
  const std::string sid = init.header("mcp-session-id");
  const auto call_as = [&](std::uint16_t port, const std::string& token, int id) {
    return request(port, "POST", "/mcp", call(id), {{"Authorization", "Bearer " + token}, {"Mcp-Session-Id", sid}})
        .status;
  };
  EXPECT_EQ(call_as(b->port, "mallory-token", 2), 404) << "the other replica enforces the same binding";
  EXPECT_EQ(call_as(b->port, "alice-token", 3), 200);
  EXPECT_EQ(call_as(a->port, "mallory-token", 4), 404);
  const std::string record = in_db1({"GET", key(sid)});
  EXPECT_EQ(record.find("alice-token"), std::string::npos) << record;
  EXPECT_EQ(json::parse(record)["principal"].get<std::string>().size(), 64U) << "an HMAC-SHA-256, hex";
  EXPECT_EQ(metric(b->metrics(), "mcp_proxy_session_binding_mismatches_total").value_or(0), 1);
}

TEST(RedisHostilePeer, AnOversizedArrayFromTheRedisAddressCostsNeitherMemoryNorLatency) {
  // A peer on the Redis address that answers anything with a 2^31-element array header and
  // then nothing: hiredis alone would allocate its element table (16 GiB) and wait.
  std::uint16_t redis_port = 0;
  const int fd = listen_loopback(64, redis_port);
  ASSERT_GE(fd, 0);
  std::atomic<bool> stop{false};
  std::atomic<int> bombs{0};
  std::thread peer([&] {
    std::vector<int> conns;
    while (!stop.load()) {
      std::vector<pollfd> fds{{fd, POLLIN, 0}};
      for (int c : conns) fds.push_back({c, POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      if ((fds[0].revents & POLLIN) != 0) {
        const int c = ::accept(fd, nullptr, nullptr);
        if (c >= 0) conns.push_back(c);
      }
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & POLLIN) == 0) continue;
        char buf[4096];
        if (::read(fds[i].fd, buf, sizeof buf) > 0) {
          const char bomb[] = "*2147483647\r\n";
          (void)!::write(fds[i].fd, bomb, sizeof bomb - 1);
          ++bombs;
        }
      }
    }
    for (int c : conns) ::close(c);
  });
  SampleBackend backend(2);
  Proxy p({"--replicas", "2", "--backend-url-template", backend.url_template(), "--session-store", "redis",
           "--redis-url", "redis://127.0.0.1:" + std::to_string(redis_port), "--threads", "2"},
          "hostile-redis");
  const std::string sid = initialize(p.port);
  ASSERT_FALSE(sid.empty());
  ASSERT_TRUE(eventually([&] { return bombs.load() >= 3; }));
  const long rss_before = rss_kib(p.process->pid());
  for (int i = 1; i <= 20; ++i) {
    const auto start = std::chrono::steady_clock::now();
    ASSERT_EQ(whoami(p.port, sid, 10 + i).second, i);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 50ms) << "a cached session never waits for Redis";
  }
  EXPECT_TRUE(
      eventually([&] { return metric(p.metrics(), "mcp_proxy_redis_protocol_errors_total").value_or(0) >= 3; }));
  EXPECT_EQ(metric(p.metrics(), "mcp_proxy_redis_up").value_or(-1), 0);
  EXPECT_LT(rss_kib(p.process->pid()) - rss_before, 8 * 1024) << "RSS stays flat";
  const Response ready = request(p.admin, "GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_TRUE(eventually([&] { return p.log().find("an array of 2147483647 elements") != std::string::npos; }));
  stop = true;
  peer.join();
  ::close(fd);
}

TEST_F(RedisProxyTest, StartsWithRedisUnreachable) {
  redis_->kill();
  auto a = proxy();  // ready without Redis
  const std::string sid = initialize(a->port);
  ASSERT_FALSE(sid.empty());
  EXPECT_EQ(whoami(a->port, sid).second, 1);
  redis_->restart();
  EXPECT_TRUE(eventually([&] { return in_db1({"EXISTS", key(sid)}) == "1"; }));
}

}  // namespace
