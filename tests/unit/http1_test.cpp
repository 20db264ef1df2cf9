#include "core/http/http1.hpp"

#include <gtest/gtest.h>

#include <cctype>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace mcpproxy::http1;

namespace {
constexpr std::size_t kLimit = 16 * 1024;

Status request(std::string_view bytes, Head& h, std::size_t limit = kLimit) { return parse_request(bytes, limit, h); }

// Feeds `wire` to the decoder in pieces of `step` bytes, the way reads deliver it.
std::string dechunk(const std::string& wire, std::size_t step, bool* error = nullptr, std::size_t* used = nullptr) {
  ChunkedDecoder d;
  std::string buf = wire;
  std::string out;
  std::size_t pos = 0;
  while (pos < buf.size() && !d.done()) {
    const std::size_t n = std::min(step, buf.size() - pos);
    const auto r = d.decode(buf.data() + pos, buf.data() + pos, n);
    if (r.error) {
      if (error != nullptr) *error = true;
      return out;
    }
    out.append(buf.data() + pos, r.payload);
    pos += r.consumed;
    if (r.consumed < n) break;
  }
  if (used != nullptr) *used = pos;
  if (error != nullptr) *error = !d.done();
  return out;
}
}  // namespace

TEST(Http1, ParsesARequestHead) {
  Head h;
  const std::string wire =
      "POST /mcp?x=1 HTTP/1.1\r\nHost: a:8080\r\nMcp-Session-Id:  s-1 \r\ncontent-length: 5\r\n\r\nhello";
  ASSERT_EQ(request(wire, h), Status::complete);
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/mcp?x=1");
  EXPECT_EQ(h.version, 11);
  EXPECT_EQ(h.size, wire.size() - 5);
  EXPECT_EQ(h.framing, Framing::length);
  EXPECT_EQ(h.content_length, 5U);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.get("mcp-session-id"), "s-1");
  EXPECT_EQ(h.get("HOST"), "a:8080");
  EXPECT_FALSE(h.get("Accept").has_value());
  ASSERT_EQ(h.fields.size(), 3U);
  EXPECT_EQ(h.fields[1].name, "Mcp-Session-Id");
}

TEST(Http1, WaitsForTheBlankLineWithinTheLimit) {
  Head h;
  const std::string wire = "GET /mcp HTTP/1.1\r\nHost: a\r\n\r\n";
  for (std::size_t n = 0; n < wire.size(); ++n) EXPECT_EQ(request(wire.substr(0, n), h), Status::need_more) << n;
  EXPECT_EQ(request(wire, h), Status::complete);
  EXPECT_EQ(h.framing, Framing::none);
  EXPECT_EQ(request(wire, h, wire.size()), Status::complete);  // exactly the limit is allowed
  EXPECT_EQ(request(wire, h, wire.size() - 1), Status::too_large);
  EXPECT_EQ(request(std::string(100, 'a'), h, 50), Status::too_large);
}

TEST(Http1, KeepAliveFollowsVersionAndConnection) {
  Head h;
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n", h), Status::complete);
  EXPECT_FALSE(h.keep_alive);
  ASSERT_EQ(request("GET / HTTP/1.0\r\n\r\n", h), Status::complete);
  EXPECT_EQ(h.version, 10);
  EXPECT_FALSE(h.keep_alive);
  ASSERT_EQ(request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h), Status::complete);
  EXPECT_TRUE(h.keep_alive);
}

