// When pods fail: lost sessions recovered, slow or stalled clients cut at their deadlines,
// pods that answer what a well-behaved MCP server never sends.
#include "proxy_support.hpp"

using namespace proxy_test;
using namespace std::chrono_literals;

namespace {

// Ends a session on its pod behind the proxy's back, as a pod restart would.
void forget_on_pod(const SampleBackend& backend, const std::string& pod_name, const std::string& sid) {
  const std::string ip = "127.0.1." + pod_name.substr(pod_name.find('-') + 1);
  const Response r = request(backend.port, "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}, ip);
  ASSERT_EQ(r.status, 200) << "pod " << ip;
}

TEST_F(ProxyTest, LostSessionIsReinitializedOnAnotherPod) {
  start();
  const std::string sid = initialize(port());
  Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
  const std::string first_pod = message(r)["result"]["structuredContent"]["pod"];
  forget_on_pod(*backend_, first_pod, sid);
  // The client keeps its id; the proxy replays initialize elsewhere and then the call.
  r = request(port(), "POST", "/mcp", call(3, "whoami"), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200) << r.body;
  const json sc = message(r)["result"]["structuredContent"];
  EXPECT_NE(sc["pod"], first_pod);
  EXPECT_EQ(sc["counter"], 1) << "a new server-side session";
  r = request(port(), "POST", "/mcp", call(4, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(message(r)["result"]["structuredContent"]["counter"], 2) << "and it stays pinned there";
  EXPECT_EQ(message(r)["result"]["structuredContent"]["pod"], sc["pod"]);
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric_sum(m, "mcp_proxy_sessions_lost_total"), 1);
  EXPECT_EQ(metric(m, R"(mcp_proxy_sessions_lost_total{cause="pod_answered_404"})").value_or(0), 1);
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_recovered_total").value_or(0), 1);
  // DELETE reaches the new pod under the pod's own id, and ends the session for the client.
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}).status, 200);
  EXPECT_EQ(request(port(), "POST", "/mcp", call(5, "whoami"), {{"Mcp-Session-Id", sid}}).status, 404);
}

TEST_F(ProxyTest, LostSessionWithNotFoundPolicyIs404) {
  start({"--on-lost-session", "not_found"});
  const std::string sid = initialize(port());
  Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
  forget_on_pod(*backend_, message(r)["result"]["structuredContent"]["pod"], sid);
  r = request(port(), "POST", "/mcp", call(3, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  // The record is gone too: the proxy answers the next request itself.
  r = request(port(), "POST", "/mcp", call(4, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["id"], 4);
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_sessions_recovered_total").value_or(-1), 0);
}

TEST_F(ProxyTest, APodThatKeepsRefusingIsGoneOnlyAfterTheGrace) {
  start({"--unreachable-grace", "600ms"}, {}, 2, 2);
  const std::string sid = initialize(port());
  Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200);
  // Stop the whole backend: both pods refuse connections (a restart, so far).
  backend_->process->signal(SIGKILL);
  backend_->process->wait(10s);
  const auto refused_from = std::chrono::steady_clock::now();
  r = request(port(), "POST", "/mcp", call(3, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 503) << "a pod refusing for less than the grace may be restarting: " << r.body;
  EXPECT_EQ(r.header("retry-after"), "1");
  // The pod that refused is out of placement, and counted so.
  const std::string pod =
      std::to_string(json::parse(request(proxy_->admin, "GET", "/pods").body)[0]["healthy"].get<bool>() ? 1 : 0);
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_pod_ejected{pod=\"" + pod + "\"}").value_or(-1), 1);
  EXPECT_GE(metric(proxy_->metrics(), "mcp_proxy_pod_ejections_total{pod=\"" + pod + "\"}").value_or(0), 1);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32603);
  EXPECT_EQ(metric_sum(proxy_->metrics(), "mcp_proxy_sessions_lost_total"), 0);
  // Past the grace the pod is gone: the session is lost, and with no pod left to take it
  // the client gets the spec's 404 (never a 5xx then), never before the grace.
  ASSERT_TRUE(eventually([&] {
    r = request(port(), "POST", "/mcp", call(4, "whoami"), {{"Mcp-Session-Id", sid}});
    return r.status != 503;
  }));
  EXPECT_GE(std::chrono::steady_clock::now() - refused_from, 600ms);
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_sessions_lost_total{cause="pod_unreachable"})").value_or(0), 1);
}

