#include "core/http/http_rules.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

using namespace mcpproxy;

TEST(SessionId, Validation) {
  EXPECT_TRUE(valid_session_id("a"));
  EXPECT_TRUE(valid_session_id("550e8400-e29b-41d4-a716-446655440000"));
  EXPECT_TRUE(valid_session_id(std::string(256, 'x')));
  EXPECT_TRUE(valid_session_id("!~"));
  EXPECT_FALSE(valid_session_id(""));
  EXPECT_FALSE(valid_session_id(std::string(257, 'x')));
  EXPECT_FALSE(valid_session_id("bad id"));
  EXPECT_FALSE(valid_session_id("tab\there"));
  EXPECT_FALSE(valid_session_id("del\x7f"));
  EXPECT_FALSE(valid_session_id("caf\xc3\xa9"));
}

TEST(SessionId, EveryByteValueAtEveryPlaceOfAWordAndTheTail) {
  // The check goes eight bytes at a time, then byte by byte: each of the 256 values at each
  // of 17 places (two words and a tail) is judged by the rule itself, 0x21-0x7E.
  for (std::size_t at = 0; at < 17; ++at) {
    for (int v = 0; v < 256; ++v) {
      std::string id(17, 'a');
      id[at] = static_cast<char>(v);
      EXPECT_EQ(valid_session_id(id), v >= 0x21 && v <= 0x7E) << "byte " << v << " at " << at;
    }
  }
}

TEST(JsonRpc, SingleRequest) {
  const auto i = inspect_jsonrpc(R"({"jsonrpc":"2.0","id":7,"method":"tools/list"})");
  EXPECT_TRUE(i.valid);
  EXPECT_FALSE(i.batch);
  EXPECT_FALSE(i.has_initialize);
  EXPECT_TRUE(i.has_request);
  EXPECT_EQ(i.first_method, "tools/list");
  EXPECT_EQ(i.id_json, "7");
}

TEST(JsonRpc, StringIdIsEchoedAsString) {
  EXPECT_EQ(inspect_jsonrpc(R"({"jsonrpc":"2.0","id":"a\"b","method":"x"})").id_json, R"("a\"b")");
}

TEST(JsonRpc, Initialize) {
  const auto i = inspect_jsonrpc(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}})");
  EXPECT_TRUE(i.has_initialize);
  EXPECT_TRUE(may_be_initialize(R"({"method":"initialize"})"));
  EXPECT_FALSE(may_be_initialize(R"({"method":"tools/call"})"));
}

