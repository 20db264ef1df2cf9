#pragma once
// Stage: task and handle affinity on the request path (DESIGN.md request flow step 8), one
// per exchange. It classifies the request (era, method label, counted), routes a
// sessionless request that names a task or a handle to the pod that holds it, and reads
// the answers that may create one (decided from the request) as they pass the relay,
// recording what they create before the bytes that complete them go downstream.
// The connection reaches it at four points: the decision (on_session_request, or
// on_sessionless and look_up), the choice of the relay (watching), and the relay's pieces
// (on_answer).

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/config/config.hpp"
#include "core/decide/route.hpp"
#include "core/mcp/task_affinity.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"
#include "store/tasks.hpp"

namespace mcpproxy {

class TaskRouting {
 public:
  // What the decision does with the request.
  struct Verdict {
    enum class Kind : std::uint8_t {
      place,    // no key: the request is placed as before
      forward,  // to ordinal(), the pod that holds the key
      reply,    // refusal() from the proxy (unknown task, pod gone, header mismatch)
      look_up,  // the local table does not know the key: ask the store (look_up)
      list,     // a sessionless tasks/list: every pod's list, merged (task_list.hpp)
    };
  };

  // A request with a session id, or one that may create a session (2025): its method
  // counted, nothing more (inline, no call: the 2025 path's cost).
  void on_session_request(std::string_view body, Metrics& metrics) {
    method_ = method_of_body(body);
    metrics.affinity.count_request(Era::v2025, method_);
  }
  // A sessionless request: its era and method counted, and routed by its key when it names
  // one, which must be `caller`'s with sessions.binding (another identity's is answered
  // as unknown).
  Verdict::Kind on_sessionless(const http1::Head& head, std::string_view body, const Config& cfg, Tasks& tasks,
                               Metrics& metrics, const BoundCaller& caller);
  // The answer of a Verdict::Kind::reply.
  const Refusal& refusal() const { return keyed_->refusal; }
  // After Verdict::look_up: the store's answer decides (a store that cannot be asked: 503).
  net::awaitable<Verdict::Kind> look_up(int replicas, Tasks& tasks, Metrics& metrics, const BoundCaller& caller);
  // The pod a key routed this request to (-1: none).
  int ordinal() const { return ordinal_; }
  // A placed request that names another identity's key: the pod that holds it (-1: none),
  // never placed on (a retry neither). No other pod to place on: unplaceable() answers.
  int avoid() const { return avoid_; }
  const Refusal& unplaceable() const {
    return keyed_ && keyed_->key.kind == AffinityKind::handle ? kHandleNotFound : kTaskNotFound;
  }
  bool listen() const { return method_ == McpMethod::subscriptions_listen; }

  // Whether the pod's answer is read (a sessionless tools/call or task-augmented request,
  // answered 2xx): then it goes through the relay's pump, never relay_at_once.
  bool watching(unsigned status) const { return watching_ && status >= 200 && status < 300; }
  // A piece of the answer's payload (`body_done` on its last): what it completes is read,
  // and what that creates is recorded before the piece is relayed, bound to `principal`
  // (with sessions.binding, an answer to a request without one records nothing).
  net::awaitable<void> on_answer(std::string_view data, bool body_done, bool sse, const Config& cfg, Tasks& tasks,
                                 Metrics& metrics, int ordinal, const std::string& principal);

 private:
  Verdict::Kind decide(const std::optional<TaskRecord>& rec, int replicas, Metrics& metrics, const BoundCaller& caller);
  void log_mismatch(KeyRoute result, bool task, std::string_view recorded) const;
  Verdict::Kind reply(const Refusal& r) {
    keyed().refusal = r;
    return Verdict::Kind::reply;
  }

  // What only a sessionless request with a key or a watched answer needs: allocated for it
  // alone, so a session's exchange neither builds nor destroys it.
  struct Keyed {
    RequestAffinity key;
    AnswerWatch watch;
    std::optional<AnswerTap> tap;
    std::vector<std::string> messages;
    Refusal refusal;  // the answer of a Verdict::Kind::reply
  };
  Keyed& keyed() {
    if (!keyed_) keyed_ = std::make_unique<Keyed>();
    return *keyed_;
  }

  McpMethod method_ = McpMethod::other;
  bool watching_ = false;
  int ordinal_ = -1;
  int avoid_ = -1;
  std::unique_ptr<Keyed> keyed_;
};

// sessions.binding and a sessionless tasks/list (task_list.hpp): of the task ids the pods
// listed, those whose record is `caller`'s. A task the proxy holds no record of, or cannot
// read one of now (the store down), is not: the caller could not reach it either.
net::awaitable<std::unordered_set<std::string>> callers_tasks(const std::vector<std::string>& ids,
                                                              const BoundCaller& caller, const Config& cfg,
                                                              Tasks& tasks);

}  // namespace mcpproxy
