#include "core/http/http_rules.hpp"

#include "core/http/http1.hpp"

#include <boost/url/authority_view.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace mcpproxy {
namespace {

using http1::trim_ows;

void inspect_message(const nlohmann::json& msg, JsonRpcInfo& info) {
  if (!msg.is_object()) {
    info.valid = false;
    return;
  }
  const auto method = msg.find("method");
  const auto id = msg.find("id");
  const bool is_request = method != msg.end() && method->is_string() && id != msg.end();
  if (method != msg.end() && method->is_string()) {
    if (info.first_method.empty()) info.first_method = method->get<std::string>();
    if (is_request && *method == "initialize") info.has_initialize = true;
  }
  if (is_request && !info.has_request) {
    info.has_request = true;
    info.id_json = id->dump();
  }
}

}  // namespace

bool valid_session_id(std::string_view id) {
  const std::size_t n = id.size();
  if (n == 0 || n > 256) return false;
  // Eight bytes at a time (checked on every request that names a session): a byte is out
  // of 0x21-0x7E when adding 0x5F carries it past 0x7F (0x21 and up) or it is past 0x7E
  // (adding 1 reaches 0x80), or its top bit is set. Per-byte sums never carry into the
  // next byte: the top bits are cleared first.
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHigh = 0x8080808080808080ULL;
  const auto bad8 = [](std::uint64_t x) {
    const std::uint64_t low7 = x & ~kHigh;
    const std::uint64_t from_21 = low7 + kOnes * (0x80 - 0x21);  // top bit set: 0x21 and up
    const std::uint64_t past_7e = low7 + kOnes * (0x80 - 0x7F);  // top bit set: 0x7F and up
    return ((~from_21 | past_7e | x) & kHigh) != 0;
  };
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t x = 0;
    std::memcpy(&x, id.data() + i, 8);
    if (bad8(x)) return false;
  }
  for (; i < n; ++i) {
    const char c = id[i];
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

namespace {

// RFC 3986 percent-decoding; nullopt for a malformed escape.
std::optional<std::string> percent_decoded(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = http1::hex_value(s[i + 1]);
    const int lo = http1::hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// The decoded value of `name` in a URI reference's query (between '?' and '#'), walked by
// hand: Boost.URL 1.81's params() crashed on "/m?#f?x=1" (found by fuzz/sse_endpoint).
std::optional<std::string> param_of(std::string_view uri, std::string_view name) {
  uri = uri.substr(0, uri.find('#'));
  const auto q = uri.find('?');
  if (q == std::string_view::npos) return std::nullopt;
  std::string_view query = uri.substr(q + 1);
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const auto eq = pair.find('=');
    if (auto key = percent_decoded(pair.substr(0, eq)); key && *key == name) {
      return eq == std::string_view::npos ? std::optional<std::string>("") : percent_decoded(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> query_param(std::string_view target, std::string_view name) {
  if (target.empty() || target.front() != '/') return std::nullopt;  // origin-form only
  return param_of(target, name);
}

JsonRpcInfo inspect_jsonrpc(std::string_view body) {
  JsonRpcInfo info;
  nlohmann::json doc = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return info;
  info.valid = true;
  if (doc.is_array()) {
    info.batch = true;
    if (doc.empty()) info.valid = false;
    for (const auto& m : doc) inspect_message(m, info);
  } else {
    inspect_message(doc, info);
  }
  return info;
}

bool may_be_initialize(std::string_view body) {
  // Found by its 'z', rare in JSON-RPC bodies: one memchr per 'z', where a search for the
  // whole word stops at every quote.
  static constexpr std::string_view kWord = "\"initialize\"";
  constexpr std::size_t kAt = 9;  // of the 'z'
  for (std::size_t from = kAt; from < body.size();) {
    const void* z = std::memchr(body.data() + from, 'z', body.size() - from);
    if (z == nullptr) return false;
    const auto at = static_cast<std::size_t>(static_cast<const char*>(z) - body.data());
    if (at + kWord.size() - kAt <= body.size() && body.substr(at - kAt, kWord.size()) == kWord) return true;
    from = at + 1;
  }
  return false;
}

std::string jsonrpc_error_body(int code, std::string_view message, std::string_view id_json) {
  nlohmann::json err = {{"code", code}, {"message", message}};
  std::string out = R"({"jsonrpc":"2.0","error":)" + err.dump() + R"(,"id":)";
  out += id_json.empty() ? std::string_view("null") : id_json;
  out += '}';
  return out;
}

bool is_hop_by_hop(std::string_view name) { return http1::is_token(name) && is_hop_by_hop(http1::field_id(name)); }

bool connection_lists(std::string_view value, std::string_view name) { return http1::list_has_token(value, name); }

Classified classify_request(std::optional<std::string_view> header_id, std::string_view target, std::string_view body,
                            bool is_post) {
  Classified out;
  classify_request(out, header_id, target, body, is_post);
  return out;
}

void classify_request(Classified& out, std::optional<std::string_view> header_id, std::string_view target,
                      std::string_view body, bool is_post) {
  out.cls = RequestClass::sessionless;
  out.from_query = false;
  out.drop_session_header = false;
  // The id goes into out.session_id's own storage (a connection's exchanges reuse it).
  std::string& id = out.session_id;
  bool have_id = true;
  if (header_id) {
    id.clear();  // then an append: assign's general replace costs twice as much
    id.append(*header_id);
  } else if (auto q = query_param(target, "sessionId")) {
    id = std::move(*q);
    out.from_query = true;
  } else {
    have_id = false;
  }
  // In the legacy transport the initialize travels on the session the GET stream opened
  // (?sessionId=): it routes like any other message of that session.
  const bool initialize = is_post && !out.from_query && may_be_initialize(body) && inspect_jsonrpc(body).has_initialize;
  if (initialize) {
    // A client that re-initializes with its old id starts a new session (DESIGN.md step 3).
    out.cls = RequestClass::new_session;
    out.drop_session_header = header_id.has_value();
    id.clear();
    return;
  }
  if (!have_id) {
    id.clear();
    return;
  }
  if (!valid_session_id(id)) {
    out.cls = RequestClass::malformed_session_id;
    id.clear();
    return;
  }
  out.cls = RequestClass::session;
}

std::string session_hash(std::string_view id) {
  std::uint64_t h = 1469598103934665603ULL;  // FNV-1a 64
  for (const char c : id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  std::array<char, 17> buf{};
  std::snprintf(buf.data(), buf.size(), "%016llx", static_cast<unsigned long long>(h));
  return std::string(buf.data(), 12);
}

std::optional<std::string> legacy_endpoint_session(std::string_view data) {
  data = trim_ows(data);
  // The announced URL may be relative (/messages?sessionId=x) or absolute.
  auto id = param_of(data, "sessionId");
  if (id && valid_session_id(*id)) return id;
  return std::nullopt;
}

}  // namespace mcpproxy

namespace mcpproxy {

std::optional<SseLine> next_sse_line(std::string_view text, std::size_t at) {
  const auto eol = text.find_first_of("\r\n", at);
  if (eol == std::string_view::npos) return std::nullopt;
  const bool crlf = text[eol] == '\r' && eol + 1 < text.size() && text[eol + 1] == '\n';
  return SseLine{text.substr(at, eol - at), eol + (crlf ? 2 : 1)};
}

SseEvent parse_sse_event(std::string_view event) {
  SseEvent out;
  std::size_t at = 0;
  while (at < event.size()) {
    // The last line of an event handed over without its end is a line too.
    const auto line = next_sse_line(event, at).value_or(SseLine{event.substr(at), event.size()});
    at = line.next;
    const auto colon = line.text.find(':');
    const std::string_view field = line.text.substr(0, colon);
    std::string_view value = colon == std::string_view::npos ? std::string_view{} : line.text.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    if (field == "event") {
      out.type = value;
    } else if (field == "data") {
      if (out.has_data) out.data += '\n';
      out.data.append(value);
      out.has_data = true;
    }
  }
  return out;
}

std::optional<std::string> SseEndpointScanner::feed(std::string_view bytes) {
  if (done_) return std::nullopt;
  seen_ += bytes.size();
  pending_.append(bytes);
  std::optional<std::string> id;
  const std::size_t used = take_sse_events(pending_, [&](std::string_view event) {
    const SseEvent e = parse_sse_event(event);
    if (e.type != "endpoint") return true;
    done_ = true;
    id = legacy_endpoint_session(e.data);
    return false;
  });
  if (done_) return id;
  pending_.erase(0, used);
  if (seen_ > limit_) done_ = true;
  return std::nullopt;
}

}  // namespace mcpproxy

namespace mcpproxy {

std::string prefix_legacy_endpoint(std::string bytes, std::string_view prefix) {
  if (prefix.empty()) return bytes;
  const auto event = bytes.find("event: endpoint");
  if (event == std::string::npos) return bytes;
  const auto data = bytes.find("data:", event);
  if (data == std::string::npos) return bytes;
  std::size_t value = data + 5;
  if (value < bytes.size() && bytes[value] == ' ') ++value;
  if (value >= bytes.size() || bytes[value] != '/' || (value + 1 < bytes.size() && bytes[value + 1] == '/')) {
    return bytes;  // absolute ("http://…") or scheme-relative ("//host/…"): not ours to change
  }
  std::string_view p = prefix;
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  bytes.insert(value, p);
  return bytes;
}

namespace {
bool equal_ci(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// A Host value as RFC 9110 7.2 has it: uri-host [ ":" port ], an RFC 3986 authority without
// userinfo ("localhost:80@evil.com" is not a host of localhost). Parsed by Boost.URL.
struct Authority {
  std::string_view host;  // encoded: a reg-name, an IPv4 address or an IP literal "[…]"
  std::string_view port;  // empty when absent
};

std::optional<Authority> parse_host(std::string_view value) {
  const auto a = boost::urls::parse_authority(value);
  if (!a || a->has_userinfo() || a->encoded_host().empty()) return std::nullopt;
  return Authority{a->encoded_host(), a->port()};
}

// An Origin (RFC 6454 7): scheme "://" host [ ":" port ], nothing else; or "null".
struct Origin {
  std::string_view scheme;
  Authority authority;
};

std::optional<Origin> parse_origin(std::string_view value) {
  const auto u = boost::urls::parse_absolute_uri(value);
  if (!u || !u->has_authority() || u->has_userinfo() || !u->encoded_path().empty() || u->has_query() ||
      u->encoded_host().empty()) {
    return std::nullopt;
  }
  return Origin{u->scheme(), Authority{u->encoded_host(), u->port()}};
}

}  // namespace

bool origin_allowed(const std::vector<std::string>& allowed, std::optional<std::string_view> origin) {
  if (allowed.empty() || !origin) return true;
  const auto o = parse_origin(*origin);
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    if (!o) return a == "null" && *origin == "null";  // an opaque origin matches only "null"
    const auto entry = parse_origin(a);
    return entry && equal_ci(entry->scheme, o->scheme) && equal_ci(entry->authority.host, o->authority.host) &&
           entry->authority.port == o->authority.port;
  });
}

bool host_allowed(const std::vector<std::string>& allowed, std::optional<std::string_view> host) {
  if (allowed.empty()) return true;
  const auto h = host ? parse_host(*host) : std::nullopt;
  if (!h) return false;
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
    const auto entry = parse_host(a);
    // An entry without a port allows any port of its host.
    return entry && equal_ci(entry->host, h->host) && (entry->port.empty() || entry->port == h->port);
  });
}

bool valid_origin_entry(std::string_view entry) { return entry == "null" || parse_origin(entry).has_value(); }
bool valid_host_entry(std::string_view entry) { return parse_host(entry).has_value(); }

}  // namespace mcpproxy
