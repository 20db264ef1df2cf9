// Stage: the exchange with the pod up to its response head (upstream_exchange.hpp).
// Acquires a pod connection, sends the request head and the body, reads the response head
// (interim 1xx answers dropped), under the two named retry rules (retry_rules.hpp). Each
// step returns what it needs next; the driver waits.
#include "path/upstream_exchange.hpp"

#include "core/decide/placement.hpp"
#include "core/http/proxy_headers.hpp"
#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/dns.hpp"
#include "io/io_ring.hpp"
#include "store/sessions.hpp"

namespace mcpproxy {
namespace {

// The 503 of a name that cannot be looked up says why.
Refusal dns_refusal(const error_code& ec) {
  switch (dns_failure_of(ec)) {
    case DnsFailure::nxdomain:
      return kPodNameGone;
    case DnsFailure::servfail:
      return kPodNameServfail;
    case DnsFailure::no_server:
      return kPodNameNoServer;
    case DnsFailure::none:
    case DnsFailure::timeout:
      break;
  }
  return kPodNameTimeout;
}

// The pod closed a connection before any byte of an answer (retry rule 2's case).
bool closed_by_pod(const error_code& ec) {
  return ec == net::error::eof || ec == net::error::connection_reset || ec == net::error::broken_pipe;
}

}  // namespace

ConnectFailure classify_connect_failure(const error_code& ec) {
  // The name no longer resolves: the pod is gone, or being replaced (a headless Service drops
  // a pod's name until its replacement is ready).
  if (ec == net::error::host_not_found) return ConnectFailure::no_such_pod;
  if (ec.category() == dns_category()) {
    return dns_failure_of(ec) == DnsFailure::nxdomain ? ConnectFailure::no_such_pod : ConnectFailure::dns;
  }
  // DNS that cannot answer now, and the proxy's own exhaustion, say nothing about the pod.
  if (ec == net::error::host_not_found_try_again || ec == net::error::no_recovery || ec == net::error::no_descriptors ||
      ec == net::error::no_buffer_space || ec == net::error::no_memory ||
      ec == std::errc::too_many_files_open_in_system || ec == std::errc::address_not_available) {
    return ConnectFailure::local;
  }
  return ConnectFailure::refused;
}

int place_new(ConnectionContext& ctx, const Config& cfg, int avoid) {
  const auto now = std::chrono::steady_clock::now();
  return place(
      cfg.placement, cfg.backend.replicas,
      [&](int o) { return (o != avoid || cfg.backend.replicas == 1) && ctx.health.placeable(o, now); },
      [&](int o) { return ctx.sessions.sessions_on(o); }, ctx.rng);
}

UpstreamExchange::Need UpstreamExchange::start(Exchange& ex) {
  own_ = false;
  cfg_ = ex.cfg.get();
  method_ = ex.req.method();
  body_ = ex.req.body;
  limit_ = cfg_->backend.response_timeout;
  ordinal_ = ex.ordinal;
  retry_ = RetryRules();
  result_ = Result::refused;
  connect_failure_ = ConnectFailure::refused;
  refusing_for_ = {};
  return attempt(&ex);
}

UpstreamExchange::Need UpstreamExchange::start_own(int ordinal, std::unique_ptr<tcp::socket> kept,
                                                   std::string_view method, std::string_view body, const Config& cfg,
                                                   duration limit) {
  own_ = true;
  cfg_ = &cfg;
  method_ = method;
  body_ = body;
  limit_ = limit;
  ordinal_ = ordinal;
  retry_ = RetryRules();
  result_ = Result::refused;
  if (!kept) return attempt(nullptr);
  pod_ = std::move(kept);
  reused_ = false;  // the errand's own connection: its failure is no stale pooled one
  return send(nullptr);
}

net::awaitable<UpstreamExchange::OwnAnswer> UpstreamExchange::run_own(int ordinal, std::unique_ptr<tcp::socket> kept,
                                                                      std::string_view method, std::string_view body,
                                                                      const Config& cfg, duration limit,
                                                                      std::size_t max_body, bool keep_body) {
  OwnAnswer out;
  Need need = start_own(ordinal, std::move(kept), method, body, cfg, limit);
  while (need != Need::done) {
    if (need == Need::connect) {
      UpstreamPool::Lease lease = co_await ctx_.pool.connect(ordinal);
      need = connected(nullptr, std::move(lease));
    } else if (need == Need::write) {
      auto [ec, n] = co_await write_all(nullptr, *pod_, unsent_);
      need = written(nullptr, ec);
    } else {
      auto [ec, n] = co_await read_some(nullptr, *pod_, read_space());
      need = received(nullptr, ec, n);
    }
  }
  out.result = result_;
  if (result_ == Result::head) {
    out.status = head_in_.status;
    if (const auto sid = head_in_.get(http1::FieldId::mcp_session_id)) out.session_id = std::string(*sid);
    const auto type = head_in_.get(http1::FieldId::content_type);
    out.sse = type && http1::starts_with_ci(*type, "text/event-stream");
    co_await read_own_body(out, max_body, keep_body);
  }
  client_.stop_waiting();
  co_return out;
}

net::awaitable<void> UpstreamExchange::read_own_body(OwnAnswer& out, std::size_t max_body, bool keep_body) {
  const http1::Head& res = head_in_;
  http1::BodyFraming framing(res);
  std::size_t seen = 0;
  const auto take = [&](char* p, std::size_t n) {
    const std::size_t payload = framing.take(p, n);
    seen += payload;
    if (keep_body) out.body.append(p, payload);
  };
  if (buffer_.size() > res.size) take(static_cast<char*>(buffer_.data().data()) + res.size, buffer_.size() - res.size);
  buffer_.consume(buffer_.size());
  while (!framing.done && !framing.error && seen <= max_body) {
    auto [ec, n] = co_await pod_->async_read_some(buffer_.prepare(16384), use_tuple);
    if (ec == net::error::eof && framing.framing == http1::Framing::close) framing.done = true;
    if (ec) break;
    buffer_.commit(n);
    take(static_cast<char*>(buffer_.data().data()), n);
    buffer_.consume(n);
  }
  out.whole = framing.done && !framing.error;
  out.reusable = out.whole && !framing.extra && res.keep_alive && framing.framing != http1::Framing::close;
}

UpstreamExchange::Need UpstreamExchange::attempt(Exchange* ex) {
  // A pooled connection without a coroutine, the rule; the retry after a stale pooled
  // connection takes a new one.
  UpstreamPool::Lease lease;
  if (retry_.fresh_connection() || !ctx_.pool.take_idle(ordinal_, lease)) return Need::connect;
  return connected(ex, std::move(lease));
}

UpstreamExchange::Need UpstreamExchange::connected(Exchange* ex, UpstreamPool::Lease lease) {
  if (lease.ec) {
    if (ex != nullptr) return connect_failed(*ex, lease.ec);
    ctx_.health.eject(ordinal_, std::chrono::steady_clock::now() + cfg_->backend.eject_cooldown);
    return done(Result::unreachable);
  }
  pod_ = std::move(lease.stream);
  reused_ = lease.reused;
  return send(ex);
}

UpstreamExchange::Need UpstreamExchange::send(Exchange* ex) {
  buffer_.clear();
  client_.expect_within(ClientLink::Wait::upstream, limit_, pod_.get());
  if (ex == nullptr) {
    unsent_ = {net::buffer(head_), net::buffer(body_.data(), body_.size())};
    return Need::write;
  }
  client_.begin_watch(pod_.get());  // armed by the worker's tick if the exchange outlasts it
  sent_at_ = std::chrono::steady_clock::now();
  write_head(*ex);
  unsent_ = {net::buffer(head_.data(), head_size_), net::buffer(body_.data(), body_.size())};
  error_code ec;
  const std::size_t sent = ctx_.ring != nullptr ? 0 : send_now(*pod_, unsent_.data(), unsent_.size(), ec);
  if (ec) return attempt_ended(ex, ec, false);
  if (sent == head_size_ + body_.size()) return Need::read;
  consume_front(unsent_, sent);
  return Need::write;
}

void UpstreamExchange::write_head(Exchange& ex) {
  const Config& cfg = *cfg_;
  UpstreamHeadEdits edits;
  edits.pod_authority = ctx_.pool.address(ordinal_).authority;
  edits.rewrite_host = cfg.backend.rewrite_host;
  edits.trust_forwarded = cfg.trust_forwarded_headers;
  edits.peer_ip = client_.peer_ip();
  // After a re-initialize the pod knows the session by its own id; the client keeps its.
  if (ex.rec && !ex.route.from_query && !ex.rec->backend_session.empty()) edits.pod_session = ex.rec->backend_session;
  edits.drop_session_header = ex.route.drop_session_header;
  edits.body_size = body_.size();
  if (ex.request_id.generated()) edits.added_request_id = ex.request_id.view();
  head_size_ = write_upstream_head(head_, ex.req.head, edits);
}

UpstreamExchange::Need UpstreamExchange::written(Exchange* ex, const error_code& ec) {
  if (ec) return attempt_ended(ex, ec, false);
  return Need::read;
}

UpstreamExchange::Need UpstreamExchange::received(Exchange* ex, const error_code& ec, std::size_t n) {
  if (ec) return attempt_ended(ex, ec, false);
  buffer_.commit(n);
  bool malformed = false;
  if (read_head(malformed) == http1::Status::need_more && !malformed) return Need::read;
  return attempt_ended(ex, {}, malformed);
}

http1::Status UpstreamExchange::read_head(bool& malformed) {
  http1::Head& res = head_in_;
  for (;;) {
    const auto st = http1::parse_response(view(buffer_), cfg_->backend.max_response_header_size, method_, res);
    if (st == http1::Status::complete && res.status >= 100 && res.status < 200 && res.status != 101) {
      buffer_.consume(res.size);  // an interim response (103 Early Hints): not relayed
      if (buffer_.size() == 0) return http1::Status::need_more;
      continue;
    }
    if (st == http1::Status::complete && res.status != 101) return st;
    if (st != http1::Status::need_more) malformed = true;
    return st;
  }
}

UpstreamExchange::Need UpstreamExchange::attempt_ended(Exchange* ex, const error_code& ec, bool malformed) {
  const bool ok = !ec && !malformed;
  if (ok && ex == nullptr) return done(Result::head);  // its deadline holds while its body is read
  client_.stop_waiting();
  if (ok) {
    ctx_.health.clear(ordinal_);
    ctx_.metrics.upstream_duration(ordinal_).observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - sent_at_).count());
    return done(Result::head);
  }
  if (ex != nullptr) client_.end_watch();
  pod_.reset();
  if (ex != nullptr && client_.client_gone()) return done(Result::client_gone);
  if (retry_.send_again(reused_, buffer_.size() != 0, malformed, closed_by_pod(ec))) return attempt(ex);
  if (ex != nullptr) refusal_ = on_exchange_failure(*ex, ec, malformed);
  return done(Result::refused);
}