TEST(Http1, RefusesMalformedHeads) {
  Head h;
  EXPECT_EQ(request("GET  / HTTP/1.1\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("GET / HTTP/2.0\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("GET /\x01 HTTP/1.1\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("G(T / HTTP/1.1\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("GET / HTTP/1.1\n\r\n", h), Status::bad_start_line);  // bare LF
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost : a\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost a\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", h), Status::bad_field);
  const std::string nul("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26);
  EXPECT_EQ(request(nul, h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost: a\n\r\n", h), Status::bad_field);
}

TEST(Http1, RefusesWhatAnOriginNeverGets) {
  Head h;
  // Targets other than origin-form: absolute-form, CONNECT's authority, OPTIONS' asterisk.
  EXPECT_EQ(request("POST http://evil.example/mcp HTTP/1.1\r\nHost: x\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", h), Status::bad_start_line);
  EXPECT_EQ(request("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", h), Status::bad_start_line);
  // RFC 9112 3.2: exactly one Host from HTTP/1.1, at most one from HTTP/1.0.
  EXPECT_EQ(request("GET / HTTP/1.1\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.0\r\n\r\n", h), Status::complete);
  EXPECT_EQ(request("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", h), Status::bad_field);
  // One session id: two would route by one and reach the pod with both.
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s\r\nmcp-session-id: t\r\n\r\n", h),
            Status::bad_field);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nMcp-Session-Id: s\r\n\r\n", h), Status::complete);
  // One Origin (RFC 6454 7.3): with two, an allowlist would check one and the pod read another.
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\norigin: http://evil\r\n\r\n", h),
            Status::bad_field);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: a\r\nOrigin: http://a\r\n\r\n", h), Status::complete);
}

TEST(Http1, AChunkIsJudgedByItsDeclaredSize) {
  ChunkedDecoder d;
  std::string in = "00000000000000000000a\r\n0123";  // leading zeros are not significant
  auto r = d.decode(in.data(), in.data(), in.size());
  EXPECT_FALSE(r.error);
  EXPECT_EQ(r.payload, 4U);
  EXPECT_EQ(d.pending(), 6U) << "what the chunk still declares";
  ChunkedDecoder huge;
  in = "1000000000000000\r\n";  // 2^60
  r = huge.decode(in.data(), in.data(), in.size());
  EXPECT_TRUE(r.error);
  EXPECT_TRUE(r.too_large);
  ChunkedDecoder big;
  in = "fffffffffffffff\r\n";  // 2^60 - 1: a size, judged against the bound by the caller
  r = big.decode(in.data(), in.data(), in.size());
  EXPECT_FALSE(r.error);
  EXPECT_EQ(big.pending(), 0xfffffffffffffffULL);
}

TEST(Http1, RefusesFramingThatCannotBeTrusted) {
  Head h;
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", h),
            Status::bad_framing);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", h),
            Status::bad_framing);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", h), Status::bad_framing);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n", h), Status::bad_framing);
  EXPECT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", h), Status::bad_framing);
  EXPECT_EQ(
      request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", h),
      Status::bad_framing);
  EXPECT_EQ(request("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", h), Status::bad_framing);
  ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", h),
            Status::complete);
  EXPECT_EQ(h.content_length, 5U);
  ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n", h), Status::complete);
  EXPECT_EQ(h.framing, Framing::chunked);
}

TEST(Http1, ResponseFraming) {
  Head h;
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", kLimit, "POST", h), Status::complete);
  EXPECT_EQ(h.status, 200U);
  EXPECT_EQ(h.reason, "OK");
  EXPECT_EQ(h.framing, Framing::length);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", kLimit, "HEAD", h), Status::complete);
  EXPECT_EQ(h.framing, Framing::none);
  ASSERT_EQ(parse_response("HTTP/1.1 204\r\n\r\n", kLimit, "DELETE", h), Status::complete);
  EXPECT_EQ(h.framing, Framing::none);
  EXPECT_TRUE(h.reason.empty());
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n", kLimit, "GET", h),
            Status::complete);
  EXPECT_EQ(h.framing, Framing::close);
  EXPECT_FALSE(h.keep_alive);
  ASSERT_EQ(parse_response("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n", kLimit, "POST", h),
            Status::complete);
  EXPECT_EQ(h.framing, Framing::chunked);
  EXPECT_EQ(parse_response("HTTP/1.1 2000 OK\r\n\r\n", kLimit, "GET", h), Status::bad_start_line);
  EXPECT_EQ(parse_response("HTTP/1.1 099 x\r\n\r\n", kLimit, "GET", h), Status::bad_start_line);
  EXPECT_EQ(parse_response("ICY 200 OK\r\n\r\n", kLimit, "GET", h), Status::bad_start_line);
}

TEST(Http1, ChunkedDecodesAcrossAnySplit) {
  const std::string wire = "5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (std::size_t step = 1; step <= wire.size(); ++step) {
    bool error = false;
    std::size_t used = 0;
    EXPECT_EQ(dechunk(wire, step, &error, &used), "helloabcdefghijklmnopqrstuvwxyz") << step;
    EXPECT_FALSE(error) << step;
    EXPECT_EQ(used, wire.size() - 4) << step;  // the next message's bytes are left alone
  }
}

