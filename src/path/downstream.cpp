// The client connection: the request loop, the driver of a request's stages, the
// routing decision, the response bookkeeping, local replies, and the one place a request
// is counted and logged (finish).
#include "path/downstream.hpp"

#include <boost/beast/http/status.hpp>

#include "core/decide/placement.hpp"
#include "core/decide/session_limiter.hpp"
#include "core/http/proxy_headers.hpp"
#include "core/identity/session_binding.hpp"
#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"
#include "path/stream_gate.hpp"
#include "store/sessions.hpp"

namespace mcpproxy {

Connection::Connection(ConnectionContext& ctx, tcp::socket socket, std::uint64_t id)
    : ctx_(ctx),
      client_(ctx, std::move(socket), id),
      reader_(ctx, client_),
      upstream_(ctx, client_),
      relay_(ctx, client_),
      recovery_(ctx, client_),
      task_lists_(ctx, client_),
      listens_(ctx, client_) {
  ctx_.metrics.downstream_connections.fetch_add(1, std::memory_order_relaxed);
}

void Connection::set_in_flight(bool in_flight) {
  // ctx_.busy counts the requests the drain waits for; each connection adds at most one.
  if (in_flight == counted_busy_) return;
  counted_busy_ = in_flight;
  ctx_.busy.fetch_add(in_flight ? 1 : -1, std::memory_order_relaxed);
}

Connection::~Connection() {
  ctx_.metrics.downstream_connections.fetch_sub(1, std::memory_order_relaxed);
  set_in_flight(false);
  if (ctx_.shutting_down) return;  // the worker's pool and registry are gone already
  relay_.release_buffer();
  if (registered_) ctx_.registry.remove(registry_);
}

void Connection::start() {
  registry_ = ctx_.registry.add(weak_from_this());
  registered_ = true;
  net::co_spawn(
      client_.socket().get_executor(), [self = shared_from_this()]() { return self->run(); }, net::detached);
}

void Connection::close_if_idle() {
  if (idle_) close();
}

void Connection::on_tick(std::uint64_t tick) {
  if (client_.on_tick(tick)) client_.arm_watch(shared_from_this());
}

net::awaitable<void> Connection::run() {
  beast::flat_buffer& buffer = reader_.buffer();
  for (;;) {
    if (client_.closed()) co_return;
    // Between requests: wait for the first byte with the idle timeout; the head then has
    // its own deadline, so a slow client cannot hold a connection with a trickle.
    if (buffer.size() == 0) {
      if (ctx_.draining.load(std::memory_order_relaxed)) co_return;
      idle_ = true;
      client_.expect_within(ClientLink::Wait::idle, ctx_.config->limits.idle_timeout);
      auto [ec, n] = co_await read_some(ctx_.ring, client_.socket(), buffer.prepare(8192));
      client_.stop_waiting();
      idle_ = false;
      if (ec) {
        note_read_failure(ec);
        co_return;
      }
      buffer.commit(n);
    }
    // Each request takes the worker's config as it is when the request's first byte is
    // here: a reload applied while a keep-alive connection was idle holds for its next one.
    auto cfg = ctx_.config;
    // A request that came whole in one read (nearly every MCP request) is taken here,
    // without another coroutine; the rest is read by the reader's coroutine.
    const RequestReader::Buffered buffered = reader_.take_buffered(*cfg);
    if (buffered != RequestReader::Buffered::request) {
      const RequestReader::Read read = co_await reader_.read(*cfg, buffered);
      if (read == RequestReader::Read::refused) co_await refuse_request(cfg);
      if (read != RequestReader::Read::request) co_return;
    }

    Request& req = reader_.request();
    Exchange ex(req);
    ex.route.session_id = std::move(session_id_storage_);  // its capacity, from the last request
    ex.cfg = std::move(cfg);
    ex.start = std::chrono::steady_clock::now();
    ex.request_id.assign(req.head, ex.cfg->limits.max_request_id_length);
    ex.keep_alive = req.head.keep_alive;
    set_in_flight(true);
    // Routed without a wait (the rule: a session the table knows, a placed request), it
    // goes to the pod from here; a decision that waits (the store, a local reply, a lost
    // session, a stream's order) is handle's.
    const Decision d = decide(ex);
    Outcome out;
    if (d.kind == Decision::Kind::proxy) {
      out = co_await proxy(ex, /*may_recover=*/true);
    } else {
      out = co_await handle(ex, d);
    }
    if (!end_request(ex, out)) co_return;
  }
}

void Connection::note_read_failure(const error_code& ec) const {
  if (!harmless(ec)) {
    log_event(spdlog::level::debug, "client read failed", {{"conn", client_.conn()}, {"error", ec.message()}});
  }
}

bool Connection::end_request(Exchange& ex, const Outcome& out) {
  set_in_flight(false);
  const FinishRecord r = finish(ex, out);
  session_id_storage_ = std::move(ex.route.session_id);
  reader_.end_request();
  upstream_.close();  // none is left open past its request; this is the rule's backstop
  if (r.next_request) return true;
  error_code ec;
  client_.socket().shutdown(tcp::socket::shutdown_send, ec);
  return false;
}

net::awaitable<void> Connection::refuse_request(const std::shared_ptr<const Config>& cfg) {
  const RequestReader::Refused r = reader_.refused();
  // A deadline that fired has closed the socket already (ClientLink::on_tick): the request
  // is then counted and logged, and the client sees the connection close.
  if (client_.socket().is_open()) {
    const std::string body = jsonrpc_error_body(-32600, r.reason, "null");
    std::string bytes;
    LocalReplyHead head;
    head.status = r.status;
    head.reason = beast::http::obsolete_reason(static_cast<beast::http::status>(r.status));
    head.keep_alive = false;
    head.retry_after = r.retry_after;
    head.body_size = body.size();
    write_local_reply_head(bytes, head);
    bytes += body;
    co_await client_.write(bytes, std::chrono::seconds(5));
    error_code ec;
    client_.socket().shutdown(tcp::socket::shutdown_send, ec);
  }
  Exchange ex(reader_.request());
  ex.cfg = cfg;
  finish(ex, Outcome::refused(r.status, r.reason));
}

FinishRecord Connection::finish(const Exchange& ex, const Outcome& out) {
  const FinishRecord r = finish_record(out, ex.req.method(), client_.closed());
  ctx_.metrics.count_request(r.method, r.status);
  if (r.line == FinishRecord::Line::refused) {
    log_event(spdlog::level::info, "request refused",
              {{"conn", client_.conn()}, {"status", std::to_string(r.status)}, {"reason", std::string(out.reason)}});
    return r;
  }
  if (!ex.cfg->log.access || !spdlog::should_log(spdlog::level::info)) return r;
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - ex.start).count();
  const TrustedHops& addresses = ex.cfg->client_address;
  log_event(
      spdlog::level::info, "access",
      {{"conn", client_.conn()},
       {"method", std::string(ex.req.method())},
       // The path only: a legacy query carries the raw session id, which never reaches a log.
       {"path", std::string(ex.path())},
       {"status", std::to_string(r.status)},
       {"pod", ex.ordinal < 0 ? "-" : std::to_string(ex.ordinal)},
       {"client", addresses.any() ? client_address(ex.req.head, client_.peer(), addresses).str() : client_.peer_ip()},
       {"duration_ms", std::to_string(static_cast<double>(micros) / 1000.0)},
       {"session", ex.session_label()},
       {"request_id", std::string(ex.request_id.view())}});
  return r;
}

