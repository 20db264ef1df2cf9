#pragma once
// The metrics of fanned-out subscriptions/listen streams (path/listen_fanout.hpp), rendered into
// /metrics by Metrics::render. Labels are bounded: a drop's reason.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace mcpproxy {

enum class ListenDrop : std::uint8_t {
  slow_client_dropped,  // a notification dropped: its leg's buffer was full (slow_client: drop)
  slow_client_closed,   // a listen closed: a leg's buffer was full (slow_client: close)
  leg_limit,            // a leg not opened (subscriptions.max_legs): tried again later
  listen_refused,       // a listen answered 503: no leg could be had (subscriptions.max_legs)
  unreadable,           // a leg's event past subscriptions.max_leg_buffer: the leg re-opened
};
inline constexpr std::size_t kListenDrops = 5;

struct ListenMetrics {
  void count_drop(ListenDrop d) { drops[static_cast<std::size_t>(d)].fetch_add(1, std::memory_order_relaxed); }
  void render(std::string& out) const;

  std::atomic<std::int64_t> listens{0};         // fanned-out listens being served
  std::atomic<std::int64_t> legs_open{0};       // legs whose pod acknowledged the listen
  std::atomic<std::int64_t> legs_held{0};       // legs connecting or open: what subscriptions.max_legs bounds
  std::atomic<std::int64_t> buffered_bytes{0};  // notifications waiting for slow clients, all listens
  std::atomic<std::uint64_t> merged{0};         // notifications merged into clients' streams
  std::atomic<std::uint64_t> reopened{0};       // legs opened again after their stream failed or ended
  std::array<std::atomic<std::uint64_t>, kListenDrops> drops{};
};

}  // namespace mcpproxy
