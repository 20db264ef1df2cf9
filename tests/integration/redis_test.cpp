// The Redis client and the redis session store against a real redis-server on 127.0.0.1.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "harness.hpp"
#include "mcpproxy/redis_client.hpp"

using namespace harness;
using namespace std::chrono_literals;
using json = nlohmann::json;
namespace net = boost::asio;

namespace {

// The client on its own io_context thread; tests call into it through futures.
class ClientRig {
 public:
  explicit ClientRig(mcpproxy::RedisOptions options) : guard_(net::make_work_guard(ioc_)) {
    client_ = std::make_shared<mcpproxy::RedisClient>(ioc_, std::move(options), "test");
    client_->start();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~ClientRig() {
    net::post(ioc_, [c = client_] { c->stop(); });
    guard_.reset();
    ioc_.stop();
    thread_.join();
  }
  mcpproxy::RedisClient::Result run(std::vector<std::string> args) {
    return net::co_spawn(ioc_, client_->command(std::move(args)), net::use_future).get();
  }
  std::vector<mcpproxy::RedisClient::Result> pipeline(const std::vector<std::vector<std::string>>& commands) {
    // All started in one handler: they go out back to back on the one connection.
    std::promise<std::vector<std::future<mcpproxy::RedisClient::Result>>> started;
    net::post(ioc_, [&] {
      std::vector<std::future<mcpproxy::RedisClient::Result>> fs;
      for (const auto& c : commands) fs.push_back(net::co_spawn(ioc_, client_->command(c), net::use_future));
      started.set_value(std::move(fs));
    });
    std::vector<mcpproxy::RedisClient::Result> out;
    for (auto& f : started.get_future().get()) out.push_back(f.get());
    return out;
  }
  bool up() {
    std::promise<bool> p;
    net::post(ioc_, [&] { p.set_value(client_->up()); });
    return p.get_future().get();
  }
  // Up and answering PING.
  bool ready() { return up() && run({"PING"}).reply.str == "PONG"; }

 private:
  net::io_context ioc_;
  net::executor_work_guard<net::io_context::executor_type> guard_;
  std::shared_ptr<mcpproxy::RedisClient> client_;
  std::thread thread_;
};

mcpproxy::RedisOptions options_for(const std::string& url) {
  mcpproxy::RedisOptions o;
  o.url = mcpproxy::parse_redis_url(url);
  o.password = o.url.password;
  o.command_timeout = 1s;
  o.backoff_max = 200ms;
  return o;
}

TEST(RedisClient, PipelinedRepliesKeepTheirOrder) {
  RedisServer redis;
  ClientRig rig(options_for(redis.url()));
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  std::vector<std::vector<std::string>> commands(200, {"INCR", "counter"});
  const auto results = rig.pipeline(commands);
  ASSERT_EQ(results.size(), 200U);
  for (std::size_t i = 0; i < results.size(); ++i) {
    ASSERT_FALSE(results[i].ec) << i;
    EXPECT_EQ(results[i].reply.integer, static_cast<std::int64_t>(i + 1));
  }
}

TEST(RedisClient, ErrorRepliesAndNil) {
  RedisServer redis;
  ClientRig rig(options_for(redis.url()));
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  EXPECT_EQ(rig.run({"GET", "missing"}).reply.type, mcpproxy::RedisReply::Type::nil);
  EXPECT_EQ(rig.run({"SET", "s", "text"}).reply.str, "OK");
  const auto err = rig.run({"INCR", "s"});
  EXPECT_FALSE(err.ec);
  EXPECT_TRUE(err.reply.is_error());
  EXPECT_NE(err.reply.str.find("not an integer"), std::string::npos);
  EXPECT_EQ(rig.run({"GET", "s"}).reply.str, "text") << "the connection survives an error reply";
}

TEST(RedisClient, ReconnectsAfterTheServerRestarts) {
  RedisServer redis;
  ClientRig rig(options_for(redis.url()));
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  redis.kill();
  ASSERT_TRUE(eventually([&] { return !rig.up(); }));
  const auto down = rig.run({"PING"});
  EXPECT_TRUE(down.ec) << "fails fast while down";
  redis.restart();
  EXPECT_TRUE(eventually([&] { return rig.ready(); }));
}

// A server on the Redis address that accepts TCP and refuses every handshake (a wrong
// password, an -ERR, another protocol): it answers -ERR to whatever arrives and notes when
// each connection came. Stops after `max` connections or 10 s.
std::vector<std::chrono::steady_clock::time_point> refusing_server(int listen_fd, int max) {
  std::vector<std::chrono::steady_clock::time_point> at;
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (static_cast<int>(at.size()) < max && std::chrono::steady_clock::now() < end) {
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept(listen_fd, nullptr, nullptr);
    if (fd < 0) continue;
    at.push_back(std::chrono::steady_clock::now());
    char buf[512];
    pollfd c{fd, POLLIN, 0};
    if (::poll(&c, 1, 1000) > 0 && ::read(fd, buf, sizeof buf) > 0) {
      const char refusal[] = "-ERR this is not the server you are looking for\r\n";
      (void)!::write(fd, refusal, sizeof refusal - 1);
    }
    ::close(fd);
  }
  return at;
}

TEST(RedisClient, AServerThatRefusesTheHandshakeIsRetriedWithAGrowingWait) {
  std::uint16_t port = 0;
  const int fd = listen_loopback(16, port);
  ASSERT_GE(fd, 0);
  auto options = options_for("redis://127.0.0.1:" + std::to_string(port));
  options.backoff_max = 5s;
  ClientRig rig(options);
  const auto at = refusing_server(fd, 5);
  ::close(fd);
  ASSERT_EQ(at.size(), 5U);
  // The TCP connect succeeds every time; the wait must grow anyway (100 ms doubling, jitter
  // down to half): four waits of at least 50 + 100 + 200 + 400 ms, not four of ~100 ms.
  EXPECT_GE(at[4] - at[0], 750ms);
  EXPECT_GE(at[4] - at[3], 400ms);
  EXPECT_FALSE(rig.up());
}

TEST(RedisClient, CommandDeadlineFiresAndTheClientRecovers) {
  RedisServer redis;
  auto options = options_for(redis.url());
  options.command_timeout = 200ms;
  ClientRig rig(options);
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  // Another connection pauses every client for 1.5 s: our command cannot be answered in time.
  ASSERT_EQ(redis_cmd(redis.port, {"CLIENT", "PAUSE", "1500", "ALL"}), "OK");
  const auto start = std::chrono::steady_clock::now();
  const auto r = rig.run({"GET", "k"});
  EXPECT_EQ(r.ec, make_error_code(mcpproxy::RedisError::timeout));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 1000ms);
  EXPECT_TRUE(eventually([&] { return rig.ready(); }));
}

TEST(RedisClient, AuthWithAnAclUser) {
  RedisServer redis;
  ASSERT_EQ(redis_cmd(redis.port, {"ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+@all"}), "OK");
  ClientRig rig(options_for("redis://alice:s3cret@127.0.0.1:" + std::to_string(redis.port)));
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  EXPECT_EQ(rig.run({"ACL", "WHOAMI"}).reply.str, "alice");
}

TEST(RedisClient, AuthWithAPasswordOnly) {
  RedisServer redis({"--requirepass", "pw-only"});
  auto options = options_for("redis://127.0.0.1:" + std::to_string(redis.port));
  options.password = "pw-only";  // as from sessions.redis.password_file
  ClientRig rig(options);
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  EXPECT_EQ(rig.run({"ACL", "WHOAMI"}).reply.str, "default");
}

TEST(RedisClient, SelectsTheDatabaseOfTheUrl) {
  RedisServer redis;
  ClientRig in3(options_for(redis.url(3)));
  ASSERT_TRUE(eventually([&] { return in3.ready(); }));
  EXPECT_EQ(in3.run({"SET", "k", "in-db-3"}).reply.str, "OK");
  EXPECT_EQ(redis_cmd(redis.port, {"EXISTS", "k"}), "0") << "not in db 0";
  ClientRig again(options_for(redis.url(3)));
  ASSERT_TRUE(eventually([&] { return again.ready(); }));
  EXPECT_EQ(again.run({"GET", "k"}).reply.str, "in-db-3");
}

TEST(RedisClient, Tls) {
  const std::string dir = std::string(MCPPROXY_TEST_TMP_DIR) + "/tls";
  const std::string cmd =
      "set -e; mkdir -p " + dir + "; cd " + dir +
      "; openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem 2>/dev/null"
      "; openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null"
      "; printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext"
      "; openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext "
      "-out server.pem 2>/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::uint16_t port = free_port();
  RedisServer redis(
      {"--port", "0", "--tls-port", std::to_string(port), "--tls-cert-file", dir + "/server.pem", "--tls-key-file",
       dir + "/server.key", "--tls-ca-cert-file", dir + "/ca.pem", "--tls-auth-clients", "no"},
      port);
  auto options = options_for("rediss://127.0.0.1:" + std::to_string(port));
  options.tls_ca_file = dir + "/ca.pem";
  options.tls_server_name = "localhost";
  ClientRig rig(options);
  ASSERT_TRUE(eventually([&] { return rig.ready(); }));
  EXPECT_EQ(rig.run({"SET", "over", "tls"}).reply.str, "OK");
  EXPECT_EQ(rig.run({"GET", "over"}).reply.str, "tls");
}

// ---- the proxy with the redis store ------------------------------------------------------

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

std::string call(int id) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", "whoami"}}}}.dump();
}

