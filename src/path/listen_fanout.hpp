#pragma once
// Stage: a 2026-07-28 `subscriptions/listen` fanned out over the pods (subscriptions.fanout,
// DESIGN.md request flow step 8). A pod raises notifications on its own process's event bus,
// so one listen held by one pod hears only that pod's events; this stage opens the client's
// listen on every pod (a "leg" each), sends the client one acknowledgement (the first), and
// merges the pods' notifications into the client's stream as they arrive (listen_merge.hpp;
// its decisions, with no I/O, in core/mcp/listen_events.hpp).
//
// What must stay true:
// - The client's stream outlives its legs: a leg that fails or ends (a pod restarts, drains,
//   is scaled away) is opened again with backoff (100 ms doubling to
//   subscriptions.reopen_backoff_max); a reload's replicas open and close legs. The client sees
//   none of it: the pods' acknowledgements after the first, their keep-alive comments and
//   their graceful `complete` results are not relayed; the proxy sends its own keep-alive.
// - Nothing is held beyond a bound: a leg's notifications waiting for the client are at most
//   subscriptions.max_leg_buffer bytes (then subscriptions.slow_client: the stream closes with
//   a JSON-RPC error for the listen, or the notifications that do not fit are dropped; counted
//   either way); the legs open in the process at most subscriptions.max_legs. An idle leg
//   holds a socket and no buffer: it waits for its pod's socket to turn readable, then reads
//   into the worker thread's scratch buffer.
// - Closing order: the client goes or cancels -> every leg closes; a drain -> the legs close
//   (in ordinal order), then the client's stream ends with the listen's `complete` result,
//   last.
// - A listen filtered to task ids only (`notifications.taskIds`) has legs on those tasks' pods
//   only (their task records); none known: -32602 "Task not found", as for any unknown task.
// The connection reaches it at one point: `Decision::Kind::fan_out_listen` in
// Connection::handle; the connection ends with the listen.

#include <optional>
#include <string>
#include <vector>

#include "core/decide/outcome.hpp"
#include "core/decide/route.hpp"
#include "core/identity/session_binding.hpp"
#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/connection_context.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

class ListenFanout {
 public:
  ListenFanout(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}

  // What became of the listen: its Outcome, or a refusal still owed (nothing reached the
  // client), for the connection's one local-reply path.
  struct Result {
    Outcome outcome;
    std::optional<Refusal> reply;
  };
  // `caller`: who the client is with sessions.binding (a filtered listen reaches only its own
  // tasks' pods).
  net::awaitable<Result> run(Exchange& ex, const BoundCaller& caller);

 private:
  // The pods of a listen filtered to these task ids (their task records); empty: none known.
  // With sessions.binding every id must be the caller's (a record of its own): else a refusal,
  // as for an unknown task, since the pods would hear the ids of another identity's tasks.
  struct TaskPods {
    std::vector<int> pods;
    std::optional<Refusal> refusal;
  };
  net::awaitable<TaskPods> pods_of_tasks(const Exchange& ex, const std::vector<std::string>& ids,
                                         const BoundCaller& caller);

  ConnectionContext& ctx_;
  ClientLink& client_;
};

}  // namespace mcpproxy
