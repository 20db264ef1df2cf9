// Per-client limits against hostile clients, through the real proxy: the new-session
// limiter under a flood of unique client keys (its memory bounded), the client's address
// behind hops that append X-Forwarded-For (a forged entry changes nothing; nginx is the real
// hop), and the workers' body budget against heads that declare large bodies and send none.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>

#include "harness.hpp"

using namespace harness;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"limits","version":"1"}}})";

std::string init_request(const std::string& forwarded_for) {
  return "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, "
         "text/event-stream\r\nConnection: close\r\nX-Forwarded-For: " +
         forwarded_for + "\r\nContent-Length: " + std::to_string(kInit.size()) + "\r\n\r\n" + kInit;
}

// The status of the answer to `bytes`, sent from `source` (a loopback address: the client
// address the hop in front sees) on a connection of its own; 0 when none came.
int status_from(const std::string& source, std::uint16_t port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(port);
  ::inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  std::string in;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0 &&
      ::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0 &&
      ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    std::array<char, 4096> buf{};
    pollfd p{fd, POLLIN, 0};
    while (in.find("\r\n") == std::string::npos && ::poll(&p, 1, 10000) > 0) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) break;
      in.append(buf.data(), static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return in.rfind("HTTP/1.1 ", 0) == 0 ? std::stoi(in.substr(9, 3)) : 0;
}

// nginx in front of the proxy, appending the address it sees to X-Forwarded-For
// ($proxy_add_x_forwarded_for), as an ingress does.
struct NginxHop {
  explicit NginxHop(std::uint16_t upstream) {
    port = free_port();
    dir = std::string(MCPPROXY_TEST_TMP_DIR) + "/nginx-" + std::to_string(port);
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/nginx.conf")
        << "daemon off;\nmaster_process off;\nworker_processes 1;\npid " << dir << "/nginx.pid;\nerror_log " << dir
        << "/error.log;\nevents { worker_connections 256; }\nhttp {\n  access_log off;\n"
        << "  client_body_temp_path " << dir << "/body;\n  proxy_temp_path " << dir << "/proxy;\n"
        << "  fastcgi_temp_path " << dir << "/fastcgi;\n  uwsgi_temp_path " << dir << "/uwsgi;\n"
        << "  scgi_temp_path " << dir << "/scgi;\n  server {\n    listen 127.0.0.1:" << port << ";\n"
        << "    location / {\n      proxy_pass http://127.0.0.1:" << upstream << ";\n"
        << "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n"
        << "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_buffering off;\n"
        << "    }\n  }\n}\n";
    process = std::make_unique<Process>(
        std::vector<std::string>{kBinary, "-e", dir + "/error.log", "-p", dir, "-c", dir + "/nginx.conf"},
        dir + "/stderr.log");
    ready = eventually([&] { return status_from("127.0.0.1", port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") != 0; });
  }
  static constexpr const char* kBinary = "/usr/sbin/nginx";
  std::uint16_t port = 0;
  std::string dir;
  bool ready = false;
  std::unique_ptr<Process> process;
};

}  // namespace
// A flood of initializes, each from another client (a unique address a trusted hop appended
// after 8 KB of the client's own X-Forwarded-For): the limiter keeps at most
// limits.new_sessions_max_clients windows of a digest each, and gives them back as they
// end. Before, each key was kept verbatim for the window: RSS grew by the flood's keys.
TEST(NewSessionLimiter, AFloodOfUniqueClientsKeepsTheProxysMemoryBounded) {
  // Nothing listens at the pod: an admitted initialize is answered at once, no session made.
  Proxy proxy({"--replicas", "1", "--backend-url-template", "http://127.0.9.1{ordinal}:" + std::to_string(free_port()),
               "--threads", "2", "--trust-forwarded-headers", "true", "--new-sessions-per-client", "5",
               "--new-sessions-window", "5s", "--new-sessions-max-clients", "16"});
  const pid_t pid = proxy.process->pid();
  const auto flood = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string own = std::to_string(i) + std::string(8192, 'f');
      const std::string appended =
          "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256);
      ASSERT_NE(request(proxy.port, "POST", "/mcp", kInit, {{"X-Forwarded-For", own + ", " + appended}}).status, 0);
    }
  };
  // The allocator's arenas and the connections' buffers settle first. (The figure before is
  // not read under the sanitizers.)
  flood(0, 500);
  [[maybe_unused]] const long before = rss_kib(pid);
  flood(500, 8000);
  // 16 windows at most (one a shard): the bound is reached at any speed of the flood.
  const std::string m = proxy.metrics();
  EXPECT_LE(metric(m, "mcp_proxy_new_session_clients").value_or(-1), 16);
  EXPECT_GT(metric(m, "mcp_proxy_new_session_windows_dropped_total").value_or(0), 0) << "the bound was reached";
  EXPECT_EQ(metric(m, "mcp_proxy_new_sessions_refused_total").value_or(-1), 0);
#ifndef MCPPROXY_SANITIZED
  // 7500 keys of 8 KB were 60 MB kept; a digest each, at most 16, is nothing to see.
  EXPECT_LT(rss_kib(pid) - before, 16 * 1024) << "RSS grew with the flood's keys";
#endif
  // The windows end, and go, with no initialize to make room: the periodic sweep.
  EXPECT_TRUE(
      eventually([&] { return metric(proxy.metrics(), "mcp_proxy_new_session_clients").value_or(-1) == 0; }, 15s));
}

