#pragma once
// Stage: a sessionless tasks/list, asked of every pod and answered merged (task_list.hpp
// says why). The pods are asked one after another, each an UpstreamExchange of its own (the
// proxied path's head edits, attempts and strict head reader, backend.response_timeout),
// driven by UpstreamExchange::run_own as pod_request.hpp's errands are, its answer's body
// read to its end within affinity.max_answer_scan; a pod that fails adds nothing. The answer
// is the proxy's own (200, JSON), counted and logged by finish. Not concurrently: the
// connection's one deadline (ClientLink::expect_within) watches one pod socket at a time,
// and the first answer's stop_waiting would leave the other pods unwatched.

#include <optional>
#include <string>

#include "core/decide/outcome.hpp"
#include "core/identity/session_binding.hpp"
#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

struct ConnectionContext;

class TaskListFanout {
 public:
  TaskListFanout(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}

  // The merged list (or the refusal of a cursor the proxy did not make) written to the client;
  // with sessions.binding, of `caller`'s tasks only (task_routing.hpp: callers_tasks).
  net::awaitable<Outcome> run(Exchange& ex, const BoundCaller& caller);

 private:
  // One pod's answer to `body` (the client's request with the pod's cursor): its JSON-RPC
  // response message, or nullopt when it gave none.
  net::awaitable<std::optional<std::string>> ask_pod(const Exchange& ex, int ordinal, const std::string& body);
  // A JSON answer of the proxy's own (200).
  net::awaitable<Outcome> send_json(Exchange& ex, const std::string& body);

  ConnectionContext& ctx_;
  ClientLink& client_;
};

}  // namespace mcpproxy
