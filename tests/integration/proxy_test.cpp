// The real proxy binary in front of the sample MCP backend (three pods on 127.0.1.0-2).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

std::string call(int id, const std::string& tool, const json& args = json::object()) {
  return json{
      {"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", tool}, {"arguments", args}}}}
      .dump();
}

// The JSON-RPC message of a response, whether it came as JSON or as one SSE event.
json message(const Response& r) {
  if (r.header("content-type").rfind("text/event-stream", 0) == 0) {
    const auto at = r.body.find("data: ");
    return json::parse(r.body.substr(at + 6, r.body.find('\n', at) - at - 6));
  }
  return json::parse(r.body);
}

std::string initialize(std::uint16_t port) {
  const Response r = request(port, "POST", "/mcp", kInit);
  if (r.status != 200) return "";
  const std::string sid = r.header("mcp-session-id");
  request(port, "POST", "/mcp", R"({"jsonrpc":"2.0","method":"notifications/initialized"})", {{"Mcp-Session-Id", sid}});
  return sid;
}

// A whoami call of `sid` as raw bytes, for a keep-alive RawConnection.
std::string whoami_request(const std::string& sid, int id) {
  const std::string body = call(id, "whoami");
  return "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Accept: application/json, text/event-stream\r\nMcp-Session-Id: " +
         sid + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

class ProxyTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> proxy_args = {}, std::vector<std::string> backend_args = {}, int pods = 3,
             int replicas = 3) {
    backend_ = std::make_unique<SampleBackend>(pods, backend_args);
    std::vector<std::string> args = {
        "--replicas", std::to_string(replicas), "--backend-url-template", backend_->url_template(), "--threads", "2"};
    args.insert(args.end(), proxy_args.begin(), proxy_args.end());
    proxy_ = std::make_unique<Proxy>(args);
  }
  std::uint16_t port() const { return proxy_->port; }
  // The config file a reload test rewrites: the backend's pods, `replicas` of them used, two workers.
  void write_config(const std::string& path, int replicas) const {
    std::ofstream(path) << "backend:\n  replicas: " << replicas << "\n  url_template: " << backend_->url_template()
                        << "\nthreads: 2\n";
  }
  std::unique_ptr<SampleBackend> backend_;
  std::unique_ptr<Proxy> proxy_;
};

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
std::string head_for(const std::string& sid, const std::string& extra, const std::string& version = "HTTP/1.1") {
  return "POST /mcp " + version +
         "\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
         (sid.empty() ? "" : "Mcp-Session-Id: " + sid + "\r\n") + extra + "\r\n";
}

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

TEST_F(ProxyTest, SigtermDrainsInFlightRequestsAndExitsZero) {
  start({"--drain-timeout", "10s"});
  const std::string sid = initialize(port());
  Stream slow(port(), "POST", "/mcp", call(7, "ticker", {{"count", 4}, {"interval_ms", 250}}),
              {{"Mcp-Session-Id", sid}, {"Accept", "application/json"}});
  ASSERT_EQ(slow.status(), 200);
  proxy_->process->signal(SIGTERM);
  EXPECT_TRUE(eventually([&] { return request(proxy_->admin, "GET", "/readyz").status == 503; }));
  EXPECT_TRUE(slow.read_to_end(10s));
  EXPECT_NE(slow.body().find("\"result\""), std::string::npos) << "the in-flight call finished";
  EXPECT_EQ(proxy_->process->wait(15s).value_or(-1), 0);
}

TEST_F(ProxyTest, SighupReloadsReplicas) {
  const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/reload.yaml";
  backend_ = std::make_unique<SampleBackend>(3);
  { std::ofstream(path) << "backend:\n  replicas: 1\n  url_template: " << backend_->url_template() << "\n"; }
  proxy_ = std::make_unique<Proxy>(std::vector<std::string>{"--config", path});
  for (int i = 0; i < 6; ++i) ASSERT_FALSE(initialize(port()).empty());
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="0"})").value_or(0), 6);
  { std::ofstream(path) << "backend:\n  replicas: 3\n  url_template: " << backend_->url_template() << "\n"; }
  proxy_->process->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_config_reloads_total").value_or(0) == 1; }));
  for (int i = 0; i < 6; ++i) ASSERT_FALSE(initialize(port()).empty());
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, R"(mcp_proxy_sessions{pod="0"})").value_or(0), 6) << "least_sessions fills the new pods";
  EXPECT_EQ(
      metric(m, R"(mcp_proxy_sessions{pod="1"})").value_or(0) + metric(m, R"(mcp_proxy_sessions{pod="2"})").value_or(0),
      6);
  // An invalid file is rejected and the running config stays.
  { std::ofstream(path) << "backend:\n  replicas: nope\n"; }
  proxy_->process->signal(SIGHUP);
  ASSERT_TRUE(
      eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_config_reloads_failed_total").value_or(0) == 1; }));
  EXPECT_FALSE(initialize(port()).empty());
}