std::string initialize(std::uint16_t port) {
  const Response r = request(port, "POST", "/mcp", kInit);
  return r.status == 200 ? r.header("mcp-session-id") : "";
}

// {pod, counter} of one whoami call, or {"", -status}.
std::pair<std::string, int> whoami(std::uint16_t port, const std::string& sid, int id = 2) {
  const Response r = request(port, "POST", "/mcp", call(id), {{"Mcp-Session-Id", sid}});
  if (r.status != 200) return {"", -r.status};
  const json sc = json::parse(r.body)["result"]["structuredContent"];
  return {sc["pod"], sc["counter"]};
}

// A session the failover tests keep calling through a failover: the pod it is on, the calls
// it has answered (its counter), and the proxy replica it is called through when the test
// pins one.
struct Live {
  std::string sid;
  std::string pod;
  int calls = 0;
  const Proxy* via = nullptr;
};

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

// A proxy replica on the redis store in `mode` (sentinel or cluster), given its nodes.
std::vector<std::string> ha_proxy_args(const SampleBackend& backend, const std::string& mode,
                                       const std::vector<std::uint16_t>& node_ports) {
  std::vector<std::string> args{"--replicas",
                                "3",
                                "--backend-url-template",
                                backend.url_template(),
                                "--session-store",
                                "redis",
                                "--redis-mode",
                                mode,
                                "--redis-counts-interval",
                                "200ms",
                                "--threads",
                                "2"};
  for (const std::uint16_t p : node_ports) {
    args.emplace_back("--redis-node");
    args.push_back("127.0.0.1:" + std::to_string(p));
  }
  return args;
}