TEST(Http1, ChunkedRefusesBadFraming) {
  for (const std::string bad :
       {"x\r\n", "5\r\nhelloXX", "\r\n", "5\nhello\r\n", "ffffffffffffffff0\r\n", "0\r\nTrailer\n"}) {
    bool error = false;
    dechunk(bad, 3, &error);
    EXPECT_TRUE(error) << bad;
  }
  bool error = false;
  dechunk("5\r\nhel", 2, &error);
  EXPECT_TRUE(error);  // not finished
}

TEST(Http1, ViewsFollowACopy) {
  Head h;
  std::string wire = "GET /x HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nConnection: x-private\r\nMcp-Session-Id: s9\r\n\r\n";
  ASSERT_EQ(request(wire, h), Status::complete);
  const std::string copy = wire;
  h.rebase(wire.data(), copy.data());
  wire.assign(wire.size(), '#');
  EXPECT_EQ(h.method, "GET");
  EXPECT_EQ(h.target, "/x");
  EXPECT_EQ(h.raw, copy);
  EXPECT_EQ(h.get("host"), "a");
  EXPECT_EQ(h.get("x-empty"), "");
  // The Connection value the hop-by-hop rule reads moves too (it stayed behind once).
  EXPECT_TRUE(h.connection_names_fields);
  EXPECT_EQ(h.connection, std::optional<std::string_view>("x-private"));
  EXPECT_EQ(h.session_id, std::optional<std::string_view>("s9"));
}

TEST(Http1, ConnectionNamesFieldsOnlyBeyondCloseAndKeepAlive) {
  Head h;
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n", h), Status::complete);
  EXPECT_FALSE(h.connection_names_fields);
  EXPECT_EQ(h.connection, "keep-alive");
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\nConnection: close, X-Secret\r\n\r\n", h), Status::complete);
  EXPECT_TRUE(h.connection_names_fields);
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", h), Status::complete);
  EXPECT_FALSE(h.connection.has_value());
}

TEST(Http1, KeepAliveAloneSettlesAsTheListWalksDo) {
  // "keep-alive" alone (any case) is settled in one compare: the same outcome as the walks
  // of the list for close, keep-alive and other fields.
  Head h;
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nConnection: KEEP-ALIVE\r\n\r\n", h),
            Status::complete);
  EXPECT_FALSE(h.keep_alive);  // a close is not undone in 1.1
  EXPECT_EQ(h.connection, "close");
  EXPECT_FALSE(h.connection_names_fields);
  ASSERT_EQ(request("GET / HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n", h), Status::complete);
  EXPECT_TRUE(h.keep_alive);  // in 1.0 the later keep-alive holds, as before
  ASSERT_EQ(request("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alivex\r\n\r\n", h), Status::complete);
  EXPECT_TRUE(h.connection_names_fields);  // not the token: a field's name
  ASSERT_EQ(request("GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n", h), Status::complete);
  EXPECT_FALSE(h.keep_alive);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", kLimit, "POST", h),
            Status::complete);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.connection, "keep-alive");
  EXPECT_FALSE(h.connection_names_fields);
  ASSERT_EQ(parse_response("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", kLimit, "POST", h),
            Status::complete);
  EXPECT_TRUE(h.keep_alive);
}

TEST(Http1, ValueCheckSeesEveryByte) {
  // A bad byte at every position of a long value, tabs allowed anywhere.
  const std::string value = "abc\tdefghijklmnopqrstuvwxyz\t0123456789";
  Head h;
  const std::string good = "GET / HTTP/1.1\r\nHost: h\r\nX: " + value + "\r\n\r\n";  // the views point into it
  ASSERT_EQ(request(good, h), Status::complete);
  EXPECT_EQ(h.get("x"), value);
  for (std::size_t i = 0; i < value.size(); ++i) {
    for (const char bad : {'\x00', '\x01', '\x1f', '\x7f', '\r'}) {
      std::string v = value;
      v[i] = bad;
      EXPECT_NE(request("GET / HTTP/1.1\r\nHost: h\r\nX: " + v + "\r\n\r\n", h), Status::complete)
          << i << " " << int(bad);
    }
  }
}

