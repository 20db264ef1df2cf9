// Redis that answers, but not as the config says it should: a peer that breaks the protocol
// right after a good handshake, a plain Redis given to cluster or Sentinel mode, a sentinel
// asked for a master name it does not know, no sentinel at all. Each must be retried with a
// growing wait, logged once per change (not per attempt), and named in /readyz.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.hpp"

using namespace harness;
using namespace std::chrono_literals;

namespace {

// A proxy started without waiting for /readyz 200 (a misconfigured one never gets there):
// up once its admin listener answers at all.
struct Launched {
  explicit Launched(std::vector<std::string> extra, const std::string& name) {
    for (int attempt = 1;; ++attempt) {
      port = free_port();
      admin = free_port();
      log_path = std::string(MCPPROXY_TEST_TMP_DIR) + "/" + name + "-" + std::to_string(port) + ".log";
      std::vector<std::string> argv{proxy_binary(), "--listen", "127.0.0.1:" + std::to_string(port), "--admin-listen",
                                    "127.0.0.1:" + std::to_string(admin)};
      argv.insert(argv.end(), extra.begin(), extra.end());
      process = std::make_unique<Process>(argv, log_path);
      const bool answers =
          eventually([&] { return !process->running() || request(admin, "GET", "/readyz").status != 0; });
      if (answers && process->running()) return;
      if (attempt < 5 && log().find("Address already in use") != std::string::npos) continue;
      throw std::runtime_error("proxy did not start: " + log());
    }
  }
  std::string log() const {
    std::ifstream in(log_path);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  Response ready() const { return request(admin, "GET", "/readyz"); }
  std::uint16_t port = 0;
  std::uint16_t admin = 0;
  std::string log_path;
  std::unique_ptr<Process> process;
};

std::vector<std::string> store_args(const std::string& mode, std::uint16_t node, const std::string& master = "") {
  std::vector<std::string> args{"--replicas",
                                "1",
                                "--backend-url-template",
                                "http://127.0.0.1:1{ordinal}",  // no request reaches a pod here
                                "--session-store",
                                "redis",
                                "--threads",
                                "1",
                                "--redis-mode",
                                mode};
  if (mode == "standalone") {
    args.insert(args.end(), {"--redis-url", "redis://127.0.0.1:" + std::to_string(node)});
  } else {
    args.insert(args.end(), {"--redis-node", "127.0.0.1:" + std::to_string(node)});
  }
  if (!master.empty()) args.insert(args.end(), {"--redis-sentinel-master", master});
  return args;
}

std::size_t count_lines(const std::string& text, const std::string& word) {
  std::size_t n = 0;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) n += line.find(word) != std::string::npos ? 1 : 0;
  return n;
}

// How often `cmdstat_<name>` ran on the Redis at `port`.
long calls_of(std::uint16_t port, const std::string& name) {
  const std::string stats = redis_cmd(port, {"INFO", "commandstats"});
  const auto at = stats.find("cmdstat_" + name + ":calls=");
  if (at == std::string::npos) return 0;
  return std::stol(stats.substr(at + name.size() + 15));
}

// Polls `ready` for `window`: /readyz must say 503 with `reason` throughout (the window is
// the measurement of a rate, not a wait for something to happen).
void stays_not_ready(const Launched& p, const std::string& reason, std::chrono::milliseconds window) {
  const auto end = std::chrono::steady_clock::now() + window;
  for (int polls = 0; std::chrono::steady_clock::now() < end && polls < 1000; ++polls) {
    const Response r = p.ready();
    ASSERT_EQ(r.status, 503) << r.body;
    ASSERT_NE(r.body.find(reason), std::string::npos) << r.body;
    std::this_thread::sleep_for(50ms);  // the poll's pace, not a synchronisation
  }
}

// Plays a Redis that answers the handshake's PING, then (20 ms later) sends what is not
// RESP, on every connection, for `window` from the first one; returns when each connection came.
std::vector<std::chrono::steady_clock::time_point> garbling_peer(int listen_fd, std::chrono::milliseconds window) {
  std::vector<std::chrono::steady_clock::time_point> at;
  auto end = std::chrono::steady_clock::now() + 10s;  // the first connection comes by then
  while (std::chrono::steady_clock::now() < end && at.size() < 1000) {
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const int c = ::accept(listen_fd, nullptr, nullptr);
    if (c < 0) continue;
    at.push_back(std::chrono::steady_clock::now());
    if (at.size() == 1) end = at.front() + window;
    char buf[512];
    pollfd in{c, POLLIN, 0};
    if (::poll(&in, 1, 1000) > 0 && ::read(c, buf, sizeof buf) > 0) {
      const char pong[] = "+PONG\r\n";
      (void)!::write(c, pong, sizeof pong - 1);
      // The garbage comes apart from the PONG: the handshake has succeeded by then.
      if (::poll(&in, 1, 20) > 0) (void)!::read(c, buf, sizeof buf);
      const char garbage[] = "@this is not RESP\r\n";
      (void)!::write(c, garbage, sizeof garbage - 1);
    }
    ::close(c);
  }
  return at;
}

TEST(RedisReconnect, AProtocolErrorRightAfterAGoodHandshakeIsRetriedWithAGrowingWaitAndLoggedOnce) {
  std::uint16_t redis_port = 0;
  const int fd = listen_loopback(64, redis_port);
  ASSERT_GE(fd, 0);
  std::vector<std::chrono::steady_clock::time_point> accepted;
  std::thread peer([&] { accepted = garbling_peer(fd, 3s); });
  // Two connections: the worker's and the control one.
  Launched p(store_args("standalone", redis_port), "redis-protocol-error");
  peer.join();
  const std::string log = p.log();
  ::close(fd);
  ASSERT_FALSE(accepted.empty());
  const std::size_t lines = count_lines(log, "redis");
  std::cout << "protocol error after the handshake: " << accepted.size() << " connections in 3 s, " << lines
            << " log lines about redis\n";
  // 100 ms doubling (jitter down to half): at most 7 attempts per connection in 3 s, where a
  // wait reset by each good handshake made about 30.
  EXPECT_LE(accepted.size(), 14U);
  EXPECT_GE(accepted.size(), 4U) << "still retried";
  EXPECT_LE(lines, 8U) << "logged per change, not per attempt:\n" << log;
  EXPECT_NE(log.find("protocol error"), std::string::npos) << log;
  EXPECT_GE(
      metric(request(p.admin, "GET", "/metrics").body, R"(mcp_proxy_redis_reconnects_total{reason="protocol_error"})")
          .value_or(0),
      2);
}

TEST(RedisMisconfigured, ClusterModeGivenAPlainRedisIsNamedAndNotReadyAndRetriedSlowly) {
  RedisServer plain;
  const auto started = std::chrono::steady_clock::now();
  Launched p(store_args("cluster", plain.port), "redis-not-a-cluster");
  const std::string reason = "127.0.0.1:" + std::to_string(plain.port) + " is not a cluster node";
  ASSERT_TRUE(eventually(
      [&] {
        const Response r = p.ready();
        return r.status == 503 && r.body.find(reason) != std::string::npos;
      },
      5s))
      << p.ready().body;
  std::cout << "cluster mode against a plain Redis: /readyz 503 naming it after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count()
            << " ms\n";
  EXPECT_TRUE(eventually([&] { return p.log().find(reason) != std::string::npos; })) << p.log();
  const long before = calls_of(plain.port, "cluster|slots");
  stays_not_ready(p, reason, 3s);
  const long slots_reads = calls_of(plain.port, "cluster|slots") - before;
  std::cout << "cluster mode against a plain Redis: " << slots_reads << " CLUSTER SLOTS in 3 s\n";
  // Two connections, each waiting 50-100 ms, then twice as long each time: at most 7 reads
  // each in 3 s (it was ~150 a second).
  EXPECT_LE(slots_reads, 16);
  EXPECT_EQ(count_lines(p.log(), "is not a cluster node"), 2U) << "one line per connection:\n" << p.log();
  const std::string metrics = request(p.admin, "GET", "/metrics").body;
  EXPECT_EQ(metric(metrics, "mcp_proxy_redis_misconfigured").value_or(0), 1) << metrics;
  EXPECT_GE(metric(metrics, R"(mcp_proxy_redis_reconnects_total{reason="slot_map"})").value_or(0), 2) << metrics;
}

TEST(RedisMisconfigured, SentinelModeGivenAPlainRedisIsNamedAndNotReady) {
  RedisServer plain;
  Launched p(store_args("sentinel", plain.port, "mymaster"), "redis-not-a-sentinel");
  const std::string reason = "127.0.0.1:" + std::to_string(plain.port) + " is not a sentinel";
  ASSERT_TRUE(eventually(
      [&] {
        const Response r = p.ready();
        return r.status == 503 && r.body.find(reason) != std::string::npos;
      },
      5s))
      << p.ready().body;
  EXPECT_TRUE(eventually([&] { return p.log().find(reason) != std::string::npos; })) << p.log();
  stays_not_ready(p, reason, 1s);
  EXPECT_LE(calls_of(plain.port, "sentinel"), 20) << "asked with a growing wait";
}

// One sentinel watching `primary` as `mymaster`.
struct OneSentinel {
  explicit OneSentinel(std::uint16_t primary) {
    port = free_port();
    const std::string conf = std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".conf";
    std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\ndaemonize no\n"
                        << "sentinel monitor mymaster 127.0.0.1 " << primary << " 1\n";
    process =
        std::make_unique<Process>(std::vector<std::string>{"redis-server", conf, "--sentinel"},
                                  std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".log");
    if (!eventually([&] { return redis_cmd(port, {"SENTINEL", "get-master-addr-by-name", "mymaster"}).size() > 2; })) {
      throw std::runtime_error("the sentinel did not start");
    }
  }
  std::uint16_t port = 0;
  std::unique_ptr<Process> process;
};

TEST(RedisMisconfigured, ASentinelAskedForAnUnknownMasterNameIsNamedAndNotReady) {
  RedisServer primary;
  OneSentinel sentinel(primary.port);
  Launched p(store_args("sentinel", sentinel.port, "nosuchmaster"), "redis-unknown-master");
  const std::string reason = "sentinel 127.0.0.1:" + std::to_string(sentinel.port) + " knows no master 'nosuchmaster'";
  ASSERT_TRUE(eventually(
      [&] {
        const Response r = p.ready();
        return r.status == 503 && r.body.find(reason) != std::string::npos;
      },
      5s))
      << p.ready().body;
  EXPECT_TRUE(eventually([&] { return p.log().find(reason) != std::string::npos; })) << p.log();
  // The right name, the same sentinel: ready.
  Proxy right(store_args("sentinel", sentinel.port, "mymaster"), "redis-known-master");
  EXPECT_TRUE(eventually([&] {
    return request(right.admin, "GET", "/readyz").body.find("redis: up") != std::string::npos;
  })) << request(right.admin, "GET", "/readyz").body;
}

TEST(RedisMisconfigured, NoSentinelReachableAtStartIsNamedAndNotReady) {
  const std::uint16_t nobody = free_port();
  Launched p(store_args("sentinel", nobody, "mymaster"), "redis-no-sentinel");
  const std::string reason = "no sentinel reachable";
  ASSERT_TRUE(eventually(
      [&] {
        const Response r = p.ready();
        return r.status == 503 && r.body.find(reason) != std::string::npos &&
               r.body.find("127.0.0.1:" + std::to_string(nobody)) != std::string::npos;
      },
      5s))
      << p.ready().body;
  EXPECT_TRUE(eventually([&] { return p.log().find(reason) != std::string::npos; })) << p.log();
}

}  // namespace
