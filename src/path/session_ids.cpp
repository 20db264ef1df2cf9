// Stage: session bookkeeping on a pod's answer, for who a session id belongs to. A session
// id is the session's that had it first: a new session whose id another live session holds
// (a pod whose ids repeat, or collide with another pod's) is refused and ended on its pod,
// never recorded over the holder; a session keeps its id (a pod that renames a live session
// mid-way is refused). A new session is also refused when the table's live sessions leave
// it no room: none of them is dropped for it.
#include "path/session_ids.hpp"

#include <ctime>

#include "core/http/proxy_headers.hpp"
#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/upstream.hpp"
#include "path/downstream.hpp"
#include "path/pod_request.hpp"

namespace mcpproxy {

SessionRecord new_record(ConnectionContext& ctx, const Exchange& ex) {
  SessionRecord rec;
  rec.principal = ex.principal;
  rec.ordinal = ex.ordinal;
  rec.url = ctx.pool.address(ex.ordinal).url;
  rec.created = static_cast<std::int64_t>(std::time(nullptr));
  // The initialize is kept to re-initialize the session on another pod, when it is small
  // enough: a large one would cost the table (and Redis) its size for the session's life.
  if (ex.req.body.size() > ex.cfg->sessions.max_init_body) {
    rec.init_not_kept = true;
    ctx.metrics.init_not_kept[0].fetch_add(1, std::memory_order_relaxed);
    return rec;
  }
  rec.init = ex.req.body;
  rec.init_target = ex.req.target();
  rec.init_fields = replayable_fields(ex.req.head);
  return rec;
}

void count_unrecorded(ConnectionContext& ctx, const ClientLink& client, const Exchange& ex, const std::string& id,
                      const Sessions::Created& made) {
  if (made.outcome == NewSession::taken) {
    ctx.metrics.session_id_conflicts[0].fetch_add(1, std::memory_order_relaxed);
    log_event(spdlog::level::warn, "pod answered a new session with a session id another session holds; refused",
              {{"conn", client.conn()},
               {"session", session_hash(id)},
               {"pod", std::to_string(ex.ordinal)},
               {"holder_pod", made.holder < 0 ? "-" : std::to_string(made.holder)}});
    return;
  }
  ctx.metrics.table_full_refusals.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::warn, "session table full of live sessions; new session refused",
            {{"conn", client.conn()}, {"session", session_hash(id)}, {"pod", std::to_string(ex.ordinal)}});
}

net::awaitable<Next> Connection::record_new_session(Exchange& ex) {
  const std::string id(*upstream_.head().session_id);
  ex.session_for_log = session_hash(id);
  const Sessions::Created made = co_await ctx_.sessions.create(id, new_record(ctx_, ex));
  if (made.outcome == NewSession::inserted_without_init) {
    ctx_.metrics.init_not_kept[1].fetch_add(1, std::memory_order_relaxed);
  }
  if (made.recorded()) co_return Next::go_on();
  // The answer never reaches the client (its body is dropped with the pod connection), and
  // the pod's session is of no use to anyone: it is ended there, unless the holder of the
  // id is on that same pod (a DELETE would end the holder's session).
  count_unrecorded(ctx_, client_, ex, id, made);
  upstream_.abandon();
  const bool taken = made.outcome == NewSession::taken;
  const Outcome out = co_await send_local_reply(ex, taken ? kDuplicateSessionId : kSessionTableFull);
  if (!taken || (made.holder >= 0 && made.holder != ex.ordinal)) co_await end_on_pod(ex, id);
  co_return Next::done(out);
}

net::awaitable<Next> Connection::refuse_renamed_session(Exchange& ex) {
  ctx_.metrics.session_id_conflicts[1].fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::warn, "pod answered a session with another session id; refused, the session keeps its id",
            {{"conn", client_.conn()},
             {"session", ex.session_label()},
             {"pod", std::to_string(ex.ordinal)},
             {"method", std::string(ex.req.method())}});
  upstream_.abandon();
  co_return Next::reply(kSessionRenamed);
}

net::awaitable<Next> Connection::refuse_unbound_session(Exchange& ex, ResponseAction action) {
  // An unbound session is not handed out: the pod accepted an initialize without the
  // identity the binding needs (a pod that wants auth answers 401 itself, and that answer
  // is relayed with its WWW-Authenticate). The initialize went to the pod for that answer;
  // the session it made there is ended at once, so none is left behind on the pod.
  std::string id;
  if (action == ResponseAction::record_new_session && upstream_.head().session_id) id = *upstream_.head().session_id;
  upstream_.abandon();
  const Outcome out = co_await send_local_reply(ex, kIdentityRequired);
  if (!id.empty()) {
    ctx_.metrics.unbound_sessions_ended.fetch_add(1, std::memory_order_relaxed);
    co_await end_on_pod(ex, id);
  }
  co_return Next::done(out);
}

net::awaitable<void> Connection::end_on_pod(const Exchange& ex, const std::string& id) {
  std::unique_ptr<tcp::socket> up;
  const PodReply ended = co_await send_to_pod(ctx_, client_, PodCall{"DELETE", ex.ordinal, ex.path(), {}, id}, up, ex);
  if (up) ctx_.pool.release(ex.ordinal, std::move(up));
  if (ended.status / 100 != 2 && ended.status != 404) {
    log_event(spdlog::level::warn, "the pod did not end a session the proxy refused",
              {{"conn", client_.conn()},
               {"session", session_hash(id)},
               {"pod", std::to_string(ex.ordinal)},
               {"status", std::to_string(ended.status)}});
  }
}

}  // namespace mcpproxy
