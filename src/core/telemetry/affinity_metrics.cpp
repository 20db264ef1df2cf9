// The affinity metrics' exposition (affinity_metrics.hpp).
#include "core/telemetry/affinity_metrics.hpp"

#include <string_view>

#include "core/tables/task_table.hpp"

namespace mcpproxy {
namespace {

constexpr std::array<std::string_view, kKeyRoutes> kRoutes = {"routed",   "unknown",        "pod_gone",
                                                              "mismatch", "other_identity", "unknown_binding_key"};
constexpr std::array<std::string_view, kKeyRefusals> kRefusals = {"invalid",    "taken",        "full",
                                                                  "unreadable", "store_failed", "unbound"};

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ");
  out.append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
  out.append(name);
  if (!labels.empty()) out.append("{").append(labels).append("}");
  out.append(" ").append(std::to_string(value)).append("\n");
}

std::uint64_t load(const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); }

}  // namespace

void AffinityMetrics::render(std::string& out, const TaskTable* table) const {
  family(out, "mcp_proxy_requests_by_method_total", "counter",
         "Requests by protocol era (2025: with sessions; 2026: 2026-07-28, sessionless) and JSON-RPC method "
         "(the spec's methods, else other).");
  for (std::size_t e = 0; e < kEras; ++e) {
    for (std::size_t m = 0; m < kMcpMethods; ++m) {
      const std::string labels = "era=\"" + std::string(to_string(static_cast<Era>(e))) + "\",method=\"" +
                                 std::string(to_string(static_cast<McpMethod>(m))) + "\"";
      sample(out, "mcp_proxy_requests_by_method_total", labels, load(requests_by_method[e][m]));
    }
  }
  family(out, "mcp_proxy_task_routes_total", "counter",
         "Task requests (tasks/get|update|cancel|result) by how they were routed: to the task's pod, or answered "
         "by the proxy (unknown task, its pod gone, header and body disagree, made by another identity or under a "
         "binding key this proxy does not have: answered as unknown).");
  for (std::size_t r = 0; r < kKeyRoutes; ++r) {
    sample(out, "mcp_proxy_task_routes_total", "result=\"" + std::string(kRoutes[r]) + "\"", load(task_routes[r]));
  }
  family(out, "mcp_proxy_handle_routes_total", "counter",
         "Requests carrying a configured handle, by how they were routed.");
  for (std::size_t r = 0; r < kKeyRoutes; ++r) {
    sample(out, "mcp_proxy_handle_routes_total", "result=\"" + std::string(kRoutes[r]) + "\"", load(handle_routes[r]));
  }
  family(out, "mcp_proxy_tasks_learned_total", "counter", "Task ids learned from the answers that created them.");
  sample(out, "mcp_proxy_tasks_learned_total", "", load(tasks_learned));
  family(out, "mcp_proxy_handles_learned_total", "counter", "Handles learned from the answers that created them.");
  sample(out, "mcp_proxy_handles_learned_total", "", load(handles_learned));
  family(out, "mcp_proxy_affinity_keys_refused_total", "counter",
         "Task ids and handles in answers that were not recorded, by reason.");
  for (std::size_t r = 0; r < kKeyRefusals; ++r) {
    sample(out, "mcp_proxy_affinity_keys_refused_total", "reason=\"" + std::string(kRefusals[r]) + "\"",
           load(refused[r]));
  }
  family(out, "mcp_proxy_affinity_keys", "gauge", "Task ids and handles in this process's table.");
  sample(out, "mcp_proxy_affinity_keys", "", table != nullptr ? table->size() : 0);
  family(out, "mcp_proxy_listen_streams", "gauge", "subscriptions/listen streams being relayed now.");
  out.append("mcp_proxy_listen_streams ")
      .append(std::to_string(listen_streams.load(std::memory_order_relaxed)))
      .append("\n");
}

}  // namespace mcpproxy