TEST_F(ProxyTest, OutOfDescriptorsIsA503AndTheSessionGoesOnAfterwards) {
#ifdef MCPPROXY_SANITIZED
  // UBSan checks a pointer's readability through a pipe: with no descriptor left it reports
  // every virtual call as invalid. The Release build runs this test.
  GTEST_SKIP() << "the sanitizer runtime itself needs descriptors";
#endif
  // No idle pod connections are kept: every request opens one, which the limit forbids.
  start({"--upstream-max-idle", "0"}, {}, 2, 2);
  const std::string sid = initialize(port());
  Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200);
  // The client's connection is made (and served once: the proxy has accepted it) first;
  // then the process may open no new descriptor.
  const auto post = [&](int id) { return whoami_request(sid, id); };
  RawConnection c(port());
  ASSERT_TRUE(c.send(post(3)));
  ASSERT_TRUE(c.read_until("\"counter\": 2", 5s)) << c.received();
  const std::size_t first = c.received().size();
  const pid_t pid = proxy_->process->pid();
  rlimit lim{};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, nullptr, &lim), 0);
  // A new descriptor takes the lowest free number, which must be below the limit: with the
  // three standard ones open, a limit of 3 leaves none to open, whatever closes meanwhile.
  for (int fd = 0; fd < 3; ++fd)
    ASSERT_TRUE(std::filesystem::exists("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd)));
  const rlimit low{3, lim.rlim_max};
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &low, nullptr), 0);
  ASSERT_TRUE(c.send(post(4)));
  const bool answered = c.read_until("Retry-After", 5s);
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &lim, nullptr), 0);
  ASSERT_TRUE(answered) << c.received();
  const std::string second = c.received().substr(first);
  EXPECT_EQ(second.rfind("HTTP/1.1 503", 0), 0U) << second;
  EXPECT_NE(second.find("Retry-After: 1"), std::string::npos) << second;
  EXPECT_EQ(metric_sum(proxy_->metrics(), "mcp_proxy_sessions_lost_total"), 0);
  const std::string page = proxy_->metrics();
  double local = 0;
  for (const char* pod : {"0", "1"}) {
    local +=
        metric(page, std::string("mcp_proxy_upstream_errors_total{pod=\"") + pod + "\",reason=\"local\"}").value_or(0);
  }
  EXPECT_GE(local, 1) << "counted as the proxy's own trouble, not the pod's";
  // The same session, on its pod, with its state: the failed call never reached it.
  r = request(port(), "POST", "/mcp", call(5, "whoami"), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["result"]["structuredContent"]["counter"], 3);
}

}  // namespace

namespace {

TEST_F(ProxyTest, LegacyEndpointGetsTheMountPrefix) {
  start({"--legacy-endpoint-prefix", "/team-a"});
  Stream sse(port(), "GET", "/sse", "", {{"Accept", "text/event-stream"}});
  ASSERT_EQ(sse.status(), 200);
  ASSERT_TRUE(sse.read_until("sessionId=", 5s));
  ASSERT_TRUE(sse.read_until("\n\n", 5s));
  EXPECT_NE(sse.body().find("data: /team-a/messages?sessionId="), std::string::npos) << sse.body();
  // An ingress strips the prefix again: the POST reaches the proxy at the pod's own path.
  const auto at = sse.body().find("sessionId=") + 10;
  const std::string sid = sse.body().substr(at, sse.body().find_first_of("\r\n", at) - at);
  EXPECT_EQ(request(port(), "POST", "/messages?sessionId=" + sid, call(1, "whoami")).status, 202);
  EXPECT_TRUE(sse.read_until("\"counter\": 1", 5s)) << sse.body();
}

}  // namespace

namespace {

TEST_F(ProxyTest, ASlowBodyIsCutAtTheBodyTimeout) {
  start({"--body-timeout", "300ms"});
  RawConnection c(port());
  const auto started = std::chrono::steady_clock::now();
  // The head promises 100 bytes; 10 come.
  ASSERT_TRUE(c.send(head_for("", "Content-Length: 100\r\n") + kInit.substr(0, 10)));
  EXPECT_TRUE(c.read_to_close(10s)) << "closed at the body deadline";
  EXPECT_GE(std::chrono::steady_clock::now() - started, 300ms) << "never early";
  EXPECT_TRUE(c.received().empty()) << c.received();
  EXPECT_TRUE(eventually([&] {
    return metric(proxy_->metrics(), R"(mcp_proxy_requests_total{method="OTHER",code="408"})").value_or(0) == 1;
  }));
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit).status, 200) << "the proxy keeps serving";
}