TEST_F(ProxyTest, SighupFromTwoToFourPlacesNewSessionsOnTheNewPods) {
  const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/reload-up.yaml";
  backend_ = std::make_unique<SampleBackend>(4);
  const auto write = [&](int replicas) { write_config(path, replicas); };
  write(2);
  proxy_ = std::make_unique<Proxy>(std::vector<std::string>{"--config", path});
  std::vector<std::string> before;
  for (int i = 0; i < 6; ++i) before.push_back(initialize(port()));
  write(4);
  proxy_->process->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_config_generation").value_or(0) == 2; }));
  for (int i = 0; i < 20; ++i) ASSERT_FALSE(initialize(port()).empty());
  const std::string m = proxy_->metrics();
  EXPECT_GT(metric(m, R"(mcp_proxy_sessions{pod="2"})").value_or(0), 0) << m;
  EXPECT_GT(metric(m, R"(mcp_proxy_sessions{pod="3"})").value_or(0), 0) << m;
  // The sessions from before stay where they were, with their state.
  for (const auto& sid : before) {
    const Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
    ASSERT_EQ(r.status, 200) << r.body;
    const json sc = json::parse(r.body)["result"]["structuredContent"];
    EXPECT_TRUE(sc["pod"] == "pod-0" || sc["pod"] == "pod-1") << sc;
    EXPECT_EQ(sc["counter"], 1);
  }
  EXPECT_EQ(metric_sum(proxy_->metrics(), "mcp_proxy_sessions_lost_total"), 0);
}

TEST_F(ProxyTest, ADrainedOrdinalGetsNoNewSessionsAndKeepsItsOwn) {
  const std::string token_path = std::string(MCPPROXY_TEST_TMP_DIR) + "/admin-token";
  { std::ofstream(token_path) << "s3cret-token\n"; }
  start({"--admin-token-file", token_path});
  const auto admin_post = [&](const std::string& path, const std::string& token) {
    Headers h;
    if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
    return request(proxy_->admin, "POST", path, "", h);
  };
  const auto on_pod = [&](const std::string& sid) {
    const Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
    return r.status == 200 ? json::parse(r.body)["result"]["structuredContent"]["pod"].get<std::string>() : "";
  };
  // Sessions until one is on pod 2 (least_sessions' two random choices include it soon).
  std::string on_two;
  int created = 0;
  while (on_two.empty() && created < 30) {
    const std::string sid = initialize(port());
    ++created;
    if (on_pod(sid) == "pod-2") on_two = sid;
  }
  ASSERT_FALSE(on_two.empty());
  // State changes need the token.
  EXPECT_EQ(admin_post("/pods/2/drain", "").status, 401);
  EXPECT_EQ(admin_post("/pods/2/drain", "wrong").status, 401);
  EXPECT_EQ(admin_post("/pods/2/drain", "s3cret-token-longer").status, 401);
  EXPECT_EQ(admin_post("/pods/7/drain", "s3cret-token").status, 404) << "no such ordinal";
  const Response drained = admin_post("/pods/2/drain", "s3cret-token");
  ASSERT_EQ(drained.status, 200) << drained.body;
  EXPECT_TRUE(json::parse(drained.body)[2]["draining"].get<bool>()) << drained.body;
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_pod_draining{pod="2"})").value_or(-1), 1);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_pod_draining{pod="1"})").value_or(-1), 0);
  const auto sessions_on_two = [&] { return metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="2"})").value_or(-1); };
  const double before = sessions_on_two();
  for (int i = 0; i < 300; ++i) ASSERT_EQ(request(port(), "POST", "/mcp", kInit).status, 200);
  EXPECT_EQ(sessions_on_two(), before) << "no new session on a drained pod";
  EXPECT_EQ(on_pod(on_two), "pod-2") << "its own sessions go on";
  const json pods = json::parse(request(proxy_->admin, "GET", "/pods").body);
  ASSERT_EQ(pods.size(), 3U);
  EXPECT_TRUE(pods[2]["draining"].get<bool>());
  EXPECT_FALSE(pods[0]["draining"].get<bool>());
  EXPECT_EQ(pods[0]["sessions"].get<double>() + pods[1]["sessions"].get<double>(), created + 300 - before);
  // Undrained, it takes new sessions again (least_sessions prefers it whenever it is one of
  // its two choices: none in 10 would have a chance of 3^-10).
  ASSERT_EQ(admin_post("/pods/2/undrain", "s3cret-token").status, 200);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_pod_draining{pod="2"})").value_or(-1), 0);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(request(port(), "POST", "/mcp", kInit).status, 200);
  EXPECT_GT(sessions_on_two(), before);
}

