#include "core/http/http1_head.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mcpproxy::http1 {
namespace {

constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[static_cast<std::size_t>(c)] = true;
  for (const char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
  return t;
}();

// Field values: visible ASCII, space, tab and obs-text; no other control character.
constexpr std::array<bool, 256> kValueChar = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x100; ++c) t[static_cast<std::size_t>(c)] = c != 0x7F;
  t['\t'] = true;
  return t;
}();

bool is_tchar(char c) { return kTchar[static_cast<unsigned char>(c)]; }
bool is_value_char(char c) { return kValueChar[static_cast<unsigned char>(c)]; }

// The lines of a head: each ends in CRLF; a bare LF or a CR elsewhere is an error.
class Lines {
 public:
  explicit Lines(std::string_view bytes) : bytes_(bytes) {}
  // false when no complete line is left; `bad` when the line ending is not CRLF.
  bool next(std::string_view& line, bool& bad) {
    if (pos_ >= bytes_.size()) return false;  // also an empty buffer, whose data() may be null
    const void* lf = std::memchr(bytes_.data() + pos_, '\n', bytes_.size() - pos_);
    if (lf == nullptr) return false;
    const auto end = static_cast<std::size_t>(static_cast<const char*>(lf) - bytes_.data());
    bad = end == pos_ || bytes_[end - 1] != '\r';
    line = bytes_.substr(pos_, bad ? end - pos_ : end - 1 - pos_);
    pos_ = end + 1;
    return true;
  }
  std::size_t pos() const { return pos_; }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

bool parse_version(std::string_view v, int& version) {
  if (v == "HTTP/1.1") {
    version = 11;
  } else if (v == "HTTP/1.0") {
    version = 10;
  } else {
    return false;
  }
  return true;
}

bool parse_request_line(std::string_view line, Head& out) {
  const auto sp1 = line.find(' ');
  if (sp1 == 0 || sp1 == std::string_view::npos) return false;
  out.method = line.substr(0, sp1);
  for (const char c : out.method) {
    if (!is_tchar(c)) return false;
  }
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return false;
  out.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  // Origin-form only: the proxy is the origin its clients see. Absolute-form (a client
  // taking it for a forward proxy), CONNECT's authority-form and OPTIONS' asterisk-form
  // are refused, never handed to a pod verbatim.
  if (out.target.front() != '/') return false;
  for (const char c : out.target) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return false;
  }
  return parse_version(line.substr(sp2 + 1), out.version);
}

bool parse_status_line(std::string_view line, Head& out) {
  // HTTP/1.1 200 OK (the reason may be empty, and so may its separating space)
  if (line.size() < 12 || !parse_version(line.substr(0, 8), out.version) || line[8] != ' ') return false;
  unsigned status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return false;
    status = status * 10 + static_cast<unsigned>(line[i] - '0');
  }
  if (status < 100) return false;
  out.status = status;
  if (line.size() > 12) {
    if (line[12] != ' ') return false;
    out.reason = line.substr(13);
    for (const char c : out.reason) {
      if (!is_value_char(c)) return false;
    }
  } else {
    out.reason = {};
  }
  return true;
}

// The first byte at or after `i` that is below 0x20 or is 0x7F (the end of a field value:
// CR, or a tab inside it, or a byte no value may hold), eight bytes at a time; n if none.
std::size_t find_control(const char* p, std::size_t i, std::size_t n) {
#if defined(__SSE2__)
  // Sixteen at a time: a byte below 0x20 (compared unsigned: obs-text from 0x80 is not one) or 0x7F.
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));  // NOLINT: an unaligned load
    const __m128i low = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
    const __m128i del = _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F));
    const auto m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(low, del)));
    if (m != 0) return i + static_cast<std::size_t>(__builtin_ctz(m));
  }
#endif
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t x = 0;
    std::memcpy(&x, p + i, 8);
    const std::uint64_t del = x ^ (kOnes * 0x7F);
    // The lowest flagged byte is exact (borrows only spoil the bytes above it).
    const std::uint64_t m = ((x - kOnes * 0x20) & ~x & kHigh) | ((del - kOnes) & ~del & kHigh);
    if (m != 0) return i + static_cast<std::size_t>(__builtin_ctzll(m)) / 8;
  }
  for (; i < n; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (c < 0x20 || c == 0x7F) return i;
  }
  return n;
}

