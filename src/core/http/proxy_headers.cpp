// The request and response head edits (proxy_headers.hpp).
#include "core/http/proxy_headers.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <random>

#include "core/http/http_rules.hpp"

namespace mcpproxy {
namespace {

using namespace std::string_view_literals;

// Writes a head at the start of `out` through a pointer, `out` grown first (never shrunk:
// a connection's buffer is as long as its longest head after its first few, so nothing
// is cleared or zero-filled per head) to a bound the caller computes (the received head's
// size plus what the edit may add), instead of a capacity check per piece; `finish` says
// how long the head is. Field lines forwarded unchanged
// go in runs: consecutive ones as one copy of the bytes received (the lines lie back to
// back in the head). `with_start_line`: the start line goes as received too, in the first run.
class HeadWriter {
 public:
  HeadWriter(std::string& out, std::size_t bound, const http1::Head& h, bool with_start_line)
      : out_(out), begin_(with_start_line ? h.raw.data() : nullptr), end_(h.raw.data() + h.raw.size() - 2) {
    if (out.size() < bound) out.resize(bound);
    p_ = out.data();
    limit_ = p_ + bound;
  }
  void put(std::string_view s) {
    assert(static_cast<std::size_t>(limit_ - p_) >= s.size());  // the bound holds (sanitizer builds check)
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  void put(char c) {
    assert(p_ < limit_);
    *p_++ = c;
  }
  void number(std::size_t n) {
    std::array<char, 20> digits{};
    const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), n);
    put(std::string_view(digits.data(), static_cast<std::size_t>(end - digits.data())));
  }
  void field(std::string_view name, std::string_view value) {
    put(name);
    put(": "sv);
    put(value);
    put("\r\n"sv);
  }
  void keep(const http1::Field& f) {
    if (begin_ == nullptr) begin_ = f.name.data();
  }
  void drop(const http1::Field& f) { flush(f.name.data()); }
  void finish_fields() { flush(end_); }
  std::size_t finish() const { return static_cast<std::size_t>(p_ - out_.data()); }

  // What field() adds besides the name and the value.
  static constexpr std::size_t kFieldExtra = 4;

 private:
  void flush(const char* upto) {
    if (begin_ != nullptr) put(std::string_view(begin_, static_cast<std::size_t>(upto - begin_)));
    begin_ = nullptr;
  }
  std::string& out_;
  char* p_ = nullptr;
  const char* limit_ = nullptr;
  const char* begin_;
  const char* end_;  // the blank line
};

// Fields a request never takes to the pod as received: the proxy sets its own.
using http1::FieldId;

bool replaced_by_proxy(FieldId id) { return id == FieldId::expect || id == FieldId::content_length; }

bool is_forwarded_host_or_proto(FieldId id) {
  return id == FieldId::x_forwarded_host || id == FieldId::x_forwarded_proto;
}

// Fields of one request, never stored with a session: credentials (a replayed initialize
// takes the current request's, fresher than any stored copy: tokens expire, sessions
// outlive them) and the request's identity in logs and traces (X-Request-Id, traceparent,
// tracestate: a replay is part of the request that caused it).
bool is_per_request_field(FieldId id) {
  return id == FieldId::authorization || id == FieldId::cookie || id == FieldId::x_request_id ||
         id == FieldId::traceparent || id == FieldId::tracestate;
}

// "00" to "ff": two hex digits per byte value.
constexpr std::array<std::array<char, 2>, 256> kHexPairs = [] {
  constexpr std::string_view kHex = "0123456789abcdef";
  std::array<std::array<char, 2>, 256> t{};
  for (std::size_t v = 0; v < 256; ++v) t[v] = {kHex[v >> 4U], kHex[v & 0xfU]};
  return t;
}();

// splitmix64 (Vigna), seeded at a thread's first id: ids need to be unique, not secret.
// Constant-initialized, so reading it costs no thread_local guard.
thread_local std::uint64_t rng_state = 0;

std::uint64_t next_random() {
  if (rng_state == 0) {
    std::random_device rd;
    rng_state = ((static_cast<std::uint64_t>(rd()) << 32U) ^ rd()) | 1U;
  }
  std::uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27U)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31U);
}

}  // namespace