TEST_F(ProxyTest, AClientThatStopsReadingIsCutAtTheWriteTimeout) {
  start({"--write-timeout", "300ms"});
  const std::string sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  RawConnection c(port());
  // 16 MB is more than the socket buffers between the proxy and a client that reads nothing.
  const std::string body = call(41, "big", {{"bytes", 16 << 20}});
  ASSERT_TRUE(c.send(head_for(sid, "Content-Length: " + std::to_string(body.size()) + "\r\n") + body));
  EXPECT_TRUE(eventually([&] {
    const std::string m = proxy_->metrics();
    return metric(m, "mcp_proxy_client_aborts_total").value_or(0) >= 1 &&
           metric(m, "mcp_proxy_downstream_connections").value_or(-1) == 0;
  })) << "the stalled client's connection is closed";
  EXPECT_EQ(request(port(), "POST", "/mcp", call(42, "whoami"), {{"Mcp-Session-Id", sid}}).status, 200);
}

TEST_F(ProxyTest, OversizedHeadIs431AndASlowHeadIsCut) {
  start({"--max-header-size", "2KiB", "--header-timeout", "300ms"});
  Response r = request(port(), "POST", "/mcp", kInit, {{"X-Padding", std::string(4096, 'p')}});
  EXPECT_EQ(r.status, 431);
  // A head that never completes: the connection is closed when the head deadline passes.
  // The harness always sends complete heads: this one is sent by hand.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const timeval bound{5, 0};  // a proxy that never closed would fail the test, not hang it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  const std::string partial = "POST /mcp HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  // recv returned 0: the proxy closed the connection at the head deadline, with no answer.
  EXPECT_TRUE(got.empty()) << got;
  // The close reaches the client before the worker has counted the request: wait for it.
  EXPECT_TRUE(eventually([&] {
    return metric(proxy_->metrics(), R"(mcp_proxy_requests_total{method="OTHER",code="408"})").value_or(0) == 1;
  }));
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit).status, 200) << "the proxy keeps serving";
}

TEST_F(ProxyTest, AHeadTrickledAFewBytesAtATimeIsReadWhole) {
  start();
  const std::string sid = initialize(port());
  // A 12 KiB head (under the 16 KiB bound) sent 5 bytes at a time, the end split too.
  const std::string body = call(7, "whoami");
  const std::string head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nMcp-Session-Id: " + sid +
                           "\r\nX-Padding: " + std::string(12 * 1024, 'p') +
                           "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                           "\r\n\r\n";
  RawConnection raw(port());
  for (std::size_t at = 0; at < head.size(); at += 5) ASSERT_TRUE(raw.send(head.substr(at, 5)));
  ASSERT_TRUE(raw.send(body));
  ASSERT_TRUE(raw.read_until("\"id\": 7", 5s)) << raw.received();
  EXPECT_EQ(raw.received().rfind("HTTP/1.1 200", 0), 0U) << raw.received().substr(0, 200);
  // A trickled head that is malformed is still refused once whole.
  RawConnection bad(port());
  const std::string malformed = "POST /mcp HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n";
  for (std::size_t at = 0; at < malformed.size(); at += 3) ASSERT_TRUE(bad.send(malformed.substr(at, 3)));
  ASSERT_TRUE(bad.read_until("\r\n\r\n", 5s));
  EXPECT_EQ(bad.received().rfind("HTTP/1.1 400", 0), 0U) << bad.received();
}

