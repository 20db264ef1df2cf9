// Stage: task and handle affinity on the request path (task_routing.hpp).
#include "mcpproxy/task_routing.hpp"

#include "mcpproxy/log.hpp"

namespace mcpproxy {

TaskRouting::Verdict TaskRouting::on_request(const http1::Head& head, std::string_view body, bool sessionless,
                                             const Config& cfg, Tasks& tasks, Metrics& metrics,
                                             std::string_view principal) {
  method_ = mcp_method(scan_jsonrpc_method(body));
  if (!sessionless) {
    // A session's request is 2025 by its session: nothing more is looked at.
    era_ = Era::v2025;
    metrics.affinity.count_request(era_, method_);
    return {};
  }
  const auto mcp_method_header = head.get("Mcp-Method");
  era_ = classify_era(head.get("MCP-Protocol-Version"), mcp_method_header.has_value(), false);
  metrics.affinity.count_request(era_, method_);
  const AffinityConfig& a = cfg.affinity;
  if (!a.tasks && a.handles.empty()) return {};
  // A client's tasks are on every pod its calls were placed on: its list is theirs, merged.
  if (method_ == McpMethod::tasks_list && a.tasks) {
    Verdict list;
    list.kind = Verdict::Kind::list;
    return list;
  }
  watch_ = answer_watch(head, body, method_, a);
  key_ = request_affinity(head, body, method_, a);
  Verdict v;
  switch (key_.kind) {
    case AffinityKind::none:
      return v;
    case AffinityKind::mismatch:
      metrics.affinity.count_route(true, KeyRoute::mismatch);
      v.kind = Verdict::Kind::reply;
      v.refusal = kHeaderMismatch;
      return v;
    case AffinityKind::unknown:
      metrics.affinity.count_route(true, KeyRoute::unknown);
      v.kind = Verdict::Kind::reply;
      v.refusal = kTaskNotFound;
      return v;
    case AffinityKind::task:
    case AffinityKind::handle:
      break;
  }
  auto rec = tasks.find_cached(key_.key);
  if (!rec && tasks.has_store()) {
    v.kind = Verdict::Kind::look_up;
    return v;
  }
  return decide(rec, cfg.backend.replicas, metrics, principal);
}

net::awaitable<TaskRouting::Verdict> TaskRouting::look_up(int replicas, Tasks& tasks, Metrics& metrics,
                                                          std::string_view principal) {
  bool store_failed = false;
  const auto rec = co_await tasks.find_missed(key_.key, store_failed);
  if (store_failed) {
    // Not knowing is not "not found": the client polls again.
    Verdict v;
    v.kind = Verdict::Kind::reply;
    v.refusal = kStoreUnavailable;
    co_return v;
  }
  co_return decide(rec, replicas, metrics, principal);
}

TaskRouting::Verdict TaskRouting::decide(const std::optional<TaskRecord>& rec, int replicas, Metrics& metrics,
                                         std::string_view principal) {
  const bool task = key_.kind == AffinityKind::task;
  const KeyDecision d = route_by_key(rec ? &*rec : nullptr, replicas, principal);
  metrics.affinity.count_route(task, d.result);
  Verdict v;
  if (d.result == KeyRoute::routed) {
    v.kind = Verdict::Kind::forward;
    v.ordinal = ordinal_ = d.ordinal;
    return v;
  }
  if (!task) return v;  // a handle no pod holds: the request is placed, the pod answers for it
  v.kind = Verdict::Kind::reply;
  v.refusal = kTaskNotFound;
  return v;
}

net::awaitable<void> TaskRouting::on_answer(std::string_view data, bool body_done, bool sse, const Config& cfg,
                                            Tasks& tasks, Metrics& metrics, int ordinal,
                                            const std::string& principal) {
  if (!tap_) tap_.emplace(sse, cfg.affinity.max_answer_scan);
  if (tap_->done()) co_return;
  messages_.clear();
  tap_->feed(data, body_done, messages_);
  if (tap_->overflowed()) metrics.affinity.count_refused(KeyRefused::unreadable);
  std::vector<Learned> learned;
  for (const std::string& m : messages_) {
    AnswerKeys keys = keys_of_message(m, watch_, cfg.affinity);
    if (keys.refused != 0) metrics.affinity.count_refused(KeyRefused::invalid, keys.refused);
    for (Learned& l : keys.learned) learned.push_back(std::move(l));
    if (keys.response) {
      tap_->stop();  // the answer's response: nothing after it creates anything
      break;
    }
  }
  if (!learned.empty()) co_await tasks.learn(learned, ordinal, principal);
}

}  // namespace mcpproxy