// A primary, its replica and three sentinels (quorum 2, down after 500 ms) on free
// loopback ports: the Sentinel layout of the usual Helm charts, in one test.
struct SentinelSetup {
  SentinelSetup() {
    primary = std::make_unique<RedisServer>();
    replica = std::make_unique<RedisServer>(
        std::vector<std::string>{"--replicaof", "127.0.0.1", std::to_string(primary->port)});
    if (!eventually([&] {
          return redis_cmd(replica->port, {"INFO", "replication"}).find("master_link_status:up") != std::string::npos;
        })) {
      throw std::runtime_error("the replica did not sync");
    }
    for (int i = 0; i < 3; ++i) {
      const std::uint16_t port = free_port();
      const std::string conf = std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".conf";
      std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\ndaemonize no\n"
                          << "sentinel monitor mymaster 127.0.0.1 " << primary->port << " 2\n"
                          << "sentinel down-after-milliseconds mymaster 500\n"
                          << "sentinel failover-timeout mymaster 3000\n"
                          << "sentinel parallel-syncs mymaster 1\n";
      sentinels.push_back(
          std::make_unique<Process>(std::vector<std::string>{"redis-server", conf, "--sentinel"},
                                    std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".log"));
      ports.push_back(port);
    }
    // Each sentinel knows the other two (a failover needs a majority of them).
    for (const std::uint16_t p : ports) {
      if (!eventually(
              [&] {
                return redis_cmd(p, {"SENTINEL", "master", "mymaster"}).find("num-other-sentinels 2") !=
                       std::string::npos;
              },
              20s)) {
        throw std::runtime_error("the sentinels did not find each other");
      }
    }
  }
  ~SentinelSetup() {
    for (auto& s : sentinels) {
      s->signal(SIGKILL);
      s->wait(10s);
    }
  }
  // The primary's port as the sentinels name it now.
  std::string named_primary() const {
    return redis_cmd(ports.front(), {"SENTINEL", "get-master-addr-by-name", "mymaster"});
  }
  std::vector<std::string> proxy_args(const SampleBackend& backend) const {
    std::vector<std::string> args = ha_proxy_args(backend, "sentinel", ports);
    args.insert(args.end(), {"--redis-sentinel-master", "mymaster"});
    return args;
  }
  std::unique_ptr<RedisServer> primary;
  std::unique_ptr<RedisServer> replica;
  std::vector<std::unique_ptr<Process>> sentinels;
  std::vector<std::uint16_t> ports;
};

