// The hostile-input suite: every probe a hostile client can send at one running proxy,
// each with the answer it must get; after each, a live session still answers within a
// second, and the process's descriptors (and, after a first pass, its RSS) are back where
// they were. One proxy for the whole suite: what one probe leaves behind shows in the next.

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"hostile","version":"1"}}})";
const std::string kWhoami =
    R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}})";

std::string post(const std::string& extra, const std::string& body, const std::string& target = "/mcp") {
  return "POST " + target +
         " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
         extra + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

// What the proxy answers to `bytes` sent on a connection of their own (to its close).
std::string answer(std::uint16_t port, const std::string& bytes) {
  RawConnection c(port);
  if (!c.send(bytes)) return "(send failed)";
  c.read_to_close(10s);
  return c.received();
}

struct Probe {
  std::string name;
  std::function<void(std::uint16_t port, const std::string& sid)> run;
  int calls_of_the_session = 0;  // the probe's own calls in the live session, when it is answered right
};

// A probe that sends `bytes` and must get `status` (an empty `status`: closed, no answer).
Probe refused(std::string name, std::string bytes, std::string status) {
  return {std::move(name),
          [bytes = std::move(bytes), status = std::move(status)](std::uint16_t port, const std::string&) {
            const std::string got = answer(port, bytes);
            if (status.empty()) {
              EXPECT_TRUE(got.empty()) << got;
            } else {
              EXPECT_EQ(got.rfind("HTTP/1.1 " + status, 0), 0U) << got;
            }
          }};
}

std::vector<Probe> probes() {
  const std::string alice = "X-Forwarded-User: alice\r\n";
  std::string header_bomb;
  for (int i = 0; i < 400; ++i) header_bomb += "X-Bomb-" + std::to_string(i) + ": " + std::string(40, 'b') + "\r\n";
  std::vector<Probe> p = {
      refused("Content-Length and Transfer-Encoding (smuggling)",
              "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
              "400"),
      refused("two Content-Length",
              "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", "400"),
      refused("Transfer-Encoding other than chunked",
              "POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "400"),
      refused("malformed chunk size", "POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
              "400"),
      refused("a chunk of 2^60 bytes declared",
              "POST /mcp HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", "413"),
      refused("Content-Length of 2^40", "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n",
              "413"),
      refused("space before the colon", "POST /mcp HTTP/1.1\r\nHost : x\r\nContent-Length: 0\r\n\r\n", "400"),
      refused("obsolete line folding", "POST /mcp HTTP/1.1\r\nHost: x\r\n folded\r\nContent-Length: 0\r\n\r\n", "400"),
      refused("bare LF", "POST /mcp HTTP/1.1\nHost: x\r\n\r\n", "400"),
      refused("absolute-form target", post(alice, kInit, "http://evil.example/mcp"), "400"),
      refused("CONNECT", "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", "400"),
      refused("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "400"),
      refused("no Host", "POST /mcp HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", "400"),
      refused("two Host fields", "POST /mcp HTTP/1.1\r\nHost: x\r\nHost: y\r\nContent-Length: 2\r\n\r\n{}", "400"),
      refused("HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400"),
      refused("binary garbage", std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 15), "400"),
      refused("header bomb (past max_header_size)", post(header_bomb, kInit), "431"),
      refused("body past max_body_size", post(alice, std::string(70 * 1024, ' ') + kInit), "413"),
      refused("Host off allowed_hosts",
              "POST /mcp HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\nConnection: close\r\n" +
                  alice + "Content-Length: " + std::to_string(kInit.size()) + "\r\n\r\n" + kInit,
              "403"),
      refused("Origin off allowed_origins",
              post(alice + "Origin: https://evil.example\r\nConnection: close\r\n", kInit), "403"),
      refused("initialize without the bound identity", post("Connection: close\r\n", kInit), "401"),
      refused("a head that never ends (slowloris, header_timeout)", "POST /mcp HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n",
              ""),
      refused("a body that never comes (body_timeout)", post(alice, kInit).substr(0, post(alice, kInit).size() - 10),
              ""),
  };
  p.push_back({"two Mcp-Session-Id fields", [alice](std::uint16_t port, const std::string& sid) {
                 const std::string got =
                     answer(port, post(alice + "Mcp-Session-Id: " + sid + "\r\nMcp-Session-Id: other\r\n", kWhoami));
                 EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0U) << got;
               }});
  p.push_back({"control bytes in the session id", [alice](std::uint16_t port, const std::string&) {
                 const std::string got = answer(port, post(alice + "Mcp-Session-Id: abc\x01\x7f"
                                                                   "def\r\n",
                                                           kWhoami));
                 EXPECT_EQ(got.rfind("HTTP/1.1 400", 0), 0U) << got;
               }});
  p.push_back({"another identity presenting a live session id", [](std::uint16_t port, const std::string& sid) {
                 const Headers mallory = {{"X-Forwarded-User", "mallory"}, {"Mcp-Session-Id", sid}};
                 const Response call = request(port, "POST", "/mcp", kWhoami, mallory);
                 EXPECT_EQ(call.status, 404) << call.body;
                 EXPECT_EQ(request(port, "DELETE", "/mcp", "", mallory).status, 404) << "cannot end it";
                 Stream stream(port, "GET", "/mcp", "", mallory);
                 EXPECT_EQ(stream.status(), 404) << "cannot read its stream";
               }});
  p.push_back({"a head trickled a few bytes at a time",
               [alice](std::uint16_t port, const std::string& sid) {
                 const std::string bytes = post(alice + "Connection: close\r\nMcp-Session-Id: " + sid +
                                                    "\r\nX-Pad: " + std::string(4000, 'p') + "\r\n",
                                                kWhoami);
                 RawConnection c(port);
                 for (std::size_t at = 0; at < bytes.size(); at += 4) ASSERT_TRUE(c.send(bytes.substr(at, 4)));
                 ASSERT_TRUE(c.read_to_close(10s));
                 EXPECT_EQ(c.received().rfind("HTTP/1.1 200", 0), 0U) << c.received();
               },
               1});
  p.push_back({"one client's initialize flood (new_sessions_per_client)", [](std::uint16_t port, const std::string&) {
                 int refused_429 = 0;
                 for (int i = 0; i < 40; ++i) {
                   const Response r = request(port, "POST", "/mcp", kInit, {{"X-Forwarded-User", "flooder"}});
                   if (r.status == 429) {
                     ++refused_429;
                     EXPECT_FALSE(r.header("retry-after").empty());
                   } else {
                     EXPECT_EQ(r.status, 200) << r.body;
                   }
                 }
                 EXPECT_GE(refused_429, 40 - 20);
               }});
  return p;
}

TEST(HostileInput, EveryProbeIsAnsweredAndLeavesTheProxyAsItWas) {
  SampleBackend backend(2);
  Proxy proxy({"--replicas",
               "2",
               "--backend-url-template",
               backend.url_template(),
               "--threads",
               "2",
               "--session-binding",
               "header:X-Forwarded-User",
               "--allowed-host",
               "x",
               "--allowed-host",
               "127.0.0.1",
               "--allowed-origin",
               "https://app.example.com",
               "--max-header-size",
               "8KiB",
               "--max-body-size",
               "64KiB",
               "--header-timeout",
               "300ms",
               "--body-timeout",
               "300ms",
               "--new-sessions-per-client",
               "20",
               "--new-sessions-window",
               "1h",
               "--upstream-idle-timeout",
               "100ms"});
  const pid_t pid = proxy.process->pid();
  // The proxy at rest: its listeners and loops; no client, no pooled pod connection yet.
  std::size_t fds_at_rest = 0;
  ASSERT_TRUE(eventually([&] {
    const std::size_t now = open_fds(pid);
    const bool settled = now == fds_at_rest;
    fds_at_rest = now;
    return settled;
  }));
  const Headers alice = {{"X-Forwarded-User", "alice"}};
  const Response init = request(proxy.port, "POST", "/mcp", kInit, alice);
  ASSERT_EQ(init.status, 200) << init.body;
  const std::string sid = init.header("mcp-session-id");
  Headers alice_session = alice;
  alice_session.emplace_back("Mcp-Session-Id", sid);

  const std::vector<Probe> all = probes();
  [[maybe_unused]] long rss_after_first_pass = 0;
  int counter = 0;
  for (int pass = 0; pass < 2; ++pass) {
    for (const Probe& probe : all) {
      SCOPED_TRACE("pass " + std::to_string(pass) + ": " + probe.name);
      probe.run(proxy.port, sid);
      counter += probe.calls_of_the_session;
      // A normal session still answers, within a second, its state intact.
      const auto asked = std::chrono::steady_clock::now();
      const Response r = request(proxy.port, "POST", "/mcp", kWhoami, alice_session);
      EXPECT_LT(std::chrono::steady_clock::now() - asked, 1s);
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_EQ(json::parse(r.body)["result"]["structuredContent"]["counter"], ++counter)
          << "the session's own pod, its state intact";
      // Nothing held: the client connections closed, the pooled ones pruned.
      EXPECT_TRUE(eventually([&] { return open_fds(pid) <= fds_at_rest; }, 10s))
          << open_fds(pid) << " descriptors, " << fds_at_rest << " at rest";
#ifndef MCPPROXY_SANITIZED
      if (pass == 1) {
        EXPECT_LE(rss_kib(pid), rss_after_first_pass + 1024) << "RSS back to where the first pass left it";
      }
#endif
    }
    if (pass == 0) rss_after_first_pass = rss_kib(pid);
  }
  const std::string m = proxy.metrics();
  EXPECT_GE(metric(m, "mcp_proxy_session_binding_mismatches_total").value_or(0), 6);
  EXPECT_GE(metric(m, "mcp_proxy_new_sessions_refused_total").value_or(0), 20 + 40);
  EXPECT_EQ(proxy.log().find("alice"), std::string::npos) << "no identity in the log";
}

}  // namespace
