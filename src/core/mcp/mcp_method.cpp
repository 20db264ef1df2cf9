// The era of a request and its method label (mcp_method.hpp).
#include "core/mcp/mcp_method.hpp"

#include <array>
#include <cstdint>
#include <cstring>

namespace mcpproxy {
namespace {

struct Name {
  McpMethod method;
  std::string_view text;
};

constexpr std::array<Name, kMcpMethods - 1> kNames{{
    {McpMethod::tools_call, "tools/call"},
    {McpMethod::tasks_get, "tasks/get"},
    {McpMethod::initialize, "initialize"},
    {McpMethod::ping, "ping"},
    {McpMethod::server_discover, "server/discover"},
    {McpMethod::tools_list, "tools/list"},
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
  // The request path's common methods settle without the table (constant-size compares,
  // expanded inline).
  if (name.size() == 10) {
    if (std::memcmp(name.data(), "tools/call", 10) == 0) return McpMethod::tools_call;
    if (std::memcmp(name.data(), "tools/list", 10) == 0) return McpMethod::tools_list;
  } else if (name.empty()) {
    return McpMethod::other;
  }
  for (const Name& n : kNames) {
    if (n.text.size() == name.size() && n.text == name) return n.method;
  }
  return McpMethod::other;
}

namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// The string value of a member whose key ends before `i`: nullopt when no ':' follows (the
// key was a value), empty when the value is not a plain string (an escape, a number).
std::optional<std::string_view> member_value(std::string_view body, std::size_t i) {
  const std::size_t n = body.size();
  while (i < n && blank(body[i])) ++i;
  if (i >= n || body[i] != ':') return std::nullopt;
  for (++i; i < n && blank(body[i]);) ++i;
  if (i >= n || body[i] != '"') return std::string_view{};
  const std::size_t start = ++i;
  for (; i < n && body[i] != '"'; ++i) {
    if (body[i] == '\\') return std::string_view{};  // an escape: not a spec method
  }
  if (i >= n) return std::string_view{};
  return body.substr(start, i - start);
}

}  // namespace

namespace {

// Where the value of the first "method" member at or after byte `from` (at least 1) is:
// `at` of its key's 'm' (npos: none).
std::size_t method_key(std::string_view body, std::size_t from = 1) {
  const char* const p = body.data();
  const std::size_t n = body.size();
  static constexpr char kKey[] = "\"method\"";
  std::uint64_t key = 0;
  std::memcpy(&key, kKey, 8);
  while (from + 7 < n) {
    const void* m = std::memchr(p + from, 'm', n - from - 7);
    if (m == nullptr) return std::string_view::npos;
    const auto at = static_cast<std::size_t>(static_cast<const char*>(m) - p);
    from = at + 1;
    std::uint64_t word = 0;
    std::memcpy(&word, p + at - 1, 8);
    // `"method"`, its opening quote not an escaped one (a value that spells the key).
    if (word == key && (at < 2 || p[at - 2] != '\\') && (p[at + 7] == ':' || member_value(body, at + 7))) {
      return at;
    }
  }
  return std::string_view::npos;
}

constexpr std::string_view kToolsCall = "\"tools/call\"";

}  // namespace

McpMethod detail::method_of_body_from(std::string_view body, std::size_t from) {
  const std::size_t at = method_key(body, from);
  if (at == std::string_view::npos) return McpMethod::other;
  // The common method, as clients write it (`"method":"tools/call"`, or with one space after
  // the colon as Python's json and pretty printers do), settles in two word compares: the
  // session path's label costs no walk of the value (bench/profile.py).
  std::size_t value = at + 7;
  if (body[value] == ':') {
    ++value;
    if (value < body.size() && body[value] == ' ') ++value;
    if (body.size() - value >= kToolsCall.size() &&
        std::memcmp(body.data() + value, kToolsCall.data(), kToolsCall.size()) == 0) {
      return McpMethod::tools_call;
    }
  }
  return mcp_method(*member_value(body, at + 7));
}

std::string_view scan_jsonrpc_method(std::string_view body) {
  const std::size_t at = method_key(body);
  return at == std::string_view::npos ? std::string_view{} : *member_value(body, at + 7);
}

}  // namespace mcpproxy
