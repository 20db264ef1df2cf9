#pragma once
// The routing decisions of a request, with no I/O: where a classified request goes given
// its session record, and what the proxy does with the pod's answer before relaying it.
// The data plane (downstream.cpp) acts on these; unit-tested without sockets.

#include <chrono>
#include <optional>
#include <string_view>

#include "core/config/config.hpp"
#include "core/http/http_rules.hpp"
#include "core/tables/session.hpp"

namespace mcpproxy {

// A local reply instead of a proxied one: HTTP status, JSON-RPC error code and message.
struct Refusal {
  unsigned status = 0;
  int code = 0;
  std::string_view message;
  unsigned retry_after = 0;  // seconds, sent as Retry-After when not 0
};

inline constexpr Refusal kSessionNotFound{404, -32001, "Session not found"};
inline constexpr Refusal kPodFailed{502, -32603, "MCP server failed"};
inline constexpr Refusal kPodTimedOut{504, -32603, "MCP server did not answer in time"};
inline constexpr Refusal kMalformedSessionId{400, -32600,
                                             "Invalid Mcp-Session-Id: 1-256 visible ASCII characters expected"};

// Why a session's pod is taken to be gone.
enum class LostCause : std::uint8_t {
  pod_answered_404,  // the pod no longer knows the session (restarted, or dropped it)
  scaled_down,       // its ordinal is no longer < replicas
  unreachable,       // its pod refused connections for longer than backend.unreachable_grace
  no_such_pod,       // its pod's name does not resolve (NXDOMAIN)
};
std::string_view to_string(LostCause c);

// How a connection to a pod failed (upstream_exchange classifies the socket error).
enum class ConnectFailure : std::uint8_t {
  refused,      // refused, reset, unreachable or timed out: the pod may be restarting
  no_such_pod,  // its name does not resolve (NXDOMAIN): gone once that lasts past the grace
  dns,          // its name cannot be looked up now (SERVFAIL, timeout, no server): says nothing of the pod
  local,        // the proxy's own trouble: descriptors, buffers, memory, ports, DNS unavailable
};

// Answers of the proxy's own trouble: the session and its record stay, the client retries.
inline constexpr Refusal kProxyOverloaded{503, -32603, "Proxy temporarily out of resources, retry", 1};
inline constexpr Refusal kIdentityRepeated{400, -32600,
                                           "More than one identity field: sessions are bound to who made them"};
inline constexpr Refusal kIdentityRequired{401, -32000, "Authentication required: sessions are bound to who made them"};
inline constexpr Refusal kOriginNotAllowed{403, -32000, "Origin not allowed"};
inline constexpr Refusal kHostNotAllowed{403, -32000, "Host not allowed"};
inline constexpr Refusal kStoreUnavailable{503, -32603, "Session store unavailable, retry", 1};
inline constexpr Refusal kPodUnavailable{503, -32603, "MCP server unavailable, retry", 1};
inline constexpr Refusal kPodNameGone{503, -32603,
                                      "MCP server's name does not resolve (NXDOMAIN: pod restarting?), retry", 1};
inline constexpr Refusal kPodNameServfail{503, -32603,
                                          "MCP server's name cannot be looked up now (DNS SERVFAIL), retry", 1};
inline constexpr Refusal kPodNameTimeout{503, -32603, "MCP server's name cannot be looked up now (DNS timeout), retry",
                                         1};
inline constexpr Refusal kPodNameNoServer{503, -32603,
                                          "MCP server's name cannot be looked up now (no DNS server), retry", 1};
inline constexpr Refusal kRecoveryInProgress{503, -32603, "Session being re-established, retry", 1};
// A new session with no room: live sessions fill the table's bounds (none is dropped for it).
inline constexpr Refusal kSessionTableFull{503, -32603, "Proxy session table full of live sessions, retry later", 5};

// A pod's answer that presents a session id the proxy does not hand out: an id is the
// session's that had it first, and a session keeps its id.
inline constexpr Refusal kDuplicateSessionId{502, -32603, "MCP server sent a session id that another session holds"};
inline constexpr Refusal kSessionRenamed{502, -32603, "MCP server changed the id of a live session"};

// The one decision of what makes a session lost when its pod cannot be connected to
// (README "What counts as a lost session"): refusals, or a name that no longer resolves
// (NXDOMAIN), for `failing_for` >= `grace` (the caller passes backend.unreachable_grace or
// backend.dns_gone_grace). Anything else answers `refusal` and keeps the session.
struct Unreachable {
  bool lost = false;
  LostCause cause = LostCause::unreachable;
  Refusal refusal;
};
Unreachable judge_unreachable(ConnectFailure f, std::chrono::steady_clock::duration failing_for,
                              std::chrono::steady_clock::duration grace);

struct Route {
  enum class Kind : std::uint8_t {
    refuse,   // answer `refusal` locally
    forward,  // to `ordinal`, the session's pod
    place,    // a new session or a sessionless request: placement picks the pod
    lost,     // the session's pod is gone (`cause`): recovery or 404
  };
  Kind kind = Kind::place;
  int ordinal = -1;
  Refusal refusal;
  LostCause cause = LostCause::scaled_down;
};

// `rec` is the session's record when the request is of a session and one was found.
Route route_request(const Classified& c, const SessionRecord* rec, int replicas);

// Whether a lost session can move to another pod: policy reinitialize, a stored initialize,
// not a legacy session (its stream is gone with its pod), and not a DELETE (nothing to keep).
// `init_in_store`: the record is a cached copy whose initialize stays in the store (Redis),
// read back when the session is found lost.
bool can_recover(OnLost policy, const SessionRecord* rec, bool from_query, std::string_view method,
                 bool init_in_store = false);

// What the proxy does with a pod's answer before relaying it.
enum class ResponseAction : std::uint8_t {
  relay,                   // nothing of the session table to do
  record_new_session,      // the pod minted a session: record it before the head goes out
  reject_bad_session_id,   // the pod minted an id that is not a valid one: 502
  reject_renamed_session,  // a later answer of a session carries another id than the session's: 502
  recover,                 // the pod lost the session: move it, replay the request
  forget_deleted,          // DELETE succeeded: the record goes
  forget_lost,             // the pod lost the session and it cannot move: the record goes, 404 relayed
  tap_legacy_stream,       // a legacy (2024-11-05) SSE stream: read its endpoint event as it passes
};

struct ResponseFacts {
  RequestClass cls = RequestClass::sessionless;
  std::string_view method;
  std::string_view target;
  unsigned status = 0;
  std::optional<std::string_view> session_header;  // the pod's Mcp-Session-Id
  std::string_view session;                        // a session's request: the id its pod knows it by
  bool may_recover = false;                        // this exchange is not a replay already
  bool recoverable = false;                        // can_recover() for its session
  std::string_view legacy_sse_path;
};

ResponseAction response_action(const ResponseFacts& f);

}  // namespace mcpproxy