UpstreamExchange::Need UpstreamExchange::connect_failed(Exchange& ex, const error_code& ec) {
  on_connect_failure(ex, ec);
  // The proxy's own trouble: another pod would not help, and no session is lost.
  if (connect_failure_ == ConnectFailure::local) {
    refusal_ = kProxyOverloaded;
    return done(ex.route.cls == RequestClass::session ? Result::unreachable : Result::refused);
  }
  if (retry_.place_again(ex.route, cfg_->backend.replicas)) {
    // Never on the pod of a key another identity holds (task_routing.hpp).
    ex.ordinal = ordinal_ = place_new(ctx_, *cfg_, ex.tasks.avoid());
    if (ex.tasks.avoid() < 0 || ordinal_ != ex.tasks.avoid()) return attempt(&ex);
  }
  const bool name = connect_failure_ == ConnectFailure::no_such_pod || connect_failure_ == ConnectFailure::dns;
  refusal_ = name ? dns_refusal(ec) : Refusal{502, -32603, "MCP server unreachable"};
  return done(Result::unreachable);
}

void UpstreamExchange::on_connect_failure(Exchange& ex, const error_code& ec) {
  connect_failure_ = classify_connect_failure(ec);
  if (connect_failure_ == ConnectFailure::local) {
    // Nothing is wrong with the pod: it stays in placement.
    ctx_.metrics.count_upstream_error(ordinal_, UpstreamError::local);
    log_event(spdlog::level::warn, "cannot open a connection to a pod (the proxy's own limit)",
              {{"conn", client_.conn()}, {"pod", std::to_string(ordinal_)}, {"error", ec.message()}});
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  // A name that cannot be looked up: counted and logged (once per change) by the pool; a
  // name gone (NXDOMAIN) is out of placement there, and counts toward backend.dns_gone_grace.
  if (connect_failure_ == ConnectFailure::dns) return;
  if (connect_failure_ == ConnectFailure::no_such_pod) {
    refusing_for_ = ctx_.health.name_gone_for(ordinal_, now);
    return;
  }
  ctx_.metrics.count_upstream_error(ordinal_,
                                    ec == beast::error::timeout ? UpstreamError::timeout : UpstreamError::connect);
  ctx_.health.eject(ordinal_, now + ex.cfg->backend.eject_cooldown);
  refusing_for_ = ctx_.health.refused(ordinal_, now);
  log_event(spdlog::level::warn, "pod unreachable",
            {{"conn", client_.conn()},
             {"pod", std::to_string(ordinal_)},
             {"error", ec.message()},
             {"refusing_for_ms",
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(refusing_for_).count())}});
}