TEST(JsonRpc, MayBeInitializeFindsTheQuotedWordAnywhere) {
  EXPECT_TRUE(may_be_initialize(R"("initialize")"));
  EXPECT_TRUE(may_be_initialize(R"({"zz":"z","method":"initialize"})"));
  EXPECT_TRUE(may_be_initialize(R"({"method" : "initialize" })"));
  EXPECT_FALSE(may_be_initialize(R"({"method":"notifications/initialized"})"));
  EXPECT_FALSE(may_be_initialize(R"({"method":"initialize)"));
  EXPECT_FALSE(may_be_initialize(R"(initialize")"));
  EXPECT_FALSE(may_be_initialize(R"(z"initialize)"));
  EXPECT_FALSE(may_be_initialize(""));
  EXPECT_FALSE(may_be_initialize("zzzzzzzzzzzzzzzzzz"));
}

TEST(JsonRpc, NotificationIsNotARequest) {
  const auto i = inspect_jsonrpc(R"({"jsonrpc":"2.0","method":"notifications/initialized"})");
  EXPECT_TRUE(i.valid);
  EXPECT_FALSE(i.has_request);
  EXPECT_EQ(i.id_json, "null");
  // An "initialize" without an id is a notification, not a session start.
  EXPECT_FALSE(inspect_jsonrpc(R"({"jsonrpc":"2.0","method":"initialize"})").has_initialize);
}

TEST(JsonRpc, BatchWithInitialize) {
  const auto i = inspect_jsonrpc(
      R"([{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":"i1","method":"initialize"}])");
  EXPECT_TRUE(i.valid);
  EXPECT_TRUE(i.batch);
  EXPECT_TRUE(i.has_initialize);
  EXPECT_EQ(i.id_json, "\"i1\"");
}

TEST(JsonRpc, Malformed) {
  EXPECT_FALSE(inspect_jsonrpc("{not json").valid);
  EXPECT_FALSE(inspect_jsonrpc("[]").valid);
  EXPECT_FALSE(inspect_jsonrpc("[1,2]").valid);
  EXPECT_FALSE(inspect_jsonrpc("").valid);
  EXPECT_EQ(inspect_jsonrpc("{not json").id_json, "null");
}

TEST(JsonRpc, ErrorBody) {
  EXPECT_EQ(jsonrpc_error_body(-32001, "Session not found", "7"),
            R"({"jsonrpc":"2.0","error":{"code":-32001,"message":"Session not found"},"id":7})");
  EXPECT_EQ(jsonrpc_error_body(-32600, "x", ""),
            R"({"jsonrpc":"2.0","error":{"code":-32600,"message":"x"},"id":null})");
}

TEST(Headers, HopByHop) {
  for (const char* h : {"Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
                        "Proxy-Authenticate", "te", "UPGRADE"}) {
    EXPECT_TRUE(is_hop_by_hop(h)) << h;
  }
  for (const char* h : {"Mcp-Session-Id", "Content-Type", "Content-Length", "Last-Event-ID", "MCP-Protocol-Version",
                        "X-Accel-Buffering", "Authorization", "Te:", "Trailers", "Host", ""}) {
    EXPECT_FALSE(is_hop_by_hop(h)) << h;
  }
  EXPECT_TRUE(connection_lists("close, X-Private", "x-private"));
  EXPECT_TRUE(connection_lists("keep-alive", "Keep-Alive"));
  EXPECT_FALSE(connection_lists("close", "x-private"));
  EXPECT_FALSE(connection_lists("", "x"));
}

TEST(Query, Params) {
  EXPECT_EQ(query_param("/messages?sessionId=abc", "sessionId").value_or(""), "abc");
  EXPECT_EQ(query_param("/messages?x=1&sessionId=a%2Db", "sessionId").value_or(""), "a-b");
  EXPECT_FALSE(query_param("/messages", "sessionId").has_value());
  EXPECT_FALSE(query_param("/messages?sessionid=abc", "sessionId").has_value());
}

TEST(Classify, InPlaceLeavesNothingOfTheLastRequest) {
  // A connection's exchanges reuse one Classified's id storage: every field is set anew.
  const std::string call = R"({"jsonrpc":"2.0","id":2,"method":"tools/call"})";
  const std::string init = R"({"jsonrpc":"2.0","id":1,"method":"initialize"})";
  Classified c;
  classify_request(c, std::nullopt, "/messages?sessionId=xyz", call, true);
  EXPECT_EQ(c.cls, RequestClass::session);
  EXPECT_TRUE(c.from_query);
  classify_request(c, "old-id", "/mcp", init, true);
  EXPECT_EQ(c.cls, RequestClass::new_session);
  EXPECT_TRUE(c.drop_session_header);
  EXPECT_FALSE(c.from_query);
  EXPECT_EQ(c.session_id, "");
  classify_request(c, "a-much-longer-session-id-than-sso-holds-0123456789", "/mcp", call, true);
  EXPECT_EQ(c.session_id, "a-much-longer-session-id-than-sso-holds-0123456789");
  EXPECT_FALSE(c.drop_session_header);
  classify_request(c, std::nullopt, "/mcp", call, true);
  EXPECT_EQ(c.cls, RequestClass::sessionless);
  EXPECT_EQ(c.session_id, "");
  classify_request(c, "bad id", "/mcp", call, true);
  EXPECT_EQ(c.cls, RequestClass::malformed_session_id);
  EXPECT_EQ(c.session_id, "");
}

TEST(Classify, Routes) {
  const std::string call = R"({"jsonrpc":"2.0","id":2,"method":"tools/call"})";
  const std::string init = R"({"jsonrpc":"2.0","id":1,"method":"initialize"})";
  EXPECT_EQ(classify_request(std::nullopt, "/mcp", init, true).cls, RequestClass::new_session);
  const auto stale = classify_request("old-id", "/mcp", init, true);
  EXPECT_EQ(stale.cls, RequestClass::new_session);
  EXPECT_TRUE(stale.drop_session_header);
  const auto known = classify_request("abc", "/mcp", call, true);
  EXPECT_EQ(known.cls, RequestClass::session);
  EXPECT_EQ(known.session_id, "abc");
  EXPECT_EQ(classify_request("bad id", "/mcp", call, true).cls, RequestClass::malformed_session_id);
  EXPECT_EQ(classify_request(std::string_view(""), "/mcp", call, true).cls, RequestClass::malformed_session_id);
  EXPECT_EQ(classify_request(std::nullopt, "/mcp", call, true).cls, RequestClass::sessionless);
  EXPECT_EQ(classify_request(std::nullopt, "/sse", "", false).cls, RequestClass::sessionless);
  // GET and DELETE carry the session in the header; an initialize is only ever a POST.
  EXPECT_EQ(classify_request("abc", "/mcp", "", false).cls, RequestClass::session);
  const auto legacy_init = classify_request(std::nullopt, "/messages?sessionId=xyz", init, true);
  EXPECT_EQ(legacy_init.cls, RequestClass::session) << "a legacy initialize belongs to its SSE stream's session";
  EXPECT_EQ(legacy_init.session_id, "xyz");
  const auto legacy = classify_request(std::nullopt, "/messages?sessionId=xyz", call, true);
  EXPECT_EQ(legacy.cls, RequestClass::session);
  EXPECT_TRUE(legacy.from_query);
  EXPECT_EQ(legacy.session_id, "xyz");
}

TEST(SessionHash, StableAndNotTheId) {
  EXPECT_EQ(session_hash("abc"), session_hash("abc"));
  EXPECT_NE(session_hash("abc"), session_hash("abd"));
  EXPECT_EQ(session_hash("abc").size(), 12U);
  EXPECT_EQ(session_hash("abcdef").find("abc"), std::string::npos);
}

TEST(LegacyEndpoint, SessionFromAnnouncedUrl) {
  EXPECT_EQ(legacy_endpoint_session("/messages?sessionId=abc-1").value_or(""), "abc-1");
  EXPECT_EQ(legacy_endpoint_session("http://pod:8080/messages?x=1&sessionId=zz").value_or(""), "zz");
  EXPECT_FALSE(legacy_endpoint_session("/messages").has_value());
  // Found by fuzz/sse_endpoint: an empty query before a fragment (Boost.URL 1.81 crashed).
  EXPECT_FALSE(legacy_endpoint_session("/messag?#es?sessionId=abc123").has_value());
  EXPECT_FALSE(legacy_endpoint_session("/m?sessionId=a%2").has_value()) << "a malformed escape";
  EXPECT_EQ(legacy_endpoint_session("/m?sessionId=a%2Fb#frag").value_or(""), "a/b");
}

// The events `stream` holds when it arrives in two pieces cut at `cut`: each event's data
// (or "-" for one with none), as take_sse_events and parse_sse_event see them.
std::vector<std::string> sse_data(std::string_view stream, std::size_t cut) {
  std::vector<std::string> out;
  std::string pending;
  for (const std::string_view piece : {stream.substr(0, cut), stream.substr(cut)}) {
    pending.append(piece);
    pending.erase(0, take_sse_events(pending, [&](std::string_view event) {
                    const SseEvent e = parse_sse_event(event);
                    out.push_back(e.has_data ? e.data : "-");
                    return true;
                  }));
  }
  return out;
}

TEST(SseEvents, LinesEndWithCrLfOrLfOrCrAtEverySplit) {
  // CRLF, LF and CR ends, mixed within one event and at its blank line.
  const std::string stream = "data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\n\r\ndata: e\r\ndata: f\r\n\n";
  const std::vector<std::string> want = {"a", "b", "c", "d", "e\nf"};
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    std::vector<std::string> got = sse_data(stream, cut);
    // A CR that ends a piece ends its line: the LF after it reads as one more (empty) event.
    got.erase(std::remove(got.begin(), got.end(), "-"), got.end());
    EXPECT_EQ(got, want) << "cut at " << cut;
  }
}