TEST_F(ProxyTest, APodFailingTheHealthCheckGetsNoNewSessionsAndKeepsItsOwn) {
  start({"--health-check-path", "/_health", "--health-check-interval", "100ms", "--health-check-timeout", "50ms",
         "--health-check-failures", "2"});
  const auto set_health = [&](const std::string& state) {
    ASSERT_EQ(request(backend_->port, "POST", "/_health", "\"" + state + "\"", {}, "127.0.1.2").status, 200);
  };
  const auto on_pod = [&](const std::string& sid) {
    const Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
    return r.status == 200 ? json::parse(r.body)["result"]["structuredContent"]["pod"].get<std::string>() : "";
  };
  std::string on_two;
  for (int i = 0; i < 30 && on_two.empty(); ++i) {
    const std::string sid = initialize(port());
    if (on_pod(sid) == "pod-2") on_two = sid;
  }
  ASSERT_FALSE(on_two.empty());
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_health_check_up{pod="2"})").value_or(-1), 1);
  set_health("down");
  ASSERT_TRUE(eventually(
      [&] { return json::parse(request(proxy_->admin, "GET", "/pods").body)[2]["health_check_failing"].get<bool>(); }));
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_health_check_up{pod="2"})").value_or(-1), 0);
  const auto sessions_on_two = [&] { return metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="2"})").value_or(-1); };
  const double before = sessions_on_two();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(request(port(), "POST", "/mcp", kInit).status, 200);
  EXPECT_EQ(sessions_on_two(), before) << "no new session on a pod failing its health check";
  EXPECT_EQ(on_pod(on_two), "pod-2") << "its sessions are not moved";
  EXPECT_EQ(metric_sum(proxy_->metrics(), "mcp_proxy_sessions_lost_total"), 0);
  set_health("up");
  ASSERT_TRUE(eventually([&] {
    return !json::parse(request(proxy_->admin, "GET", "/pods").body)[2]["health_check_failing"].get<bool>();
  }));
  for (int i = 0; i < 10; ++i) ASSERT_EQ(request(port(), "POST", "/mcp", kInit).status, 200);
  EXPECT_GT(sessions_on_two(), before) << "placed on again once it passes";
}

TEST_F(ProxyTest, AdminStateChangesAreRefusedWithoutATokenFile) {
  start();
  const Response r = request(proxy_->admin, "POST", "/pods/0/drain", "", {{"Authorization", "Bearer anything"}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_FALSE(json::parse(request(proxy_->admin, "GET", "/pods").body)[0]["draining"].get<bool>());
}

TEST_F(ProxyTest, OriginsAndHostsOffTheListsGet403) {
  start({"--allowed-origin", "http://localhost:3000", "--allowed-host", "127.0.0.1", "--allowed-host", "localhost"});
  // A browser page of another origin (DNS rebinding, or a cross-site call): refused.
  Response r = request(port(), "POST", "/mcp", kInit, {{"Origin", "http://evil.example"}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(json::parse(r.body)["error"]["code"], -32000);
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit, {{"Origin", "http://localhost:3000"}}).status, 200);
  EXPECT_EQ(request(port(), "POST", "/mcp", kInit).status, 200) << "no Origin: not a browser";
  // A rebound name reaches the proxy with its own Host: refused before any pod sees it.
  RawConnection raw(port());
  ASSERT_TRUE(
      raw.send("POST /mcp HTTP/1.1\r\nHost: evil.example.com\r\nContent-Type: application/json\r\n"
               "Content-Length: " +
               std::to_string(kInit.size()) + "\r\n\r\n" + kInit));
  ASSERT_TRUE(raw.read_until("\r\n\r\n", 5s));
  EXPECT_EQ(raw.received().rfind("HTTP/1.1 403", 0), 0U) << raw.received();
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="0"})").value_or(0) +
                metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="1"})").value_or(0) +
                metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="2"})").value_or(0),
            2)
      << "only the allowed initializes made sessions";
}

