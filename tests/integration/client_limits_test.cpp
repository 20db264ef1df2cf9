// Per-client limits against hostile clients, through the real proxy: the new-session
// limiter under a flood of unique client keys (its memory bounded).
#include <gtest/gtest.h>

#include "harness.hpp"

using namespace harness;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"limits","version":"1"}}})";

}  // namespace

// A flood of initializes, each from another client (a unique address a trusted hop appended
// after 8 KB of the client's own X-Forwarded-For): the limiter keeps at most
// limits.new_sessions_max_clients windows of a digest each, and gives them back as they
// end. Before, each key was kept verbatim for the window: RSS grew by the flood's keys.
TEST(NewSessionLimiter, AFloodOfUniqueClientsKeepsTheProxysMemoryBounded) {
  // Nothing listens at the pod: an admitted initialize is answered at once, no session made.
  Proxy proxy({"--replicas", "1", "--backend-url-template", "http://127.0.9.1{ordinal}:" + std::to_string(free_port()),
               "--threads", "2", "--trust-forwarded-headers", "true", "--new-sessions-per-client", "5",
               "--new-sessions-window", "5s", "--new-sessions-max-clients", "1000"});
  const pid_t pid = proxy.process->pid();
  const auto flood = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string own = std::to_string(i) + std::string(8192, 'f');
      const std::string appended = "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                                   std::to_string(i % 256);
      ASSERT_NE(request(proxy.port, "POST", "/mcp", kInit, {{"X-Forwarded-For", own + ", " + appended}}).status, 0);
    }
  };
  flood(0, 500);  // the allocator's arenas and the connections' buffers settle
  const long before = rss_kib(pid);
  const auto started = std::chrono::steady_clock::now();
  flood(500, 8000);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 60s);
  const std::string m = proxy.metrics();
  EXPECT_LE(metric(m, "mcp_proxy_new_session_clients").value_or(-1), 1000);
  EXPECT_GT(metric(m, "mcp_proxy_new_session_windows_dropped_total").value_or(0), 0) << "the bound was reached";
  EXPECT_EQ(metric(m, "mcp_proxy_new_sessions_refused_total").value_or(-1), 0);
#ifndef MCPPROXY_SANITIZED
  // 7500 keys of 8 KB were 60 MB kept; a digest each, at most 1000, is nothing to see.
  EXPECT_LT(rss_kib(pid) - before, 16 * 1024) << "RSS grew with the flood's keys";
#endif
  // The windows end, and go, with no initialize to make room: the periodic sweep.
  EXPECT_TRUE(eventually([&] { return metric(proxy.metrics(), "mcp_proxy_new_session_clients").value_or(-1) == 0; },
                         15s));
}