TEST(Http1, NameCheckSeesEveryByte) {
  // Names long and short, with the colon at every place of a sixteen-byte block, and the
  // rarer tchars (taken by the bytewise scan); a non-tchar anywhere in a name is refused.
  for (std::size_t len = 1; len <= 40; ++len) {
    std::string name;
    for (std::size_t i = 0; i < len; ++i) name += "Ab-9"[i % 4];
    Head h;
    const std::string good = "GET / HTTP/1.1\r\nHost: h\r\n" + name + ": v\r\n\r\n";
    ASSERT_EQ(request(good, h), Status::complete) << name;
    EXPECT_EQ(h.get(name), "v");
    std::string rare = name;
    rare[len / 2] = "!#$%&'*+.^_`|~"[len % 14];
    const std::string with_rare = "GET / HTTP/1.1\r\nHost: h\r\n" + rare + ": v\r\n\r\n";
    ASSERT_EQ(request(with_rare, h), Status::complete) << rare;
    EXPECT_EQ(h.get(rare), "v");
    for (std::size_t i = 0; i < len; ++i) {
      for (const char bad : {'\x00', ' ', '"', '(', '/', '@', '[', '{', '\x7f', '\x80', '\xff', '\r', '\n'}) {
        std::string n = name;
        n[i] = bad;
        EXPECT_NE(request("GET / HTTP/1.1\r\nHost: h\r\n" + n + ": v\r\n\r\n", h), Status::complete)
            << len << " " << i << " " << int(bad);
      }
    }
  }
}

TEST(Http1, FramingNamesMatchInAnyCaseAndOnlyThemselves) {
  Head h;
  ASSERT_EQ(request("POST / HTTP/1.1\r\nhOsT: h\r\ncOnTeNt-LeNgTh: 3\r\n\r\nabc", h), Status::complete);
  EXPECT_EQ(h.framing, Framing::length);
  EXPECT_EQ(h.content_length, 3U);
  // One byte off in each place (a tchar whose 0x20 bit differs, or another letter): not the
  // framing field, so the request has no body.
  const std::string cl = "Content-Length";
  for (std::size_t i = 0; i < cl.size(); ++i) {
    for (const char other : {'^', '~', '_', 'x', '.'}) {
      std::string n = cl;
      if (n[i] == other) continue;
      n[i] = other;
      ASSERT_EQ(request("POST / HTTP/1.1\r\nHost: h\r\n" + n + ": 3\r\n\r\n", h), Status::complete) << n;
      EXPECT_EQ(h.framing, Framing::none) << n;
    }
  }
  // Two Host fields in any case are refused; a name like Host is not one.
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost: a\r\nHOST: b\r\n\r\n", h), Status::bad_field);
  EXPECT_EQ(request("GET / HTTP/1.1\r\nHost: a\r\nHos~: b\r\n\r\n", h), Status::complete);
}

TEST(Http1, CaseInsensitiveEqualityAtEveryLength) {
  const std::string lower = "abcdefghijklmnopqrstuvwxyz-0123456789_~^";
  for (std::size_t len = 0; len <= lower.size(); ++len) {
    const std::string a = lower.substr(0, len);
    std::string b = a;
    for (char& c : b) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_TRUE(iequals(a, b)) << a;
    for (std::size_t i = 0; i < len; ++i) {
      std::string c = b;
      // Bytes one case-bit away that are not letters, and bytes past 0x7F, differ.
      c[i] = c[i] == '@' ? '`' : static_cast<char>(c[i] ^ 0x80);
      EXPECT_FALSE(iequals(a, c)) << a << " " << i;
    }
  }
  EXPECT_FALSE(iequals("@[\\]", "`{|}"));
  EXPECT_TRUE(iequals("\xc3\x89t\xc3\xa9-1234", "\xc3\x89T\xc3\xa9-1234"));
  EXPECT_FALSE(iequals("\xc3\x89", "\xc3\xa9"));
}

