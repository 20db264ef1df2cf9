#include "core/http/proxy_headers.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <string>

using namespace mcpproxy;

namespace {

// A request head as a client sends it, parsed, then edited for the pod.
std::string upstream(const std::string& wire, const UpstreamHeadEdits& edits) {
  http1::Head h;
  EXPECT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete) << wire;
  std::string out;
  out.resize(write_upstream_head(out, h, edits));
  return out;
}

std::string client(const std::string& wire, const ClientHeadEdits& edits, std::string_view method = "POST") {
  http1::Head h;
  EXPECT_EQ(http1::parse_response(wire, 16384, method, h), http1::Status::complete) << wire;
  std::string out;
  out.resize(write_client_head(out, h, edits));
  return out;
}

UpstreamHeadEdits pod0() {
  UpstreamHeadEdits e;
  e.pod_authority = "myserver-0.svc:8080";
  e.peer_ip = "10.1.2.3";
  return e;
}

bool has_line(const std::string& head, const std::string& line) {
  return head.find("\r\n" + line + "\r\n") != std::string::npos;
}

}  // namespace

TEST(ProxyHeaders, RequestKeepsEndToEndFieldsInOrder) {
  auto e = pod0();
  e.body_size = 2;
  const std::string out = upstream(
      "POST /mcp?x=1 HTTP/1.1\r\nHost: proxy.example\r\nAccept: application/json\r\nAuthorization: Bearer t\r\n"
      "Content-Length: 2\r\n\r\n",
      e);
  EXPECT_EQ(out.rfind("POST /mcp?x=1 HTTP/1.1\r\n", 0), 0U) << out;
  EXPECT_NE(out.find("Host: proxy.example\r\nAccept: application/json\r\nAuthorization: Bearer t\r\n"),
            std::string::npos)
      << out;
  EXPECT_TRUE(has_line(out, "Content-Length: 2"));
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
}

TEST(ProxyHeaders, RequestDropsHopByHopAndConnectionNamedFields) {
  const std::string out = upstream(
      "GET /mcp HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"
      "TE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Secret: s\r\nX-Kept: k\r\n\r\n",
      pod0());
  for (const char* gone : {"Connection:", "Keep-Alive:", "TE:", "Upgrade:", "X-Secret:"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in\n" << out;
  }
  EXPECT_TRUE(has_line(out, "X-Kept: k"));
}

TEST(ProxyHeaders, RequestSetsForwardedFields) {
  const std::string out = upstream(
      "GET /mcp HTTP/1.1\r\nHost: proxy.example:8080\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Host: evil\r\n"
      "X-Forwarded-Proto: https\r\n\r\n",
      pod0());
  EXPECT_TRUE(has_line(out, "X-Forwarded-For: 1.1.1.1, 10.1.2.3")) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-Host: proxy.example:8080")) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-Proto: http")) << out;
  EXPECT_EQ(out.find("evil"), std::string::npos);
  EXPECT_EQ(out.find("https"), std::string::npos);
  // No client X-Forwarded-For: the peer alone.
  EXPECT_TRUE(has_line(upstream("GET / HTTP/1.1\r\nHost: h\r\n\r\n", pod0()), "X-Forwarded-For: 10.1.2.3"));
}

TEST(ProxyHeaders, SeveralForwardedForFieldsReachThePodAsOneListInTheirOrder) {
  // What the limiter reads as the client's chain is what the pod gets: every field, in
  // order, then the peer; one field, so nothing a pod parses is split across lines.
  const std::string out = upstream(
      "GET /mcp HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Kept: k\r\n"
      "X-Forwarded-For: 3.3.3.3\r\nX-Forwarded-For:\r\n\r\n",
      pod0());
  EXPECT_TRUE(has_line(out, "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3")) << out;
  std::size_t fields = 0;
  for (std::size_t at = out.find("X-Forwarded-For:"); at != std::string::npos;
       at = out.find("X-Forwarded-For:", at + 1)) {
    ++fields;
  }
  EXPECT_EQ(fields, 1U) << out;
}

