// Stage: task and handle affinity on the request path (task_routing.hpp).
#include "path/task_routing.hpp"

#include "core/telemetry/log.hpp"

namespace mcpproxy {

TaskRouting::Verdict::Kind TaskRouting::on_sessionless(const http1::Head& head, std::string_view body,
                                                       const Config& cfg, Tasks& tasks, Metrics& metrics,
                                                       const BoundCaller& caller) {
  method_ = method_of_body(body);
  const auto mcp_method_header = head.get("Mcp-Method");
  const Era era = classify_era(head.get("MCP-Protocol-Version"), mcp_method_header.has_value(), false);
  metrics.affinity.count_request(era, method_);
  const AffinityConfig& a = cfg.affinity;
  if (!a.tasks && a.handles.empty()) return Verdict::Kind::place;
  // A client's tasks are on every pod its calls were placed on: its list is theirs, merged.
  // 2026 has no tasks/list (SEP-2663): placed, the pod answers -32601.
  if (method_ == McpMethod::tasks_list && a.tasks && era == Era::v2025) return Verdict::Kind::list;
  const AnswerWatch watch = answer_watch(head, body, method_, a);
  RequestAffinity key = request_affinity(head, body, method_, a);
  if (watch.any() || key.kind != AffinityKind::none) {
    Keyed& k = keyed();
    k.watch = watch;
    k.key = std::move(key);
    watching_ = watch.any();
  }
  if (!keyed_) return Verdict::Kind::place;
  switch (keyed_->key.kind) {
    case AffinityKind::none:
      return Verdict::Kind::place;
    case AffinityKind::mismatch:
      metrics.affinity.count_route(true, KeyRoute::mismatch);
      return reply(kHeaderMismatch);
    case AffinityKind::unknown:
      metrics.affinity.count_route(true, KeyRoute::unknown);
      // A 2026 client without the tasks extension: the pod answers -32021 (decide).
      return keyed_->key.declares_tasks ? reply(kTaskNotFound) : Verdict::Kind::place;
    case AffinityKind::task:
    case AffinityKind::handle:
      break;
  }
  auto rec = tasks.find_cached(keyed_->key.key);
  if (!rec && tasks.has_store()) return Verdict::Kind::look_up;
  return decide(rec, cfg.backend.replicas, metrics, caller);
}

net::awaitable<TaskRouting::Verdict::Kind> TaskRouting::look_up(int replicas, Tasks& tasks, Metrics& metrics,
                                                                const BoundCaller& caller) {
  bool store_failed = false;
  const auto rec = co_await tasks.find_missed(keyed().key.key, store_failed);
  // Not knowing is not "not found": the client polls again.
  if (store_failed) co_return reply(kStoreUnavailable);
  co_return decide(rec, replicas, metrics, caller);
}

TaskRouting::Verdict::Kind TaskRouting::decide(const std::optional<TaskRecord>& rec, int replicas, Metrics& metrics,
                                               const BoundCaller& caller) {
  const bool task = keyed().key.kind == AffinityKind::task;
  const KeyDecision d = route_by_key(rec ? &*rec : nullptr, replicas, caller);
  metrics.affinity.count_route(task, d.result);
  if (d.result == KeyRoute::routed) {
    ordinal_ = d.ordinal;
    return Verdict::Kind::forward;
  }
  if (d.result == KeyRoute::other_identity || d.result == KeyRoute::unknown_binding_key) {
    // Answered as an unknown key would be, and never on the pod that holds it.
    avoid_ = d.ordinal;
    log_mismatch(d.result, task, rec->principal);
  }
  if (!task) return Verdict::Kind::place;  // a handle no pod holds: placed, the pod answers for it
  // A 2026 client without the tasks extension: any pod answers -32021, as the task's would.
  if (!keyed().key.declares_tasks) return Verdict::Kind::place;
  return reply(kTaskNotFound);
}

net::awaitable<void> TaskRouting::on_answer(std::string_view data, bool body_done, bool sse, const Config& cfg,
                                            Tasks& tasks, Metrics& metrics, int ordinal, const std::string& principal) {
  Keyed& k = keyed();
  if (!k.tap) k.tap.emplace(sse, cfg.affinity.max_answer_scan);
  if (k.tap->done()) co_return;
  k.messages.clear();
  k.tap->feed(data, body_done, k.messages);
  if (k.tap->overflowed()) metrics.affinity.count_refused(KeyRefused::unreadable);
  std::vector<Learned> learned;
  for (const std::string& m : k.messages) {
    AnswerKeys keys = keys_of_message(m, k.watch, cfg.affinity);
    if (keys.refused != 0) metrics.affinity.count_refused(KeyRefused::invalid, keys.refused);
    for (Learned& l : keys.learned) learned.push_back(std::move(l));
    if (keys.response) {
      k.tap->stop();  // the answer's response: nothing after it creates anything
      break;
    }
  }
  if (learned.empty()) co_return;
  // With sessions.binding a key is its creator's: one made without an identity would be
  // anyone's (or no one's), so it is not recorded and its requests are answered as unknown.
  if (cfg.sessions.binding != BindingKind::none && principal.empty()) {
    metrics.affinity.count_refused(KeyRefused::unbound, learned.size());
    co_return;
  }
  co_await tasks.learn(learned, ordinal, principal);
}

void TaskRouting::log_mismatch(KeyRoute result, bool task, std::string_view recorded) const {
  const std::string what = task ? "task" : "handle";
  if (result == KeyRoute::unknown_binding_key) {
    log_event(spdlog::level::warn,
              what +
                  " recorded under a binding key this proxy does not have (sessions.binding_secret_file: keep the "
                  "old key on a line of its own until no record needs it); answered as unknown",
              {{"method", std::string(to_string(method_))}, {"key_id", std::string(principal_key_id(recorded))}});
    return;
  }
  log_event(spdlog::level::warn, what + " presented by another identity; answered as unknown",
            {{"method", std::string(to_string(method_))}});
}

net::awaitable<std::unordered_set<std::string>> callers_tasks(const std::vector<std::string>& ids,
                                                              const BoundCaller& caller, const Config& cfg,
                                                              Tasks& tasks) {
  std::unordered_set<std::string> own;
  for (const std::string& id : ids) {
    if (!valid_affinity_id(id, cfg.affinity.max_key_length)) continue;
    const std::string key = task_key(id);
    auto rec = tasks.find_cached(key);
    if (!rec && tasks.has_store()) {
      bool store_failed = false;
      rec = co_await tasks.find_missed(key, store_failed);
    }
    if (rec && check_caller(caller, rec->principal) == PrincipalCheck::match) own.insert(id);
  }
  co_return own;
}

}  // namespace mcpproxy