TEST_F(ProxyTest, ABoundSessionAnswersOnlyItsOwnIdentity) {
  start({"--session-binding", "authorization"});
  const Headers alice = {{"Authorization", "Bearer alice-token"}};
  const Response init = request(port(), "POST", "/mcp", kInit, alice);
  ASSERT_EQ(init.status, 200) << init.body;
  const std::string sid = init.header("mcp-session-id");
  const auto call_as = [&](const Headers& who, int id) {
    Headers h = who;
    h.emplace_back("Mcp-Session-Id", sid);
    return request(port(), "POST", "/mcp", call(id, "whoami"), h);
  };
  ASSERT_EQ(call_as(alice, 2).status, 200);
  // Another identity (or none) holding the id: the answer of an unknown id, nothing more.
  const Headers bob = {{"Authorization", "Bearer bob-token"}};
  for (const Headers& who : {bob, Headers{}}) {
    const Response r = call_as(who, 3);
    EXPECT_EQ(r.status, 404) << r.body;
    EXPECT_EQ(json::parse(r.body)["error"]["code"], -32001);
  }
  Headers bob_session = bob;
  bob_session.emplace_back("Mcp-Session-Id", sid);
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", bob_session).status, 404) << "cannot end it";
  Stream stream(port(), "GET", "/mcp", "", bob_session);
  EXPECT_EQ(stream.status(), 404) << "cannot read its notifications";
  // The owner goes on, its state intact.
  const Response mine = call_as(alice, 4);
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(json::parse(mine.body)["result"]["structuredContent"]["counter"], 2);
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_session_binding_mismatches_total").value_or(0), 4);
  // An initialize without the identity gets no (unbound) session.
  const Response anonymous = request(port(), "POST", "/mcp", kInit);
  EXPECT_EQ(anonymous.status, 401) << anonymous.body;
  EXPECT_TRUE(anonymous.header("mcp-session-id").empty());
  // The log is written by its own thread: the mismatch line comes soon after the answers.
  ASSERT_TRUE(
      eventually([&] { return proxy_->log().find("session presented by another identity") != std::string::npos; }));
  const std::string log = proxy_->log();
  EXPECT_EQ(log.find("alice-token"), std::string::npos);
  EXPECT_EQ(log.find("bob-token"), std::string::npos);
  EXPECT_EQ(log.find(sid), std::string::npos);
  EXPECT_NE(log.find("session presented by another identity"), std::string::npos);
  // The owner ends it.
  Headers alice_session = alice;
  alice_session.emplace_back("Mcp-Session-Id", sid);
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", alice_session).status, 200);
}

TEST_F(ProxyTest, SessionsBoundToAHeaderOfTheAuthLayerInFront) {
  start({"--session-binding", "header:X-Forwarded-User"});
  const Response init = request(port(), "POST", "/mcp", kInit, {{"X-Forwarded-User", "alice"}});
  ASSERT_EQ(init.status, 200);
  const std::string sid = init.header("mcp-session-id");
  EXPECT_EQ(request(port(), "POST", "/mcp", call(2, "whoami"), {{"X-Forwarded-User", "alice"}, {"Mcp-Session-Id", sid}})
                .status,
            200);
  EXPECT_EQ(
      request(port(), "POST", "/mcp", call(3, "whoami"), {{"X-Forwarded-User", "mallory"}, {"Mcp-Session-Id", sid}})
          .status,
      404);
}