const std::string& Connection::principal_of_request(const Exchange& ex) {
  if (ex.cfg->sessions.binding == BindingKind::jwt) return binding_principal_;  // resolve_jwt's
  const auto identity = binding_identity(ex.cfg->sessions, ex.req.head);
  if (!identity) {
    binding_identity_.clear();
    binding_principal_.clear();
  } else if (*identity != binding_identity_ || binding_principal_.empty()) {
    binding_identity_ = std::string(*identity);
    binding_principal_ = principal_of(ex.cfg->sessions.binding_keys.front(), *identity);
  }
  return binding_principal_;
}

std::string Connection::client_key(const Exchange& ex) const {
  if (!ex.principal.empty()) return "p:" + ex.principal;
  IpAddress client = client_address(ex.req.head, client_.peer(), ex.cfg->client_address);
  if (!client.is_v4()) client = IpNetwork::around(client, ex.cfg->limits.new_sessions_ipv6_prefix).base;
  std::string key = "a:";
  key.append(reinterpret_cast<const char*>(client.bytes.data()), client.bytes.size());
  return key;
}

BoundCaller Connection::caller_of(const Exchange& ex) const {
  const SessionsConfig& s = ex.cfg->sessions;
  return BoundCaller{s.binding == BindingKind::none ? nullptr : &s.binding_keys, binding_identity_, ex.principal};
}

