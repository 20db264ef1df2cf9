// The request and response head edits (proxy_headers.hpp).
#include "mcpproxy/proxy_headers.hpp"

#include <array>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <random>

#include "mcpproxy/http_rules.hpp"

namespace mcpproxy {
namespace {

using namespace std::string_view_literals;

void append_number(std::string& out, std::size_t n) {
  std::array<char, 24> digits{};
  const auto [end, ec] = std::to_chars(digits.data(), digits.data() + digits.size(), n);
  out.append(digits.data(), end);
}

// Writes a head's field lines in runs: consecutive lines forwarded unchanged go out as one
// copy of the bytes received (the lines lie back to back in the head). `with_start_line`:
// the start line goes as received too, in the first run.
class FieldRuns {
 public:
  FieldRuns(std::string& out, const http1::Head& h, bool with_start_line)
      : out_(out), begin_(with_start_line ? h.raw.data() : nullptr), end_(h.raw.data() + h.raw.size() - 2) {}
  void keep(const http1::Field& f) {
    if (begin_ == nullptr) begin_ = f.name.data();
  }
  void drop(const http1::Field& f) { flush(f.name.data()); }
  void finish() { flush(end_); }

 private:
  void flush(const char* upto) {
    if (begin_ != nullptr) out_.append(begin_, static_cast<std::size_t>(upto - begin_));
    begin_ = nullptr;
  }
  std::string& out_;
  const char* begin_;
  const char* end_;  // the blank line
};

// Fields a request never takes to the pod as received: the proxy sets its own.
bool replaced_by_proxy(std::string_view name) {
  return http1::iequals(name, "Expect") || http1::iequals(name, "Content-Length");
}

bool is_forwarded_host_or_proto(std::string_view name) {
  return http1::iequals(name, "X-Forwarded-Host") || http1::iequals(name, "X-Forwarded-Proto");
}

}  // namespace

bool is_per_request(std::string_view name) {
  return http1::iequals(name, "Authorization") || http1::iequals(name, "Cookie") ||
         http1::iequals(name, kRequestIdHeader) || http1::iequals(name, "traceparent") ||
         http1::iequals(name, "tracestate");
}

namespace {

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

void RequestId::assign(const http1::Head& req) {
  for (const http1::Field& f : req.fields) {
    if (f.name.size() == kRequestIdHeader.size() && http1::iequals(f.name, kRequestIdHeader) && !f.value.empty()) {
      id_ = f.value;
      generated_ = false;
      return;
    }
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
    if (is_dropped_hop(f, req) || replaced_by_proxy(f.name) || is_per_request(f.name) ||
        is_forwarded_host_or_proto(f.name) || http1::iequals(f.name, "Host") ||
        http1::iequals(f.name, "X-Forwarded-For") || http1::iequals(f.name, kSessionHeader)) {
      continue;
    }
    append_field(out, f.name, f.value);
  }
  return out;
}

void append_per_request_fields(std::string& out, const http1::Head& req, const RequestId& id) {
  for (const http1::Field& f : req.fields) {
    if (is_per_request(f.name)) append_field(out, f.name, f.value);
  }
  if (id.generated()) append_field(out, kRequestIdHeader, id.view());
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out += ": "sv;
  out.append(value);
  out += "\r\n"sv;
}

bool is_dropped_hop(const http1::Field& f, const http1::Head& h) {
  return is_hop_by_hop(f.name) || (h.connection_names_fields && connection_lists(*h.connection, f.name));
}

namespace {

// What happens to one field of a request on its way to the pod.
enum class FieldEdit : std::uint8_t { keep, drop, replace_session };

// The client's first Host and X-Forwarded-For are noted in `seen` for the proxy's own fields.
struct Seen {
  std::optional<std::string_view> host;
  std::optional<std::string_view> forwarded_for;
  bool forwarded_host = false;  // kept from a trusted hop in front
  bool forwarded_proto = false;
};

FieldEdit edit_for(const http1::Field& f, const http1::Head& req, const UpstreamHeadEdits& edits, Seen& seen) {
  if (is_dropped_hop(f, req) || replaced_by_proxy(f.name)) return FieldEdit::drop;
  if (is_forwarded_host_or_proto(f.name)) {
    // What the hop in front saw (the public host, https) when it is trusted; else the
    // client could name any origin to the pod.
    if (!edits.trust_forwarded) return FieldEdit::drop;
    bool& noted = http1::iequals(f.name, "X-Forwarded-Host") ? seen.forwarded_host : seen.forwarded_proto;
    if (noted) return FieldEdit::drop;  // the first one only
    noted = true;
    return FieldEdit::keep;
  }
  if (http1::iequals(f.name, "Host")) {
    if (!seen.host) seen.host = f.value;
    return edits.rewrite_host ? FieldEdit::drop : FieldEdit::keep;
  }
  if (http1::iequals(f.name, "X-Forwarded-For")) {
    if (!seen.forwarded_for) seen.forwarded_for = f.value;
    return FieldEdit::drop;
  }
  if (http1::iequals(f.name, kSessionHeader)) {
    if (edits.drop_session_header) return FieldEdit::drop;
    if (edits.pod_session) return FieldEdit::replace_session;
  }
  return FieldEdit::keep;
}

}  // namespace

void write_upstream_head(std::string& out, const http1::Head& req, const UpstreamHeadEdits& edits) {
  Seen seen;
  // An HTTP/1.1 request line is the one the pod gets: the parser took it only as
  // "method SP target SP HTTP/1.1 CRLF", so it goes as received, in the fields' first run.
  const bool line_as_received = req.version == 11;
  if (!line_as_received) {
    out.append(req.method);
    out += ' ';
    out.append(req.target);
    out += " HTTP/1.1\r\n"sv;
  }
  FieldRuns runs(out, req, line_as_received);
  for (const http1::Field& f : req.fields) {
    switch (edit_for(f, req, edits, seen)) {
      case FieldEdit::keep:
        runs.keep(f);
        break;
      case FieldEdit::drop:
        runs.drop(f);
        break;
      case FieldEdit::replace_session:
        runs.drop(f);
        append_field(out, kSessionHeader, *edits.pod_session);
        break;
    }
  }
  runs.finish();
  if (edits.rewrite_host || !seen.host) append_field(out, "Host", edits.pod_authority);
  if (seen.host && !seen.forwarded_host) append_field(out, "X-Forwarded-Host", *seen.host);
  out += "X-Forwarded-For: "sv;
  if (seen.forwarded_for) {
    out.append(*seen.forwarded_for);
    out += ", "sv;
  }
  out.append(edits.peer_ip);
  out += "\r\n"sv;
  if (!seen.forwarded_proto) out += "X-Forwarded-Proto: http\r\n"sv;
  if (!edits.added_request_id.empty()) append_field(out, kRequestIdHeader, edits.added_request_id);
  const auto method = req.method;
  if (edits.body_size > 0 || method == "POST" || method == "PUT" || method == "PATCH") {
    out += "Content-Length: "sv;
    append_number(out, edits.body_size);
    out += "\r\n"sv;
  }
  out += "\r\n"sv;
}

void write_client_head(std::string& out, const http1::Head& res, const ClientHeadEdits& edits) {
  // The pod's status line goes as received when it has the client's version and a reason
  // (the parser took it only as "HTTP/1.x SP 3DIGIT SP reason CRLF").
  const bool line_as_received = res.version == (edits.http11 ? 11 : 10) && !res.reason.empty();
  if (!line_as_received) {
    out += edits.http11 ? "HTTP/1.1 "sv : "HTTP/1.0 "sv;
    append_number(out, res.status);
    out += ' ';
    out.append(res.reason.empty() ? http1::reason_phrase(res.status) : res.reason);
    out += "\r\n"sv;
  }
  FieldRuns runs(out, res, line_as_received);
  for (const http1::Field& f : res.fields) {
    if (is_dropped_hop(f, res)) {
      runs.drop(f);
    } else if (edits.client_session && http1::iequals(f.name, kSessionHeader)) {
      runs.drop(f);
      append_field(out, kSessionHeader, *edits.client_session);
    } else {
      runs.keep(f);
    }
  }
  runs.finish();
  if (edits.chunked) out += "Transfer-Encoding: chunked\r\n"sv;
  if (edits.http11 && !edits.keep_alive) out += "Connection: close\r\n"sv;
  if (!edits.http11 && edits.keep_alive) out += "Connection: keep-alive\r\n"sv;
  out += "\r\n"sv;
}

}  // namespace mcpproxy
