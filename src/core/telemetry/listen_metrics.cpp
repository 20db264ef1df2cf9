// The listen fan-out's metrics' exposition (listen_metrics.hpp).
#include "core/telemetry/listen_metrics.hpp"

#include <string_view>

namespace mcpproxy {
namespace {

constexpr std::array<std::string_view, kListenDrops> kDropNames = {"slow_client_dropped", "slow_client_closed",
                                                                   "leg_limit", "listen_refused", "unreadable"};

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
  out.append(type).append("\n");
}

template <class T>
void sample(std::string& out, std::string_view name, std::string_view labels, const std::atomic<T>& value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value.load(std::memory_order_relaxed))).append("\n");
}

}  // namespace

void ListenMetrics::render(std::string& out) const {
  family(out, "mcp_proxy_listen_fanouts", "gauge",
         "subscriptions/listen streams fanned out over the pods now (subscriptions.fanout).");
  sample(out, "mcp_proxy_listen_fanouts", "", listens);
  family(out, "mcp_proxy_listen_legs", "gauge", "Legs of fanned-out listens open on a pod (acknowledged) now.");
  sample(out, "mcp_proxy_listen_legs", "", legs_open);
  family(out, "mcp_proxy_listen_legs_held", "gauge",
         "Legs of fanned-out listens connecting or open now (bounded by subscriptions.max_legs).");
  sample(out, "mcp_proxy_listen_legs_held", "", legs_held);
  family(out, "mcp_proxy_listen_buffered_bytes", "gauge",
         "Bytes of notifications waiting for listen clients that have not read them yet.");
  sample(out, "mcp_proxy_listen_buffered_bytes", "", buffered_bytes);
  family(out, "mcp_proxy_listen_notifications_merged_total", "counter",
         "Notifications from the pods merged into fanned-out listen streams.");
  sample(out, "mcp_proxy_listen_notifications_merged_total", "", merged);
  family(out, "mcp_proxy_listen_legs_reopened_total", "counter",
         "Legs opened again after their pod's stream failed or ended (a pod restarted, a scale, a drain).");
  sample(out, "mcp_proxy_listen_legs_reopened_total", "", reopened);
  family(out, "mcp_proxy_listen_drops_total", "counter",
         "What fanned-out listens could not carry, by reason (slow clients, the legs bound, unreadable events).");
  for (std::size_t r = 0; r < kListenDrops; ++r) {
    sample(out, "mcp_proxy_listen_drops_total", "reason=\"" + std::string(kDropNames[r]) + "\"", drops[r]);
  }
}

}  // namespace mcpproxy