// kill -9 of the primary with 50 live sessions on two proxy replicas: the sentinels promote
// the replica; every session keeps routing through the failover (cached sessions need no
// Redis), new records reach the new primary soon after the promotion, and a third proxy
// replica started afterwards routes all 50.
TEST(RedisSentinel, APrimaryKilledMidTrafficLosesNoSession) {
  SentinelSetup redis;
  SampleBackend backend(3);
  Proxy a(redis.proxy_args(backend), "sentinel-a");
  Proxy b(redis.proxy_args(backend), "sentinel-b");
  EXPECT_NE(request(a.admin, "GET", "/readyz")
                .body.find("redis primary (sentinel): 127.0.0.1:" + std::to_string(redis.primary->port)),
            std::string::npos)
      << request(a.admin, "GET", "/readyz").body;
  std::vector<Live> sessions;
  for (int i = 0; i < 50; ++i) {
    const Proxy& via = i % 2 == 0 ? a : b;
    Live s{initialize(via.port), "", 0, &via};
    ASSERT_FALSE(s.sid.empty());
    const auto [pod, counter] = whoami(via.port, s.sid);
    ASSERT_EQ(counter, 1);
    s.pod = pod;
    s.calls = 1;
    sessions.push_back(std::move(s));
  }
  // Every record has reached the replica before the primary dies.
  ASSERT_TRUE(eventually([&] {
    for (const Live& s : sessions) {
      if (redis_cmd(redis.replica->port, {"EXISTS", "mcp-session-proxy:session:" + s.sid}) != "1") return false;
    }
    return true;
  }));

  redis.primary->kill();
  const auto killed = std::chrono::steady_clock::now();
  const std::string promoted_name = "[127.0.0.1 " + std::to_string(redis.replica->port) + "]";
  std::map<std::string, int> errors;  // by status
  std::optional<std::chrono::steady_clock::duration> promoted;
  std::optional<std::chrono::steady_clock::duration> new_record;
  // Traffic on every session through the failover, and a new session each round, until a
  // new session's record is on the new primary (bounded: 30 s).
  for (int round = 0; !new_record && std::chrono::steady_clock::now() - killed < 30s; ++round) {
    for (Live& s : sessions) {
      const auto [pod, counter] = whoami(s.via->port, s.sid);
      if (pod == s.pod && counter == s.calls + 1) {
        s.calls = counter;
      } else {
        ++errors[std::to_string(counter)];
      }
    }
    if (!promoted && redis.named_primary() == promoted_name) promoted = std::chrono::steady_clock::now() - killed;
    const std::string fresh = initialize(round % 2 == 0 ? a.port : b.port);
    if (fresh.empty()) ++errors["initialize"];
    if (promoted && !fresh.empty() &&
        eventually(
            [&] {
              return redis_cmd(redis.replica->port, {"EXISTS", "mcp-session-proxy:session:" + fresh}) == "1";
            },
            2s)) {
      new_record = std::chrono::steady_clock::now() - killed;
    }
  }
  ASSERT_TRUE(promoted.has_value()) << "the sentinels never promoted the replica";
  ASSERT_TRUE(new_record.has_value()) << "no new record reached the new primary";
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  std::cout << "failover: replica promoted " << ms(*promoted)
            << " ms after the kill; a new session's record on the new "
            << "primary " << ms(*new_record) << " ms after the kill (" << ms(*new_record - *promoted)
            << " ms after the promotion)\n";
  EXPECT_TRUE(errors.empty()) << "client errors during the failover: " << [&] {
    std::string out;
    for (const auto& [kind, n] : errors) out += kind + " x" + std::to_string(n) + " ";
    return out;
  }();
  EXPECT_LE(ms(*new_record - *promoted), 2000 + 500) << "new records reach the new primary within 2 s of the promotion";
  for (const Proxy* p : {&a, &b}) {
    EXPECT_TRUE(eventually([&] { return metric(p->metrics(), "mcp_proxy_redis_failovers_total").value_or(0) == 1; }))
        << p->metrics();
    EXPECT_TRUE(eventually([&] {
      return metric(p->metrics(),
                    "mcp_proxy_redis_primary{address=\"127.0.0.1:" + std::to_string(redis.replica->port) + "\"}")
                 .value_or(0) == 1;
    }));
  }
  // A replica started after the failover finds every session in the new primary.
  Proxy c(redis.proxy_args(backend), "sentinel-c");
  int routed = 0;
  for (Live& s : sessions) routed += whoami(c.port, s.sid) == std::make_pair(s.pod, s.calls + 1) ? 1 : 0;
  EXPECT_EQ(routed, 50);
}

