// The head writers of the proxy's own messages: local replies and the replayed requests.
#include <gtest/gtest.h>

#include <string>

#include "core/http/proxy_headers.hpp"

using namespace mcpproxy;

namespace {
http1::Head request(const std::string& wire) {
  static std::string kept;  // the head's views point into it
  kept = wire;
  http1::Head h;
  EXPECT_EQ(http1::parse_request(kept, 16384, h), http1::Status::complete) << wire;
  return h;
}
}  // namespace

TEST(LocalReplyHead, KeepAliveOverHttp11NeedsNoConnectionField) {
  std::string out;
  LocalReplyHead h;
  h.status = 404;
  h.reason = "Not Found";
  h.body_size = 12;
  write_local_reply_head(out, h);
  EXPECT_EQ(out, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n");
}

TEST(LocalReplyHead, RetryAfterAndCloseInBeastsOrder) {
  std::string out;
  LocalReplyHead h;
  h.status = 503;
  h.reason = "Service Unavailable";
  h.keep_alive = false;
  h.retry_after = 1;
  h.body_size = 3;
  write_local_reply_head(out, h);
  EXPECT_EQ(out,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            "Connection: close\r\nContent-Length: 3\r\n\r\n");
}

TEST(LocalReplyHead, Http10KeepAliveIsSaid) {
  std::string out;
  LocalReplyHead h;
  h.status = 403;
  h.reason = "Forbidden";
  h.http11 = false;
  write_local_reply_head(out, h);
  EXPECT_EQ(out,
            "HTTP/1.0 403 Forbidden\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
            "Content-Length: 0\r\n\r\n");
  out.clear();
  h.keep_alive = false;
  write_local_reply_head(out, h);
  EXPECT_EQ(out, "HTTP/1.0 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n");
}

TEST(ReplayHead, TheStoredInitializeWithTheRequestsCredentials) {
  const http1::Head req = request(
      "POST /mcp HTTP/1.1\r\nHost: proxy\r\nAuthorization: Bearer now\r\nMCP-Protocol-Version: 2025-06-18\r\n"
      "Mcp-Session-Id: s1\r\nContent-Length: 2\r\n\r\n");
  RequestId id;
  id.assign(req, 64);
  ReplayHeadEdits e;
  e.method = "POST";
  e.target = "/mcp";
  e.host = "pod-1:8080";
  e.init_fields = "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n";
  e.session = "pod-session";
  e.body_size = 7;
  std::string out = "left over";
  write_replay_head(out, e, req, id);
  EXPECT_EQ(out.rfind("POST /mcp HTTP/1.1\r\nHost: pod-1:8080\r\nAccept: application/json, text/event-stream\r\n", 0),
            0U)
      << out;
  EXPECT_NE(out.find("Authorization: Bearer now\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("Mcp-Session-Id: pod-session\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("MCP-Protocol-Version: 2025-06-18\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("Mcp-Session-Id: s1"), std::string::npos) << out;
  EXPECT_NE(out.find("Content-Length: 7\r\n\r\n"), std::string::npos) << out;
}

TEST(ReplayHead, DefaultsWithoutKeptFieldsAndNoSessionBeforeOneExists) {
  const http1::Head req = request("POST /mcp HTTP/1.1\r\nHost: proxy\r\nContent-Length: 2\r\n\r\n");
  RequestId id;
  id.assign(req, 64);
  ReplayHeadEdits e;
  e.method = "POST";
  e.target = "/mcp";
  e.host = "proxy";
  std::string out;
  write_replay_head(out, e, req, id);
  EXPECT_NE(out.find("Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("Mcp-Session-Id"), std::string::npos) << out;
  EXPECT_EQ(out.find("MCP-Protocol-Version"), std::string::npos) << out;
}
