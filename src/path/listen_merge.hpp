#pragma once
// The merge of a fanned-out subscriptions/listen (path/listen_fanout.hpp says what must stay
// true): the legs, one a pod, each a coroutine of its own that opens the client's listen on
// its pod and opens it again while it is wanted, and the merge loop that writes the pods'
// notifications to the client as they arrive. What it decides is in core/mcp/listen_events.hpp.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/decide/route.hpp"
#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/connection_context.hpp"

namespace mcpproxy {

// The client's request, sent as it is to every pod (the proxied path's head edits); copies:
// a leg may still be unwinding after the connection moved on.
struct ListenRequest {
  std::string head;  // the request head's bytes as received
  std::string body;
  std::string added_request_id;  // an X-Request-Id the proxy made, else empty
  std::string id_json;           // the listen's JSON-RPC id
  bool client_http11 = true;
};

// How a merged listen ended.
struct ListenEnd {
  enum class Kind : std::uint8_t {
    streamed,     // the client had the stream (it went, cancelled, the drain or a bound ended it)
    answered,     // a pod's answer that is not a stream went to the client (`status`)
    client_gone,  // the client left before any pod acknowledged
    refused,      // nothing reached the client: `reply` is owed
  };
  Kind kind = Kind::streamed;
  unsigned status = 200;
  Refusal reply;
};

// Serves the listen until the client goes, cancels, the drain ends it, or it ends (every pod
// honours nothing). `pods`: the ordinals to listen on (a listen filtered to tasks); else every
// pod of the current config, as reloads change it.
net::awaitable<ListenEnd> merge_listen(ConnectionContext& ctx, ClientLink& client, ListenRequest req,
                                       std::optional<std::vector<int>> pods);

}  // namespace mcpproxy