TEST(ProxyHeaders, ATrustedHopsForwardedHostAndProtoReachThePod) {
  auto e = pod0();
  e.trust_forwarded = true;
  const std::string out = upstream(
      "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
      "X-Forwarded-Host: mcp.example.com\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\n"
      "X-Forwarded-Host: second\r\n\r\n",
      e);
  EXPECT_TRUE(has_line(out, "X-Forwarded-Host: mcp.example.com")) << out;
  EXPECT_TRUE(has_line(out, "X-Forwarded-Proto: https")) << out;
  // The first of each only, and not the proxy's own next to it.
  EXPECT_EQ(out.find("second"), std::string::npos) << out;
  EXPECT_FALSE(has_line(out, "X-Forwarded-Proto: http")) << out;
  EXPECT_FALSE(has_line(out, "X-Forwarded-Host: 127.0.0.1:8080")) << out;
  EXPECT_TRUE(has_line(out, "Host: 127.0.0.1:8080")) << out;
  // A trusted hop that sent neither: the proxy's own, as untrusted.
  const std::string none = upstream("GET /mcp HTTP/1.1\r\nHost: h:1\r\n\r\n", e);
  EXPECT_TRUE(has_line(none, "X-Forwarded-Host: h:1")) << none;
  EXPECT_TRUE(has_line(none, "X-Forwarded-Proto: http")) << none;
}

TEST(ProxyHeaders, HostIsTheClientsUnlessRewritten) {
  const std::string wire = "GET /mcp HTTP/1.1\r\nHost: proxy.example\r\n\r\n";
  const std::string kept = upstream(wire, pod0());
  EXPECT_TRUE(has_line(kept, "Host: proxy.example")) << kept;
  EXPECT_EQ(kept.find("myserver-0"), std::string::npos);
  auto e = pod0();
  e.rewrite_host = true;
  const std::string rewritten = upstream(wire, e);
  EXPECT_TRUE(has_line(rewritten, "Host: myserver-0.svc:8080")) << rewritten;
  EXPECT_FALSE(has_line(rewritten, "Host: proxy.example")) << rewritten;
  EXPECT_TRUE(has_line(rewritten, "X-Forwarded-Host: proxy.example"));
  // An HTTP/1.0 request without Host gets the pod's.
  const std::string none = upstream("GET /mcp HTTP/1.0\r\n\r\n", pod0());
  EXPECT_TRUE(has_line(none, "Host: myserver-0.svc:8080")) << none;
  EXPECT_EQ(none.find("X-Forwarded-Host"), std::string::npos);
}

TEST(ProxyHeaders, SessionIdIsMappedOrDropped) {
  const std::string wire = "POST /mcp HTTP/1.1\r\nHost: h\r\nmcp-session-id: client-id\r\nContent-Length: 0\r\n\r\n";
  EXPECT_TRUE(has_line(upstream(wire, pod0()), "mcp-session-id: client-id"));
  auto mapped = pod0();
  mapped.pod_session = "pod-id";
  const std::string m = upstream(wire, mapped);
  EXPECT_TRUE(has_line(m, "Mcp-Session-Id: pod-id")) << m;
  EXPECT_EQ(m.find("client-id"), std::string::npos);
  auto dropped = pod0();
  dropped.drop_session_header = true;
  const std::string d = upstream(wire, dropped);
  EXPECT_EQ(d.find("client-id"), std::string::npos) << d;
  EXPECT_EQ(d.find("ession-Id"), std::string::npos) << d;
}