TEST_F(ProxyTest, OneClientsInitializeFloodIsBoundedAndOthersGoOn) {
  start({"--session-binding", "header:X-Forwarded-User", "--new-sessions-per-client", "5", "--new-sessions-window",
         "1m"});
  const Headers mallory = {{"X-Forwarded-User", "mallory"}};
  int created = 0;
  Response refused;
  for (int i = 0; i < 12; ++i) {
    const Response r = request(port(), "POST", "/mcp", kInit, mallory);
    if (r.status == 200) {
      ++created;
    } else {
      refused = r;
    }
  }
  EXPECT_EQ(created, 5);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_GE(std::stoi(refused.header("retry-after")), 50);
  EXPECT_LE(std::stoi(refused.header("retry-after")), 60);
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_new_sessions_refused_total").value_or(0), 7);
  // Another client is not held back by the flood, and mallory's own sessions go on.
  const Response alice = request(port(), "POST", "/mcp", kInit, {{"X-Forwarded-User", "alice"}});
  EXPECT_EQ(alice.status, 200);
}

// The hop in front (trusted) appended the client's address last; what is left of it the
// client wrote itself, and is not read (client_limits_test.cpp has more).
TEST_F(ProxyTest, WithoutBindingAClientIsItsAddressOrWhatTheTrustedHopAppended) {
  start({"--new-sessions-per-client", "2", "--trust-forwarded-headers", "true"});
  const auto init_from = [&](const std::string& xff) {
    return request(port(), "POST", "/mcp", kInit, {{"X-Forwarded-For", xff}}).status;
  };
  EXPECT_EQ(init_from("10.0.0.1, 192.0.2.1"), 200);
  EXPECT_EQ(init_from("10.0.0.2, 192.0.2.1"), 200);
  EXPECT_EQ(init_from("10.0.0.3, 192.0.2.1"), 429) << "the client's own entries change nothing";
  EXPECT_EQ(init_from("192.0.2.1, 192.0.2.2"), 200) << "another client behind the same hop";
}

TEST_F(ProxyTest, AFloodOfThreeTimesTheTableLeavesEverySessionWithAnOpenStreamAlive) {
  start({"--max-sessions", "64"});
  std::vector<std::string> streamed;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 10; ++i) {
    streamed.push_back(initialize(port()));
    streams.push_back(std::make_unique<Stream>(
        port(), "GET", "/mcp", "", Headers{{"Mcp-Session-Id", streamed.back()}, {"Accept", "text/event-stream"}}));
    ASSERT_EQ(streams.back()->status(), 200);
  }
  // Their only activity is the open stream; then 3 x max_sessions initializes. With the
  // memory store the table is the only copy: once full, new sessions are refused (503),
  // none of those it holds is dropped for them.
  std::vector<std::string> admitted;
  int refused = 0;
  for (int i = 0; i < 192; ++i) {
    const Response r = request(port(), "POST", "/mcp", kInit);
    ASSERT_TRUE(r.status == 200 || r.status == 503) << r.status;
    if (r.status == 200) admitted.push_back(r.header("mcp-session-id"));
    refused += r.status == 503 ? 1 : 0;
  }
  EXPECT_EQ(admitted.size(), 64U - 10U);
  EXPECT_EQ(refused, 192 - 54);
  for (const auto* group : {&streamed, &admitted}) {
    for (const auto& sid : *group) {
      const Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
      EXPECT_EQ(r.status, 200) << r.body;
    }
  }
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_evicted_total").value_or(-1), 0);
  EXPECT_EQ(metric(m, R"(mcp_proxy_sessions_lost_total{cause="evicted"})").value_or(-1), 0);
  EXPECT_EQ(metric(m, "mcp_proxy_session_table_full_refusals_total").value_or(0), 192 - 54);
}

