// The Redis client against a real redis-server on 127.0.0.1: pipelining, errors, reconnects,
// deadlines, AUTH, SELECT, TLS.
#include "redis_support.hpp"

using namespace redis_test;
using namespace std::chrono_literals;
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

}  // namespace
