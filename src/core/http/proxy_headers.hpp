#pragma once
// The head edits of a proxied exchange, as free functions over http1 heads: what a request
// head becomes on its way to the pod, and what a response head becomes on its way back.
// One named place for the hop-by-hop rules, X-Forwarded-*, Host and the session id mapping.

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/http/http1.hpp"

namespace mcpproxy {

inline constexpr std::string_view kSessionHeader = "Mcp-Session-Id";
inline constexpr std::string_view kRequestIdHeader = "X-Request-Id";

// A request's id, for the pod and the access log: the client's X-Request-Id (an ingress or
// the client named it) when it is one field of at most `max_length` visible ASCII bytes, or a
// random UUID (version 4) made here, which then replaces the client's copies.
class RequestId {
 public:
  void assign(const http1::Head& req, std::size_t max_length);
  std::string_view view() const { return id_; }
  // Made here: the pod gets it as a field of the proxy's own.
  bool generated() const { return generated_; }
  // The head the client's id is read from was copied from `from` to `to`.
  void rebase(const char* from, const char* to) {
    if (!generated_ && !id_.empty()) id_ = std::string_view(to + (id_.data() - from), id_.size());
  }

 private:
  std::array<char, 36> made_{};
  std::string_view id_;
  bool generated_ = false;
};

// What the request head edit needs to know besides the head itself.
struct UpstreamHeadEdits {
  std::string_view pod_authority;  // host:port of the pod, for Host
  bool rewrite_host = false;       // Host names the pod instead of what the client sent
  std::string_view peer_ip;        // appended to X-Forwarded-For
  // The hop in front (an ingress terminating TLS, the proxy-runner) is trusted: the
  // X-Forwarded-Host/-Proto it sent go to the pod (the first of each), so the pod builds its
  // public URLs (OAuth protected-resource metadata) from what the client used.
  bool trust_forwarded = false;
  // The pod knows the session by its own id (after a re-initialize): the client's id is
  // replaced by this one. Unset: the field goes as the client sent it.
  std::optional<std::string_view> pod_session;
  bool drop_session_header = false;   // an initialize carrying an old id
  std::size_t body_size = 0;          // the body as forwarded (decoded when it came chunked)
  std::string_view added_request_id;  // an X-Request-Id made by the proxy, appended (RequestId)
};

// Writes the request line and fields for the pod: hop-by-hop fields, those the Connection
// field names, Expect, Content-Length and client-sent X-Forwarded-Host/-Proto are dropped
// (the last two are kept when `trust_forwarded`); X-Forwarded-For gets the peer appended;
// X-Forwarded-Host carries the client's Host and X-Forwarded-Proto is http, unless kept;
// Content-Length is the forwarded body's when there is a body or the method carries one.
// Lines forwarded unchanged are copied in runs.
// The head is written at the start of `out`, which keeps any longer size it had (a
// buffer reused from head to head): returns the head's length.
std::size_t write_upstream_head(std::string& out, const http1::Head& req, const UpstreamHeadEdits& edits);

// What the response head edit needs to know besides the head itself.
struct ClientHeadEdits {
  bool http11 = true;      // the client's version
  bool keep_alive = true;  // the client connection stays open after this response
  bool chunked = false;    // the body goes to the client in chunks (the pod's ended by chunks or close)
  // The client knows the session by this id while the pod knows it by another: the pod's
  // Mcp-Session-Id is replaced by it. Unset: the field goes as the pod sent it.
  std::optional<std::string_view> client_session;
};

// Writes the status line and fields for the client: hop-by-hop fields and those the
// Connection field names are dropped; the framing and connection fields the proxy's own
// relay needs are added.
// Written as write_upstream_head's: at the start of `out`; returns the head's length.
std::size_t write_client_head(std::string& out, const http1::Head& res, const ClientHeadEdits& edits);

// The head of a request of the proxy's own to a pod on a session's behalf (a re-initialize's
// initialize and notifications/initialized, the DELETE of a session the proxy will not
// keep): the client's initialize as it came (its target, its end-to-end fields), with the
// credentials of the request in hand and Host as the proxied path sends it.
struct ReplayHeadEdits {
  std::string_view method;
  std::string_view target;       // the stored initialize's, else the request's path
  std::string_view host;         // Host, as write_upstream_head would send it
  std::string_view init_fields;  // the record's replayable_fields ("": none kept)
  std::string_view session;      // Mcp-Session-Id for the pod ("": none)
  std::size_t body_size = 0;
};
// Written at the start of `out` (whose size is then the head's): the request line, Host,
// default Content-Type/Accept when no fields were kept, the kept fields, the request's
// per-request fields, the session id (with the request's MCP-Protocol-Version unless the
// kept fields have one), Content-Length.
void write_replay_head(std::string& out, const ReplayHeadEdits& edits, const http1::Head& req, const RequestId& id);

// The head of a local reply (a JSON body): the status line, Content-Type, Retry-After when
// set, the Connection field the version needs for `keep_alive`, Content-Length; the bytes
// Beast's serializer wrote for the same response. `reason`: the status's phrase.
struct LocalReplyHead {
  unsigned status = 0;
  std::string_view reason;
  bool http11 = true;
  bool keep_alive = true;
  unsigned retry_after = 0;
  std::size_t body_size = 0;
};
// Appended to `out`.
void write_local_reply_head(std::string& out, const LocalReplyHead& h);

// Appends "name: value\r\n".
void append_field(std::string& out, std::string_view name, std::string_view value);

// A field the proxy never forwards as received: hop-by-hop (RFC 9110 7.6.1), or named by
// the message's Connection field.
bool is_dropped_hop(const http1::Field& f, const http1::Head& h);

// The fields of an initialize a re-initialize replays, as "Name: value\r\n" lines: the
// end-to-end ones except the per-request ones, Host, framing, the session id and X-Forwarded-*.
std::string replayable_fields(const http1::Head& req);
// Appends the current request's per-request fields (as received) to `out`, and its
// X-Request-Id when the proxy made it.
void append_per_request_fields(std::string& out, const http1::Head& req, const RequestId& id);

}  // namespace mcpproxy