// The colon that ends a field name starting at `i`, when every byte before it is a
// letter, a digit or '-' (what field names are made of in practice) and it lies in whole
// 16-byte blocks: SSE2, x86-64's baseline. n otherwise (and always without SSE2): the
// caller's bytewise scan then decides (a rarer tchar, a bad byte, a name near the end of
// the buffer, or no colon yet).
std::size_t find_name_end(const char* p, std::size_t i, std::size_t n) {
#if defined(__SSE2__)
  const __m128i colon = _mm_set1_epi8(':');
  const __m128i dash = _mm_set1_epi8('-');
  const __m128i case_bit = _mm_set1_epi8(0x20);
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));  // NOLINT: an unaligned load
    const __m128i lower = _mm_or_si128(v, case_bit);
    // Signed compares: bytes from 0x80 are negative and fail every range.
    const __m128i alpha =
        _mm_and_si128(_mm_cmpgt_epi8(lower, _mm_set1_epi8('a' - 1)), _mm_cmpgt_epi8(_mm_set1_epi8('z' + 1), lower));
    const __m128i digit =
        _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)), _mm_cmpgt_epi8(_mm_set1_epi8('9' + 1), v));
    const __m128i ok = _mm_or_si128(_mm_or_si128(alpha, digit), _mm_cmpeq_epi8(v, dash));
    const auto ok_mask = static_cast<unsigned>(_mm_movemask_epi8(ok));
    const auto colon_mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, colon)));
    if (colon_mask != 0) {
      const auto at = static_cast<unsigned>(__builtin_ctz(colon_mask));
      const unsigned before = (1U << at) - 1;
      return (ok_mask & before) == before ? i + at : n;
    }
    if (ok_mask != 0xFFFF) return n;
  }
#else
  (void)p;
  (void)i;
#endif
  return n;
}

// A field name (all tchar: the parser checked) against a name written in lower case with
// letters, digits and '-' only. Setting each byte's 0x20 bit lower-cases a letter and
// leaves digits and '-' as they are; no other tchar becomes one of those bytes by it (only
// control bytes would: 0x0D to '-', 0x10-0x19 to digits), so the compare is exact.
bool name_is(std::string_view name, std::string_view lower) {
  const std::size_t n = name.size();
  if (n != lower.size()) return false;
  constexpr std::uint64_t kCase8 = 0x2020202020202020ULL;
  if (n >= 8) {
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
      if ((detail::load8(name.data() + i) | kCase8) != detail::load8(lower.data() + i)) return false;
    }
    return (detail::load8(name.data() + n - 8) | kCase8) == detail::load8(lower.data() + n - 8);
  }
  for (std::size_t i = 0; i < n; ++i) {
    if ((static_cast<unsigned char>(name[i]) | 0x20U) != static_cast<unsigned char>(lower[i])) return false;
  }
  return true;
}

enum class Line { field, end, need_more, bad };

// The field line at `pos` of `w`; `pos` moves past it. `end` is the blank line.
// Exempt from the complexity bound: the hot scan of every field byte, kept as one pass
// (bench/README.md); its cases are tested at every split in http1_test.cpp.
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
Line next_field(std::string_view w, std::size_t& pos, Field& f) {
  const char* const p = w.data();
  const std::size_t n = w.size();
  std::size_t i = pos;
  if (i >= n) return Line::need_more;
  if (p[i] == '\r') {
    if (i + 1 >= n) return Line::need_more;
    if (p[i + 1] != '\n') return Line::bad;
    pos = i + 2;
    return Line::end;
  }
  // name: one or more tchar, then the colon at once (no whitespace before it, no obs-fold).
  // The common name is checked sixteen bytes at a time (find_name_end); any other case by
  // the bytewise scan, which decides between a name, a bad byte and more to come.
  const std::size_t name_begin = i;
  const std::size_t colon = find_name_end(p, i, n);
  if (colon < n) {
    i = colon;
  } else {
    while (i < n && is_tchar(p[i])) ++i;
    if (i >= n) return Line::need_more;
  }
  if (i == name_begin || p[i] != ':') return Line::bad;
  f.name = std::string_view(p + name_begin, i - name_begin);
  // value: up to CR LF; tabs are allowed, any other control byte is not
  std::size_t begin = ++i;
  for (;;) {
    i = find_control(p, i, n);
    if (i >= n) return Line::need_more;
    if (p[i] == '\t') {
      ++i;
      continue;
    }
    if (p[i] != '\r') return Line::bad;
    if (i + 1 >= n) return Line::need_more;
    if (p[i + 1] != '\n') return Line::bad;
    break;
  }
  std::size_t end = i;
  pos = i + 2;
  while (begin < end && (p[begin] == ' ' || p[begin] == '\t')) ++begin;
  while (end > begin && (p[end - 1] == ' ' || p[end - 1] == '\t')) --end;
  f.value = std::string_view(p + begin, end - begin);
  return Line::field;
}