TEST(ProxyHeaders, EveryAdditionAtItsLongestFitsTheWritersBound) {
  // The writers size their output once from the head and the edits (sanitizer builds assert
  // the bound on every write): here each thing the proxy adds is as long as it gets.
  const std::string host(4000, 'h');
  const std::string xff(4000, 'f');
  const std::string wire = "PATCH /mcp HTTP/1.0\r\nHost: " + host + "\r\nX-Forwarded-For: " + xff +
                           "\r\nMcp-Session-Id: c\r\nContent-Length: 0\r\n\r\n";
  auto e = pod0();
  const std::string authority(300, 'a');
  const std::string pod_session(256, 's');
  const std::string request_id(200, 'r');
  e.pod_authority = authority;
  e.rewrite_host = true;
  e.pod_session = pod_session;
  const std::string peer = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff";
  e.peer_ip = peer;
  e.added_request_id = request_id;
  e.body_size = std::numeric_limits<std::size_t>::max();
  const std::string out = upstream(wire, e);
  EXPECT_EQ(out.rfind("PATCH /mcp HTTP/1.1\r\n", 0), 0U);
  EXPECT_TRUE(has_line(out, "Host: " + authority));
  EXPECT_TRUE(has_line(out, "X-Forwarded-Host: " + host));
  EXPECT_TRUE(has_line(out, "X-Forwarded-For: " + xff + ", " + peer));
  EXPECT_TRUE(has_line(out, "Mcp-Session-Id: " + pod_session));
  EXPECT_TRUE(has_line(out, "X-Request-Id: " + request_id));
  EXPECT_TRUE(has_line(out, "Content-Length: " + std::to_string(e.body_size)));
  EXPECT_EQ(out.substr(out.size() - 4), "\r\n\r\n");
  // A response: every field a session id to replace, the longest standard reason written.
  ClientHeadEdits c;
  c.http11 = false;
  c.keep_alive = true;
  c.chunked = true;
  const std::string client_session(256, 'c');
  c.client_session = client_session;
  std::string res = "HTTP/1.1 431 \r\n";
  for (int i = 0; i < 50; ++i) res += "M:1\r\nMcp-Session-Id: p\r\n";
  const std::string back = client(res + "\r\n", c);
  EXPECT_EQ(back.rfind("HTTP/1.0 431 Request Header Fields Too Large\r\nM:1\r\n", 0), 0U) << back.substr(0, 80);
  std::size_t replaced = 0;
  for (auto at = back.find("Mcp-Session-Id: " + client_session); at != std::string::npos;
       at = back.find("Mcp-Session-Id: " + client_session, at + 1)) {
    ++replaced;
  }
  EXPECT_EQ(replaced, 50U);
  EXPECT_TRUE(has_line(back, "Transfer-Encoding: chunked"));
  EXPECT_TRUE(has_line(back, "Connection: keep-alive"));
}

TEST(ProxyHeaders, ABufferReusedFromHeadToHeadHoldsEachHeadAtItsStart) {
  http1::Head big;
  const std::string big_wire = "POST /mcp HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(3000, 'x') + "\r\n\r\n";
  ASSERT_EQ(http1::parse_request(big_wire, 16384, big), http1::Status::complete);
  http1::Head small;
  ASSERT_EQ(http1::parse_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 16384, "POST", small),
            http1::Status::complete);
  std::string buffer;
  const std::size_t first = write_upstream_head(buffer, big, pod0());
  EXPECT_GE(buffer.size(), first);
  EXPECT_EQ(buffer.rfind("POST /mcp HTTP/1.1\r\nHost: h\r\nX-Long: xxx", 0), 0U);
  const std::size_t second = write_client_head(buffer, small, ClientHeadEdits{});
  EXPECT_GE(buffer.size(), first) << "kept, not shrunk";
  EXPECT_EQ(buffer.substr(0, second), "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
}

TEST(ProxyHeaders, BodyLengthIsTheForwardedOne) {
  // A chunked request goes to the pod with the decoded body's length, never chunked.
  auto e = pod0();
  e.body_size = 11;
  const std::string out =
      upstream("POST /mcp HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", e);
  EXPECT_TRUE(has_line(out, "Content-Length: 11")) << out;
  EXPECT_EQ(out.find("Transfer-Encoding"), std::string::npos);
  EXPECT_EQ(out.find("Expect"), std::string::npos);
  // A POST without a body still says so; a GET without one says nothing.
  EXPECT_TRUE(has_line(upstream("POST /mcp HTTP/1.1\r\nHost: h\r\n\r\n", pod0()), "Content-Length: 0"));
  EXPECT_EQ(upstream("GET /mcp HTTP/1.1\r\nHost: h\r\n\r\n", pod0()).find("Content-Length"), std::string::npos);
}

