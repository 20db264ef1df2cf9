// The real proxy binary in front of the sample MCP backend (three pods on 127.0.1.0-2):
// sessions, streams and the wire itself.
#include "proxy_support.hpp"

using namespace proxy_test;
using namespace std::chrono_literals;

namespace {

TEST_F(ProxyTest, ConcurrentSessionsStayPinnedWithTheirState) {
  start();
  constexpr int kSessions = 24;
  constexpr int kCalls = 10;
  std::vector<std::string> pods(kSessions);
  std::atomic<int> pinned{0};
  std::vector<std::thread> clients;
  for (int s = 0; s < kSessions; ++s) {
    clients.emplace_back([&, s] {
      const std::string sid = initialize(port());
      if (sid.empty()) return;
      std::set<std::string> seen;
      bool counters_ok = true;
      for (int i = 1; i <= kCalls; ++i) {
        const Response r = request(port(), "POST", "/mcp", call(i + 1, "whoami"), {{"Mcp-Session-Id", sid}});
        if (r.status != 200) {
          counters_ok = false;
          break;
        }
        const json sc = message(r)["result"]["structuredContent"];
        seen.insert(sc["pod"].get<std::string>());
        counters_ok &= sc["counter"].get<int>() == i;
      }
      if (counters_ok && seen.size() == 1) {
        pods[static_cast<std::size_t>(s)] = *seen.begin();
        ++pinned;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(pinned.load(), kSessions);
  const std::set<std::string> distinct(pods.begin(), pods.end());
  EXPECT_EQ(distinct.size(), 3U) << "least_sessions spreads 24 sessions over all three pods";
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_created_total").value_or(0), kSessions);
  EXPECT_GE(metric(m, "mcp_proxy_session_cache_hits_total").value_or(0), kSessions * kCalls);
}

TEST_F(ProxyTest, SseEventsArriveBeforeTheStreamEnds) {
  start();
  const std::string sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  Stream s(port(), "POST", "/mcp", call(5, "ticker", {{"count", 3}, {"interval_ms", 400}}), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(s.status(), 200);
  EXPECT_EQ(s.header("content-type"), "text/event-stream");
  EXPECT_EQ(s.header("x-accel-buffering"), "no");
  ASSERT_TRUE(s.read_to_end(10s));
  const auto first = s.seen_at("\"progress\": 1");
  const auto second = s.seen_at("\"progress\": 2");
  const auto result = s.seen_at("\"result\"");
  ASSERT_TRUE(first && second && result) << s.body();
  // The pod spaces the events 400 ms apart (1.2 s from the first to the result): relayed
  // unbuffered they arrive spread out; buffered, they would arrive together at the end.
  // The bounds leave room for a loaded CI machine.
  EXPECT_GE(*result - *first, 600ms);
  EXPECT_GE(*second - *first, 200ms);
}

TEST_F(ProxyTest, GetStreamCarriesServerNotifications) {
  start();
  const std::string sid = initialize(port());
  Stream get(port(), "GET", "/mcp", "", {{"Mcp-Session-Id", sid}, {"Accept", "text/event-stream"}});
  ASSERT_EQ(get.status(), 200);
  ASSERT_TRUE(eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_sse_streams").value_or(0) == 1; }));
  // The pod may not have registered the stream the instant its head was sent: ask until it has.
  ASSERT_TRUE(eventually([&] {
    const Response r =
        request(port(), "POST", "/mcp", call(9, "notify", {{"text", "ping-42"}}), {{"Mcp-Session-Id", sid}});
    return r.status == 200 && r.body.find("\"sent\"") != std::string::npos;
  }));
  EXPECT_TRUE(get.read_until("ping-42", 5s)) << get.body();
}

TEST_F(ProxyTest, DeleteEndsTheSessionThen404) {
  start();
  const std::string sid = initialize(port());
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}).status, 200);
  const Response r = request(port(), "POST", "/mcp", call(3, "whoami"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  EXPECT_EQ(json::parse(r.body)["id"], 3);
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_sessions_deleted_total").value_or(0), 1);
}

TEST_F(ProxyTest, RefusalsAreTheSpecs) {
  start();
  Response r = request(port(), "POST", "/mcp", R"({"jsonrpc":"2.0","id":"q","method":"tools/list"})",
                       {{"Mcp-Session-Id", "never-issued"}});
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(json::parse(r.body)["id"], "q");
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  r = request(port(), "POST", "/mcp", R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})",
              {{"Mcp-Session-Id", std::string(300, 'a')}});
  EXPECT_EQ(r.status, 400);
  // An initialize that still carries an old id starts a new session.
  r = request(port(), "POST", "/mcp", kInit, {{"Mcp-Session-Id", "old-and-gone"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.header("mcp-session-id").empty());
  EXPECT_NE(r.header("mcp-session-id"), "old-and-gone");
  // A sessionless request is placed and answered by the pod (which wants a session here).
  r = request(port(), "POST", "/mcp", R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32000);
}

TEST_F(ProxyTest, OneMebibyteResultIntact) {
  start({}, {"--sse"});
  const std::string sid = initialize(port());
  const Response r = request(port(), "POST", "/mcp", call(4, "big", {{"bytes", 1 << 20}}), {{"Mcp-Session-Id", sid}});
  ASSERT_EQ(r.status, 200);
  const std::string text = message(r)["result"]["content"][0]["text"];
  ASSERT_EQ(text.size(), 1U << 20);
  for (std::size_t i = 0; i < text.size(); i += 4099) ASSERT_EQ(text[i], "0123456789abcdef"[i % 16]) << i;
}

// The wire itself: what the proxy's own HTTP/1 parser accepts, refuses and produces.

std::string chunked(const std::string& body) {
  // Three chunks, one with an extension, and a trailer.
  const std::size_t a = body.size() / 3;
  const std::size_t b = 2 * body.size() / 3;
  auto chunk = [](const std::string& s, const std::string& ext) {
    char size[32];
    std::snprintf(size, sizeof size, "%zx", s.size());
    return std::string(size) + ext + "\r\n" + s + "\r\n";
  };
  return chunk(body.substr(0, a), ";x=1") + chunk(body.substr(a, b - a), "") + chunk(body.substr(b), "") +
         "0\r\nX-Trailer: t\r\n\r\n";
}

TEST_F(ProxyTest, ChunkedAndPipelinedRequestsAreForwardedWhole) {
  start();
  const std::string sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  RawConnection c(port());
  const std::string second = call(12, "whoami");
  // Two requests in one write: a chunked body, then a sized one that closes the connection.
  ASSERT_TRUE(c.send(head_for(sid, "Transfer-Encoding: chunked\r\n") + chunked(call(11, "whoami")) +
                     head_for(sid, "Content-Length: " + std::to_string(second.size()) + "\r\nConnection: close\r\n") +
                     second));
  ASSERT_TRUE(c.read_to_close(10s));
  const std::string& got = c.received();
  const auto first_at = got.find("HTTP/1.1 200");
  ASSERT_NE(first_at, std::string::npos) << got;
  ASSERT_NE(got.find("HTTP/1.1 200", first_at + 1), std::string::npos) << got;
  const auto id11 = got.find(R"("id": 11)") != std::string::npos ? got.find(R"("id": 11)") : got.find(R"("id":11)");
  const auto id12 = got.find(R"("id": 12)") != std::string::npos ? got.find(R"("id": 12)") : got.find(R"("id":12)");
  ASSERT_NE(id11, std::string::npos) << got;
  ASSERT_NE(id12, std::string::npos) << got;
  EXPECT_LT(id11, id12) << "answers in request order";
  // Both reached the session's pod: its counter went 1, 2.
  EXPECT_NE(got.find(R"(\"counter\": 2)"), std::string::npos) << got;
}

TEST_F(ProxyTest, PipelinedRequestsReadWhereTheyLieKeepTheirOwnIdsThroughAnSseAnswer) {
  // Three whole requests in one write: each is read in place in the read buffer. The first
  // is answered by SSE, which takes it out of the buffer (a stream keeps no read buffer)
  // while the other two still lie behind it; each access line names its own request id.
  start();
  const std::string sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  const std::string sse = call(21, "ticker", {{"count", 2}, {"interval_ms", 50}});
  const std::string second = call(22, "whoami");
  const std::string third = call(23, "whoami");
  RawConnection c(port());
  ASSERT_TRUE(c.send(
      head_for(sid, "X-Request-Id: piped-1\r\nContent-Length: " + std::to_string(sse.size()) + "\r\n") + sse +
      head_for(sid, "X-Request-Id: piped-2\r\nContent-Length: " + std::to_string(second.size()) + "\r\n") + second +
      head_for(sid, "X-Request-Id: piped-3\r\nConnection: close\r\nContent-Length: " + std::to_string(third.size()) +
                        "\r\n") +
      third));
  ASSERT_TRUE(c.read_to_close(10s));
  const std::string& got = c.received();
  EXPECT_NE(got.find("text/event-stream"), std::string::npos) << got;
  for (const char* id : {R"("id": 21)", R"("id": 22)", R"("id": 23)"}) {
    EXPECT_NE(got.find(id), std::string::npos) << id << " in\n" << got;
  }
  // Alone in the buffer, the SSE request leaves it empty, and the buffer is freed while the
  // stream lasts (under the sanitizers a view left in it is a use after free).
  Stream alone(port(), "POST", "/mcp", sse, {{"Mcp-Session-Id", sid}, {"X-Request-Id", "sse-alone"}});
  ASSERT_EQ(alone.status(), 200);
  ASSERT_TRUE(alone.read_to_end(10s));
  ASSERT_TRUE(eventually([&] {
    const std::string log = proxy_->log();
    return log.find("request_id=piped-1\n") != std::string::npos &&
           log.find("request_id=piped-2\n") != std::string::npos &&
           log.find("request_id=piped-3\n") != std::string::npos &&
           log.find("request_id=sse-alone\n") != std::string::npos;
  })) << proxy_->log();
}

// The request fields the sample pod saw for one `headers` call of a session, by lower-case
// name; `sid` is set to the session's id.
std::map<std::string, std::vector<std::string>> headers_seen_by_pod(std::uint16_t port, std::string& sid,
                                                                    std::string& body, const std::string& extra = "") {
  std::map<std::string, std::vector<std::string>> seen;
  sid = initialize(port);
  if (sid.empty()) return seen;
  RawConnection c(port);
  body = call(31, "headers");
  if (!c.send(head_for(sid,
                       "Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n"
                       "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Custom:  spaced value \r\n"
                       "TE: trailers\r\n" +
                           extra + "Content-Length: " + std::to_string(body.size()) + "\r\n") +
              body) ||
      !c.read_until("\"result\"", 10s)) {
    return seen;
  }
  const std::string& got = c.received();
  const auto at = got.find("\r\n\r\n");
  if (at == std::string::npos) return seen;
  const json answer = json::parse(got.substr(at + 4));
  for (const auto& kv : answer["result"]["structuredContent"]["headers"]) {
    std::string name = kv[0];
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    seen[name].push_back(kv[1]);
  }
  return seen;
}

TEST_F(ProxyTest, HeadersReachThePodEditedAsAProxyMust) {
  start();
  std::string sid;
  std::string body;
  auto seen = headers_seen_by_pod(port(), sid, body);
  ASSERT_FALSE(seen.empty());
  for (const char* gone : {"connection", "x-secret", "keep-alive", "te"}) EXPECT_EQ(seen.count(gone), 0U) << gone;
  EXPECT_EQ(seen["x-forwarded-for"], std::vector<std::string>{"10.0.0.1, 127.0.0.1"});
  EXPECT_EQ(seen["x-forwarded-proto"], std::vector<std::string>{"http"});
  EXPECT_EQ(seen["x-forwarded-host"], std::vector<std::string>{"x"});
  // Host is the client's (backend.rewrite_host false, the default): the pod's own
  // DNS-rebinding check sees what the client asked for, as behind HAProxy or Envoy.
  EXPECT_EQ(seen["host"], std::vector<std::string>{"x"});
  EXPECT_EQ(seen["x-custom"], std::vector<std::string>{"spaced value "}) << "the line as received (the pod trims)";
  EXPECT_EQ(seen["mcp-session-id"], std::vector<std::string>{sid});
  EXPECT_EQ(seen["content-length"], std::vector<std::string>{std::to_string(body.size())});
}

TEST_F(ProxyTest, EachRequestHasAnIdInThePodsFieldsAndTheAccessLog) {
  start();
  std::string sid;
  std::string body;
  // None sent: the pod gets one the proxy made, a version-4 UUID, and the access line names it.
  auto seen = headers_seen_by_pod(port(), sid, body);
  ASSERT_EQ(seen["x-request-id"].size(), 1U);
  const std::string made = seen["x-request-id"][0];
  EXPECT_EQ(made.size(), 36U) << made;
  EXPECT_EQ(made[14], '4') << made;
  // Sent by the client (or an ingress): the pod gets it as sent; traceparent and tracestate
  // pass untouched.
  const std::string trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  seen = headers_seen_by_pod(port(), sid, body,
                             "X-Request-Id: client-req-7\r\ntraceparent: " + trace + "\r\ntracestate: v=1\r\n");
  EXPECT_EQ(seen["x-request-id"], std::vector<std::string>{"client-req-7"});
  EXPECT_EQ(seen["traceparent"], std::vector<std::string>{trace});
  EXPECT_EQ(seen["tracestate"], std::vector<std::string>{"v=1"});
  ASSERT_TRUE(eventually([&] {
    const std::string log = proxy_->log();
    return log.find("request_id=" + made + "\n") != std::string::npos &&
           log.find("request_id=client-req-7\n") != std::string::npos;
  })) << proxy_->log();
}

TEST_F(ProxyTest, RewriteHostSendsThePodsOwnName) {
  start({"--rewrite-host", "true"});
  std::string sid;
  std::string body;
  auto seen = headers_seen_by_pod(port(), sid, body);
  ASSERT_FALSE(seen.empty());
  // Host names the pod, as its headless-DNS name would; the client's goes in X-Forwarded-Host.
  ASSERT_EQ(seen["host"].size(), 1U);
  EXPECT_EQ(seen["host"][0].rfind("127.0.1.", 0), 0U) << seen["host"][0];
  EXPECT_NE(seen["host"][0].find(":" + std::to_string(backend_->port)), std::string::npos) << seen["host"][0];
  EXPECT_EQ(seen["x-forwarded-host"], std::vector<std::string>{"x"});
}

TEST_F(ProxyTest, ASecondProcessOnATakenPortFailsToStart) {
  start();
  // The running proxy has two workers on one listening socket; a second process on the
  // same port must not start (it would take half the connections with an empty table).
  Process second({proxy_binary(), "--listen", "127.0.0.1:" + std::to_string(port()), "--admin-listen",
                  "127.0.0.1:" + std::to_string(free_port()), "--replicas", "3", "--backend-url-template",
                  backend_->url_template(), "--log-level", "off"},
                 "/dev/null");
  const auto code = second.wait(10s);
  ASSERT_TRUE(code.has_value()) << "the second process kept running";
  EXPECT_EQ(*code, 2) << "address in use exits like a config that cannot run";
  // The first one still serves.
  EXPECT_FALSE(initialize(port()).empty());
}

TEST_F(ProxyTest, SmugglingShapesAndMalformedHeadsAre400) {
  start();
  for (const std::string& bad : {
           head_for("", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n") + "0\r\n\r\n",
           head_for("", "Content-Length: 4\r\nContent-Length: 5\r\n") + "abcd",
           head_for("", "Transfer-Encoding: gzip\r\n"),
           head_for("", "Transfer-Encoding: chunked\r\n") + "zz\r\n",
           std::string("POST /mcp HTTP/1.1\r\nHost : x\r\nContent-Length: 0\r\n\r\n"),
           std::string("POST /mcp HTTP/1.1\r\nHost: x\r\n folded\r\nContent-Length: 0\r\n\r\n"),
           std::string("POST /mcp HTTP/1.1\nHost: x\r\n\r\n"),
       }) {
    RawConnection c(port());
    ASSERT_TRUE(c.send(bad));
    EXPECT_TRUE(c.read_to_close(10s)) << bad;
    EXPECT_EQ(c.received().rfind("HTTP/1.1 400", 0), 0U) << bad << "\n--\n" << c.received();
  }
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit).status, 200) << "the proxy keeps serving";
}

TEST_F(ProxyTest, Http10ClientGetsTheWholeAnswerThenTheClose) {
  start({}, {"--sse"});  // the pod answers calls as a chunked SSE stream
  const std::string sid = initialize(port());
  ASSERT_FALSE(sid.empty());
  RawConnection c(port());
  const std::string body = call(21, "whoami");
  ASSERT_TRUE(c.send(head_for(sid, "Content-Length: " + std::to_string(body.size()) + "\r\n", "HTTP/1.0") + body));
  ASSERT_TRUE(c.read_to_close(10s)) << "HTTP/1.0: the end of an open-ended body is the close";
  const std::string& got = c.received();
  EXPECT_EQ(got.rfind("HTTP/1.0 200", 0), 0U) << got;
  const std::string head = got.substr(0, got.find("\r\n\r\n"));
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
  EXPECT_NE(got.find("\"result\""), std::string::npos) << got;
}

TEST_F(ProxyTest, ExpectContinueIsAnsweredByTheProxy) {
  start();
  RawConnection c(port());
  ASSERT_TRUE(c.send(head_for(
      "", "Expect: 100-continue\r\nContent-Length: " + std::to_string(kInit.size()) + "\r\nConnection: close\r\n")));
  ASSERT_TRUE(c.read_until("HTTP/1.1 100 Continue\r\n\r\n", 10s));
  ASSERT_TRUE(c.send(kInit));
  ASSERT_TRUE(c.read_to_close(10s));
  const std::string final_head = c.received().substr(c.received().find("\r\n\r\n") + 4);
  EXPECT_EQ(final_head.rfind("HTTP/1.1 200", 0), 0U) << c.received();
  EXPECT_NE(final_head.find("Mcp-Session-Id: "), std::string::npos) << c.received();
}

TEST_F(ProxyTest, OversizedBodyIs413) {
  start({"--max-body-size", "1KiB"});
  const Response r = request(port(), "POST", "/mcp", std::string(4096, ' ') + kInit);
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit).status, 200) << "the proxy keeps serving";
}

// Bodies a worker holds at once are bounded (limits.max_worker_body_bytes): with 60 KiB of
// one body read, a second is refused 503 Retry-After before it is read, and is taken again
// once the first has been answered. (A body holds the budget as its bytes arrive:
// client_limits_test.cpp has heads that declare bodies and send none.)
TEST(WorkerBodyBudget, ABodyPastTheWorkersBudgetIs503UntilTheOtherIsAnswered) {
  SampleBackend backend(1);
  Proxy proxy({"--replicas", "1", "--threads", "1", "--backend-url-template", backend.url_template(), "--max-body-size",
               "64KiB", "--max-worker-body-bytes", "100KiB"});
  const std::string body = std::string(60 * 1024 - kInit.size(), ' ') + kInit;
  const std::string head = head_for("", "Content-Length: " + std::to_string(body.size()) + "\r\n");
  RawConnection first(proxy.port);
  ASSERT_TRUE(first.send(head + body.substr(0, body.size() - 100)));
  ASSERT_TRUE(eventually([&] {
    return metric(proxy.metrics(), "mcp_proxy_request_body_bytes").value_or(0) ==
           static_cast<double>(body.size() - 100);
  }));

  RawConnection second(proxy.port);
  ASSERT_TRUE(second.send(head));
  ASSERT_TRUE(second.read_to_close(10s));
  EXPECT_EQ(second.received().rfind("HTTP/1.1 503", 0), 0U) << second.received();
  EXPECT_NE(second.received().find("Retry-After: 1\r\n"), std::string::npos) << second.received();
  EXPECT_EQ(metric(proxy.metrics(), "mcp_proxy_body_budget_refusals_total").value_or(0), 1);

  ASSERT_TRUE(first.send(body.substr(body.size() - 100)));
  ASSERT_TRUE(first.read_until("\r\n\r\n", 10s));
  EXPECT_EQ(first.received().rfind("HTTP/1.1 200", 0), 0U) << first.received();
  EXPECT_TRUE(eventually([&] { return metric(proxy.metrics(), "mcp_proxy_request_body_bytes").value_or(-1) == 0; }));
  EXPECT_EQ(request(proxy.port, "POST", "/mcp", body).status, 200) << "the budget is back";
}

TEST_F(ProxyTest, ClientThatLeavesFreesTheUpstreamStream) {
  start({}, {"--keepalive", "0.2"});
  const std::string sid = initialize(port());
  {
    Stream get(port(), "GET", "/mcp", "", {{"Mcp-Session-Id", sid}, {"Accept", "text/event-stream"}});
    ASSERT_EQ(get.status(), 200);
    ASSERT_TRUE(eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_sse_streams").value_or(0) == 1; }));
  }  // the client closes its connection here
  EXPECT_TRUE(eventually([&] {
    const std::string m = proxy_->metrics();
    return metric(m, "mcp_proxy_sse_streams").value_or(-1) == 0 &&
           metric(m, "mcp_proxy_downstream_connections").value_or(-1) == 0;
  }));
  EXPECT_GE(metric(proxy_->metrics(), "mcp_proxy_client_aborts_total").value_or(0), 1);
  // The pod's stream was closed with it: the session can open a new GET stream (the sample
  // pod, like the SDK, keeps one per session and frees it when its connection closes).
  Stream again(port(), "GET", "/mcp", "", {{"Mcp-Session-Id", sid}, {"Accept", "text/event-stream"}});
  EXPECT_EQ(again.status(), 200);
}

TEST_F(ProxyTest, InitializeOnADeadPodIsPlacedElsewhere) {
  // Four replicas configured, three pods alive: 127.0.1.3 refuses connections.
  start({}, {}, 3, 4);
  for (int i = 0; i < 12; ++i) EXPECT_FALSE(initialize(port()).empty()) << i;
  const std::string m = proxy_->metrics();
  EXPECT_GE(metric(m, R"(mcp_proxy_upstream_errors_total{pod="3",reason="connect"})").value_or(0), 1);
  EXPECT_EQ(metric(m, R"(mcp_proxy_sessions{pod="3"})").value_or(-1), 0);
}

TEST_F(ProxyTest, LegacySseSessionPinnedByEndpointEvent) {
  start();
  Stream sse(port(), "GET", "/sse", "", {{"Accept", "text/event-stream"}});
  ASSERT_EQ(sse.status(), 200);
  ASSERT_TRUE(sse.read_until("sessionId=", 5s));
  ASSERT_TRUE(sse.read_until("\n\n", 5s));
  const auto at = sse.body().find("sessionId=") + 10;
  const std::string sid = sse.body().substr(at, sse.body().find_first_of("\r\n", at) - at);
  for (int i = 1; i <= 5; ++i) {
    const Response r = request(port(), "POST", "/messages?sessionId=" + sid, call(100 + i, "whoami"));
    ASSERT_EQ(r.status, 202) << r.body;
    ASSERT_TRUE(sse.read_until("\"counter\": " + std::to_string(i), 5s)) << sse.body();
  }
  EXPECT_EQ(request(port(), "POST", "/messages?sessionId=unknown", call(1, "whoami")).status, 404);
  // The raw id never reaches the log.
  EXPECT_EQ(proxy_->log().find(sid), std::string::npos);
}

}  // namespace
