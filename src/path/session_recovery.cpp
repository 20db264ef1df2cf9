// Stage: lost sessions (session_recovery.hpp).
#include "path/session_recovery.hpp"

#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/upstream.hpp"
#include "path/pod_request.hpp"
#include "path/single_flight.hpp"
#include "path/upstream_exchange.hpp"
#include "store/sessions.hpp"

namespace mcpproxy {
namespace {

constexpr std::string_view kInitialized = R"({"jsonrpc":"2.0","method":"notifications/initialized"})";

}  // namespace

Refusal SessionRecovery::refusal(Recovered r) {
  switch (r) {
    case Recovered::store_unavailable:
      return kStoreUnavailable;
    case Recovered::in_progress:
      return kRecoveryInProgress;
    case Recovered::moved:
    case Recovered::not_found:
      break;
  }
  return kSessionNotFound;
}

net::awaitable<SessionRecovery::Recovered> SessionRecovery::recover(Exchange& ex, LostCause cause, bool may_recover) {
  if (!may_recover) {
    ctx_.metrics.count_lost(cause);
    co_await forget_lost(ex, cause);
    co_return Recovered::not_found;
  }
  // One recovery per session at a time in this process: the requests that find the session
  // lost while another is recovering it wait for that one, then follow its record.
  if (!ctx_.recoveries.begin(ex.route.session_id)) co_return co_await follow(ex);
  const FlightGuard flight(ctx_.recoveries, ex.route.session_id);
  co_return co_await move(ex, cause);
}

net::awaitable<SessionRecovery::Recovered> SessionRecovery::follow(Exchange& ex) {
  ctx_.metrics.recovery_waits.fetch_add(1, std::memory_order_relaxed);
  const bool ended = co_await ctx_.recoveries.wait(ex.route.session_id, ex.cfg->sessions.recovery_wait);
  if (!ended) co_return Recovered::in_progress;
  auto now = ctx_.sessions.find_cached(ex.route.session_id);
  // Gone: the recovery found it lost for good. Still where it was: nothing was decided
  // (Redis could not be asked), and the client retries rather than drop the session.
  if (!now) co_return Recovered::not_found;
  if (!moved(ex, now)) co_return Recovered::in_progress;
  ex.rec = std::move(now);
  ex.ordinal = ex.rec->ordinal;
  co_return Recovered::moved;
}

bool SessionRecovery::moved(const Exchange& ex, const std::shared_ptr<const SessionRecord>& now) const {
  return now && now != ex.rec && (now->ordinal != ex.rec->ordinal || now->backend_session != ex.rec->backend_session) &&
         now->ordinal < ex.cfg->backend.replicas;
}

net::awaitable<SessionRecovery::Recovered> SessionRecovery::move(Exchange& ex, LostCause cause) {
  const Config& cfg = *ex.cfg;
  // Another proxy replica may have moved the session already: its record wins over this
  // process's cached copy, and no second re-initialize happens. (With the redis store the
  // local copy also lacks the initialize the re-initialize needs.)
  bool store_failed = false;
  auto current = co_await ctx_.sessions.authoritative(ex.route.session_id, ex.rec, store_failed);
  if (store_failed) {
    // Whether another replica moved it, and what to replay, is in Redis: the session and
    // its record stay, the client retries (a 404 would make it drop the session).
    log_event(spdlog::level::warn, "session lost while the store cannot be asked; answered 503",
              {{"conn", client_.conn()}, {"session", ex.session_label()}, {"cause", std::string(to_string(cause))}});
    co_return Recovered::store_unavailable;
  }
  if (moved(ex, current)) {
    ctx_.sessions.cache(ex.route.session_id, *current);
    ex.rec = std::move(current);
    ex.ordinal = ex.rec->ordinal;
    co_return Recovered::moved;
  }
  if (current) ex.rec = std::move(current);
  ctx_.metrics.count_lost(cause);
  if (can_recover(cfg.sessions.on_lost, ex.rec.get(), ex.route.from_query, ex.req.method()) &&
      co_await reestablish(ex)) {
    co_return Recovered::moved;
  }
  co_await forget_lost(ex, cause);
  co_return Recovered::not_found;
}

net::awaitable<void> SessionRecovery::forget_lost(Exchange& ex, LostCause cause) {
  log_event(spdlog::level::info, "session lost",
            {{"conn", client_.conn()},
             {"session", ex.session_label()},
             {"pod", std::to_string(ex.ordinal)},
             {"cause", std::string(to_string(cause))}});
  co_await ctx_.sessions.forget(ex.route.session_id, ex.rec->ordinal);
}

net::awaitable<bool> SessionRecovery::reestablish(Exchange& ex) {
  const int lost_on = ex.rec->ordinal;
  const int ordinal = place_new(ctx_, *ex.cfg, /*avoid=*/lost_on);
  auto fail = [&](std::string_view why) {
    log_event(spdlog::level::warn, "session could not be re-established",
              {{"conn", client_.conn()},
               {"session", ex.session_label()},
               {"pod", std::to_string(ordinal)},
               {"reason", std::string(why)}});
    return false;
  };
  std::unique_ptr<tcp::socket> up;
  const PodReply init =
      co_await send_to_pod(ctx_, client_, PodCall{"POST", ordinal, ex.path(), ex.rec->init, {}}, up, ex);
  if (init.status / 100 != 2 || !init.session_id || !valid_session_id(*init.session_id)) {
    co_return fail("initialize refused");
  }
  const std::string backend_session = *init.session_id;
  const PodReply initialized =
      co_await send_to_pod(ctx_, client_, PodCall{"POST", ordinal, ex.path(), kInitialized, backend_session}, up, ex);
  if (initialized.status / 100 != 2) co_return fail("notifications/initialized refused");

  SessionRecord rec = *ex.rec;
  rec.ordinal = ordinal;
  rec.url = ctx_.pool.address(ordinal).url;
  rec.backend_session = backend_session == ex.route.session_id ? std::string() : backend_session;
  rec.epoch = ex.rec->epoch + 1;
  if (auto winner = co_await ctx_.sessions.move(ex.route.session_id, rec, lost_on)) {
    co_await follow_winner(ex, std::move(winner), ordinal, up, backend_session);
    co_return true;
  }
  if (up) ctx_.pool.release(ordinal, std::move(up));
  ex.rec = std::make_shared<const SessionRecord>(std::move(rec));
  ex.ordinal = ordinal;
  ctx_.metrics.sessions_recovered.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::info, "session re-established",
            {{"conn", client_.conn()},
             {"session", ex.session_label()},
             {"from_pod", std::to_string(lost_on)},
             {"to_pod", std::to_string(ordinal)}});
  co_return true;
}

net::awaitable<void> SessionRecovery::follow_winner(Exchange& ex, std::shared_ptr<const SessionRecord> winner,
                                                    int ordinal, std::unique_ptr<tcp::socket>& up,
                                                    const std::string& backend_session) {
  // Another proxy replica moved the session meanwhile: its record stands, the session this
  // one opened is ended on its pod, and the request follows the winner.
  ctx_.metrics.recovery_conflicts.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::info, "session moved by another proxy replica first; following its record",
            {{"conn", client_.conn()},
             {"session", ex.session_label()},
             {"ours", std::to_string(ordinal)},
             {"theirs", std::to_string(winner->ordinal)}});
  const PodReply ended =
      co_await send_to_pod(ctx_, client_, PodCall{"DELETE", ordinal, ex.path(), {}, backend_session}, up, ex);
  if (ended.status / 100 != 2) {
    log_event(
        spdlog::level::warn, "the pod did not end the orphaned session",
        {{"session", ex.session_label()}, {"pod", std::to_string(ordinal)}, {"status", std::to_string(ended.status)}});
  }
  if (up) ctx_.pool.release(ordinal, std::move(up));
  ex.rec = std::move(winner);
  ex.ordinal = ex.rec->ordinal;
}

}  // namespace mcpproxy
