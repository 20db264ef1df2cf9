#pragma once
// How a pod's answer is relayed to the client, decided from its head and the request
// alone: a pure function (no I/O, nothing changed); the driver and the relay act on it.
// Unit-tested.

#include <optional>
#include <string_view>

#include "core/http/http1.hpp"
#include "core/http/proxy_headers.hpp"

namespace mcpproxy {

// What of the request and the worker the plan depends on.
struct RelayInputs {
  int client_version = 11;  // the request's HTTP version (10, 11)
  bool keep_alive = true;   // the client asked to keep the connection (its request head)
  bool draining = false;    // the worker is draining: connections close after their answer
  bool is_get = false;
  // The client knows the session by this id while its pod knows it by another.
  std::optional<std::string_view> client_session;
};

struct RelayPlan {
  bool sse = false;
  bool long_lived = false;  // a GET stream: waits for the pod without holding a buffer
  bool chunked = false;     // chunked to the client
  bool pod_keep_alive = true;
  bool keep_alive = true;  // the client connection after this answer (client_keep_alive)
  // A stream may stay open for hours: the request leaves the read buffer, and the buffer
  // goes, before it is relayed.
  bool frees_read_buffer = false;
  // A GET stream never ends by itself: the drain does not wait for it (it closes it at the
  // end). A POST answered with SSE is a call in progress the drain waits for.
  bool leaves_drain = false;
  ClientHeadEdits head;  // the client's head (write_client_head)
};

RelayPlan plan_relay(const http1::Head& res, const RelayInputs& in);

}  // namespace mcpproxy
