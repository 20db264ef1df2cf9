// Stage: lost sessions. A session whose pod is gone (route.hpp decides what that means)
// moves to a newly placed pod when the policy allows (sessions.on_lost: reinitialize): the
// client's initialize, as it came but with the current request's credentials, and
// notifications/initialized are replayed there, the client's id is mapped to the pod's new
// one, and the request is replayed once. One recovery per session at a time in a process:
// the session's other requests wait for it and follow. Otherwise the record goes and the
// client gets 404.
#include <boost/asio/write.hpp>

#include "mcpproxy/downstream.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/sessions.hpp"
#include "mcpproxy/single_flight.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kInitialized = R"({"jsonrpc":"2.0","method":"notifications/initialized"})";

// Whether "Name: value\r\n" lines hold a field called `name`.
bool has_field_line(std::string_view lines, std::string_view name) {
  while (!lines.empty()) {
    const auto end = lines.find("\r\n");
    const std::string_view line = lines.substr(0, end);
    if (line.size() > name.size() && line[name.size()] == ':' && http1::starts_with_ci(line, name)) return true;
    if (end == std::string_view::npos) break;
    lines.remove_prefix(end + 2);
  }
  return false;
}

}  // namespace

net::awaitable<bool> Connection::session_lost(Exchange& ex, LostCause cause, bool may_recover) {
  const Config& cfg = *ex.cfg;
  if (!may_recover) co_return co_await give_up_session(ex, cause);
  // One recovery per session at a time in this process: the requests that find the session
  // lost while another is recovering it wait for that one, then follow its record.
  if (!ctx_.recoveries.begin(ex.route.session_id)) {
    ctx_.metrics.recovery_waits.fetch_add(1, std::memory_order_relaxed);
    const bool ended = co_await ctx_.recoveries.wait(ex.route.session_id, cfg.sessions.recovery_wait);
    if (!ended) co_return co_await send_local_reply(ex, kRecoveryInProgress);
    auto now = ctx_.sessions.find_cached(ex.route.session_id);
    // Gone: the recovery found it lost for good. Still where it was: nothing was decided
    // (Redis could not be asked), and the client retries rather than drop the session.
    if (!now) co_return co_await send_local_reply(ex, kSessionNotFound);
    if (!moved(ex, now)) co_return co_await send_local_reply(ex, kRecoveryInProgress);
    ex.rec = std::move(now);
    ex.ordinal = ex.rec->ordinal;
    co_return co_await proxy(ex, /*may_recover=*/false);
  }
  Recovery outcome = Recovery::lost;
  {
    const FlightGuard flight(ctx_.recoveries, ex.route.session_id);
    outcome = co_await recover(ex, cause);
  }
  if (outcome == Recovery::store_unavailable) co_return co_await send_local_reply(ex, kStoreUnavailable);
  if (outcome == Recovery::lost) co_return co_await send_local_reply(ex, kSessionNotFound);
  co_return co_await proxy(ex, /*may_recover=*/false);
}

bool Connection::moved(const Exchange& ex, const std::shared_ptr<const SessionRecord>& now) const {
  return now && now != ex.rec && (now->ordinal != ex.rec->ordinal || now->backend_session != ex.rec->backend_session) &&
         now->ordinal < ex.cfg->backend.replicas;
}

net::awaitable<Connection::Recovery> Connection::recover(Exchange& ex, LostCause cause) {
  const Config& cfg = *ex.cfg;
  // Another proxy replica may have moved the session already: its record wins over this
  // process's cached copy, and no second re-initialize happens. (With the redis store the
  // local copy also lacks the initialize the re-initialize needs.)
  bool store_failed = false;
  auto current = co_await ctx_.sessions.authoritative(ex.route.session_id, ex.rec, store_failed);
  if (store_failed) {
    // Whether another replica moved it, and what to replay, is in Redis: the session and
    // its record stay, the client retries (a 404 would make it drop the session).
    log_event(
        spdlog::level::warn, "session lost while the store cannot be asked; answered 503",
        {{"conn", std::to_string(id_)}, {"session", session_label(ex)}, {"cause", std::string(to_string(cause))}});
    co_return Recovery::store_unavailable;
  }
  if (moved(ex, current)) {
    ctx_.sessions.cache(ex.route.session_id, *current);
    ex.rec = std::move(current);
    ex.ordinal = ex.rec->ordinal;
    co_return Recovery::moved;
  }
  if (current) ex.rec = std::move(current);
  ctx_.metrics.count_lost(cause);
  if (can_recover(cfg.sessions.on_lost, ex.rec.get(), ex.route.from_query, ex.req.method()) &&
      co_await reestablish(ex)) {
    co_return Recovery::moved;
  }
  co_await forget_lost(ex, cause);
  co_return Recovery::lost;
}