TEST(SseEvents, FieldsAsTheSpecReadsThem) {
  SseEvent e = parse_sse_event(": a comment\nevent: first\nevent:endpoint\nid: 7\ndata\ndata:x\ndata:  two spaces");
  EXPECT_EQ(e.type, "endpoint");  // the last event field
  EXPECT_TRUE(e.has_data);
  EXPECT_EQ(e.data, "\nx\n two spaces");  // `data` alone is an empty value; one space is dropped
  e = parse_sse_event("retry: 10\n: keepalive\n");
  EXPECT_FALSE(e.has_data);
  EXPECT_EQ(e.type, "");
  EXPECT_EQ(parse_sse_event("datax: no\ndata: yes").data, "yes");
}

TEST(SseEvents, AnIncompleteEventIsLeftForLater) {
  std::size_t events = 0;
  const auto count = [&](std::string_view) {
    ++events;
    return true;
  };
  EXPECT_EQ(take_sse_events("data: x\n", count), 0U);
  EXPECT_EQ(take_sse_events("data: x\ndata: y", count), 0U);
  EXPECT_EQ(events, 0U);
  EXPECT_EQ(take_sse_events("data: x\n\ndata: y\n", count), 9U);
  EXPECT_EQ(events, 1U);
  // on_event stops the walk: what it took so far is taken.
  EXPECT_EQ(take_sse_events("data: 1\n\ndata: 2\n\n", [](std::string_view) { return false; }), 9U);
}

