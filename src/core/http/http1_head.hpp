#pragma once
// HTTP/1.x heads for the data plane, with no I/O and no allocation once the field vector
// has grown: a head is parsed where it lies and read through views.
// The proxy's hot path used Beast's parser, whose per-field allocations, ordered field set
// and case-insensitive compares were the largest user-space cost (bench/README.md).
// Strict where a proxy must be (RFC 9112): no whitespace before a colon, no obs-fold, no
// bare CR or LF, one consistent Content-Length, chunked as the only request coding, never
// both Content-Length and Transfer-Encoding.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

namespace mcpproxy::http1 {

enum class Status {
  complete,
  need_more,       // the blank line has not arrived yet
  too_large,       // no complete head within the limit
  bad_start_line,  // request line or status line
  bad_field,       // a field line
  bad_framing,     // Content-Length / Transfer-Encoding that cannot be trusted
};

namespace detail {
inline std::uint64_t load8(const char* p) {
  std::uint64_t x = 0;
  std::memcpy(&x, p, 8);
  return x;
}
// Eight bytes, each ASCII upper-case letter made lower-case (every other byte unchanged):
// a byte is upper-case when its low seven bits reach 'A' but not past 'Z' and its top bit
// is clear; its 0x20 bit is then set.
inline std::uint64_t ascii_lower8(std::uint64_t x) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  const std::uint64_t low7 = x & ~kHigh;
  const std::uint64_t from_a = low7 + kOnes * (0x80 - 'A');
  const std::uint64_t past_z = low7 + kOnes * (0x80 - 'Z' - 1);
  const std::uint64_t upper = from_a & ~past_z & ~x & kHigh;
  return x | (upper >> 2);
}
inline unsigned char ascii_lower(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 'A' && u <= 'Z' ? static_cast<unsigned char>(u + 32) : u;
}
}  // namespace detail

// ASCII case-insensitive equality (field names); inline: it is called for every field
// against constant names, and the length check settles most calls. Eight bytes at a time
// (the last eight overlapping the ones before), bytewise below eight.
inline bool iequals(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  if (n >= 8) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      if (detail::ascii_lower8(detail::load8(a.data() + i)) != detail::ascii_lower8(detail::load8(b.data() + i))) {
        return false;
      }
    }
    return i == n || detail::ascii_lower8(detail::load8(a.data() + n - 8)) ==
                         detail::ascii_lower8(detail::load8(b.data() + n - 8));
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (detail::ascii_lower(a[i]) != detail::ascii_lower(b[i])) return false;
  }
  return true;
}

// ASCII case-insensitive prefix test (a field value's media type, an Expect token).
inline bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Without the optional whitespace (spaces, tabs) around it.
std::string_view trim_ows(std::string_view s);

// RFC 9110 token (a field name, a method): one or more tchar.
bool is_token(std::string_view s);

// True when `token` is one of the comma-separated items of `list` (case-insensitive), as in
// a Connection field.
bool list_has_token(std::string_view list, std::string_view token);

// The field names the proxy acts on, recognised once per field by the parser (by length,
// then case-insensitively), so the edits and lookups on the request path compare a byte
// instead of names. `other` is every other name.
enum class FieldId : std::uint8_t {
  other,
  host,
  content_length,
  transfer_encoding,
  connection,
  keep_alive,
  te,
  trailer,
  upgrade,
  proxy_connection,
  proxy_authenticate,
  expect,
  content_type,
  mcp_session_id,
  x_request_id,
  x_forwarded_for,
  x_forwarded_host,
  x_forwarded_proto,
  authorization,
  cookie,
  traceparent,
  tracestate,
  origin,
};

// The FieldId of a field name made of tchar (what the parser took as a name).
FieldId field_id(std::string_view name);

struct Field {
  std::string_view name;
  std::string_view value;  // without surrounding whitespace
  FieldId id = FieldId::other;
};

enum class Framing {
  none,     // no body: a request without length, HEAD answers, 1xx/204/304
  length,   // Content-Length bytes
  chunked,  // Transfer-Encoding: chunked
  close,    // a response that ends when the connection does
};

struct Head {
  std::string_view method;  // requests
  std::string_view target;
  unsigned status = 0;  // responses
  std::string_view reason;
  int version = 11;  // 10 or 11
  std::vector<Field> fields;
  std::size_t size = 0;  // bytes of the head, blank line included
  std::string_view raw;  // the head's bytes, blank line included
  Framing framing = Framing::none;
  std::uint64_t content_length = 0;
  bool keep_alive = true;  // from the version and the Connection header
  // Connection names a field other than close / keep-alive (those go as hop-by-hop anyway):
  // only then must each field be looked up in it.
  bool connection_names_fields = false;
  std::optional<std::string_view> connection;  // the Connection field's value
  // The Mcp-Session-Id field's value (empty when an answer has two that differ; a request
  // with two is refused): read for every request and every answer of a session, so it is
  // noted as the fields are parsed rather than looked for after.
  std::optional<std::string_view> session_id;
  // The X-Request-Id field's value, noted the same way for every request (empty when there
  // are two: neither is the request's id).
  std::optional<std::string_view> request_id;

  // The first field of that name (case-insensitive), without surrounding whitespace.
  std::optional<std::string_view> get(std::string_view name) const;
  // The first field the parser recognised as `id` (id is not `other`).
  std::optional<std::string_view> get(FieldId id) const;
  // The bytes the views point into were copied from `from` to `to`: views follow.
  void rebase(const char* from, const char* to);
};

inline std::optional<std::string_view> Head::get(std::string_view name) const {
  for (const Field& f : fields) {
    if (iequals(f.name, name)) return f.value;
  }
  return std::nullopt;
}

inline std::optional<std::string_view> Head::get(FieldId id) const {
  for (const Field& f : fields) {
    if (f.id == id) return f.value;
  }
  return std::nullopt;
}

// A head at the start of `bytes`, at most `limit` bytes long. The views point into `bytes`.
Status parse_request(std::string_view bytes, std::size_t limit, Head& out);
// `request_method` decides whether the response has a body (HEAD answers have none).
Status parse_response(std::string_view bytes, std::size_t limit, std::string_view request_method, Head& out);

// The standard reason phrase of a status code (RFC 9110 15), for a head that came without
// one; "Unknown" for a code the RFC does not name.
std::string_view reason_phrase(unsigned status);

}  // namespace mcpproxy::http1