net::awaitable<bool> Connection::give_up_session(Exchange& ex, LostCause cause) {
  ctx_.metrics.count_lost(cause);
  co_await forget_lost(ex, cause);
  co_return co_await send_local_reply(ex, kSessionNotFound);
}

net::awaitable<void> Connection::forget_lost(Exchange& ex, LostCause cause) {
  log_event(spdlog::level::info, "session lost",
            {{"conn", std::to_string(id_)},
             {"session", session_label(ex)},
             {"pod", std::to_string(ex.ordinal)},
             {"cause", std::string(to_string(cause))}});
  co_await ctx_.sessions.forget(ex.route.session_id, ex.rec->ordinal);
}

net::awaitable<Connection::Reply> Connection::send_to_pod(std::string_view method, int ordinal,
                                                          std::unique_ptr<tcp::socket>& up, std::string_view target,
                                                          std::string_view body, std::string_view session,
                                                          const Exchange& ex) {
  const Config& cfg = *ex.cfg;
  Reply reply;
  // The client's initialize as it came (its target, its end-to-end fields), with the
  // credentials of the request in hand and Host as the proxied path sends it; the answer
  // is read back with the same strict parser and framing the proxied path uses. A new
  // session has no record yet (the DELETE of one the proxy refused): the request's own.
  const SessionRecord none;
  const SessionRecord& rec = ex.rec ? *ex.rec : none;
  std::string head;
  head += method;
  head += ' ';
  head += rec.init_target.empty() ? target : std::string_view(rec.init_target);
  head += " HTTP/1.1\r\n"sv;
  const auto host = ex.req.get(http1::FieldId::host);
  append_field(head, "Host", cfg.backend.rewrite_host || !host ? ctx_.pool.address(ordinal).authority : *host);
  if (rec.init_fields.empty()) {  // a record from before the fields were kept, or none
    append_field(head, "Content-Type", "application/json");
    append_field(head, "Accept", "application/json, text/event-stream");
  }
  head += rec.init_fields;
  append_per_request_fields(head, ex.req.head, ex.request_id);
  if (!session.empty()) {
    append_field(head, kSessionHeader, session);
    const auto version = ex.req.get("MCP-Protocol-Version");
    if (version && !has_field_line(rec.init_fields, "MCP-Protocol-Version")) {
      append_field(head, "MCP-Protocol-Version", *version);
    }
  }
  append_field(head, "Content-Length", std::to_string(body.size()));
  head += "\r\n"sv;
  const std::array<net::const_buffer, 2> bytes = {net::buffer(head), net::buffer(body.data(), body.size())};
  beast::flat_buffer in;
  http1::Head res;
  // A DELETE ends a session the proxy will not keep: best effort, not worth a long wait.
  const duration limit = method == "DELETE" ? std::min(cfg.backend.session_end_timeout, cfg.backend.response_timeout)
                                            : cfg.backend.response_timeout;
  for (bool retried = false;;) {
    bool reused = false;
    if (!up) {
      auto lease = co_await ctx_.pool.acquire(ordinal, /*fresh=*/retried);
      if (lease.ec) {
        ctx_.health.eject(ordinal, std::chrono::steady_clock::now() + cfg.backend.eject_cooldown);
        co_return reply;
      }
      up = std::move(lease.stream);
      reused = lease.reused;
    }
    expect_within(Wait::upstream, limit, up.get());
    auto [wec, wn] = co_await net::async_write(*up, bytes, use_tuple);
    error_code read_ec = wec;
    bool got_head = false;
    if (!wec) {
      const bool head_read = co_await read_pod_head(*up, in, res, method, cfg, read_ec);
      got_head = head_read;
    }
    if (got_head) break;
    stop_waiting();
    up.reset();
    // A pooled connection the pod closed meanwhile (a warm spare of a pod that restarted):
    // the request never reached it, and goes again on a fresh connection.
    if (!retried && UpstreamPool::was_stale(reused, in.size() != 0, read_ec)) {
      retried = true;
      continue;
    }
    co_return reply;
  }
  reply.status = res.status;
  if (const auto sid = res.get(http1::FieldId::mcp_session_id)) reply.session_id = std::string(*sid);
  const bool reusable = co_await drain_pod_body(*up, in, res, cfg);
  stop_waiting();
  if (!reusable) up.reset();
  co_return reply;
}

