// Stage: session bookkeeping on a pod's answer, for who a session id belongs to. A session
// id is the session's that had it first: a new session whose id another live session holds
// (a pod whose ids repeat, or collide with another pod's) is refused and ended on its pod,
// never recorded over the holder; a session keeps its id (a pod that renames a live session
// mid-way is refused). A new session is also refused when the table's live sessions leave
// it no room: none of them is dropped for it.
#include <ctime>

#include "mcpproxy/downstream.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {

SessionRecord Connection::new_record(const Exchange& ex) const {
  SessionRecord rec;
  rec.principal = ex.principal;
  rec.ordinal = ex.ordinal;
  rec.url = ctx_.pool.address(ex.ordinal).url;
  rec.created = static_cast<std::int64_t>(std::time(nullptr));
  // The initialize is kept to re-initialize the session on another pod, when it is small
  // enough: a large one would cost the table (and Redis) its size for the session's life.
  if (ex.req.body.size() > ex.cfg->sessions.max_init_body) {
    rec.init_not_kept = true;
    ctx_.metrics.init_not_kept[0].fetch_add(1, std::memory_order_relaxed);
    return rec;
  }
  rec.init = ex.req.body;
  rec.init_target = ex.req.target();
  rec.init_fields = replayable_fields(ex.req.head);
  return rec;
}

void Connection::count_unrecorded(const Exchange& ex, const std::string& id, const Sessions::Created& made) {
  if (made.outcome == NewSession::taken) {
    ctx_.metrics.session_id_conflicts[0].fetch_add(1, std::memory_order_relaxed);
    log_event(spdlog::level::warn, "pod answered a new session with a session id another session holds; refused",
              {{"conn", std::to_string(id_)},
               {"session", session_hash(id)},
               {"pod", std::to_string(ex.ordinal)},
               {"holder_pod", made.holder < 0 ? "-" : std::to_string(made.holder)}});
    return;
  }
  ctx_.metrics.table_full_refusals.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::warn, "session table full of live sessions; new session refused",
            {{"conn", std::to_string(id_)}, {"session", session_hash(id)}, {"pod", std::to_string(ex.ordinal)}});
}

net::awaitable<Connection::Bookkeeping> Connection::record_new_session(Exchange& ex, bool& again) {
  const std::string id(*response_.session_id);
  ex.session_for_log = session_hash(id);
  const Sessions::Created made = co_await ctx_.sessions.create(id, new_record(ex));
  if (made.outcome == NewSession::inserted_without_init) {
    ctx_.metrics.init_not_kept[1].fetch_add(1, std::memory_order_relaxed);
  }
  if (made.recorded()) co_return Bookkeeping::relay;
  // The answer never reaches the client (its body is dropped with the pod connection), and
  // the pod's session is of no use to anyone: it is ended there, unless the holder of the
  // id is on that same pod (a DELETE would end the holder's session).
  count_unrecorded(ex, id, made);
  end_watch();
  ex.upstream.reset();
  const bool taken = made.outcome == NewSession::taken;
  again = co_await send_local_reply(ex, taken ? kDuplicateSessionId : kSessionTableFull);
  if (!taken || (made.holder >= 0 && made.holder != ex.ordinal)) co_await end_on_pod(ex, id);
  co_return Bookkeeping::answered;
}

net::awaitable<Connection::Bookkeeping> Connection::refuse_renamed_session(Exchange& ex, bool& again) {
  ctx_.metrics.session_id_conflicts[1].fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::warn, "pod answered a session with another session id; refused, the session keeps its id",
            {{"conn", std::to_string(id_)},
             {"session", session_label(ex)},
             {"pod", std::to_string(ex.ordinal)},
             {"method", std::string(ex.req.method())}});
  end_watch();
  ex.upstream.reset();
  again = co_await send_local_reply(ex, kSessionRenamed);
  co_return Bookkeeping::answered;
}

net::awaitable<Connection::Bookkeeping> Connection::refuse_unbound_session(Exchange& ex, ResponseAction action,
                                                                           bool& again) {
  // An unbound session is not handed out: the pod accepted an initialize without the
  // identity the binding needs (a pod that wants auth answers 401 itself, and that answer
  // is relayed with its WWW-Authenticate). The initialize went to the pod for that answer;
  // the session it made there is ended at once, so none is left behind on the pod.
  std::string id;
  if (action == ResponseAction::record_new_session && response_.session_id) id = *response_.session_id;
  end_watch();
  ex.upstream.reset();
  again = co_await send_local_reply(ex, kIdentityRequired);
  if (!id.empty()) {
    ctx_.metrics.unbound_sessions_ended.fetch_add(1, std::memory_order_relaxed);
    co_await end_on_pod(ex, id);
  }
  co_return Bookkeeping::answered;
}

net::awaitable<void> Connection::end_on_pod(const Exchange& ex, const std::string& id) {
  std::unique_ptr<tcp::socket> up;
  const std::string_view target = ex.req.target().substr(0, ex.req.target().find('?'));
  const Reply ended = co_await send_to_pod("DELETE", ex.ordinal, up, target, {}, id, ex);
  if (up) ctx_.pool.release(ex.ordinal, std::move(up));
  if (ended.status / 100 != 2 && ended.status != 404) {
    log_event(spdlog::level::warn, "the pod did not end a session the proxy refused",
              {{"conn", std::to_string(id_)},
               {"session", session_hash(id)},
               {"pod", std::to_string(ex.ordinal)},
               {"status", std::to_string(ended.status)}});
  }
}

}  // namespace mcpproxy
