#pragma once
// Request decisions with no I/O in them: session ids, JSON-RPC inspection, header rules,
// and the routing decision. Unit-tested without sockets.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/http1.hpp"

namespace mcpproxy {

// DESIGN.md step 2: 1-256 bytes of visible ASCII 0x21-0x7E.
bool valid_session_id(std::string_view id);

// The decoded value of one query parameter of an origin-form target ("/messages?sessionId=x").
std::optional<std::string> query_param(std::string_view target, std::string_view name);

// What the proxy needs to know of a JSON-RPC body.
struct JsonRpcInfo {
  bool valid = false;           // parsed as one message object or a non-empty array of them
  bool batch = false;           // a JSON array (2025-03-26)
  bool has_initialize = false;  // some message is an `initialize` request
  bool has_request = false;     // some message has both method and id (else: notifications/responses)
  std::string first_method;
  std::string id_json = "null";  // the first request's id, serialised, for error replies
};

JsonRpcInfo inspect_jsonrpc(std::string_view body);

// Cheap pre-check: only a body that contains the token can be an initialize, so the full
// parse is skipped on the hot path for every other request.
bool may_be_initialize(std::string_view body);

// The JSON-RPC error body of a refused request, with the request's id echoed.
std::string jsonrpc_error_body(int code, std::string_view message, std::string_view id_json);

// Hop-by-hop headers (RFC 9110 7.6.1), never forwarded either way: by the id the parser gave
// a field (the request path's question, for every field both ways), or by name.
inline bool is_hop_by_hop(http1::FieldId id) {
  switch (id) {
    case http1::FieldId::connection:
    case http1::FieldId::keep_alive:
    case http1::FieldId::te:
    case http1::FieldId::trailer:
    case http1::FieldId::upgrade:
    case http1::FieldId::proxy_connection:
    case http1::FieldId::proxy_authenticate:
    case http1::FieldId::transfer_encoding:
      return true;
    default:
      return false;
  }
}
bool is_hop_by_hop(std::string_view name);

// True when `name` is one of the comma-separated tokens of a Connection header value.
bool connection_lists(std::string_view connection_value, std::string_view name);

// DNS-rebinding defence (allowed_origins, allowed_hosts; empty lists check nothing). Both
// values are parsed as RFC 3986 authorities (Boost.URL), never compared as strings, so
// userinfo ("localhost:80@evil.com") or a path cannot pass as an allowed host. (Two Host or
// two Origin fields never get here: the parser refuses them, 400.)
// An Origin is allowed when it is absent (not a browser) or its scheme, host and port equal
// an entry's (scheme and host case-insensitively); "null" only by a "null" entry.
bool origin_allowed(const std::vector<std::string>& allowed, std::optional<std::string_view> origin);
// A Host is allowed when its host equals an entry's (case-insensitively) and its port does
// too when the entry names one ("localhost" allows "localhost:8080"). An absent or
// malformed Host is not allowed by a list.
bool host_allowed(const std::vector<std::string>& allowed, std::optional<std::string_view> host);
// What the config accepts as list entries: an origin ("https://app.example.com", "null"),
// a host[:port] ("localhost", "127.0.0.1:8080", "[::1]").
bool valid_origin_entry(std::string_view entry);
bool valid_host_entry(std::string_view entry);

// How a request is routed, before any session lookup.
enum class RequestClass {
  malformed_session_id,  // 400
  session,               // look the id up: forward to its pod, or 404 when unknown
  new_session,           // initialize: place it (a stale session id on it is dropped)
  sessionless,           // place per request (stateless servers, legacy SSE GET, 2026-07-28)
};

struct Classified {
  RequestClass cls = RequestClass::sessionless;
  std::string session_id;            // for `session`
  bool from_query = false;           // the id came from the legacy `sessionId` query parameter
  bool drop_session_header = false;  // initialize carrying an old id
};

// `header_id` is the Mcp-Session-Id header when present; `target` the request target.
Classified classify_request(std::optional<std::string_view> header_id, std::string_view target, std::string_view body,
                            bool is_post);
// The same into `out`, whose session_id keeps its storage (no allocation per request).
void classify_request(Classified& out, std::optional<std::string_view> header_id, std::string_view target,
                      std::string_view body, bool is_post);

// A short stable hash of a session id for logs (never the raw id).
std::string session_hash(std::string_view id);

// The legacy 2024-11-05 `endpoint` event announces the POST URL; its `sessionId` parameter is
// the session id. Returns it from one SSE event's `data:` payload.
std::optional<std::string> legacy_endpoint_session(std::string_view data);

}  // namespace mcpproxy

namespace mcpproxy {

// For a proxy mounted under a path prefix: the legacy `endpoint` event's relative URL
// ("/messages?sessionId=x") gets the prefix ("/team-a/messages?sessionId=x") so the client
// posts through the same mount. `bytes` holds the stream up to the end of that event;
// absolute URLs and other events are left alone.
std::string prefix_legacy_endpoint(std::string bytes, std::string_view prefix);

// Server-sent events as a stream carries them (WHATWG HTML 9.2.6): a line ends with CRLF,
// LF or CR; an event ends with an empty line. The one walker of the proxy's SSE readers
// (the legacy endpoint event below, a watched answer's messages in task_affinity.hpp).
struct SseLine {
  std::string_view text;  // without its end
  std::size_t next = 0;   // where the next line begins
};
// The line of `text` that begins at `at`; nullopt while its end has not arrived. A CR that
// is the last byte so far ends its line (a client dispatches on it too; an LF after it then
// reads as an empty line).
std::optional<SseLine> next_sse_line(std::string_view text, std::size_t at);

// One event's fields: the last `event` field's value, the `data` fields' values joined with
// "\n" (a value loses one leading space; a line without a colon is a field with no value;
// comments and other fields are skipped).
struct SseEvent {
  std::string_view type;
  std::string data;
  bool has_data = false;  // at least one `data` field (an event without one is dispatched as nothing)
};
SseEvent parse_sse_event(std::string_view event);

// The complete events at the front of `text`, each (its lines, without the empty line that
// ends it) handed to `on_event` in order until it returns false; returns how many bytes of
// `text` they took (the rest is an event still arriving).
template <class OnEvent>
std::size_t take_sse_events(std::string_view text, OnEvent&& on_event) {
  std::size_t start = 0;
  std::size_t at = 0;
  while (const auto line = next_sse_line(text, at)) {
    const std::size_t begins = at;
    at = line->next;
    if (!line->text.empty()) continue;
    const std::string_view event = text.substr(start, begins - start);
    start = at;
    if (!on_event(event)) break;
  }
  return start;
}

// Watches the first events of a legacy (2024-11-05) SSE stream as they pass through, for
// the `endpoint` event. Bounded: gives up after `limit` bytes without one.
class SseEndpointScanner {
 public:
  explicit SseEndpointScanner(std::size_t limit = 65536) : limit_(limit) {}
  // Feed the next bytes of the stream; returns the session id once the endpoint event is
  // complete. After that (or after giving up) `done()` is true and feeding does nothing.
  std::optional<std::string> feed(std::string_view bytes);
  bool done() const { return done_; }

 private:
  std::string pending_;
  std::size_t seen_ = 0;
  std::size_t limit_;
  bool done_ = false;
};

}  // namespace mcpproxy