bool Connection::binding_holds(const Exchange& ex) {
  // A record from before binding was turned on has no principal: it stays usable.
  if (ex.rec->principal.empty()) return true;
  // The first key's principal, else another key of the file (a rotation under way).
  const std::string& principal = principal_of_request(ex);
  const PrincipalCheck check =
      check_caller(BoundCaller{&ex.cfg->sessions.binding_keys, binding_identity_, principal}, ex.rec->principal);
  if (check == PrincipalCheck::match) return true;
  ctx_.metrics.binding_mismatches.fetch_add(1, std::memory_order_relaxed);
  if (check == PrincipalCheck::unknown_key) {
    ctx_.metrics.binding_unknown_key.fetch_add(1, std::memory_order_relaxed);
    log_event(spdlog::level::warn,
              "session recorded under a binding key this proxy does not have (sessions.binding_secret_file: keep the "
              "old key on a line of its own until no record needs it); answered 404",
              {{"conn", client_.conn()},
               {"session", session_hash(ex.route.session_id)},
               {"key_id", std::string(principal_key_id(ex.rec->principal))}});
    return false;
  }
  log_event(spdlog::level::warn, "session presented by another identity; answered 404",
            {{"conn", client_.conn()},
             {"session", session_hash(ex.route.session_id)},
             {"method", std::string(ex.req.method())}});
  return false;
}

Connection::Decision Connection::decide(Exchange& ex) {
  // sessions.binding jwt: the identity first (jwt_binding.cpp); a token naming a kid no key
  // has waits for the JWKS URL's refetch in handle.
  if (ex.cfg->sessions.binding == BindingKind::jwt && !resolve_jwt(ex, /*may_wait=*/true)) {
    return Decision::to(Decision::Kind::jwt_keys);
  }
  return decide_request(ex);
}

Connection::Decision Connection::decide_request(Exchange& ex) {
  const Config& cfg = *ex.cfg;
  if (!cfg.allowed_origins.empty() && !origin_allowed(cfg.allowed_origins, ex.req.get(http1::FieldId::origin))) {
    return Decision::reply(kOriginNotAllowed);
  }
  if (!cfg.allowed_hosts.empty() && !host_allowed(cfg.allowed_hosts, ex.req.get(http1::FieldId::host))) {
    return Decision::reply(kHostNotAllowed);
  }
  if (cfg.sessions.binding != BindingKind::none && binding_field_repeated(cfg.sessions, ex.req.head)) {
    return Decision::reply(kIdentityRepeated);
  }
  classify_request(ex.route, ex.req.head.session_id, ex.req.target(), ex.req.body, ex.req.method() == "POST");
  if (ex.route.cls == RequestClass::sessionless) return decide_sessionless(ex);
  ex.tasks.on_session_request(ex.req.body, ctx_.metrics);  // the 2025 era, the method counted
  if (ex.route.cls == RequestClass::session) {
    ex.rec = ctx_.sessions.find_cached(ex.route.session_id);
    // Created through another proxy replica, or before this process restarted: the store
    // is asked when the local table does not know the id.
    if (!ex.rec) return Decision::to(Decision::Kind::look_up);
  }
  return decide_known(ex, /*store_failed=*/false);
}

