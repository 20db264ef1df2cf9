#pragma once
// The metrics of era classification and task/handle affinity (DESIGN.md "Admin
// endpoints"): counters the request path bumps, rendered into /metrics by Metrics::render.
// Labels are bounded: an era, a spec method or "other", a result, a reason.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "core/mcp/mcp_method.hpp"

namespace mcpproxy {

class TaskTable;

// How a request that names a task or a handle was answered.
enum class KeyRoute : std::uint8_t {
  routed,    // to the pod that holds it
  unknown,   // no pod holds it (as far as the table and the store know): -32602 from the proxy
  pod_gone,  // its pod's ordinal is past the replicas: -32602 from the proxy
  mismatch,  // the header and the body disagree: 400 -32020 from the proxy
  // sessions.binding: answered as an unknown key, never sent to its pod.
  other_identity,       // made by another identity (or the request has none that verifies)
  unknown_binding_key,  // made under a binding key not in sessions.binding_secret_file
};
inline constexpr std::size_t kKeyRoutes = 6;

// Why a key an answer created was not recorded.
enum class KeyRefused : std::uint8_t {
  invalid,       // empty, past affinity.max_key_length, or control bytes
  taken,         // another pod holds that id already (the first one keeps it)
  full,          // the table's bounds are filled with live keys (memory store)
  unreadable,    // the answer (or one of its events) is past affinity.max_answer_scan
  store_failed,  // Redis could not be asked: kept in this process only
  unbound,       // sessions.binding: the request that made it had no identity the binding accepts
};
inline constexpr std::size_t kKeyRefusals = 6;

struct AffinityMetrics {
  void count_request(Era era, McpMethod method) {
    requests_by_method[static_cast<std::size_t>(era)][static_cast<std::size_t>(method)].fetch_add(
        1, std::memory_order_relaxed);
  }
  void count_route(bool task, KeyRoute r) {
    (task ? task_routes : handle_routes)[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void count_refused(KeyRefused r, std::uint64_t n = 1) {
    refused[static_cast<std::size_t>(r)].fetch_add(n, std::memory_order_relaxed);
  }
  // Appends the families; `table` (may be null) gives the keys held.
  void render(std::string& out, const TaskTable* table) const;

  std::array<std::array<std::atomic<std::uint64_t>, kMcpMethods>, kEras> requests_by_method{};
  std::array<std::atomic<std::uint64_t>, kKeyRoutes> task_routes{};
  std::array<std::atomic<std::uint64_t>, kKeyRoutes> handle_routes{};
  std::atomic<std::uint64_t> tasks_learned{0};
  std::atomic<std::uint64_t> handles_learned{0};
  std::array<std::atomic<std::uint64_t>, kKeyRefusals> refused{};
  std::atomic<std::int64_t> listen_streams{0};  // subscriptions/listen answers being relayed
};

}  // namespace mcpproxy
