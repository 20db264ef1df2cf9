// What a hostile or careless client sends at the edges of HTTP, through the real proxy in
// front of the sample backend: an expectation an HTTP/1.0 client cannot read, a Host with
// userinfo, two Origins, request ids that are too long, odd or doubled, and the admin
// listener's bounds (methods, bodies, idle connections).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

std::string post_head(const std::string& host, const std::string& extra, std::size_t length,
                      const std::string& version = "HTTP/1.1") {
  return "POST /mcp " + version + "\r\nHost: " + host +
         "\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" + extra +
         "Content-Length: " + std::to_string(length) + "\r\n\r\n";
}

class StrictInputTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> proxy_args = {}) {
    backend_ = std::make_unique<SampleBackend>(1);
    std::vector<std::string> args = {"--replicas", "1", "--backend-url-template", backend_->url_template()};
    args.insert(args.end(), proxy_args.begin(), proxy_args.end());
    proxy_ = std::make_unique<Proxy>(args);
  }
  std::uint16_t port() const { return proxy_->port; }
  std::unique_ptr<SampleBackend> backend_;
  std::unique_ptr<Proxy> proxy_;
};

TEST_F(StrictInputTest, AnHttp10ClientIsNeverSent100Continue) {
  start();
  RawConnection c(port());
  ASSERT_TRUE(c.send(post_head("127.0.0.1", "Expect: 100-continue\r\n", kInit.size(), "HTTP/1.0")));
  // RFC 9110 10.1.1: the expectation of an HTTP/1.0 request is ignored. The body follows
  // at once; whatever the proxy wrote before its answer is in front of it.
  ASSERT_TRUE(c.send(kInit));
  ASSERT_TRUE(c.read_to_close(10s));
  EXPECT_EQ(c.received().rfind("HTTP/1.0 200", 0), 0U) << c.received();
  EXPECT_EQ(c.received().find("100 Continue"), std::string::npos) << c.received();
}

TEST_F(StrictInputTest, AHostIsItsAuthorityNotItsPrefix) {
  start({"--allowed-host", "localhost", "--allowed-origin", "http://localhost:3000"});
  const auto status_of = [&](const std::string& head) {
    RawConnection c(port());
    EXPECT_TRUE(c.send(head + kInit));
    EXPECT_TRUE(c.read_until("\r\n", 10s));
    return c.received().substr(0, 12);
  };
  // Userinfo names no host: "localhost:80@evil.com" is evil.com's authority.
  EXPECT_EQ(status_of(post_head("localhost:80@evil.com", "", kInit.size())), "HTTP/1.1 403");
  EXPECT_EQ(status_of(post_head("localhost@evil.com", "", kInit.size())), "HTTP/1.1 403");
  EXPECT_EQ(status_of(post_head("localhost:8080", "", kInit.size())), "HTTP/1.1 200");
  // Every copy of Origin counts: two are refused before anything else looks at them.
  EXPECT_EQ(status_of(post_head("localhost", "Origin: http://localhost:3000\r\nOrigin: http://evil.example\r\n",
                                kInit.size())),
            "HTTP/1.1 400");
  EXPECT_EQ(status_of(post_head("localhost", "Origin: http://evil.example\r\nOrigin: http://localhost:3000\r\n",
                                kInit.size())),
            "HTTP/1.1 400");
  EXPECT_EQ(status_of(post_head("localhost", "Origin: http://localhost:3000@evil.example\r\n", kInit.size())),
            "HTTP/1.1 403");
  EXPECT_EQ(status_of(post_head("localhost", "Origin: http://localhost:3000\r\n", kInit.size())), "HTTP/1.1 200");
}

