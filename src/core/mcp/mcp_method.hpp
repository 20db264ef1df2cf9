#pragma once
// The protocol era of a request and its JSON-RPC method as a bounded label, with no I/O.
// route.hpp's decision reads the era; the metrics read both (a label set the spec's
// methods and "other" bound, whatever clients send).

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mcpproxy {

// 2025: the revisions with sessions (2024-11-05 through 2025-11-25) and servers that serve
// them statelessly. 2026: 2026-07-28 and later, which have no sessions (SEP-2567).
enum class Era : std::uint8_t { v2025, v2026 };
inline constexpr std::size_t kEras = 2;
std::string_view to_string(Era e);  // "2025", "2026"

// The first revision without sessions.
inline constexpr std::string_view kSessionlessRevision = "2026-07-28";

// A request with a session id is 2025; one with `Mcp-Method` (SEP-2243) or an
// `MCP-Protocol-Version` of 2026-07-28 or later is 2026; anything else is 2025 (a 2025
// client's first request, `initialize`, has no version header).
Era classify_era(std::optional<std::string_view> protocol_version, bool has_mcp_method, bool has_session);

// The spec's JSON-RPC methods a client sends (2025-11-25 and 2026-07-28 with the Tasks
// extension), and `other` for everything else.
enum class McpMethod : std::uint8_t {
  other,
  initialize,
  ping,
  server_discover,
  tools_list,
  tools_call,
  resources_list,
  resources_templates_list,
  resources_read,
  resources_subscribe,
  resources_unsubscribe,
  prompts_list,
  prompts_get,
  completion_complete,
  logging_set_level,
  subscriptions_listen,
  tasks_get,
  tasks_result,
  tasks_list,
  tasks_cancel,
  tasks_update,
  notifications_initialized,
  notifications_cancelled,
  notifications_progress,
  notifications_roots_list_changed,
  notifications_tasks_status,
};
inline constexpr std::size_t kMcpMethods = static_cast<std::size_t>(McpMethod::notifications_tasks_status) + 1;
std::string_view to_string(McpMethod m);
McpMethod mcp_method(std::string_view name);

// The value of the first `"method"` member of a JSON-RPC body, found by a scan rather than
// a parse (every request is counted by it): the member's string up to its closing quote;
// empty when there is none, or it holds an escape. A label only: routing decisions parse.
std::string_view scan_jsonrpc_method(std::string_view body);

namespace detail {
// method_of_body's scan from byte `from` (at least 1) on, out of line: mcp_method.cpp.
McpMethod method_of_body_from(std::string_view body, std::size_t from);
}  // namespace detail

// The method label of a body: mcp_method(scan_jsonrpc_method(body)), with `tools/call` as
// clients write it settled in the scan. Every request is counted by it, a session's too, so
// the common case is inline and costs no call: the `"method"` key looked for among the
// body's first 32 bytes in two sixteen-byte compares (clients write it before `params`), and
// `"tools/call"` (after `:` or `: `) settled in two more. Anything else, from the first
// candidate the quick look cannot settle, is the scan's (the same checks, in the same order).
inline McpMethod method_of_body(std::string_view body) {
#if defined(__SSE2__)
  constexpr std::size_t kProbe = 32;
  const char* const p = body.data();
  const std::size_t n = body.size();
  // Each candidate below has its key's 8 bytes, ':', ' ' and a 12-byte value inside the body.
  if (n < kProbe + 21) return detail::method_of_body_from(body, 1);
  const __m128i m = _mm_set1_epi8('m');
  const auto low = static_cast<unsigned>(_mm_movemask_epi8(
      _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), m)));  // NOLINT: an unaligned load
  const auto high = static_cast<unsigned>(_mm_movemask_epi8(
      _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)), m)));  // NOLINT: an unaligned load
  std::uint64_t key = 0;
  std::memcpy(&key, "\"method\"", 8);
  // Bit 0 is no candidate: the key's quote is before its 'm'.
  for (unsigned ms = (low | high << 16U) & ~1U; ms != 0; ms &= ms - 1) {
    const auto at = static_cast<std::size_t>(__builtin_ctz(ms));
    std::uint64_t word = 0;
    std::memcpy(&word, p + at - 1, 8);
    if (word != key || (at >= 2 && p[at - 2] == '\\')) continue;  // not the key (or an escaped quote)
    if (p[at + 7] == ':') {
      const char* const value = p + at + 8 + static_cast<std::size_t>(p[at + 8] == ' ');
      std::uint64_t head = 0;
      std::uint32_t tail = 0;
      std::memcpy(&head, value, 8);
      std::memcpy(&tail, value + 8, 4);
      std::uint64_t tools_c = 0;
      std::memcpy(&tools_c, "\"tools/c", 8);
      std::uint32_t all = 0;
      std::memcpy(&all, "all\"", 4);
      if (head == tools_c && tail == all) return McpMethod::tools_call;
    }
    return detail::method_of_body_from(body, at);
  }
  return detail::method_of_body_from(body, kProbe);
#else
  return detail::method_of_body_from(body, 1);
#endif
}

// The task methods whose request names a task (routed to the pod that holds it).
inline bool names_task(McpMethod m) {
  return m == McpMethod::tasks_get || m == McpMethod::tasks_result || m == McpMethod::tasks_cancel ||
         m == McpMethod::tasks_update;
}

}  // namespace mcpproxy
