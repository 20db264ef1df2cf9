#pragma once
// Task and handle affinity decisions, with no I/O (DESIGN.md request flow step 8): which
// key a sessionless request is routed by, whether a pod's answer may create one, and the
// keys an answer creates (JSON body or SSE `data:` frames). The store (task_table.hpp,
// tasks.hpp) keeps key -> pod; the request path (task_routing.hpp) acts on these.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/affinity_config.hpp"
#include "core/decide/route.hpp"
#include "core/http/http1.hpp"
#include "core/identity/session_binding.hpp"
#include "core/mcp/mcp_method.hpp"
#include "core/tables/task_table.hpp"
#include "core/telemetry/affinity_metrics.hpp"

namespace mcpproxy {

// Store keys: "task:<id>", "handle:<param>:<value>" (after the Redis key prefix).
std::string task_key(std::string_view id);
std::string handle_key(std::string_view param, std::string_view value);

// A header value as SEP-2243 sends it: plain ASCII as is, anything else as
// `=?base64?<standard base64>?=`; nullopt for a malformed encoded form.
std::optional<std::string> decode_header_value(std::string_view value);

// A task id or handle value the proxy learns or looks up: 1 to `max` bytes, no control
// characters. Anything else is never a key (a pod cannot fill the table with megabyte ids).
bool valid_affinity_id(std::string_view id, std::size_t max);

// What a sessionless request is routed by.
enum class AffinityKind : std::uint8_t {
  none,      // nothing: placed per request
  task,      // `key` names a task
  handle,    // `key` names a handle
  mismatch,  // the header and the body disagree: 400 -32020 from the proxy, never routed
  unknown,   // names a task no pod can hold (an id past the bounds): answered as unknown
};

struct RequestAffinity {
  AffinityKind kind = AffinityKind::none;
  std::string key;
  // 2026: whether the client declared io.modelcontextprotocol/tasks (params._meta). A pod
  // answers a task method without it -32021 whether it holds the task or not, so a task
  // the proxy does not know is then placed and the pod answers, never the proxy.
  bool declares_tasks = true;
};

// `method` is the body's method as scan_jsonrpc_method labels it (the full parse happens
// only for a request that names a task or carries a configured handle header).
// 2026 (`Mcp-Method` present): tasks/get|update|cancel by `Mcp-Name` (decoded), which must
// equal `params.taskId`, and `Mcp-Method` must equal the body's method (tasks/result is gone
// in 2026: placed, the pod answers -32601).
// 2025 without a session: tasks/get|result|cancel|update by `params.taskId` (tasks/result
// only when MCP-Protocol-Version is not a 2026 one).
// Handles: the first configured `Mcp-Param-{param}` header present.
RequestAffinity request_affinity(const http1::Head& head, std::string_view body, McpMethod method,
                                 const AffinityConfig& cfg);

// A task no pod holds is answered as a pod answers it (MCP-NOTES.md: HTTP 200, -32602), so
// a client sees the same whether the proxy or a pod did not know the task.
inline constexpr Refusal kTaskNotFound{200, -32602, "Task not found"};
// SEP-2243's HeaderMismatch: what a pod answers a header that disagrees with the body.
inline constexpr Refusal kHeaderMismatch{400, -32020, "Header mismatch: Mcp-Method/Mcp-Name disagree with the body"};
// A handle bound to another identity when no pod but the one holding it can take the call
// (one replica, or no other placeable): the proxy answers, the handle's pod never sees it.
inline constexpr Refusal kHandleNotFound{200, -32602, "Handle not found"};

// Where a request that names a key goes: its record's pod (`routed`), or answered as an
// unknown task (no record: `unknown`; its pod's ordinal past the replicas: `pod_gone`;
// with sessions.binding, made by another identity than `caller`'s, or the caller has none
// that verifies: `other_identity`; made under a binding key this proxy does not have:
// `unknown_binding_key`). A task cannot be re-created elsewhere. `ordinal`: the record's
// pod (-1 without a record): a key of another identity's is never sent there.
struct KeyDecision {
  KeyRoute result = KeyRoute::unknown;
  int ordinal = -1;
};
KeyDecision route_by_key(const TaskRecord* rec, int replicas, const BoundCaller& caller);

// Whether a pod's answer to this request may create a task or a handle, decided from the
// request so that other answers are never read: a `tools/call` (tasks, and the handles of
// its tool), or any request augmented with `params.task`.
struct AnswerWatch {
  bool tasks = false;
  const HandleRule* handle = nullptr;  // the rule whose tool this call is
  bool any() const { return tasks || handle != nullptr; }
};
AnswerWatch answer_watch(const http1::Head& head, std::string_view body, McpMethod method, const AffinityConfig& cfg);

// A key an answer created, and for how long it is kept (slid on use).
struct Learned {
  std::string key;
  std::chrono::milliseconds ttl{0};
  bool task = false;
};

// What one JSON-RPC message of an answer created: 2026 `result.resultType == "task"` with
// `result.taskId` (TTL from `result.ttlMs`), 2025-11-25 `result.task.taskId` (TTL from
// `result.task.ttl`); a handle at the rule's pointer into `result`. TTLs are capped by
// affinity.task_ttl_max, affinity.task_ttl_default when absent or null.
struct AnswerKeys {
  std::vector<Learned> learned;
  std::size_t refused = 0;  // ids that are not valid_affinity_id (too long, control bytes)
  bool response = false;    // the message is a JSON-RPC response: nothing after it is read
};
AnswerKeys keys_of_message(std::string_view json, const AnswerWatch& w, const AffinityConfig& cfg);

// The TTL of a task whose answer said `ttl_ms` (nullopt: absent or null).
std::chrono::milliseconds task_ttl(std::optional<double> ttl_ms, const AffinityConfig& cfg);

// Reads the JSON-RPC messages of an answer as its payload passes (chunk framing removed):
// a JSON body whole at its end, an SSE stream event by event. It never holds bytes back:
// a client acts on an event only once its blank line arrived, so a key learned from the
// bytes of a piece is recorded before that piece is relayed. Bounded: reading stops for good
// at an event (or body) past `limit` bytes (overflowed), and after the response.
class AnswerTap {
 public:
  AnswerTap(bool sse, std::size_t limit) : sse_(sse), limit_(limit) {}
  // The messages that `data` completes, appended to `out`.
  void feed(std::string_view data, bool body_done, std::vector<std::string>& out);
  void stop() { done_ = true; }
  bool done() const { return done_; }
  bool overflowed() const { return overflowed_; }

 private:
  bool sse_;
  std::size_t limit_;
  std::string pending_;
  bool done_ = false;
  bool overflowed_ = false;
};

}  // namespace mcpproxy
