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

net::awaitable<std::vector<int>> ListenFanout::pods_of_tasks(const Exchange& ex, const std::vector<std::string>& ids,
                                                             const BoundCaller& caller) {
  const Config& cfg = *ex.cfg;
  std::vector<int> pods;
  for (const std::string& id : ids) {
    if (!valid_affinity_id(id, cfg.affinity.max_key_length)) continue;
    const std::string key = task_key(id);
    auto rec = ctx_.tasks.find_cached(key);
    if (!rec && ctx_.tasks.has_store()) {
      bool store_failed = false;
      rec = co_await ctx_.tasks.find_missed(key, store_failed);
    }
    const KeyDecision d = route_by_key(rec ? &*rec : nullptr, cfg.backend.replicas, caller);
    if (d.result == KeyRoute::routed && std::find(pods.begin(), pods.end(), d.ordinal) == pods.end()) {
      pods.push_back(d.ordinal);
    }
  }
  co_return pods;
}

net::awaitable<ListenFanout::Result> ListenFanout::run(Exchange& ex, const BoundCaller& caller) {
  const Config& cfg = *ex.cfg;
  ex.keep_alive = false;  // the connection ends with the listen
  std::optional<std::vector<int>> pods;
  if (cfg.affinity.tasks) {
    if (const auto ids = listen_task_ids(ex.req.body, kMaxListenTaskIds)) {
      pods = co_await pods_of_tasks(ex, *ids, caller);
      // As a pod answers a task it does not hold.
      if (pods->empty()) co_return Result{{}, kTaskNotFound};
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