Connection::Decision Connection::decide_sessionless(Exchange& ex) {
  const Config& cfg = *ex.cfg;
  BoundCaller caller;
  if (cfg.sessions.binding != BindingKind::none) {
    ex.principal = principal_of_request(ex);
    caller = caller_of(ex);
  }
  // Era and method (counted), and the request's task or handle (task_routing.hpp).
  using ByKey = TaskRouting::Verdict::Kind;
  switch (ex.tasks.on_sessionless(ex.req.head, ex.req.body, cfg, ctx_.tasks, ctx_.metrics, caller)) {
    case ByKey::place:
    case ByKey::forward:
      break;
    case ByKey::reply:
      return Decision::reply(ex.tasks.refusal());
    case ByKey::look_up:
      return Decision::to(Decision::Kind::look_up_key);
    case ByKey::list:
      return Decision::to(Decision::Kind::list_tasks);
  }
  // The label is a quick look (the first "method" key anywhere): the fan-out, which sends the
  // body to every pod, goes by the parsed message's method.
  if (cfg.subscriptions.fanout && ex.tasks.listen() && ex.req.method() == "POST" &&
      inspect_jsonrpc(ex.req.body).first_method == "subscriptions/listen") {
    return Decision::to(Decision::Kind::fan_out_listen);
  }
  return decide_known(ex, /*store_failed=*/false);
}

Connection::Decision Connection::decide_known(Exchange& ex, bool store_failed) {
  const Config& cfg = *ex.cfg;
  if (ex.route.cls == RequestClass::session) {
    // Not knowing is not "not found": a 404 would make the client drop a live session.
    if (!ex.rec && store_failed) return Decision::reply(kStoreUnavailable);
    // Another identity's session is answered like an unknown one: ids cannot be probed.
    if (ex.rec && cfg.sessions.binding != BindingKind::none && !binding_holds(ex)) {
      return Decision::reply(kSessionNotFound);
    }
  } else if (cfg.sessions.binding != BindingKind::none) {
    ex.principal = principal_of_request(ex);
  }
  if (ex.route.cls == RequestClass::new_session && cfg.limits.new_sessions_per_client != 0) {
    const unsigned wait =
        ctx_.new_sessions.admit(client_key(ex), std::chrono::steady_clock::now(), cfg.limits.new_sessions_per_client,
                                cfg.limits.new_sessions_window, cfg.limits.new_sessions_max_clients);
    if (wait != 0) {
      ctx_.metrics.new_sessions_refused.fetch_add(1, std::memory_order_relaxed);
      return Decision::reply(Refusal{429, -32000, "Too many new sessions from this client", wait});
    }
  }
  const Route route = route_request(ex.route, ex.rec.get(), cfg.backend.replicas);
  switch (route.kind) {
    case Route::Kind::refuse:
      return Decision::reply(route.refusal);
    case Route::Kind::lost: {
      ex.ordinal = route.ordinal;
      Decision d = Decision::to(Decision::Kind::lost);
      d.cause = route.cause;
      return d;
    }
    case Route::Kind::forward:
      ex.ordinal = route.ordinal;
      break;
    case Route::Kind::place:
      if (ex.tasks.ordinal() >= 0) {  // a task's or a handle's pod
        ex.ordinal = ex.tasks.ordinal();
        break;
      }
      // A new session that would find no room is refused before a pod makes it: the live
      // sessions that fill the table are never dropped for it.
      if (ex.route.cls == RequestClass::new_session && !ctx_.sessions.room_for_new()) {
        ctx_.metrics.table_full_refusals.fetch_add(1, std::memory_order_relaxed);
        return Decision::reply(kSessionTableFull);
      }
      // A key another identity holds: never its pod (no other: answered as unknown).
      ex.ordinal = place_new(ctx_, cfg, ex.tasks.avoid());
      if (ex.tasks.avoid() >= 0 && ex.ordinal == ex.tasks.avoid()) return Decision::reply(ex.tasks.unplaceable());
      break;
  }
  // A session's GET, or any request while some stream is opening or expected: checked here
  // so that the common request costs one atomic load, no coroutine frame.
  if (ex.route.cls == RequestClass::session && (ex.req.method() == "GET" || ctx_.streams.any())) {
    return Decision::to(Decision::Kind::stream_order);
  }
  return Decision::to(Decision::Kind::proxy);
}