// Six consecutive free ports whose cluster bus ports (+10000) are free too, below the
// ephemeral range (so no port picked for another server lands on a bus port).
std::uint16_t cluster_ports() {
  const auto bindable = [](int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  };
  std::mt19937 rng(std::random_device{}());
  for (;;) {
    const int base = 20000 + static_cast<int>(rng() % 9000);
    bool free = true;
    for (int i = 0; i < 6 && free; ++i) free = bindable(base + i) && bindable(base + i + 10000);
    if (free) return static_cast<std::uint16_t>(base);
  }
}

// Six cluster nodes on free loopback ports, three primaries with a replica each
// (`redis-cli --cluster create`), node timeout 1 s.
struct ClusterSetup {
  ClusterSetup() {
    std::vector<std::string> create{"redis-cli", "--cluster", "create"};
    const std::uint16_t base = cluster_ports();
    for (int i = 0; i < 6; ++i) {
      const auto port = static_cast<std::uint16_t>(base + i);
      std::filesystem::remove(std::string(MCPPROXY_TEST_TMP_DIR) + "/nodes-" + std::to_string(port) + ".conf");
      nodes.push_back(std::make_unique<RedisServer>(
          std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file",
                                   std::string(MCPPROXY_TEST_TMP_DIR) + "/nodes-" + std::to_string(port) + ".conf",
                                   "--cluster-node-timeout", "1000",
                                   // Reads go on while a failed primary's replica is promoted
                                   // (README: Redis Cluster).
                                   "--cluster-allow-reads-when-down", "yes"},
          port));
      create.push_back("127.0.0.1:" + std::to_string(port));
    }
    create.insert(create.end(), {"--cluster-replicas", "1", "--cluster-yes"});
    Process made(create, std::string(MCPPROXY_TEST_TMP_DIR) + "/cluster-create.log");
    while (made.read_line(1s)) {
    }
    if (made.wait(60s) != 0) throw std::runtime_error("redis-cli --cluster create failed");
    for (const auto& n : nodes) {
      if (!eventually(
              [&] {
                return redis_cmd(n->port, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
              },
              30s)) {
        throw std::runtime_error("the cluster did not settle");
      }
    }
  }
  std::vector<std::uint16_t> primaries() const {
    std::vector<std::uint16_t> out;
    for (const auto& n : nodes) {
      if (redis_cmd(n->port, {"ROLE"}).rfind("[master", 0) == 0) out.push_back(n->port);
    }
    return out;
  }
  std::string id(std::uint16_t port) const { return redis_cmd(port, {"CLUSTER", "MYID"}); }
  std::vector<std::string> proxy_args(const SampleBackend& backend) const {
    return ha_proxy_args(backend, "cluster", {nodes[0]->port, nodes[1]->port});
  }
  std::vector<std::unique_ptr<RedisServer>> nodes;
};