TEST(SseEndpointScanner, FindsEndpointAcrossChunks) {
  SseEndpointScanner s;
  EXPECT_FALSE(s.feed(": comment\n\nevent: endp").has_value());
  EXPECT_FALSE(s.feed("oint\r\ndata: /messages?sessionId=").has_value());
  const auto id = s.feed("s1\r\n\r\nevent: message\ndata: {}\n\n");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(*id, "s1");
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.feed("event: endpoint\ndata: /m?sessionId=s2\n\n").has_value());
}

TEST(SseEndpointScanner, GivesUpAfterItsBound) {
  SseEndpointScanner s(64);
  EXPECT_FALSE(s.feed(std::string(100, 'x')).has_value());
  EXPECT_TRUE(s.done());
}

TEST(SseEndpointScanner, IgnoresOtherEvents) {
  SseEndpointScanner s;
  EXPECT_FALSE(s.feed("event: message\ndata: /messages?sessionId=no\n\n").has_value());
  EXPECT_FALSE(s.done());
}

TEST(LegacyEndpoint, PrefixForAMountedProxy) {
  EXPECT_EQ(prefix_legacy_endpoint("event: endpoint\ndata: /messages?sessionId=a\n\n", "/team-a"),
            "event: endpoint\ndata: /team-a/messages?sessionId=a\n\n");
  EXPECT_EQ(prefix_legacy_endpoint(": hi\n\nevent: endpoint\r\ndata:/m?sessionId=a\r\n\r\n", "/p/"),
            ": hi\n\nevent: endpoint\r\ndata:/p/m?sessionId=a\r\n\r\n");
  const std::string absolute = "event: endpoint\ndata: http://pod:8080/messages?sessionId=a\n\n";
  EXPECT_EQ(prefix_legacy_endpoint(absolute, "/p"), absolute);
  EXPECT_EQ(prefix_legacy_endpoint("event: endpoint\ndata: //h/m\n\n", "/p"), "event: endpoint\ndata: //h/m\n\n");
  EXPECT_EQ(prefix_legacy_endpoint("event: message\ndata: /x\n\n", "/p"), "event: message\ndata: /x\n\n");
  EXPECT_EQ(prefix_legacy_endpoint("event: endpoint\ndata: /m\n\n", ""), "event: endpoint\ndata: /m\n\n");
}