// A pod (on 127.0.1.0 and a free port unless told) that answers every request with the same
// bytes and closes: for the response shapes a well-behaved MCP server never sends. With no
// bytes it never answers (the connection stays open until the pod is destroyed). Each
// connection has a thread of its own (the proxy's warm spare waits beside the requests').
class RawPod {
 public:
  explicit RawPod(std::string response, const std::string& host = "127.0.1.0", std::uint16_t at_port = 0)
      : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(at_port);
    ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(fd_, 16) != 0) return;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // the listener was shut down
        const std::lock_guard<std::mutex> lock(mutex_);
        connections_.push_back(c);
        servers_.emplace_back([this, c] { serve(c); });
      }
    });
  }
  ~RawPod() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (thread_.joinable()) thread_.join();
    // Closed only here, after every thread is done with them: no descriptor is reused
    // under a thread still reading.
    for (const int c : connections_) ::shutdown(c, SHUT_RDWR);
    for (std::thread& t : servers_) t.join();
    for (const int c : connections_) ::close(c);
  }
  RawPod(const RawPod&) = delete;
  RawPod& operator=(const RawPod&) = delete;
  std::uint16_t port = 0;

 private:
  void serve(int c) {
    read_http_request(c, std::chrono::seconds(5));  // the request, whatever it is
    if (response_.empty()) return;                  // silent: held open until the pod is destroyed
    for (std::size_t sent = 0; sent < response_.size();) {
      const ssize_t n = ::send(c, response_.data() + sent, std::min<std::size_t>(response_.size() - sent, 1000),
                               MSG_NOSIGNAL);  // in pieces, as a slow pod writes
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    ::shutdown(c, SHUT_RDWR);  // the answer ends with the connection
  }

  std::string response_;
  int fd_ = -1;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<int> connections_;
  std::vector<std::thread> servers_;
};

Response through_raw_pod(const std::string& pod_answer) {
  RawPod pod(pod_answer);
  Proxy proxy({"--replicas", "1", "--threads", "1", "--backend-url-template",
               "http://127.0.1.{ordinal}:" + std::to_string(pod.port)});
  return request(proxy.port, "POST", "/mcp", kInit);
}

// Recovery reads the new pod's answers with the strict parser of the proxied path: a pod that
// answers the replayed initialize with a malformed head cannot take the session, and the
// client gets the spec's 404 (never a 5xx, never a hang); the proxy keeps serving.
TEST_F(ProxyTest, RecoveryOntoAPodWithAMalformedAnswerIs404) {
  start({}, {}, 1, 2);  // pod 0 is the sample backend; ordinal 1 is the raw pod below
  RawPod bad("HTTP/1.1 200 OK\r\nBad Field Line\r\n\r\n", "127.0.1.1", backend_->port);
  ASSERT_NE(bad.port, 0);
  // Placement may pick the bad pod for an initialize (502); a few tries reach pod 0.
  std::string sid;
  for (int i = 0; i < 20 && sid.empty(); ++i) sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200) << r.body;
  forget_on_pod(*backend_, message(r)["result"]["structuredContent"]["pod"], sid);
  r = request(port(), "POST", "/mcp", call(3, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_recovered_total").value_or(0), 0);
  EXPECT_GE(metric_sum(m, "mcp_proxy_sessions_lost_total"), 1);
  // The log is written by its own thread: the line comes soon after the answer.
  EXPECT_TRUE(
      eventually([&] { return proxy_->log().find("session could not be re-established") != std::string::npos; }));
}

TEST(PodResponses, EveryFramingArrivesWhole) {
  const std::string big(300 * 1000, 'x');
  const std::string body = R"({"jsonrpc":"2.0","id":1,"result":{"text":")" + big + R"("}})";
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: raw-1\r\n";
  // Content-Length
  Response r = through_raw_pod(head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
  // The end of the body is the pod's close: relayed to an HTTP/1.1 client in chunks.
  r = through_raw_pod(head + "\r\n" + body);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
  EXPECT_EQ(r.header("transfer-encoding"), "chunked");
  // Chunked, with an extension and a trailer.
  r = through_raw_pod(head + "Transfer-Encoding: chunked\r\n\r\n" + "10;x=y\r\n" + body.substr(0, 16) + "\r\n" +
                      [&] {
                        char size[32];
                        std::snprintf(size, sizeof size, "%zx", body.size() - 16);
                        return std::string(size);
                      }() +
                      "\r\n" + body.substr(16) + "\r\n0\r\nX-Done: 1\r\n\r\n");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, body);
  // An interim 103 is not relayed; the final answer is.
  r = through_raw_pod("HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" + head + "Content-Length: 2\r\n\r\n{}");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "{}");
}