// 1000 sessions over a three-primary cluster; a slot range migrated during traffic and a
// primary killed (its replica promoted): no client error, and a proxy replica started
// afterwards routes every session to its pod.
TEST(RedisClusterStore, ReshardingAndAFailoverDuringTrafficLoseNoSession) {
  ClusterSetup cluster;
  SampleBackend backend(3);
  Proxy a(cluster.proxy_args(backend), "cluster-a");
  Proxy b(cluster.proxy_args(backend), "cluster-b");
  EXPECT_NE(request(a.admin, "GET", "/readyz").body.find("redis cluster: 3 of 3 primaries reachable"),
            std::string::npos)
      << request(a.admin, "GET", "/readyz").body;
  std::vector<Live> sessions;
  std::map<std::string, int> errors;  // by phase and kind
  std::string phase = "before";
  const auto create = [&](int i) {
    const std::uint16_t via = i % 2 == 0 ? a.port : b.port;
    Live s{initialize(via), "", 0};
    if (s.sid.empty()) {
      ++errors[phase + ": initialize"];
      return;
    }
    sessions.push_back(std::move(s));
  };
  // Each session's calls alternate between the replicas: half of them miss a cache and
  // read Redis while the cluster changes.
  const auto call = [&](Live& s, int i) {
    const auto [pod, counter] = whoami(i % 2 == 0 ? b.port : a.port, s.sid);
    if (s.calls == 0 && counter == 1) s.pod = pod;
    if (pod == s.pod && counter == s.calls + 1) {
      s.calls = counter;
    } else {
      ++errors[phase + ": call " + std::to_string(counter)];
    }
  };
#ifdef MCPPROXY_SANITIZED
  const int initial = 300;  // the sanitizer builds are several times slower
#else
  const int initial = 1000;
#endif
  for (int i = 0; i < initial; ++i) create(i);
  for (std::size_t i = 0; i < sessions.size(); ++i) call(sessions[i], static_cast<int>(i));
  ASSERT_EQ(sessions.size(), static_cast<std::size_t>(initial));
  std::vector<std::uint16_t> primaries = cluster.primaries();
  ASSERT_EQ(primaries.size(), 3U);
  for (const std::uint16_t p : primaries) {
    EXPECT_GT(std::stol(redis_cmd(p, {"DBSIZE"})), initial / 5) << "every primary holds its share of the records";
  }

  // A slot range migrated while sessions are created and read.
  Process reshard(
      {"redis-cli", "--cluster", "reshard", "127.0.0.1:" + std::to_string(primaries[0]), "--cluster-from",
       cluster.id(primaries[0]), "--cluster-to", cluster.id(primaries[1]), "--cluster-slots", "1500", "--cluster-yes"},
      std::string(MCPPROXY_TEST_TMP_DIR) + "/cluster-reshard.log");
  int round = 0;
  phase = "resharding";
  for (; reshard.running() && round < 2000; ++round) {
    while (reshard.read_line(std::chrono::milliseconds(0))) {
    }
    create(round);
    call(sessions[static_cast<std::size_t>(round) % sessions.size()], round);
  }
  while (reshard.read_line(1s)) {
  }
  ASSERT_EQ(reshard.wait(60s), 0) << "redis-cli --cluster reshard failed";

  // A primary killed: the cluster promotes its replica after the node timeout.
  const std::uint16_t victim = primaries[2];
  for (const auto& n : cluster.nodes) {
    if (n->port == victim) n->kill();
  }
  const auto killed = std::chrono::steady_clock::now();
  // Calls go to the sessions made before the kill (their records reached the replicas); a
  // session made during the failover is answered, and its record waits in the queue.
  phase = "failover";
  for (; std::chrono::steady_clock::now() - killed < 30s; ++round) {
    create(round);
    call(sessions[static_cast<std::size_t>(round) % static_cast<std::size_t>(initial)], round);
    if (cluster.primaries().size() == 3 &&
        metric(a.metrics(), R"(mcp_proxy_redis_cluster_primaries{state="reachable"})").value_or(0) == 3 &&
        metric(b.metrics(), R"(mcp_proxy_redis_cluster_primaries{state="reachable"})").value_or(0) == 3) {
      break;
    }
  }
  EXPECT_EQ(cluster.primaries().size(), 3U) << "the replica was promoted";
  EXPECT_TRUE(errors.empty()) << [&] {
    std::string out;
    for (const auto& [kind, n] : errors) out += kind + " x" + std::to_string(n) + " ";
    return out;
  }();
  // How many commands the resharding redirected depends on timing (a map re-read may
  // come first); the redirect parsing and the slots are unit-tested (redis_cluster_test).
  const double redirects = metric_sum(a.metrics(), "mcp_proxy_redis_redirects_total") +
                           metric_sum(b.metrics(), "mcp_proxy_redis_redirects_total");
  // Records queued while a primary was down reach its successor.
  for (const Proxy* p : {&a, &b}) {
    EXPECT_TRUE(eventually([&] { return metric(p->metrics(), "mcp_proxy_store_queue_depth").value_or(-1) == 0; }));
  }
  Proxy c(cluster.proxy_args(backend), "cluster-c");
  int routed = 0;
  for (Live& s : sessions) {
    const auto [pod, counter] = whoami(c.port, s.sid);
    routed += (s.calls == 0 || pod == s.pod) && counter == s.calls + 1 ? 1 : 0;
  }
  std::cout << "cluster: " << sessions.size() << " sessions, " << round
            << " rounds of traffic during the resharding and "
            << "the failover, " << redirects << " redirects followed; a fresh replica routed " << routed << "\n";
  EXPECT_EQ(routed, static_cast<int>(sessions.size()));
}

}  // namespace