Refusal UpstreamExchange::on_exchange_failure(const Exchange& ex, const error_code& ec, bool malformed) {
  const bool timed_out = client_.expired(ClientLink::Wait::upstream);
  ctx_.metrics.count_upstream_error(ex.ordinal, timed_out ? UpstreamError::timeout : UpstreamError::io);
  const char* what = "pod exchange failed";
  if (timed_out) {
    what = "pod response timed out";
  } else if (malformed) {
    what = "pod sent a malformed response head";
  }
  log_event(spdlog::level::warn, what,
            {{"conn", client_.conn()},
             {"pod", std::to_string(ex.ordinal)},
             {"error", malformed ? std::string("malformed") : ec.message()}});
  return timed_out ? kPodTimedOut : kPodFailed;
}

Next UpstreamExchange::failed(const Exchange& ex) {
  switch (result_) {
    case Result::head:
      return Next::go_on();
    case Result::client_gone:
      ctx_.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
      return Next::done(Outcome::client_gone());
    case Result::unreachable:
      // The session's pod cannot be reached: lost only when it is gone (route.hpp).
      if (ex.route.cls == RequestClass::session) {
        const BackendConfig& b = ex.cfg->backend;
        const bool name_gone = connect_failure_ == ConnectFailure::no_such_pod;
        const Unreachable u =
            judge_unreachable(connect_failure_, refusing_for_, name_gone ? b.name_grace() : b.unreachable_grace);
        if (u.lost) return Next::lost(u.cause);
        // A name's failure answers its own 503 (why it cannot be looked up).
        const bool by_name = name_gone || connect_failure_ == ConnectFailure::dns;
        return Next::reply(by_name ? refusal_ : u.refusal);
      }
      break;
    case Result::refused:
      break;
  }
  return Next::reply(refusal_);
}

}  // namespace mcpproxy