TEST_F(StrictInputTest, ARequestIdIsBoundedAndOneOrMadeByTheProxy) {
  start();
  const Response init = request(port(), "POST", "/mcp", kInit);
  ASSERT_EQ(init.status, 200) << init.body;
  const std::string sid = init.header("mcp-session-id");
  const std::string call =
      R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"headers","arguments":{}}})";
  // What the pod received as X-Request-Id, every copy.
  const auto pod_ids = [&](const Headers& ids) {
    Headers h = ids;
    h.emplace_back("Mcp-Session-Id", sid);
    const Response r = request(port(), "POST", "/mcp", call, h);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> out;
    const auto at = r.body.find('{');
    const json answer = json::parse(r.body.substr(at, r.body.rfind('}') - at + 1));
    for (const auto& kv : answer["result"]["structuredContent"]["headers"]) {
      if (kv[0].get<std::string>() == "X-Request-Id" || kv[0].get<std::string>() == "x-request-id") {
        out.push_back(kv[1].get<std::string>());
      }
    }
    return out;
  };
  EXPECT_EQ(pod_ids({{"X-Request-Id", "client-7"}}), std::vector<std::string>{"client-7"}) << "one usable id: kept";
  for (const Headers& bad :
       {Headers{{"X-Request-Id", std::string(10 * 1024, 'r')}},
        Headers{{"X-Request-Id", "alice"}, {"X-Request-Id", "mallory"}}, Headers{{"X-Request-Id", "has space"}}}) {
    const auto ids = pod_ids(bad);
    ASSERT_EQ(ids.size(), 1U) << "one id reaches the pod";
    EXPECT_EQ(ids[0].size(), 36U) << ids[0].substr(0, 80) << ": the proxy's UUID replaces the client's";
  }
  const std::string log = proxy_->log();
  EXPECT_EQ(log.find(std::string(200, 'r')), std::string::npos) << "the 10 KB id is not logged";
  EXPECT_EQ(log.find("mallory"), std::string::npos);
}

TEST_F(StrictInputTest, TheAdminListenerAnswers405And413AndBoundsItsConnections) {
  start({"--admin-max-connections", "4", "--admin-max-body-size", "1KiB", "--admin-max-header-size", "2KiB"});
  const std::uint16_t admin = proxy_->admin;
  // A state change by GET is a method error, not a missing page.
  Stream get_drain(admin, "GET", "/pods/0/drain", "", {});
  EXPECT_EQ(get_drain.status(), 405);
  EXPECT_EQ(get_drain.header("allow"), "POST");
  EXPECT_EQ(request(admin, "DELETE", "/metrics").status, 405);
  // A 20 MiB body is answered 413 from its head, not read.
  RawConnection big(admin);
  ASSERT_TRUE(
      big.send("POST /pods/0/drain HTTP/1.1\r\nHost: a\r\nContent-Length: 20971520\r\n\r\n" + std::string(4096, 'x')));
  ASSERT_TRUE(big.read_until("\r\n", 10s));
  EXPECT_EQ(big.received().rfind("HTTP/1.1 413", 0), 0U) << big.received();
  // A head past admin.max_header_size is answered 431; one just under it is served.
  const auto head_of = [](std::size_t filler) {
    return "GET /healthz HTTP/1.1\r\nHost: a\r\nX-Filler: " + std::string(filler, 'f') + "\r\n\r\n";
  };
  RawConnection long_head(admin);
  ASSERT_TRUE(long_head.send(head_of(3000)));
  ASSERT_TRUE(long_head.read_until("\r\n", 10s));
  EXPECT_EQ(long_head.received().rfind("HTTP/1.1 431", 0), 0U) << long_head.received();
  RawConnection fitting_head(admin);
  ASSERT_TRUE(fitting_head.send(head_of(1800)));
  ASSERT_TRUE(fitting_head.read_until("ok\n", 10s)) << fitting_head.received();
  // Idle connections past the bound: the oldest are closed for new ones, so probes still
  // get through however many a client leaves open.
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 12; ++i) {
    idle.push_back(std::make_unique<RawConnection>(admin));
    // Each is served once (so it is known to be accepted), then left open and idle.
    ASSERT_TRUE(idle.back()->send("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"));
    ASSERT_TRUE(idle.back()->read_until("ok\n", 10s)) << i;
  }
  for (int i = 0; i < 8; ++i) EXPECT_TRUE(idle[i]->read_to_close(10s)) << "connection " << i << " closed for room";
  EXPECT_EQ(request(admin, "GET", "/readyz").status, 200);
  EXPECT_GE(metric(proxy_->metrics(), R"(mcp_proxy_admin_refused_total{reason="idle_evicted"})").value_or(0), 8);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_admin_refused_total{reason="body_too_large"})").value_or(0), 1);
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_admin_refused_total{reason="head_too_large"})").value_or(0), 1);
}

}  // namespace