void RequestId::assign(const http1::Head& req, std::size_t max_length) {
  // The client's id is taken when it is one field of 1 to max_length visible ASCII bytes:
  // it goes to the pod and into the log as is, so it must be bounded and printable, and one
  // copy (with two, the pod and the log could each read another: the parser notes none).
  // Else one is made here and the client's copies are dropped (edit_for).
  if (const auto client = req.request_id;
      client && !client->empty() && client->size() <= max_length &&
      std::all_of(client->begin(), client->end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    id_ = *client;
    generated_ = false;
    return;
  }
  // 16 random bytes as xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx (RFC 9562 5.4: version 4,
  // variant 10): the hex digits of both halves from a table of byte pairs, then placed
  // around the dashes.
  std::uint64_t hi = next_random();
  std::uint64_t lo = next_random();
  hi = (hi & ~0xf000ULL) | 0x4000ULL;                // version: byte 6's high nibble
  lo = (lo & ~(0xc0ULL << 56U)) | (0x80ULL << 56U);  // variant: byte 8's top bits
  std::array<char, 32> hex{};
  for (std::size_t i = 0; i < 8; ++i) {
    std::memcpy(hex.data() + 2 * i, kHexPairs[(hi >> (56U - 8U * i)) & 0xffU].data(), 2);
    std::memcpy(hex.data() + 16 + 2 * i, kHexPairs[(lo >> (56U - 8U * i)) & 0xffU].data(), 2);
  }
  char* m = made_.data();
  std::memcpy(m, hex.data(), 8);
  m[8] = '-';
  std::memcpy(m + 9, hex.data() + 8, 4);
  m[13] = '-';
  std::memcpy(m + 14, hex.data() + 12, 4);
  m[18] = '-';
  std::memcpy(m + 19, hex.data() + 16, 4);
  m[23] = '-';
  std::memcpy(m + 24, hex.data() + 20, 12);
  id_ = std::string_view(made_.data(), made_.size());
  generated_ = true;
}

std::string replayable_fields(const http1::Head& req) {
  std::string out;
  for (const http1::Field& f : req.fields) {
    if (is_dropped_hop(f, req) || replaced_by_proxy(f.id) || is_per_request_field(f.id) ||
        is_forwarded_host_or_proto(f.id) || f.id == FieldId::host || f.id == FieldId::x_forwarded_for ||
        f.id == FieldId::mcp_session_id) {
      continue;
    }
    append_field(out, f.name, f.value);
  }
  return out;
}

void append_per_request_fields(std::string& out, const http1::Head& req, const RequestId& id) {
  for (const http1::Field& f : req.fields) {
    if (is_per_request_field(f.id) && !(f.id == FieldId::x_request_id && id.generated())) {
      append_field(out, f.name, f.value);
    }
  }
  if (id.generated()) append_field(out, kRequestIdHeader, id.view());
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out += ": "sv;
  out.append(value);
  out += "\r\n"sv;
}

namespace {

// Whether "Name: value\r\n" lines hold a field called `name`.
bool has_field_line(std::string_view lines, std::string_view name) {
  while (!lines.empty()) {
    const auto end = lines.find("\r\n");
    const std::string_view line = lines.substr(0, end);
    if (line.size() > name.size() && line[name.size()] == ':' && http1::starts_with_ci(line, name)) return true;
    if (end == std::string_view::npos) break;
    lines.remove_prefix(end + 2);
  }
  return false;
}

}  // namespace

void write_replay_head(std::string& out, const ReplayHeadEdits& edits, const http1::Head& req, const RequestId& id) {
  out.clear();
  out += edits.method;
  out += ' ';
  out += edits.target;
  out += " HTTP/1.1\r\n"sv;
  append_field(out, "Host", edits.host);
  if (edits.init_fields.empty()) {  // a record from before the fields were kept, or none
    append_field(out, "Content-Type", "application/json");
    append_field(out, "Accept", "application/json, text/event-stream");
  }
  out += edits.init_fields;
  append_per_request_fields(out, req, id);
  if (!edits.session.empty()) {
    append_field(out, kSessionHeader, edits.session);
    const auto version = req.get("MCP-Protocol-Version");
    if (version && !has_field_line(edits.init_fields, "MCP-Protocol-Version")) {
      append_field(out, "MCP-Protocol-Version", *version);
    }
  }
  append_field(out, "Content-Length", std::to_string(edits.body_size));
  out += "\r\n"sv;
}

void write_local_reply_head(std::string& out, const LocalReplyHead& h) {
  out += h.http11 ? "HTTP/1.1 "sv : "HTTP/1.0 "sv;
  out += std::to_string(h.status);
  out += ' ';
  out += h.reason;
  out += "\r\n"sv;
  append_field(out, "Content-Type", "application/json");
  if (h.retry_after != 0) append_field(out, "Retry-After", std::to_string(h.retry_after));
  if (h.http11 && !h.keep_alive) append_field(out, "Connection", "close");
  if (!h.http11 && h.keep_alive) append_field(out, "Connection", "keep-alive");
  append_field(out, "Content-Length", std::to_string(h.body_size));
  out += "\r\n"sv;
}

bool is_dropped_hop(const http1::Field& f, const http1::Head& h) {
  return is_hop_by_hop(f.id) || (h.connection_names_fields && connection_lists(*h.connection, f.name));
}

namespace {

// What happens to one field of a request on its way to the pod.
enum class FieldEdit : std::uint8_t { keep, drop, replace_session };

// The client's first Host and its X-Forwarded-For fields are noted in `seen` for the proxy's
// own fields.
struct Seen {
  std::optional<std::string_view> host;
  std::optional<std::string_view> forwarded_for;  // the first
  bool more_forwarded_for = false;                // a second field: the list is all of them
  bool forwarded_host = false;                    // kept from a trusted hop in front
  bool forwarded_proto = false;
};

FieldEdit edit_for(const http1::Field& f, const http1::Head& req, const UpstreamHeadEdits& edits, Seen& seen) {
  if (is_dropped_hop(f, req) || replaced_by_proxy(f.id)) return FieldEdit::drop;
  switch (f.id) {
    case FieldId::x_forwarded_host:
    case FieldId::x_forwarded_proto: {
      // What the hop in front saw (the public host, https) when it is trusted; else the
      // client could name any origin to the pod.
      if (!edits.trust_forwarded) return FieldEdit::drop;
      bool& noted = f.id == FieldId::x_forwarded_host ? seen.forwarded_host : seen.forwarded_proto;
      if (noted) return FieldEdit::drop;  // the first one only
      noted = true;
      return FieldEdit::keep;
    }
    case FieldId::host:
      if (!seen.host) seen.host = f.value;
      return edits.rewrite_host ? FieldEdit::drop : FieldEdit::keep;
    case FieldId::x_forwarded_for:
      if (seen.forwarded_for) {
        seen.more_forwarded_for = true;
      } else {
        seen.forwarded_for = f.value;
      }
      return FieldEdit::drop;
    case FieldId::mcp_session_id:
      if (edits.drop_session_header) return FieldEdit::drop;
      if (edits.pod_session) return FieldEdit::replace_session;
      return FieldEdit::keep;
    case FieldId::x_request_id:
      // The client's id was not usable (RequestId::assign): the proxy's replaces it.
      return edits.added_request_id.empty() ? FieldEdit::keep : FieldEdit::drop;
    default:
      return FieldEdit::keep;
  }
}

}  // namespace

std::size_t write_upstream_head(std::string& out, const http1::Head& req, const UpstreamHeadEdits& edits) {
  // An HTTP/1.1 request line is the one the pod gets: the parser took it only as
  // "method SP target SP HTTP/1.1 CRLF", so it goes as received, in the fields' first run.
  const bool line_as_received = req.version == 11;
  // At most: the head as received (a rewritten request line is no longer: "HTTP/1.0"
  // becomes "HTTP/1.1"); the pod's session id in place of each of the client's; the values
  // the proxy's own fields take from the head (the client's Host in X-Forwarded-Host, its
  // X-Forwarded-For list: together no more than the head) and from `edits`; and, in the
  // last 160 bytes, those fields' names, separators, the length's digits and the blank line.
  const std::size_t session =
      edits.pod_session
          ? req.fields.size() * (kSessionHeader.size() + HeadWriter::kFieldExtra + edits.pod_session->size())
          : 0;
  const std::size_t bound = 2 * req.raw.size() + session + edits.pod_authority.size() + edits.peer_ip.size() +
                            edits.added_request_id.size() + 160;
  HeadWriter w(out, bound, req, line_as_received);
  if (!line_as_received) {
    w.put(req.method);
    w.put(' ');
    w.put(req.target);
    w.put(" HTTP/1.1\r\n"sv);
  }
  Seen seen;
  for (const http1::Field& f : req.fields) {
    switch (edit_for(f, req, edits, seen)) {
      case FieldEdit::keep:
        w.keep(f);
        break;
      case FieldEdit::drop:
        w.drop(f);
        break;
      case FieldEdit::replace_session:
        w.drop(f);
        w.field(kSessionHeader, *edits.pod_session);
        break;
    }
  }
  w.finish_fields();
  if (edits.rewrite_host || !seen.host) w.field("Host", edits.pod_authority);
  if (seen.host && !seen.forwarded_host) w.field("X-Forwarded-Host", *seen.host);
  w.put("X-Forwarded-For: "sv);
  if (seen.more_forwarded_for) {
    // Several fields are one list, in their order (RFC 9110 5.3), as the limiter reads them.
    for (const http1::Field& f : req.fields) {
      if (f.id != FieldId::x_forwarded_for || f.value.empty()) continue;
      w.put(f.value);
      w.put(", "sv);
    }
  } else if (seen.forwarded_for) {
    w.put(*seen.forwarded_for);
    w.put(", "sv);
  }
  w.put(edits.peer_ip);
  w.put("\r\n"sv);
  if (!seen.forwarded_proto) w.put("X-Forwarded-Proto: http\r\n"sv);
  if (!edits.added_request_id.empty()) w.field(kRequestIdHeader, edits.added_request_id);
  const auto method = req.method;
  if (edits.body_size > 0 || method == "POST" || method == "PUT" || method == "PATCH") {
    w.put("Content-Length: "sv);
    w.number(edits.body_size);
    w.put("\r\n"sv);
  }
  w.put("\r\n"sv);
  return w.finish();
}

std::size_t write_client_head(std::string& out, const http1::Head& res, const ClientHeadEdits& edits) {
  // The pod's status line goes as received when it has the client's version and a reason
  // (the parser took it only as "HTTP/1.x SP 3DIGIT SP reason CRLF").
  const bool line_as_received = res.version == (edits.http11 ? 11 : 10) && !res.reason.empty();
  // At most: the head as received, a written status line (its reason may be the standard
  // one), the session id in place of each of the pod's, and the framing fields.
  const std::size_t session = edits.client_session ? edits.client_session->size() + 20 : 0;
  const std::size_t bound = res.raw.size() + 64 + res.fields.size() * session + 64;
  HeadWriter w(out, bound, res, line_as_received);
  if (!line_as_received) {
    w.put(edits.http11 ? "HTTP/1.1 "sv : "HTTP/1.0 "sv);
    w.number(res.status);
    w.put(' ');
    w.put(res.reason.empty() ? http1::reason_phrase(res.status) : res.reason);
    w.put("\r\n"sv);
  }
  for (const http1::Field& f : res.fields) {
    if (is_dropped_hop(f, res)) {
      w.drop(f);
    } else if (edits.client_session && f.id == FieldId::mcp_session_id) {
      w.drop(f);
      w.field(kSessionHeader, *edits.client_session);
    } else {
      w.keep(f);
    }
  }
  w.finish_fields();
  if (edits.chunked) w.put("Transfer-Encoding: chunked\r\n"sv);
  if (edits.http11 && !edits.keep_alive) w.put("Connection: close\r\n"sv);
  if (!edits.http11 && edits.keep_alive) w.put("Connection: keep-alive\r\n"sv);
  w.put("\r\n"sv);
  return w.finish();
}

}  // namespace mcpproxy