// A client behind a real hop (nginx, which appends the address it sees) that writes its
// own X-Forwarded-For entries, different on each initialize, is still one client: the
// proxy trusts the hop in front (trust_forwarded_headers) and so reads the entry that hop
// appended, never the client's. Before, the first entry was the client: 20 of 20 admitted.
TEST(ClientAddress, AClientForgingForwardedForBehindARealHopIsStillLimited) {
  if (!std::filesystem::exists(NginxHop::kBinary)) GTEST_SKIP() << "no nginx";
  SampleBackend backend(1);
  Proxy proxy({"--replicas", "1", "--backend-url-template", backend.url_template(), "--trust-forwarded-headers", "true",
               "--new-sessions-per-client", "5", "--new-sessions-window", "1h"});
  NginxHop hop(proxy.port);
  ASSERT_TRUE(hop.ready);
  int created = 0;
  int refused = 0;
  for (int i = 1; i <= 20; ++i) {
    const std::string forged = "198.51.100." + std::to_string(i) + ", 203.0.113." + std::to_string(i);
    const int status = status_from("127.0.0.2", hop.port, init_request(forged));
    created += status == 200 ? 1 : 0;
    refused += status == 429 ? 1 : 0;
  }
  EXPECT_EQ(created, 5);
  EXPECT_EQ(refused, 15);
  // Another client is its own address, even when it names the flooder's.
  EXPECT_EQ(status_from("127.0.0.3", hop.port, init_request("127.0.0.2")), 200);
  const std::string log = proxy.log();
  EXPECT_NE(log.find("client=127.0.0.2"), std::string::npos) << "the access log names the client as the hop saw it";
  EXPECT_EQ(log.find("client=198.51.100."), std::string::npos) << log;
  EXPECT_EQ(log.find("client=203.0.113."), std::string::npos) << log;
}

// client_address.trusted_proxies: the walk from the right passes every trusted hop and
// stops at the first address that is not one; what lies left of it is the client's own.
TEST(ClientAddress, TrustedProxiesAreWalkedAndWhatTheClientWroteIsNot) {
  SampleBackend backend(1);
  Proxy proxy({"--replicas", "1", "--backend-url-template", backend.url_template(), "--trusted-proxy", "127.0.0.0/8",
               "--trusted-proxy", "10.0.0.0/8", "--new-sessions-per-client", "3", "--new-sessions-window", "1h"});
  // The chain: the client's own entries, the client as the edge saw it, an inner hop.
  int created = 0;
  for (int i = 1; i <= 10; ++i) {
    const Response r = request(proxy.port, "POST", "/mcp", kInit,
                               {{"X-Forwarded-For", "6.6.6." + std::to_string(i) + ", 10.0.0." + std::to_string(i)},
                                {"X-Forwarded-For", "203.0.113.9, 10.1.1.1"}});
    EXPECT_TRUE(r.status == 200 || r.status == 429) << r.status;
    created += r.status == 200 ? 1 : 0;
  }
  EXPECT_EQ(created, 3) << "the client's entries, in trusted blocks or not, are not walked";
  EXPECT_EQ(
      request(proxy.port, "POST", "/mcp", kInit, {{"X-Forwarded-For", "203.0.113.9, 203.0.113.10, 10.1.1.1"}}).status,
      200)
      << "another client behind the same hops";
  EXPECT_EQ(metric(proxy.metrics(), "mcp_proxy_new_sessions_refused_total").value_or(0), 7);
  EXPECT_EQ(proxy.log().find("client=6.6.6."), std::string::npos);
}