TEST_F(ProxyTest, InitializeBodiesKeptForRecoveryStayWithinTheTablesMemoryBound) {
#ifdef MCPPROXY_SANITIZED
  // ASan keeps freed memory in quarantine (256 MB): RSS says nothing there (the Release pass runs it).
  GTEST_SKIP() << "RSS is not the allocator's to measure under AddressSanitizer";
#endif
  start({"--max-table-bytes", "32MiB", "--session-max-init-body", "4MiB"});
  const long before = rss_kib(proxy_->process->pid());
  // 60 sessions whose initialize carries 3 MB (kept to re-initialize them): 180 MB unbounded.
  // Past the table's bytes the memory store keeps a session without its body (it cannot be
  // re-initialized elsewhere), rather than drop a live one.
  const std::string pad(3 * 1024 * 1024, 'x');
  for (int i = 0; i < 60; ++i) {
    const std::string init = R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":)"
                             R"("2025-11-25","capabilities":{},"clientInfo":{"name":"big-)" +
                             std::to_string(i) + R"(","version":"1"},"_pad":")" + pad + "\"}}";
    ASSERT_EQ(request(port(), "POST", "/mcp", init).status, 200);
  }
  const std::string m = proxy_->metrics();
  EXPECT_LE(metric(m, "mcp_proxy_session_table_bytes").value_or(-1), 32.0 * 1024 * 1024);
  EXPECT_GE(metric(m, R"(mcp_proxy_session_init_not_kept_total{reason="table_bytes"})").value_or(0), 49);
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_evicted_total").value_or(-1), 0);
  // The table's 32 MiB, and what the allocator keeps of the requests' buffers.
  EXPECT_LT(rss_kib(proxy_->process->pid()) - before, 110 * 1024)
      << "RSS bounded by the table's budget, not by the sessions' bodies";
}

TEST_F(ProxyTest, OrdinalsDrainedByTheConfigGetNoNewSessions) {
  start({"--drain-ordinal", "0", "--drain-ordinal", "1"});
  for (int i = 0; i < 20; ++i) ASSERT_EQ(request(port(), "POST", "/mcp", kInit).status, 200);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_sessions{pod="2"})").value_or(0), 20);
}

TEST_F(ProxyTest, AReloadHoldsForTheNextRequestOfAKeepAliveConnectionOnEveryWorker) {
  const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/reload-keepalive.yaml";
  backend_ = std::make_unique<SampleBackend>(3);
  const auto write = [&](int replicas) { write_config(path, replicas); };
  write(3);
  proxy_ = std::make_unique<Proxy>(std::vector<std::string>{"--config", path});
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_config_generation").value_or(0), 1);
  // Sessions until one is on pod 2 (least_sessions' two random choices include it soon).
  std::string on_two;
  for (int i = 0; i < 30 && on_two.empty(); ++i) {
    const std::string sid = initialize(port());
    const Response r = request(port(), "POST", "/mcp", call(2, "whoami"), {{"Mcp-Session-Id", sid}});
    if (json::parse(r.body)["result"]["structuredContent"]["pod"] == "pod-2") on_two = sid;
  }
  ASSERT_FALSE(on_two.empty());
  const auto post = [&](int id) { return whoami_request(on_two, id); };
  // Keep-alive connections opened before the reload, one used now, idle through it.
  std::vector<std::unique_ptr<RawConnection>> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(std::make_unique<RawConnection>(port()));
    ASSERT_TRUE(conns.back()->send(post(10 + i)));
    ASSERT_TRUE(conns.back()->read_until("\"pod\": \"pod-2\"", 5s)) << conns.back()->received();
  }
  write(2);
  proxy_->process->signal(SIGHUP);
  // Applied: every worker has it (the generation moves only then).
  ASSERT_TRUE(eventually([&] { return metric(proxy_->metrics(), "mcp_proxy_config_generation").value_or(0) == 2; }));
  EXPECT_EQ(metric(proxy_->metrics(), "mcp_proxy_config_reloads_total").value_or(0), 1);
  // The very next request on each of them: ordinal 2 is past the replicas, the session is
  // re-established on pod 0 or 1 (whatever worker holds the connection).
  for (std::size_t i = 0; i < conns.size(); ++i) {
    const std::size_t before = conns[i]->received().size();
    ASSERT_TRUE(conns[i]->send(post(20 + static_cast<int>(i))));
    ASSERT_TRUE(conns[i]->read_until("\"id\": " + std::to_string(20 + i), 5s)) << conns[i]->received();
    const std::string answer = conns[i]->received().substr(before);
    EXPECT_EQ(answer.find("pod-2"), std::string::npos) << answer;
    EXPECT_NE(answer.find("HTTP/1.1 200"), std::string::npos) << answer;
  }
}

}  // namespace

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