TEST(PodResponses, APodThatNeverAnswersIs504AtTheResponseTimeout) {
  RawPod pod("");
  Proxy proxy({"--replicas", "1", "--threads", "1", "--response-timeout", "300ms", "--backend-url-template",
               "http://127.0.1.{ordinal}:" + std::to_string(pod.port)});
  const auto started = std::chrono::steady_clock::now();
  const Response r = request(proxy.port, "POST", "/mcp", kInit);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32603);
  EXPECT_GE(took, 300ms) << "a deadline never fires early";
  EXPECT_LT(took, 5s);
  EXPECT_EQ(metric(proxy.metrics(), R"(mcp_proxy_upstream_errors_total{pod="0",reason="timeout"})").value_or(0), 1);
}

TEST(PodResponses, APodThatNeverAcceptsIs502AtTheConnectTimeout) {
  // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
  // neither succeeds nor fails until the proxy's own timer ends it.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, "127.0.1.0", &addr.sin_addr);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), len), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::vector<int> fillers;
  for (int i = 0; i < 3; ++i) {
    const int f = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(f, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    fillers.push_back(f);
  }
  Proxy proxy({"--replicas", "1", "--threads", "1", "--connect-timeout", "300ms", "--backend-url-template",
               "http://127.0.1.{ordinal}:" + std::to_string(ntohs(addr.sin_port))});
  const auto started = std::chrono::steady_clock::now();
  const Response r = request(proxy.port, "POST", "/mcp", kInit);
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32603);
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(metric(proxy.metrics(), R"(mcp_proxy_upstream_errors_total{pod="0",reason="timeout"})").value_or(0), 1);
  for (const int f : fillers) ::close(f);
  ::close(listener);
}

// A pod whose body turns out malformed: a client that has nothing yet gets 502; one that
// has the head already sees the connection close before the body's end (never a body it
// could take for whole). Either way the pod error is counted and the request is 502.
TEST(PodResponses, AMalformedBodyIsA502OrAVisiblyCutResponse) {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  {
    SCOPED_TRACE("the malformed chunk comes with the head");
    const Response r = through_raw_pod(head + "5\r\n{\"a\":\r\nzz\r\n");
    EXPECT_EQ(r.status, 502);
    EXPECT_EQ(json::parse(r.body)["error"]["code"], -32603);
  }
  SCOPED_TRACE("the malformed chunk comes after 300 KB were relayed");
  char size[32];
  std::snprintf(size, sizeof size, "%x\r\n", 300 * 1000);
  RawPod pod(head + size + std::string(300 * 1000, 'x') + "\r\nzz\r\n");
  Proxy proxy({"--replicas", "1", "--threads", "1", "--backend-url-template",
               "http://127.0.1.{ordinal}:" + std::to_string(pod.port)});
  RawConnection c(proxy.port);
  ASSERT_TRUE(c.send(head_for("", "Content-Length: " + std::to_string(kInit.size()) + "\r\n") + kInit));
  ASSERT_TRUE(c.read_to_close(10s));
  EXPECT_EQ(c.received().rfind("HTTP/1.1 200", 0), 0U) << c.received().substr(0, 200);
  EXPECT_GT(c.received().size(), 200U * 1000U) << "the body went out as it came";
  EXPECT_EQ(c.received().find("\r\n0\r\n\r\n"), std::string::npos) << "no last chunk: the body is visibly cut";
  const std::string m = proxy.metrics();
  EXPECT_EQ(metric(m, R"(mcp_proxy_upstream_errors_total{pod="0",reason="io"})").value_or(0), 1);
  EXPECT_EQ(metric(m, R"(mcp_proxy_requests_total{method="POST",code="502"})").value_or(0), 1);
  EXPECT_EQ(metric(m, R"(mcp_proxy_requests_total{method="POST",code="200"})").value_or(0), 0);
  EXPECT_TRUE(eventually([&] { return proxy.log().find(" status=502 ") != std::string::npos; }))
      << "the access line says 502";
}

TEST(PodResponses, UntrustworthyHeadsAre502) {
  for (const std::string& bad : {
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}"),
           std::string("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"),
           std::string("HTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
           std::string("HTTP/1.1 200 OK\r\nX Bad: 1\r\nContent-Length: 2\r\n\r\n{}"),
       }) {
    const Response r = through_raw_pod(bad);
    EXPECT_EQ(r.status, 502) << bad;
    EXPECT_EQ(json::parse(r.body)["error"]["code"], -32603) << bad;
  }
}

}  // namespace