net::awaitable<bool> Connection::read_pod_head(tcp::socket& up, beast::flat_buffer& in, http1::Head& res,
                                               std::string_view method, const Config& cfg, error_code& ec) {
  for (;;) {
    const auto st = http1::parse_response(view(in), cfg.backend.max_response_header_size, method, res);
    if (st == http1::Status::complete && res.status >= 100 && res.status < 200) {
      in.consume(res.size);  // an interim answer
      continue;
    }
    if (st == http1::Status::complete) co_return true;
    if (st != http1::Status::need_more) co_return false;
    auto [read_ec, n] = co_await up.async_read_some(in.prepare(8192), use_tuple);
    ec = read_ec;
    if (ec) co_return false;
    in.commit(n);
  }
}

net::awaitable<bool> Connection::drain_pod_body(tcp::socket& up, beast::flat_buffer& in, const http1::Head& res,
                                                const Config& cfg) {
  // The body is read to its end (an SSE answer to initialize ends after the result) and
  // dropped; bounded like a request body. True when the connection may be reused.
  http1::BodyFraming framing(res);
  std::size_t seen = in.size() - res.size;
  if (seen > 0) framing.take(static_cast<char*>(in.data().data()) + res.size, seen);
  in.consume(in.size());
  while (!framing.done && !framing.error && seen <= cfg.limits.max_body_size) {
    auto [ec, n] = co_await up.async_read_some(in.prepare(8192), use_tuple);
    if (ec) co_return false;  // the end of a close-delimited body, or a failure: not reused either way
    in.commit(n);
    framing.take(static_cast<char*>(in.data().data()), n);
    in.consume(n);
    seen += n;
  }
  co_return framing.done && !framing.error && !framing.extra && res.keep_alive;
}

net::awaitable<bool> Connection::reestablish(Exchange& ex) {
  const Config& cfg = *ex.cfg;
  const int lost_on = ex.rec->ordinal;
  const int ordinal = place_new(cfg, /*avoid=*/lost_on);
  auto fail = [&](std::string_view why) {
    log_event(spdlog::level::warn, "session could not be re-established",
              {{"conn", std::to_string(id_)},
               {"session", session_label(ex)},
               {"pod", std::to_string(ordinal)},
               {"reason", std::string(why)}});
    return false;
  };
  const std::string_view target = ex.req.target().substr(0, ex.req.target().find('?'));
  std::unique_ptr<tcp::socket> up;
  const Reply init = co_await send_to_pod("POST", ordinal, up, target, ex.rec->init, {}, ex);
  if (init.status / 100 != 2 || !init.session_id || !valid_session_id(*init.session_id)) {
    co_return fail("initialize refused");
  }
  const std::string backend_session = *init.session_id;
  const Reply initialized = co_await send_to_pod("POST", ordinal, up, target, kInitialized, backend_session, ex);
  if (initialized.status / 100 != 2) co_return fail("notifications/initialized refused");

  SessionRecord rec = *ex.rec;
  rec.ordinal = ordinal;
  rec.url = ctx_.pool.address(ordinal).url;
  rec.backend_session = backend_session == ex.route.session_id ? std::string() : backend_session;
  rec.epoch = ex.rec->epoch + 1;
  if (auto winner = co_await ctx_.sessions.move(ex.route.session_id, rec, lost_on)) {
    // Another proxy replica moved the session meanwhile: its record stands, the session
    // this one opened is ended on its pod, and the request follows the winner.
    ctx_.metrics.recovery_conflicts.fetch_add(1, std::memory_order_relaxed);
    log_event(spdlog::level::info, "session moved by another proxy replica first; following its record",
              {{"conn", std::to_string(id_)},
               {"session", session_label(ex)},
               {"ours", std::to_string(ordinal)},
               {"theirs", std::to_string(winner->ordinal)}});
    const Reply ended = co_await send_to_pod("DELETE", ordinal, up, target, {}, backend_session, ex);
    if (ended.status / 100 != 2) {
      log_event(
          spdlog::level::warn, "the pod did not end the orphaned session",
          {{"session", session_label(ex)}, {"pod", std::to_string(ordinal)}, {"status", std::to_string(ended.status)}});
    }
    if (up) ctx_.pool.release(ordinal, std::move(up));
    ex.rec = std::move(winner);
    ex.ordinal = ex.rec->ordinal;
    co_return true;
  }
  if (up) ctx_.pool.release(ordinal, std::move(up));
  ex.rec = std::make_shared<const SessionRecord>(std::move(rec));
  ex.ordinal = ordinal;
  ctx_.metrics.sessions_recovered.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::info, "session re-established",
            {{"conn", std::to_string(id_)},
             {"session", session_label(ex)},
             {"from_pod", std::to_string(lost_on)},
             {"to_pod", std::to_string(ordinal)}});
  co_return true;
}

}  // namespace mcpproxy