namespace {
// A response on the wire, its body fed to BodyFraming in pieces of `step` bytes.
struct Framed {
  Head head;
  std::string wire;
  std::optional<BodyFraming> f;
  std::string payload;
  Framed(std::string bytes, std::size_t step) : wire(std::move(bytes)) {
    EXPECT_EQ(parse_response(wire, kLimit, "GET", head), Status::complete);
    f.emplace(head);
    std::string rest = wire.substr(head.size);
    for (std::size_t pos = 0; pos < rest.size() && !f->done && !f->error; pos += step) {
      const std::size_t n = std::min(step, rest.size() - pos);
      payload.append(rest.data() + pos, f->take(rest.data() + pos, n));
    }
  }
};
}  // namespace

TEST(BodyFraming, ContentLengthEndsTheBodyAndSeesExtraBytes) {
  for (std::size_t step : {1U, 3U, 64U}) {
    const Framed r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", step);
    EXPECT_EQ(r.payload, "hello");
    EXPECT_TRUE(r.f->done);
    EXPECT_FALSE(r.f->extra);
  }
  // Bytes past the declared length arrive in the same read: the body still ends at 5, and
  // the connection is marked as not reusable.
  const Framed r("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloXYZ", 64);
  EXPECT_EQ(r.payload, "hello");
  EXPECT_TRUE(r.f->done);
  EXPECT_TRUE(r.f->extra);
}

TEST(BodyFraming, NoBodyIsDoneAtOnceAndAnyByteIsExtra) {
  Head h;
  ASSERT_EQ(parse_response("HTTP/1.1 204 No Content\r\n\r\n", kLimit, "POST", h), Status::complete);
  BodyFraming f(h);
  EXPECT_TRUE(f.done);
  std::string stray = "junk";
  EXPECT_EQ(f.take(stray.data(), stray.size()), 0U);
  EXPECT_TRUE(f.extra);
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", kLimit, "POST", h), Status::complete);
  EXPECT_TRUE(BodyFraming(h).done);
}

TEST(BodyFraming, ChunkedIsDeframedInPlaceAtEverySplit) {
  const std::string wire =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  for (std::size_t step = 1; step < 40; ++step) {
    const Framed r(wire, step);
    EXPECT_EQ(r.payload, "hello world") << "step " << step;
    EXPECT_TRUE(r.f->done);
    EXPECT_FALSE(r.f->error);
  }
  const Framed bad("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 64);
  EXPECT_TRUE(bad.f->error);
  EXPECT_FALSE(bad.f->done);
}

TEST(BodyFraming, CloseDelimitedTakesEverythingAndNeverEndsByItself) {
  const Framed r("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n", 4);
  EXPECT_EQ(r.payload, "data: 1\n\n");
  EXPECT_EQ(r.f->framing, Framing::close);
  EXPECT_FALSE(r.f->done);
  EXPECT_FALSE(r.f->extra);
}

TEST(Http1, ReasonPhrasesForCodesWithoutOne) {
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(404), "Not Found");
  EXPECT_EQ(reason_phrase(502), "Bad Gateway");
  EXPECT_EQ(reason_phrase(299), "Unknown");
}