// An IPv6 client counts as its /64 (limits.new_sessions_ipv6_prefix): walking the
// addresses of its own block does not step past the limit, and another block is another
// client. With the prefix at 128 each address is a client of its own.
TEST(NewSessionLimiter, AnIPv6ClientCountsAsItsBlock) {
  SampleBackend backend(1);
  const auto created_from = [&](const Proxy& proxy, const std::string& block, int count) {
    int created = 0;
    for (int i = 1; i <= count; ++i) {
      const Response r = request(proxy.port, "POST", "/mcp", kInit,
                                 {{"X-Forwarded-For", block + std::to_string(i) + ":5:6:" + std::to_string(i)}});
      EXPECT_TRUE(r.status == 200 || r.status == 429) << r.status;
      created += r.status == 200 ? 1 : 0;
    }
    return created;
  };
  const std::vector<std::string> common = {"--replicas",
                                           "1",
                                           "--backend-url-template",
                                           backend.url_template(),
                                           "--trusted-hops",
                                           "1",
                                           "--new-sessions-per-client",
                                           "3",
                                           "--new-sessions-window",
                                           "1h"};
  Proxy grouped(common);
  EXPECT_EQ(created_from(grouped, "2001:db8:1:2:", 8), 3) << "eight addresses of one /64 are one client";
  EXPECT_EQ(created_from(grouped, "2001:db8:1:3:", 1), 1) << "the next /64 is another client";
  std::vector<std::string> per_address = common;
  per_address.insert(per_address.end(), {"--new-sessions-ipv6-prefix", "128"});
  Proxy alone(per_address);
  EXPECT_EQ(created_from(alone, "2001:db8:1:2:", 8), 8) << "at 128 each address is a client";
}

// The workers' body budget (limits.max_worker_body_bytes) is taken as body bytes arrive:
// connections that send a head declaring the largest body (by Content-Length, or a chunk's
// size line) and then a byte hold the bytes that came, and other clients' initializes and
// calls, whose bodies come after their heads, go on. Before, each head reserved its
// declared length (a chunked one 64 KiB ahead): 4 of them held the whole budget and every
// other body was answered 503 until they timed out.
TEST(WorkerBodyBudget, HeadsThatDeclareLargeBodiesHoldNoneOfIt) {
  SampleBackend backend(1);
  Proxy proxy({"--replicas", "1", "--backend-url-template", backend.url_template(), "--threads", "1", "--max-body-size",
               "256KiB", "--max-worker-body-bytes", "1MiB"});
  const std::string post = "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";
  const std::string by_length = post + "Content-Length: " + std::to_string(256 * 1024) + "\r\n\r\n{";  // 1 byte
  const std::string chunked = post + "Transfer-Encoding: chunked\r\n\r\n3ffff\r\n{";  // 8 bytes of body
  std::vector<std::unique_ptr<RawConnection>> heads;
  for (int i = 0; i < 64; ++i) {
    heads.push_back(std::make_unique<RawConnection>(proxy.port));
    ASSERT_TRUE(heads.back()->send(i < 32 ? by_length : chunked));
  }
  constexpr double kArrived = 32 * 1 + 32 * 8;
  // Every head read (each holds at least the bytes that came).
  ASSERT_TRUE(
      eventually([&] { return metric(proxy.metrics(), "mcp_proxy_request_body_bytes").value_or(-1) >= kArrived; }));

  // Bodies past the first read (8 KiB) are read after their head: they take the budget.
  const std::string pad(20 * 1024, ' ');
  const auto padded = [&](const std::string& body) { return body.substr(0, body.size() - 1) + pad + "}"; };
  for (int i = 0; i < 10; ++i) {
    const Response init = request(proxy.port, "POST", "/mcp", padded(kInit));
    ASSERT_EQ(init.status, 200) << init.body;
    const Headers session = {{"Mcp-Session-Id", init.header("mcp-session-id")}};
    for (int call = 2; call <= 3; ++call) {
      const std::string whoami = R"({"jsonrpc":"2.0","id":)" + std::to_string(call) +
                                 R"(,"method":"tools/call","params":{"name":"whoami","arguments":{}}})";
      const Response r = request(proxy.port, "POST", "/mcp", padded(whoami), session);
      EXPECT_EQ(r.status, 200) << r.body;
    }
  }
  EXPECT_EQ(metric(proxy.metrics(), "mcp_proxy_body_budget_refusals_total").value_or(-1), 0);
  // The last call's body is released after its answer's final write: waited for, bounded.
  const auto held = [&] { return metric(proxy.metrics(), "mcp_proxy_request_body_bytes").value_or(-1); };
  EXPECT_TRUE(eventually([&] { return held() == kArrived; }))
      << "each head holds the bytes that came, not the 256 KiB it declared: " << held();
  heads.clear();
  EXPECT_TRUE(eventually([&] { return metric(proxy.metrics(), "mcp_proxy_request_body_bytes").value_or(-1) == 0; }));
}
