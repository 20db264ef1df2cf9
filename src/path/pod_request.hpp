#pragma once
// Requests of the proxy's own to a pod on a session's behalf: a re-initialize's initialize
// and notifications/initialized (session_recovery.hpp), the DELETE of a session the proxy
// will not keep (session_ids.cpp). Each is an UpstreamExchange of its own (the proxied
// path's attempts, head reader and retry rules) driven by UpstreamExchange::run_own; its
// head is write_replay_head's, its answer's body read to its end and dropped.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

struct PodCall {
  std::string_view method;
  int ordinal = -1;
  std::string_view target;  // the request's path (a stored initialize's target wins)
  std::string_view body;
  std::string_view session;  // the session id the pod knows ("": none yet)
};

struct PodReply {
  unsigned status = 0;  // 0: no answer
  std::optional<std::string> session_id;
};

// `up`: the errand's connection, kept from call to call (null: a pooled or a new one); null
// afterwards when it cannot be used again. `ex`: the request on whose behalf it is sent (its
// credentials and request id go along; its record's initialize is replayed).
net::awaitable<PodReply> send_to_pod(ConnectionContext& ctx, ClientLink& client, const PodCall& call,
                                     std::unique_ptr<tcp::socket>& up, const Exchange& ex);

}  // namespace mcpproxy