TEST(Http1FieldId, EveryNameTheProxyActsOnIsKnownInAnyCaseAndNothingElseIs) {
  const std::vector<std::pair<std::string, FieldId>> names = {
      {"host", FieldId::host},
      {"content-length", FieldId::content_length},
      {"transfer-encoding", FieldId::transfer_encoding},
      {"connection", FieldId::connection},
      {"keep-alive", FieldId::keep_alive},
      {"te", FieldId::te},
      {"trailer", FieldId::trailer},
      {"upgrade", FieldId::upgrade},
      {"proxy-connection", FieldId::proxy_connection},
      {"proxy-authenticate", FieldId::proxy_authenticate},
      {"expect", FieldId::expect},
      {"content-type", FieldId::content_type},
      {"mcp-session-id", FieldId::mcp_session_id},
      {"x-request-id", FieldId::x_request_id},
      {"x-forwarded-for", FieldId::x_forwarded_for},
      {"x-forwarded-host", FieldId::x_forwarded_host},
      {"x-forwarded-proto", FieldId::x_forwarded_proto},
      {"authorization", FieldId::authorization},
      {"cookie", FieldId::cookie},
      {"traceparent", FieldId::traceparent},
      {"tracestate", FieldId::tracestate},
      {"origin", FieldId::origin},
  };
  for (const auto& [lower, id] : names) {
    std::string upper = lower;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    std::string mixed = lower;
    mixed[0] = upper[0];
    EXPECT_EQ(field_id(lower), id) << lower;
    EXPECT_EQ(field_id(upper), id) << upper;
    EXPECT_EQ(field_id(mixed), id) << mixed;
    // One byte off anywhere, in a tchar a name may hold: another name.
    for (std::size_t i = 0; i < lower.size(); ++i) {
      std::string off = lower;
      off[i] = off[i] == '_' ? '.' : '_';
      EXPECT_EQ(field_id(off), FieldId::other) << off;
    }
    EXPECT_EQ(field_id(lower + "s"), FieldId::other) << lower << "s";
    EXPECT_EQ(field_id(lower.substr(1)), FieldId::other) << lower.substr(1);
  }
  // Parsed heads carry the ids; lookups by id find the first such field.
  Head h;
  ASSERT_EQ(parse_request("GET / HTTP/1.1\r\nHOST: a\r\nX-Other: 1\r\nMcp-Session-ID: s1\r\n\r\n", 4096, h),
            Status::complete);
  ASSERT_EQ(h.fields.size(), 3U);
  EXPECT_EQ(h.fields[0].id, FieldId::host);
  EXPECT_EQ(h.fields[1].id, FieldId::other);
  EXPECT_EQ(h.get(FieldId::mcp_session_id), std::optional<std::string_view>("s1"));
  EXPECT_EQ(h.session_id, std::optional<std::string_view>("s1")) << "noted as the fields are parsed";
  EXPECT_EQ(h.get(FieldId::cookie), std::nullopt);
  ASSERT_EQ(parse_request("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4096, h), Status::complete);
  EXPECT_EQ(h.session_id, std::nullopt) << "not left from the last head parsed into it";
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nMcp-Session-Id: r1\r\nMcp-Session-Id: r2\r\nContent-Length: 0\r\n\r\n",
                           4096, "POST", h),
            Status::complete);
  EXPECT_EQ(h.session_id, std::optional<std::string_view>("")) << "two ids that differ name none";
  ASSERT_EQ(parse_response("HTTP/1.1 200 OK\r\nMcp-Session-Id: r1\r\nMcp-Session-Id: r1\r\nContent-Length: 0\r\n\r\n",
                           4096, "POST", h),
            Status::complete);
  EXPECT_EQ(h.session_id, std::optional<std::string_view>("r1"));
}

TEST(Http1, EveryByteValueInANameAndAValueAtEveryPlaceOfABlock) {
  // Names and values are scanned sixteen bytes at a time, then eight, then one: each of the
  // 256 byte values at each of 40 places is judged as the grammar says. In a value: a tab or
  // any byte from 0x20 but 0x7F (obs-text included) is part of it; any other control byte
  // makes the field bad. In a name: only tchar.
  for (std::size_t at = 0; at < 40; ++at) {
    for (int v = 0; v < 256; ++v) {
      const auto c = static_cast<char>(v);
      std::string value(40, 'v');
      value[at] = c;
      Head h;
      const std::string with_value = "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + value + "\r\n\r\n";
      const bool value_ok = v == '\t' || (v >= 0x20 && v != 0x7F);
      if (v == '\r' || v == '\n') {
        EXPECT_EQ(request(with_value, h), Status::bad_field) << "byte " << v << " at " << at;
      } else {
        EXPECT_EQ(request(with_value, h), value_ok ? Status::complete : Status::bad_field)
            << "byte " << v << " at " << at;
      }
      std::string name(40, 'n');
      name[at] = c;
      const std::string with_name = "GET / HTTP/1.1\r\nHost: h\r\n" + name + ": 1\r\n\r\n";
      const bool name_ok = v < 128 && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
      const bool tchar = name_ok || std::isalnum(v) != 0;
      // A colon ends the name there: the rest is the value (an empty name is bad).
      const bool ok = v == ':' ? at > 0 : tchar;
      EXPECT_EQ(request(with_name, h), ok ? Status::complete : Status::bad_field) << "byte " << v << " at " << at;
    }
  }
}