bool parse_length(std::string_view v, std::uint64_t& out) {
  if (v.empty() || v.size() > 18) return false;
  std::uint64_t n = 0;
  for (const char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = n;
  return true;
}

// True when a Connection value lists a token other than close and keep-alive.
bool names_fields(std::string_view list) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    const auto token = trim_ows(list.substr(0, comma));
    if (!token.empty() && !iequals(token, "close") && !iequals(token, "keep-alive")) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// field_id, inlined into the parser's field loop (it runs for every field of every head).
[[gnu::always_inline]] inline FieldId known_field(std::string_view name) {
  // The length picks at most three candidates; the first letter (lower-cased) then one.
  const auto first = static_cast<char>(static_cast<unsigned char>(name.empty() ? 0 : name[0]) | 0x20U);
  const auto is = [name](std::string_view lower, FieldId id) { return name_is(name, lower) ? id : FieldId::other; };
  switch (name.size()) {
    case 2:
      return is("te", FieldId::te);
    case 4:
      return is("host", FieldId::host);
    case 6:
      if (first == 'e') return is("expect", FieldId::expect);
      if (first == 'c') return is("cookie", FieldId::cookie);
      return is("origin", FieldId::origin);
    case 7:
      if (first == 't') return is("trailer", FieldId::trailer);
      return is("upgrade", FieldId::upgrade);
    case 10:
      if (first == 'c') return is("connection", FieldId::connection);
      if (first == 'k') return is("keep-alive", FieldId::keep_alive);
      return is("tracestate", FieldId::tracestate);
    case 11:
      return is("traceparent", FieldId::traceparent);
    case 12:
      if (first == 'c') return is("content-type", FieldId::content_type);
      return is("x-request-id", FieldId::x_request_id);
    case 13:
      return is("authorization", FieldId::authorization);
    case 14:
      if (first == 'c') return is("content-length", FieldId::content_length);
      return is("mcp-session-id", FieldId::mcp_session_id);
    case 15:
      return is("x-forwarded-for", FieldId::x_forwarded_for);
    case 16:
      if (first == 'p') return is("proxy-connection", FieldId::proxy_connection);
      return is("x-forwarded-host", FieldId::x_forwarded_host);
    case 17:
      if (first == 't') return is("transfer-encoding", FieldId::transfer_encoding);
      return is("x-forwarded-proto", FieldId::x_forwarded_proto);
    case 18:
      return is("proxy-authenticate", FieldId::proxy_authenticate);
    default:
      return FieldId::other;
  }
}

// What the fields of a head said, noted as they are parsed: framing, the connection's end,
// and how often the fields a request may send once came.
struct FieldTally {
  bool has_length = false;
  bool chunked = false;  // Transfer-Encoding: chunked (the only coding understood)
  bool close = false;
  int hosts = 0;
  int origins = 0;
  int session_ids = 0;
  // Notes one field (and its value in `out`); false when it makes the framing untrustworthy.
  [[gnu::always_inline]] inline bool note(const Field& f, Head& out);
  void note_connection(std::string_view value, Head& out);
};

void FieldTally::note_connection(std::string_view value, Head& out) {
  if (!out.connection) out.connection = value;
  if (iequals(value, "keep-alive")) {
    // What servers send on every HTTP/1.1 answer, alone: settled in one compare (the list
    // walks below find no close and no other field in it).
    if (out.version < 11) close = false;
    return;
  }
  if (list_has_token(value, "close")) close = true;
  if (out.version < 11 && list_has_token(value, "keep-alive")) close = false;
  out.connection_names_fields = out.connection_names_fields || names_fields(value);
}

bool FieldTally::note(const Field& f, Head& out) {
  switch (f.id) {
    case FieldId::host:
      ++hosts;
      break;
    case FieldId::origin:
      ++origins;
      break;
    case FieldId::mcp_session_id:
      // An answer naming two different ids names none that can be handed out (empty: invalid).
      if (session_ids++ == 0) {
        out.session_id = f.value;
      } else if (*out.session_id != f.value) {
        out.session_id = std::string_view();
      }
      break;
    case FieldId::x_request_id:
      out.request_id = out.request_id ? std::string_view() : f.value;
      break;
    case FieldId::content_length: {
      std::uint64_t n = 0;
      if (!parse_length(f.value, n) || (has_length && n != out.content_length)) return false;
      has_length = true;
      out.content_length = n;
      break;
    }
    case FieldId::transfer_encoding:
      // Only "chunked" alone is understood; a second header or another coding is refused.
      if (chunked || !iequals(f.value, "chunked")) return false;
      chunked = true;
      break;
    case FieldId::connection:
      note_connection(f.value, out);
      break;
    default:
      break;
  }
  return true;
}

// A request's framing, once its fields are read.
Status request_framing(const FieldTally& t, Head& out) {
  // RFC 9112 3.2: one Host (none only from HTTP/1.0). One Origin (RFC 6454 7.3): with two,
  // the allowlist would check one and the pod might read the other. A session is named
  // once: two ids would route by one and reach the pod with both.
  if (t.hosts > 1 || (t.hosts == 0 && out.version >= 11) || t.origins > 1 || t.session_ids > 1) {
    return Status::bad_field;
  }
  out.framing = t.chunked ? Framing::chunked : (t.has_length ? Framing::length : Framing::none);
  return Status::complete;
}

// A response's framing: none for HEAD answers, 1xx, 204 and 304; else as its fields say,
// or to the connection's end.
Status response_framing(const FieldTally& t, std::string_view request_method, Head& out) {
  if (request_method == "HEAD" || out.status < 200 || out.status == 204 || out.status == 304) {
    out.framing = Framing::none;
  } else if (t.chunked) {
    out.framing = Framing::chunked;
  } else if (t.has_length) {
    out.framing = Framing::length;
  } else {
    out.framing = Framing::close;
    out.keep_alive = false;
  }
  return Status::complete;
}

enum class Kind { request, response };

// RFC 9112's head grammar and framing rules in the order the RFC gives them, each refusal
// next to its rule.
Status parse(std::string_view bytes, std::size_t limit, Kind kind, std::string_view request_method, Head& out) {
  out.fields.clear();
  out.connection.reset();
  out.session_id.reset();
  out.request_id.reset();
  out.connection_names_fields = false;
  out.size = 0;
  out.framing = Framing::none;
  out.content_length = 0;
  const std::string_view window = bytes.substr(0, limit);
  Lines lines(window);
  std::string_view line;
  bool bad = false;
  const auto incomplete = [&] { return bytes.size() >= limit ? Status::too_large : Status::need_more; };
  if (!lines.next(line, bad)) return incomplete();
  if (bad) return Status::bad_start_line;
  if (!(kind == Kind::request ? parse_request_line(line, out) : parse_status_line(line, out))) {
    return Status::bad_start_line;
  }
  FieldTally tally;
  tally.close = out.version < 11;
  std::size_t pos = lines.pos();
  for (;;) {
    Field f;
    const Line l = next_field(window, pos, f);
    if (l == Line::need_more) return incomplete();
    if (l == Line::bad) return Status::bad_field;
    if (l == Line::end) break;
    f.id = known_field(f.name);
    out.fields.push_back(f);
    if (!tally.note(f, out)) return Status::bad_framing;
  }
  out.size = pos;
  out.raw = bytes.substr(0, out.size);
  out.keep_alive = !tally.close;
  // Both framings at once is the shape of a smuggling attempt: refused, never guessed.
  if (tally.has_length && tally.chunked) return Status::bad_framing;
  if (tally.chunked && out.version < 11) return Status::bad_framing;
  return kind == Kind::request ? request_framing(tally, out) : response_framing(tally, request_method, out);
}

}  // namespace

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool list_has_token(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const auto comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void Head::rebase(const char* from, const char* to) {
  const auto move = [from, to](std::string_view& v) {
    if (!v.empty()) v = std::string_view(to + (v.data() - from), v.size());
  };
  move(raw);
  move(method);
  move(target);
  move(reason);
  if (connection) move(*connection);
  if (session_id) move(*session_id);
  if (request_id) move(*request_id);
  // A field's name is never empty and its value, even empty, points into the head: both
  // move without a test.
  for (Field& f : fields) {
    f.name = std::string_view(to + (f.name.data() - from), f.name.size());
    f.value = std::string_view(to + (f.value.data() - from), f.value.size());
  }
}

FieldId field_id(std::string_view name) { return known_field(name); }

Status parse_request(std::string_view bytes, std::size_t limit, Head& out) {
  return parse(bytes, limit, Kind::request, {}, out);
}

Status parse_response(std::string_view bytes, std::size_t limit, std::string_view request_method, Head& out) {
  return parse(bytes, limit, Kind::response, request_method, out);
}

namespace {
struct Reason {
  unsigned status;
  std::string_view phrase;
};
// RFC 9110 15, by status code.
constexpr std::array<Reason, 47> kReasons = {{
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
}};
static_assert(std::is_sorted(kReasons.begin(), kReasons.end(),
                             [](const Reason& a, const Reason& b) { return a.status < b.status; }));
}  // namespace

std::string_view reason_phrase(unsigned status) {
  const auto* it = std::lower_bound(kReasons.begin(), kReasons.end(), status,
                                    [](const Reason& r, unsigned s) { return r.status < s; });
  return it != kReasons.end() && it->status == status ? it->phrase : "Unknown";
}

}  // namespace mcpproxy::http1
