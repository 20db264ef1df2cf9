#pragma once
// tasks/list of a request without a session, over several pods, with no I/O. A sessionless
// client's tasks are on whichever pods its calls were placed on, and a tasks/list request
// carries no key that names a pod: one pod's list would silently miss the others' tasks, and
// differ from call to call. So the proxy asks every pod and answers the union, as one server
// holding all of them would. Pagination: the proxy's cursor holds each pod's own cursor.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace mcpproxy {

// Each pod that still has a page to give, and the cursor to ask it with ("" for its first).
using PodCursors = std::map<int, std::string>;

// The pods a page asks: every one of `replicas` for the first page (no cursor), else those
// the proxy's cursor names (nullopt: a cursor the proxy did not make: the request is refused).
std::optional<PodCursors> pods_to_ask(std::optional<std::string_view> cursor, int replicas);

// The request a pod gets: the client's, with `params.cursor` set to the pod's own (or
// removed). nullopt when the body is not a JSON-RPC request object.
std::optional<std::string> request_for_pod(std::string_view body, const std::string& pod_cursor);

// One pod's answer: its JSON-RPC message (the JSON body, or the SSE event with the
// response), or nullopt when it gave none (unreachable, failed, not JSON).
struct PodListAnswer {
  int ordinal = 0;
  std::optional<std::string> message;
};

// The client's answer: every pod's `result.tasks` in ordinal order, and a `nextCursor` of the
// pods that have more. A pod that failed or answered an error adds nothing (its tasks cannot
// be reached now either); when no pod answered a result, the first error is the answer (a
// server without tasks/list). `id_json` is the request's id. With `only` (sessions.binding:
// the caller's own tasks), a task whose `taskId` is not in it is left out.
std::string merged_task_list(const std::vector<PodListAnswer>& answers, std::string_view id_json,
                             const std::unordered_set<std::string>* only = nullptr);

// The `taskId`s the answers' `result.tasks` name (strings only, each once, in order).
std::vector<std::string> listed_task_ids(const std::vector<PodListAnswer>& answers);

// A pod's answer's JSON-RPC message: a JSON body as it is, an SSE answer's last event's data
// (read with the bound `limit`); nullopt when an SSE answer has no event.
std::optional<std::string> response_message(std::string payload, bool sse, std::size_t limit);

// The cursor param of a tasks/list body, when it has one.
std::optional<std::string> list_cursor_of(std::string_view body);

}  // namespace mcpproxy