TEST(ProxyHeaders, ResponseDropsHopByHopAndKeepsTheRest) {
  ClientHeadEdits e;
  const std::string out = client(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: X-Internal\r\nX-Internal: 1\r\n"
      "Keep-Alive: timeout=5\r\nMcp-Session-Id: s1\r\nContent-Length: 2\r\n\r\n",
      e);
  EXPECT_EQ(out.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << out;
  EXPECT_TRUE(has_line(out, "Mcp-Session-Id: s1"));
  EXPECT_TRUE(has_line(out, "Content-Length: 2"));
  EXPECT_TRUE(has_line(out, "Content-Type: application/json"));
  for (const char* gone : {"Connection", "X-Internal", "Keep-Alive"}) {
    EXPECT_EQ(out.find(gone), std::string::npos) << gone << " in\n" << out;
  }
}

TEST(ProxyHeaders, ResponseFramingAndConnectionForTheClient) {
  ClientHeadEdits e;
  e.chunked = true;
  e.keep_alive = false;
  const std::string out = client("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", e, "GET");
  EXPECT_TRUE(has_line(out, "Transfer-Encoding: chunked")) << out;
  EXPECT_TRUE(has_line(out, "Connection: close")) << out;
  ClientHeadEdits old;
  old.http11 = false;
  const std::string ten = client("HTTP/1.1 204 No Content\r\n\r\n", old);
  EXPECT_EQ(ten.rfind("HTTP/1.0 204 No Content\r\n", 0), 0U) << ten;
  EXPECT_TRUE(has_line(ten, "Connection: keep-alive")) << ten;
}

TEST(ProxyHeaders, ResponseSessionIdIsTheClientsAfterAMove) {
  ClientHeadEdits e;
  e.client_session = "client-id";
  const std::string out = client("HTTP/1.1 200 OK\r\nmcp-session-id: pod-id\r\nContent-Length: 0\r\n\r\n", e);
  EXPECT_TRUE(has_line(out, "Mcp-Session-Id: client-id")) << out;
  EXPECT_EQ(out.find("pod-id"), std::string::npos);
}

TEST(ProxyHeaders, StartLinesGoAsReceivedOnlyWhenTheyAreTheOnesToSend) {
  // HTTP/1.1 request line: copied with the fields after it, even when the first field is
  // dropped; an HTTP/1.0 one is written as HTTP/1.1 (the proxy speaks 1.1 to pods).
  EXPECT_EQ(upstream("POST /a%20b?c=d HTTP/1.1\r\nKeep-Alive: 5\r\nHost: h\r\nContent-Length: 0\r\n\r\n", pod0())
                .rfind("POST /a%20b?c=d HTTP/1.1\r\nHost: h\r\n", 0),
            0U);
  EXPECT_EQ(upstream("GET /mcp HTTP/1.0\r\nHost: h\r\n\r\n", pod0()).rfind("GET /mcp HTTP/1.1\r\nHost: h\r\n", 0), 0U);
  // Status line: copied when the client speaks the pod's version; else written.
  ClientHeadEdits e11;
  const std::string same =
      client("HTTP/1.1 201 Made Here\r\nConnection: close\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n", e11);
  EXPECT_EQ(same.rfind("HTTP/1.1 201 Made Here\r\nX-A: 1\r\n", 0), 0U) << same;
  ClientHeadEdits e10;
  e10.http11 = false;
  const std::string down = client("HTTP/1.1 201 Made Here\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n", e10);
  EXPECT_EQ(down.rfind("HTTP/1.0 201 Made Here\r\nX-A: 1\r\n", 0), 0U) << down;
  const std::string up = client("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", e11);
  EXPECT_EQ(up.rfind("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", 0), 0U) << up;
}

TEST(ProxyHeaders, ResponseWithoutReasonGetsTheStandardOne) {
  const std::string out = client("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", ClientHeadEdits{});
  EXPECT_EQ(out.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0U) << out;
}

TEST(ProxyHeaders, AnInitializeIsKeptForReplayWithoutCredentials) {
  http1::Head h;
  const std::string wire =
      "POST /mcp?tenant=a HTTP/1.1\r\nHost: proxy.example\r\nAuthorization: Bearer secret\r\nCookie: s=1\r\n"
      "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nUser-Agent: sdk\r\n"
      "Connection: keep-alive, X-Hop\r\nX-Hop: h\r\nContent-Length: 2\r\nX-Forwarded-Host: evil\r\n"
      "X-Forwarded-For: 1.1.1.1\r\nMcp-Session-Id: old\r\nX-Tenant: a\r\nX-Request-Id: r-1\r\n"
      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: k=v\r\n\r\n";
  ASSERT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete);
  const std::string kept = replayable_fields(h);
  EXPECT_EQ(kept,
            "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nUser-Agent: sdk\r\n"
            "X-Tenant: a\r\n");
  // The credentials and the trace come from the request in hand when the initialize is replayed.
  RequestId id;
  id.assign(h, 128);
  EXPECT_FALSE(id.generated());
  EXPECT_EQ(id.view(), "r-1");
  std::string current;
  append_per_request_fields(current, h, id);
  EXPECT_EQ(current,
            "Authorization: Bearer secret\r\nCookie: s=1\r\nX-Request-Id: r-1\r\n"
            "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\ntracestate: k=v\r\n");
}

