// Pod connections made ahead of need: the real proxy binary against a pod the test plays
// on a raw socket (so it sees each connection as it is made, before any request), and
// against the sample backend (name lookups of pods in use).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <future>
#include <string>

#include "harness.hpp"

using namespace harness;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

// A listening socket on `host` and a free port; the test accepts and answers by hand.
struct Listener {
  explicit Listener(const std::string& host) : fd(listen_loopback(16, port, host)) {}
  ~Listener() { ::close(fd); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  // The next connection, or -1 when none comes within `timeout`.
  int accept_within(std::chrono::milliseconds timeout) const {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return -1;
    return ::accept(fd, nullptr, nullptr);
  }
  std::uint16_t port = 0;
  int fd = -1;
};

double series(const std::string& page, const std::string& name) { return metric(page, name).value_or(-1); }

}  // namespace

// The proxy connects to each pod before any request (backend.warm_connections, default 1);
// the first request goes out on that connection, so no request waits on a connect. A pod
// that closes the spare gets another; a pod that refuses is not tried again before
// backend.eject_cooldown.
TEST(WarmConnections, ARequestFindsAConnectionOpenedBeforeIt) {
  Listener pod("127.0.1.0");  // ordinal 0; ordinal 1 (127.0.1.1, the same port) refuses connections
  ASSERT_NE(pod.port, 0);
  Proxy proxy({"--replicas", "2", "--threads", "1", "--drain-ordinal", "1", "--upstream-idle-timeout", "1s",
               "--eject-cooldown", "1h", "--backend-url-template",
               "http://127.0.1.{ordinal}:" + std::to_string(pod.port)});
  const int warm = pod.accept_within(10s);
  ASSERT_GE(warm, 0) << "no connection opened ahead of the first request";
  // Counted once the proxy has it in its pool.
  ASSERT_TRUE(eventually(
      [&] { return series(proxy.metrics(), R"(mcp_proxy_upstream_connects_total{reason="warm",result="ok"})") == 1; }));
  std::string m = proxy.metrics();
  EXPECT_EQ(series(m, R"(mcp_proxy_requests_total{method="POST",code="200"})"), -1);  // none yet

  // The initialize arrives on the warm connection (ordinal 1 is drained: no new sessions).
  auto answer = std::async(std::launch::async, [&] { return request(proxy.port, "POST", "/mcp", kInit); });
  const std::string req = read_http_request(warm, 10s);
  ASSERT_NE(req.find("\"initialize\""), std::string::npos) << req;
  const std::string body = R"({"jsonrpc":"2.0","id":1,"result":{}})";
  const std::string res =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: warm-1\r\n"
      "Content-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(::send(warm, res.data(), res.size(), MSG_NOSIGNAL), static_cast<ssize_t>(res.size()));
  const Response r = answer.get();
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("mcp-session-id"), "warm-1");
  m = proxy.metrics();
  // Pod 0's request went out on the warm connection, with no lookup of its own.
  EXPECT_EQ(series(m, R"(mcp_proxy_dns_lookups_total{reason="request"})"), 0);
  EXPECT_EQ(series(m, R"(mcp_proxy_upstream_connects_total{reason="request",result="ok"})"), 0);

  // The pod closes the pooled connection: the proxy sees it (the prune, every 500 ms
  // with a 1 s idle timeout) and opens another ahead of the next request.
  ::close(warm);
  const int again = pod.accept_within(10s);
  ASSERT_GE(again, 0) << "the closed spare was not replaced";
  m = proxy.metrics();
  // Pod 0 twice; ordinal 1 once (its cooldown is an hour: one try per 100 ms tick would
  // have made several by now).
  ASSERT_TRUE(eventually(
      [&] { return series(proxy.metrics(), R"(mcp_proxy_upstream_connects_total{reason="warm",result="ok"})") == 2; }));
  m = proxy.metrics();
  EXPECT_EQ(series(m, R"(mcp_proxy_upstream_connects_total{reason="warm",result="failed"})"), 1) << m;
  ::close(again);
}

// With warm connections off, the first request of a pod waits for its connect: the key turns
// the behaviour off. An IP literal is never looked up.
TEST(WarmConnections, OffMeansTheRequestConnects) {
  SampleBackend backend(1);
  Proxy proxy(
      {"--replicas", "1", "--threads", "1", "--upstream-warm", "0", "--backend-url-template", backend.url_template()});
  const Response r = request(proxy.port, "POST", "/mcp", kInit);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string m = proxy.metrics();
  EXPECT_EQ(series(m, R"(mcp_proxy_upstream_connects_total{reason="warm",result="ok"})"), 0);
  EXPECT_EQ(series(m, R"(mcp_proxy_upstream_connects_total{reason="request",result="ok"})"), 1);
  EXPECT_EQ(series(m, R"(mcp_proxy_dns_lookups_total{reason="request"})"), 0);
  EXPECT_EQ(series(m, R"(mcp_proxy_dns_lookups_total{reason="background"})"), 0);
}

// A pod's name in use is looked up again before its cache entry runs out: tests/dns (an IP
// literal, as here, is never looked up).

// A pod restarts while the proxy holds several pooled connections to it (two warm spares
// here): the request after the restart finds the one it took closed, and goes again on a
// new connection, not on the next pooled one (closed by the same restart). The new process
// does not know the session, which is re-initialized there (sessions.on_lost) and answered.
TEST(WarmConnections, APodRestartClosesEveryPooledConnectionAndTheRetryConnects) {
  auto backend = std::make_unique<SampleBackend>(1);
  const std::uint16_t pod_port = backend->port;
  Proxy proxy(
      {"--replicas", "1", "--threads", "1", "--upstream-warm", "2", "--backend-url-template", backend->url_template()});
  Response r = request(proxy.port, "POST", "/mcp", kInit);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string sid = r.header("mcp-session-id");
  const std::string whoami =
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}})";
  r = request(proxy.port, "POST", "/mcp", whoami, {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200) << r.body;
  // Two connections in the pool (the requests' own, if they came before the spares, count).
  ASSERT_TRUE(eventually([&] {
    const std::string m = proxy.metrics();
    return series(m, R"(mcp_proxy_upstream_connects_total{reason="warm",result="ok"})") +
               series(m, R"(mcp_proxy_upstream_connects_total{reason="request",result="ok"})") >=
           2;
  }));
  backend.reset();  // the pod process ends: every connection to it is closed
  backend = std::make_unique<SampleBackend>(1, std::vector<std::string>{}, pod_port);
  r = request(proxy.port, "POST", "/mcp", whoami, {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 200) << r.body;
  const std::string m = proxy.metrics();
  EXPECT_EQ(series(m, "mcp_proxy_sessions_recovered_total"), 1) << m;
  EXPECT_EQ(metric_sum(m, "mcp_proxy_upstream_errors_total"), 0) << m << proxy.log();
}