net::awaitable<Outcome> Connection::handle(Exchange& ex, Decision d) {
  if (d.kind == Decision::Kind::jwt_keys) {
    co_await await_jwt_keys(ex);  // resolves the identity again, the refetch's keys or not
    d = decide_request(ex);
  }
  if (d.kind == Decision::Kind::look_up) {
    bool store_failed = false;
    ex.rec = co_await ctx_.sessions.find_missed(ex.route.session_id, store_failed);
    d = decide_known(ex, store_failed);
  } else if (d.kind == Decision::Kind::look_up_key) {
    const BoundCaller caller = caller_of(ex);
    const TaskRouting::Verdict::Kind v =
        co_await ex.tasks.look_up(ex.cfg->backend.replicas, ctx_.tasks, ctx_.metrics, caller);
    d = v == TaskRouting::Verdict::Kind::reply ? Decision::reply(ex.tasks.refusal()) : decide_known(ex, false);
  }
  switch (d.kind) {
    case Decision::Kind::reply:
      co_return co_await send_local_reply(ex, d.refusal);
    case Decision::Kind::lost: {
      const SessionRecovery::Recovered r = co_await recovery_.recover(ex, d.cause, /*may_recover=*/true);
      if (r != SessionRecovery::Recovered::moved) co_return co_await send_local_reply(ex, SessionRecovery::refusal(r));
      co_return co_await proxy(ex, /*may_recover=*/false);  // the replay on the session's new pod
    }
    case Decision::Kind::stream_order:
      co_await keep_stream_order(ex);
      break;
    case Decision::Kind::list_tasks: {
      const BoundCaller caller = caller_of(ex);
      co_return co_await task_lists_.run(ex, caller);
    }
    case Decision::Kind::fan_out_listen: {
      reader_.own_request(ex);  // the read buffer is not held while the listen lasts
      reader_.free_buffer_if_empty();
      const ListenFanout::Result r = co_await listens_.run(ex, caller_of(ex));
      if (r.reply) co_return co_await send_local_reply(ex, *r.reply, /*keep_alive=*/false);
      co_return r.outcome;
    }
    case Decision::Kind::jwt_keys:
    case Decision::Kind::look_up:
    case Decision::Kind::look_up_key:
    case Decision::Kind::proxy:
      break;
  }
  co_return co_await proxy(ex, /*may_recover=*/true);
}

void Connection::expect_stream(const Exchange& ex) {
  // The SDK clients open the session's GET stream as soon as they see this 202.
  const auto window = ex.cfg->backend.stream_expect_window;
  if (window.count() == 0 || ex.cfg->backend.stream_open_wait.count() == 0 || upstream_.head().status != 202 ||
      ex.route.cls != RequestClass::session)
    return;
  if (ex.req.body.find("\"notifications/initialized\"") == std::string_view::npos) return;
  ctx_.streams.expect(ex.route.session_id, std::chrono::steady_clock::now() + ex.cfg->backend.stream_open_wait);
}

net::awaitable<void> Connection::keep_stream_order(Exchange& ex) {
  const auto limit = ex.cfg->backend.stream_open_wait;
  if (limit.count() == 0) co_return;
  // The session's GET stream: its later requests wait for it (stream_gate.hpp).
  if (ex.req.method() == "GET") {
    ex.stream_opening = StreamOpening(ctx_.streams, ex.route.session_id);
    co_return;
  }
  const bool waited = co_await ctx_.streams.wait(ex.route.session_id, limit, ex.cfg->backend.stream_expect_window);
  if (waited) ctx_.metrics.stream_order_waits.fetch_add(1, std::memory_order_relaxed);
}