TEST(ProxyHeaders, AnEmptyOrDoubledRequestIdIsReplacedByOneMadeHere) {
  http1::Head h;
  // Two copies: the pod and the log could each read another one; neither is taken.
  const std::string wire = "GET /mcp HTTP/1.1\r\nHost: p\r\nX-Request-Id: \r\nx-request-id: later\r\n\r\n";
  ASSERT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete);
  RequestId id;
  id.assign(h, 128);
  EXPECT_TRUE(id.generated());
  EXPECT_EQ(id.view().size(), 36U);
  const std::string only_empty = "GET /mcp HTTP/1.1\r\nHost: p\r\nX-Request-Id:\r\n\r\n";
  ASSERT_EQ(http1::parse_request(only_empty, 16384, h), http1::Status::complete);
  id.assign(h, 128);
  EXPECT_TRUE(id.generated());
  EXPECT_EQ(id.view().size(), 36U);
}

TEST(ProxyHeaders, ARequestIdIsBoundedInLengthAndCharset) {
  const auto id_of = [](const std::string& value, std::size_t max) {
    http1::Head h;
    const std::string wire = "GET /mcp HTTP/1.1\r\nHost: p\r\nX-Request-Id: " + value + "\r\n\r\n";
    EXPECT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete);
    RequestId id;
    id.assign(h, max);
    return std::pair{id.generated(), std::string(id.view())};
  };
  const std::string at_bound(128, 'a');
  EXPECT_EQ(id_of(at_bound, 128), std::pair(false, at_bound));
  EXPECT_TRUE(id_of(at_bound + "a", 128).first) << "one byte past the bound";
  EXPECT_TRUE(id_of(std::string(10 * 1024, 'x'), 128).first) << "10 KB";
  EXPECT_TRUE(id_of("a b", 128).first) << "a space inside";
  EXPECT_TRUE(id_of("caf\xc3\xa9", 128).first) << "not ASCII";
  EXPECT_EQ(id_of("req-7_x.y:z", 16), std::pair(false, std::string("req-7_x.y:z")));
}

TEST(ProxyHeaders, AReplacedRequestIdReachesThePodAsTheProxysOnly) {
  http1::Head h;
  const std::string wire =
      "POST /mcp HTTP/1.1\r\nHost: p\r\nX-Request-Id: a\r\nX-Request-Id: b\r\nContent-Length: 0\r\n\r\n";
  ASSERT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete);
  RequestId id;
  id.assign(h, 128);
  ASSERT_TRUE(id.generated());
  UpstreamHeadEdits e = pod0();
  e.added_request_id = id.view();
  const std::string out = upstream(wire, e);
  EXPECT_EQ(out.find("X-Request-Id: a\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("X-Request-Id: b\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("X-Request-Id: " + std::string(id.view()) + "\r\n"), std::string::npos) << out;
  // A replayed initialize carries the same one id.
  std::string replay;
  append_per_request_fields(replay, h, id);
  EXPECT_EQ(replay, "X-Request-Id: " + std::string(id.view()) + "\r\n");
}

TEST(ProxyHeaders, ARequestWithoutAnIdGetsAFreshUuidThatThePodSees) {
  http1::Head h;
  const std::string wire = "POST /mcp HTTP/1.1\r\nHost: p\r\ntraceparent: 00-ab-cd-01\r\nContent-Length: 0\r\n\r\n";
  ASSERT_EQ(http1::parse_request(wire, 16384, h), http1::Status::complete);
  RequestId a;
  RequestId b;
  a.assign(h, 128);
  b.assign(h, 128);
  ASSERT_TRUE(a.generated());
  ASSERT_EQ(a.view().size(), 36U);
  EXPECT_NE(a.view(), b.view());
  for (std::size_t i = 0; i < a.view().size(); ++i) {
    const char c = a.view()[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      EXPECT_EQ(c, '-') << a.view();
    } else {
      EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << a.view();
    }
  }
  EXPECT_EQ(a.view()[14], '4') << a.view();                                                    // version 4
  EXPECT_NE(std::string_view("89ab").find(a.view()[19]), std::string_view::npos) << a.view();  // variant 10
  UpstreamHeadEdits e;
  e.pod_authority = "pod:80";
  e.peer_ip = "127.0.0.1";
  e.added_request_id = a.view();
  std::string out;
  out.resize(write_upstream_head(out, h, e));
  EXPECT_NE(out.find("X-Request-Id: " + std::string(a.view()) + "\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("traceparent: 00-ab-cd-01\r\n"), std::string::npos) << out;  // untouched
}
