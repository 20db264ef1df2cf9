// Stage: a subscriptions/listen fanned out over the pods (listen_fanout.hpp): a task-filtered
// listen's pods resolved from the task records, then the merge (listen_merge.hpp).
#include "path/listen_fanout.hpp"

#include <algorithm>

#include "core/http/http_rules.hpp"
#include "core/mcp/listen_events.hpp"
#include "core/mcp/task_affinity.hpp"
#include "path/listen_merge.hpp"
#include "store/tasks.hpp"

namespace mcpproxy {
namespace {
// A listen filtered to more task ids than this is listened to on every pod.
constexpr std::size_t kMaxListenTaskIds = 64;
}  // namespace

net::awaitable<ListenFanout::TaskPods> ListenFanout::pods_of_tasks(const Exchange& ex,
                                                                   const std::vector<std::string>& ids,
                                                                   const BoundCaller& caller) {
  const Config& cfg = *ex.cfg;
  const bool bound = caller.keys != nullptr;
  TaskPods out;
  for (const std::string& id : ids) {
    if (!valid_affinity_id(id, cfg.affinity.max_key_length)) {
      if (bound) out.refusal = kTaskNotFound;
      continue;
    }
    const std::string key = task_key(id);
    auto rec = ctx_.tasks.find_cached(key);
    if (!rec && ctx_.tasks.has_store()) {
      bool store_failed = false;
      rec = co_await ctx_.tasks.find_missed(key, store_failed);
      // As a task request is answered while the store cannot be asked (TaskRouting::look_up).
      if (store_failed) out.refusal = kStoreUnavailable;
    }
    const KeyDecision d = route_by_key(rec ? &*rec : nullptr, cfg.backend.replicas, caller);
    if (d.result != KeyRoute::routed) {
      if (bound && !out.refusal) out.refusal = kTaskNotFound;
      continue;
    }
    if (std::find(out.pods.begin(), out.pods.end(), d.ordinal) == out.pods.end()) out.pods.push_back(d.ordinal);
  }
  // As a pod answers a task it does not hold.
  if (!out.refusal && out.pods.empty()) out.refusal = kTaskNotFound;
  co_return out;
}

net::awaitable<ListenFanout::Result> ListenFanout::run(Exchange& ex, const BoundCaller& caller) {
  const Config& cfg = *ex.cfg;
  ex.keep_alive = false;  // the connection ends with the listen
  std::optional<std::vector<int>> pods;
  if (cfg.affinity.tasks) {
    if (const auto ids = listen_task_ids(ex.req.body, kMaxListenTaskIds)) {
      TaskPods found = co_await pods_of_tasks(ex, *ids, caller);
      if (found.refusal) co_return Result{{}, *found.refusal};
      pods = std::move(found.pods);
    } else if (caller.keys != nullptr && ex.req.body.find("\"taskIds\"") != std::string_view::npos) {
      // Task ids beside other filters: the listen goes to every pod (the others can fire
      // anywhere), so each id it names must be the caller's; a filter the proxy cannot check
      // (too many ids, ids that are not strings) is answered as an unknown task.
      const auto named = listen_task_ids(ex.req.body, kMaxListenTaskIds, /*tasks_only=*/false);
      if (!named) co_return Result{{}, kTaskNotFound};
      const TaskPods found = co_await pods_of_tasks(ex, *named, caller);
      if (found.refusal) co_return Result{{}, *found.refusal};
    }
  }
  ListenRequest req;
  req.head = std::string(ex.req.head.raw);
  req.body = std::string(ex.req.body);
  if (ex.request_id.generated()) req.added_request_id = std::string(ex.request_id.view());
  req.id_json = inspect_jsonrpc(ex.req.body).id_json;
  req.client_http11 = ex.req.version() >= 11;
  const ListenEnd end = co_await merge_listen(ctx_, client_, std::move(req), std::move(pods));
  ex.status = end.status;
  switch (end.kind) {
    case ListenEnd::Kind::refused:
      co_return Result{{}, end.reply};
    case ListenEnd::Kind::client_gone:
      co_return Result{Outcome::client_gone(), std::nullopt};
    case ListenEnd::Kind::streamed:
    case ListenEnd::Kind::answered:
      break;
  }
  co_return Result{Outcome::relayed(end.status, /*reuse=*/false), std::nullopt};
}

}  // namespace mcpproxy