// Exempt from the complexity bound: a request's waits at the pod and the client written out
// in one coroutine, each stage's steps in plain functions of its own type (a coroutine frame
// per stage cost about 300 instructions a request: bench/README.md).
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
net::awaitable<Outcome> Connection::proxy(Exchange& ex, bool may_recover) {
  using Need = UpstreamExchange::Need;
  UpstreamExchange& up = upstream_;
  for (;; may_recover = false) {  // once more: the replay of a request whose session moved
    // The exchange with the pod up to its response head: the stage's steps say what to
    // wait for (a pooled connection and a send the socket takes whole need no wait).
    for (Need need = up.start(ex); need != Need::done;) {
      if (need == Need::connect) {
        UpstreamPool::Lease lease = co_await ctx_.pool.connect(up.ordinal());
        need = up.connected(&ex, std::move(lease));
      } else if (need == Need::write) {
        auto [ec, n] = co_await write_all(ctx_.ring, up.pod(), up.unsent());
        need = up.written(&ex, ec);
      } else {
        auto [ec, n] = co_await read_some(ctx_.ring, up.pod(), up.read_space());
        need = up.received(&ex, ec, n);
      }
    }
    ex.stream_opening.release();  // the pod has the GET stream now, or will never have it
    Next next = up.failed(ex);
    bool legacy_stream = false;
    if (next.kind == Next::Kind::go_on) {
      expect_stream(ex);
      ex.status = up.head().status;
      // Session bookkeeping happens before the head goes downstream (DESIGN.md step 4).
      const ResponseAction action = response_action(response_facts(ex, may_recover));
      legacy_stream = action == ResponseAction::tap_legacy_stream;
      if (action != ResponseAction::relay && !legacy_stream) next = co_await on_response_head(ex, action);
    }
    if (next.kind == Next::Kind::go_on) {
      const RelayPlan plan = relay_plan(ex);
      relay_.begin(plan, up.head());
      // A whole answer goes out without the pump's coroutine.
      RelayOutcome relayed;
      const Relay::AtOnce at_once = relay_.at_once(ex, up, plan, legacy_stream, relayed);
      if (at_once == Relay::AtOnce::no) {
        relayed = co_await relay_.pump(ex, up, plan, legacy_stream);
      } else if (at_once == Relay::AtOnce::rest) {
        client_.expect_within(ClientLink::Wait::write, ex.cfg->limits.write_timeout);
        auto [wec, wn] = co_await write_all(ctx_.ring, client_.socket(), client_.unsent());
        relay_.rest_written(!wec, relayed);
      }
      std::optional<Refusal> owed;
      const Outcome out = relay_.settle(ex, up, plan, relayed, owed);
      if (!owed) co_return out;
      co_return co_await send_local_reply(ex, *owed, plan.keep_alive);
    }
    if (next.kind == Next::Kind::lost) {
      const SessionRecovery::Recovered r = co_await recovery_.recover(ex, next.cause, may_recover);
      if (r == SessionRecovery::Recovered::moved) continue;
      next = Next::reply(SessionRecovery::refusal(r));
    }
    if (next.kind == Next::Kind::reply) co_return co_await send_local_reply(ex, next.refusal);
    co_return next.outcome;
  }
}

RelayPlan Connection::relay_plan(Exchange& ex) {
  RelayInputs in;
  in.client_version = ex.req.version();
  in.keep_alive = ex.keep_alive;
  in.draining = ctx_.draining.load(std::memory_order_relaxed);
  in.is_get = ex.req.method() == "GET";
  // The client keeps the id it knows when the pod now knows the session by another.
  if (ex.route.cls == RequestClass::session && ex.rec && !ex.rec->backend_session.empty()) {
    in.client_session = ex.route.session_id;
  }
  const RelayPlan plan = plan_relay(upstream_.head(), in);
  if (plan.frees_read_buffer) {
    reader_.own_request(ex);  // a request read in place moves to its own copy first
    reader_.free_buffer_if_empty();
  }
  if (plan.leaves_drain) set_in_flight(false);
  return plan;
}

