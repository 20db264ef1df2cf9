// The era of a request and its method label (mcp_method.hpp).
#include "mcpproxy/mcp_method.hpp"

#include <array>
#include <cstring>

namespace mcpproxy {
namespace {

struct Name {
  McpMethod method;
  std::string_view text;
};

constexpr std::array<Name, kMcpMethods - 1> kNames{{
    {McpMethod::initialize, "initialize"},
    {McpMethod::ping, "ping"},
    {McpMethod::server_discover, "server/discover"},
    {McpMethod::tools_list, "tools/list"},
    {McpMethod::tools_call, "tools/call"},
    {McpMethod::resources_list, "resources/list"},
    {McpMethod::resources_templates_list, "resources/templates/list"},
    {McpMethod::resources_read, "resources/read"},
    {McpMethod::resources_subscribe, "resources/subscribe"},
    {McpMethod::resources_unsubscribe, "resources/unsubscribe"},
    {McpMethod::prompts_list, "prompts/list"},
    {McpMethod::prompts_get, "prompts/get"},
    {McpMethod::completion_complete, "completion/complete"},
    {McpMethod::logging_set_level, "logging/setLevel"},
    {McpMethod::subscriptions_listen, "subscriptions/listen"},
    {McpMethod::tasks_get, "tasks/get"},
    {McpMethod::tasks_result, "tasks/result"},
    {McpMethod::tasks_list, "tasks/list"},
    {McpMethod::tasks_cancel, "tasks/cancel"},
    {McpMethod::tasks_update, "tasks/update"},
    {McpMethod::notifications_initialized, "notifications/initialized"},
    {McpMethod::notifications_cancelled, "notifications/cancelled"},
    {McpMethod::notifications_progress, "notifications/progress"},
    {McpMethod::notifications_roots_list_changed, "notifications/roots/list_changed"},
    {McpMethod::notifications_tasks_status, "notifications/tasks/status"},
}};

}  // namespace

std::string_view to_string(Era e) { return e == Era::v2026 ? "2026" : "2025"; }

Era classify_era(std::optional<std::string_view> protocol_version, bool has_mcp_method, bool has_session) {
  if (has_session) return Era::v2025;
  if (has_mcp_method) return Era::v2026;
  // Revisions are dates (YYYY-MM-DD): they order as strings.
  if (protocol_version && protocol_version->size() == kSessionlessRevision.size() &&
      *protocol_version >= kSessionlessRevision) {
    return Era::v2026;
  }
  return Era::v2025;
}

std::string_view to_string(McpMethod m) {
  for (const Name& n : kNames) {
    if (n.method == m) return n.text;
  }
  return "other";
}

McpMethod mcp_method(std::string_view name) {
  // Most names are told apart by their length and first letters before a compare.
  for (const Name& n : kNames) {
    if (n.text.size() == name.size() && n.text == name) return n.method;
  }
  return McpMethod::other;
}

std::string_view scan_jsonrpc_method(std::string_view body) {
  static constexpr std::string_view kKey = "\"method\"";
  for (std::size_t at = body.find(kKey); at != std::string_view::npos; at = body.find(kKey, at + 1)) {
    // A quote inside a string is escaped: "\"method\"" as a value is not the member.
    if (at > 0 && body[at - 1] == '\\') continue;
    std::size_t i = at + kKey.size();
    while (i < body.size() && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) ++i;
    if (i >= body.size() || body[i] != ':') continue;
    ++i;
    while (i < body.size() && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) ++i;
    if (i >= body.size() || body[i] != '"') return {};
    const std::size_t from = i + 1;
    const void* end = std::memchr(body.data() + from, '"', body.size() - from);
    if (end == nullptr) return {};
    const std::string_view value = body.substr(from, static_cast<const char*>(end) - body.data() - from);
    if (value.find('\\') != std::string_view::npos) return {};
    return value;
  }
  return {};
}

}  // namespace mcpproxy
