#pragma once
// subscriptions.*: the fan-out of a 2026-07-28 `subscriptions/listen` over every pod
// (path/listen_fanout.hpp; config.hpp holds it in Config::subscriptions).

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace mcpproxy {

// What a listen whose client does not read gets when one of its legs holds
// `max_leg_buffer` bytes of notifications: its stream closed with a JSON-RPC error for the
// listen (the client knows to listen again and re-list), or the notifications that do not fit
// dropped (the stream stays open; the client never learns what it missed).
enum class SlowListenClient : std::uint8_t { close, drop };

struct SubscriptionsConfig {
  bool fanout = false;                      // open each subscriptions/listen on every pod, merge into one stream
  int max_legs_per_listen = 64;             // pods one listen may open; replicas may not exceed it
  std::size_t max_legs = 30000;             // legs open at once in the process (a leg is a pod socket)
  std::size_t max_leg_buffer = 64U * 1024;  // a leg's notifications waiting for the client, bytes
  SlowListenClient slow_client = SlowListenClient::close;
  std::chrono::milliseconds keepalive{15000};          // the proxy's keep-alive comment to an idle client
  std::chrono::milliseconds reopen_backoff_max{5000};  // a failed leg is opened again after 100 ms doubling to this
  bool operator==(const SubscriptionsConfig&) const = default;
};

}  // namespace mcpproxy