ResponseFacts Connection::response_facts(const Exchange& ex, bool may_recover) {
  const Config& cfg = *ex.cfg;
  ResponseFacts facts;
  facts.cls = ex.route.cls;
  facts.method = ex.req.method();
  facts.target = ex.req.target();
  facts.status = ex.status;
  // A new session's id, and a session's (a pod may repeat it; another one is refused).
  if (ex.route.cls == RequestClass::new_session || ex.route.cls == RequestClass::session) {
    facts.session_header = upstream_.head().session_id;
  }
  if (ex.route.cls == RequestClass::session && ex.rec) {
    facts.session = ex.rec->backend_session.empty() ? std::string_view(ex.route.session_id)
                                                    : std::string_view(ex.rec->backend_session);
  }
  facts.may_recover = may_recover;
  // With the redis store the cached copy has no initialize: session_lost reads the record.
  facts.recoverable = can_recover(cfg.sessions.on_lost, ex.rec.get(), ex.route.from_query, ex.req.method(),
                                  ctx_.sessions.init_in_store());
  facts.legacy_sse_path = cfg.legacy_sse_path;
  return facts;
}

net::awaitable<Next> Connection::on_response_head(Exchange& ex, ResponseAction action) {
  switch (action) {
    case ResponseAction::relay:
      break;
    case ResponseAction::tap_legacy_stream:
    case ResponseAction::record_new_session: {
      if (ex.cfg->sessions.binding != BindingKind::none && ex.principal.empty()) {
        co_return co_await refuse_unbound_session(ex, action);  // session_ids.cpp
      }
      if (action == ResponseAction::tap_legacy_stream) break;  // recorded as its endpoint event passes
      co_return co_await record_new_session(ex);               // session_ids.cpp
    }
    case ResponseAction::reject_renamed_session:
      co_return co_await refuse_renamed_session(ex);
    case ResponseAction::reject_bad_session_id:
      upstream_.abandon();
      log_event(spdlog::level::warn, "pod sent an invalid Mcp-Session-Id",
                {{"conn", client_.conn()}, {"pod", std::to_string(ex.ordinal)}});
      co_return Next::reply(Refusal{502, -32603, "MCP server sent an invalid session id"});
    case ResponseAction::recover:
      // The pod no longer knows the session (it restarted, or dropped it): the pod's 404
      // is not relayed; the session moves to a new pod and the request is replayed there.
      upstream_.abandon();
      co_return Next::lost(LostCause::pod_answered_404);
    case ResponseAction::forget_deleted:
    case ResponseAction::forget_lost:
      // DELETE ended it, or the pod no longer knows it: either way the record goes.
      if (action == ResponseAction::forget_lost) {
        ctx_.metrics.count_lost(LostCause::pod_answered_404);
      } else {
        ctx_.metrics.sessions_deleted.fetch_add(1, std::memory_order_relaxed);
      }
      co_await ctx_.sessions.forget(ex.route.session_id, ex.ordinal);
      break;
  }
  co_return Next::go_on();
}

net::awaitable<Outcome> Connection::send_local_reply(Exchange& ex, const Refusal& r) {
  return send_local_reply(ex, r, ex.keep_alive);
}

net::awaitable<Outcome> Connection::send_local_reply(Exchange& ex, const Refusal& r, bool keep_alive) {
  // The request's id is echoed so the client can match the error to its call.
  const JsonRpcInfo info = inspect_jsonrpc(ex.req.body);
  const bool keep = client_keep_alive(keep_alive, ctx_.draining.load(std::memory_order_relaxed), false);
  const std::string body = jsonrpc_error_body(r.code, r.message, info.id_json);
  std::string bytes;
  LocalReplyHead head;
  head.status = r.status;
  head.reason = beast::http::obsolete_reason(static_cast<beast::http::status>(r.status));
  head.http11 = ex.req.version() >= 11;
  head.keep_alive = keep;
  head.retry_after = r.retry_after;
  head.body_size = body.size();
  write_local_reply_head(bytes, head);
  bytes += body;
  const bool written = co_await client_.write(bytes, ex.cfg->limits.write_timeout);
  co_return Outcome::local_reply(r.status, written && keep);
}

}  // namespace mcpproxy