TEST(DnsRebinding, OriginsAndHostsOnTheList) {
  const std::vector<std::string> none;
  EXPECT_TRUE(origin_allowed(none, std::string_view("https://evil.example")));
  EXPECT_TRUE(host_allowed(none, std::nullopt));
  const std::vector<std::string> origins = {"http://localhost:3000", "https://App.Example.com"};
  EXPECT_TRUE(origin_allowed(origins, std::nullopt)) << "no Origin: not a browser";
  EXPECT_TRUE(origin_allowed(origins, std::string_view("http://localhost:3000")));
  EXPECT_TRUE(origin_allowed(origins, std::string_view("https://app.example.com")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://localhost:3001")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://localhost:3000.evil.example")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("null")));
  const std::vector<std::string> hosts = {"localhost", "127.0.0.1:8080", "[::1]"};
  EXPECT_TRUE(host_allowed(hosts, std::string_view("localhost:9999")));
  EXPECT_TRUE(host_allowed(hosts, std::string_view("LOCALHOST")));
  EXPECT_TRUE(host_allowed(hosts, std::string_view("127.0.0.1:8080")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("127.0.0.1:8081")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("127.0.0.1")));
  EXPECT_TRUE(host_allowed(hosts, std::string_view("[::1]:8080")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("evil.example.com")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("localhost.evil.example.com")));
  EXPECT_FALSE(host_allowed(hosts, std::nullopt));
}

TEST(DnsRebinding, HostAndOriginAreParsedAsAuthoritiesNotCompared) {
  const std::vector<std::string> hosts = {"localhost", "127.0.0.1:8080"};
  // Userinfo is no part of a Host: "localhost:80@evil.com" names evil.com.
  EXPECT_FALSE(host_allowed(hosts, std::string_view("localhost:80@evil.com")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("localhost@evil.com")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("127.0.0.1:8080@evil.com")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("localhost/evil")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("localhost:80x")));
  EXPECT_FALSE(host_allowed(hosts, std::string_view("")));
  EXPECT_TRUE(host_allowed(hosts, std::string_view("localhost:")));
  const std::vector<std::string> origins = {"http://localhost:3000"};
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://localhost:3000@evil.com")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://user@localhost:3000")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://localhost:3000/path")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("http://localhost:3000?q")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("https://localhost:3000")));
  EXPECT_FALSE(origin_allowed(origins, std::string_view("not an origin")));
  EXPECT_TRUE(origin_allowed(origins, std::string_view("HTTP://LOCALHOST:3000")));
  EXPECT_TRUE(origin_allowed({"null"}, std::string_view("null")));
  // What the config takes as entries.
  EXPECT_TRUE(valid_host_entry("[::1]:8080"));
  EXPECT_FALSE(valid_host_entry("a@b"));
  EXPECT_FALSE(valid_host_entry(""));
  EXPECT_TRUE(valid_origin_entry("https://app.example.com"));
  EXPECT_FALSE(valid_origin_entry("https://app.example.com/"));
  EXPECT_FALSE(valid_origin_entry("app.example.com"));
}
