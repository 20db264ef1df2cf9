// Stage: the exchange with the pod up to its response head. Acquires a pod connection,
// sends the edited request head and the body, reads the response head (interim 1xx
// answers dropped), under two named retry rules. The stage's two waits (the rest of a
// write the socket did not take, the pod's answer) are in Connection::proxy's loop
// (downstream.cpp), so that a request has no coroutine frame for this stage.
#include <boost/asio/write.hpp>

#include "mcpproxy/dns.hpp"
#include "mcpproxy/downstream.hpp"
#include "mcpproxy/io_ring.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {
namespace {

// Retry rule 1: a placed request (a new session, a sessionless request) whose pod cannot be
// connected to is placed again, once, on another pod; the failed pod is ejected first, so
// placement skips it. A session's request has one pod and is not placed again.
int connect_attempts(const Classified& route, int replicas) {
  return route.cls == RequestClass::session ? 1 : std::min(2, replicas);
}

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

bool Connection::connect_failed(Exchange& ex, const error_code& ec, UpstreamTry& t) {
  on_connect_failure(ex, ec);
  // The proxy's own trouble: another pod would not help, and no session is lost.
  if (ex.connect_failure == ConnectFailure::local) {
    t.refusal = kProxyOverloaded;
    t.result = ex.route.cls == RequestClass::session ? UpstreamResult::unreachable : UpstreamResult::refused;
    return false;
  }
  if (++t.attempt < connect_attempts(ex.route, ex.cfg->backend.replicas)) {
    ex.ordinal = place_new(*ex.cfg);
    return true;
  }
  const bool name = ex.connect_failure == ConnectFailure::no_such_pod || ex.connect_failure == ConnectFailure::dns;
  t.refusal = name ? dns_refusal(ec) : Refusal{502, -32603, "MCP server unreachable"};
  t.result = UpstreamResult::unreachable;
  return false;
}

bool Connection::attempt_ended(Exchange& ex, bool reused, const error_code& ec, bool malformed, UpstreamTry& t) {
  stop_waiting();
  if (!ec && !malformed) {
    ctx_.health.clear(ex.ordinal);
    ctx_.metrics.upstream_duration(ex.ordinal)
        .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t.sent_at).count());
    t.result = UpstreamResult::head;
    return false;
  }
  end_watch();
  ex.upstream.reset();
  if (client_gone()) {
    t.result = UpstreamResult::client_gone;
    return false;
  }
  if (!malformed && !t.stale_retry_used && UpstreamPool::was_stale(reused, upstream_buffer_.size() != 0, ec)) {
    t.stale_retry_used = true;
    return true;
  }
  t.refusal = on_exchange_failure(ex, ec, malformed);
  t.result = UpstreamResult::refused;
  return false;
}

void Connection::on_connect_failure(Exchange& ex, const error_code& ec) {
  ex.connect_failure = classify_connect_failure(ec);
  if (ex.connect_failure == ConnectFailure::local) {
    // Nothing is wrong with the pod: it stays in placement.
    ctx_.metrics.count_upstream_error(ex.ordinal, UpstreamError::local);
    log_event(spdlog::level::warn, "cannot open a connection to a pod (the proxy's own limit)",
              {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}, {"error", ec.message()}});
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  // A name that cannot be looked up: counted and logged (once per change) by the pool; a
  // name gone (NXDOMAIN) is out of placement there, and counts toward backend.dns_gone_grace.
  if (ex.connect_failure == ConnectFailure::dns) return;
  if (ex.connect_failure == ConnectFailure::no_such_pod) {
    ex.refusing_for = ctx_.health.name_gone_for(ex.ordinal, now);
    return;
  }
  ctx_.metrics.count_upstream_error(ex.ordinal,
                                    ec == beast::error::timeout ? UpstreamError::timeout : UpstreamError::connect);
  ctx_.health.eject(ex.ordinal, now + ex.cfg->backend.eject_cooldown);
  ex.refusing_for = ctx_.health.refused(ex.ordinal, now);
  log_event(spdlog::level::warn, "pod unreachable",
            {{"conn", std::to_string(id_)},
             {"pod", std::to_string(ex.ordinal)},
             {"error", ec.message()},
             {"refusing_for_ms",
              std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ex.refusing_for).count())}});
}

Refusal Connection::on_exchange_failure(const Exchange& ex, const error_code& ec, bool malformed) {
  const bool timed_out = expired(Wait::upstream);
  ctx_.metrics.count_upstream_error(ex.ordinal, timed_out ? UpstreamError::timeout : UpstreamError::io);
  const char* what = "pod exchange failed";
  if (timed_out) {
    what = "pod response timed out";
  } else if (malformed) {
    what = "pod sent a malformed response head";
  }
  log_event(spdlog::level::warn, what,
            {{"conn", std::to_string(id_)},
             {"pod", std::to_string(ex.ordinal)},
             {"error", malformed ? std::string("malformed") : ec.message()}});
  return timed_out ? kPodTimedOut : kPodFailed;
}

bool Connection::send_request(Exchange& ex, std::array<net::const_buffer, 2>& request_bytes, error_code& ec) {
  const Config& cfg = *ex.cfg;
  tcp::socket& up = *ex.upstream;
  upstream_buffer_.clear();
  expect_within(Wait::upstream, cfg.backend.response_timeout, &up);
  begin_watch(&up);  // armed by the worker's tick if the exchange outlasts it

  UpstreamHeadEdits edits;
  edits.pod_authority = ctx_.pool.address(ex.ordinal).authority;
  edits.rewrite_host = cfg.backend.rewrite_host;
  edits.trust_forwarded = cfg.trust_forwarded_headers;
  edits.peer_ip = peer_ip_;
  // After a re-initialize the pod knows the session by its own id; the client keeps its.
  if (ex.rec && !ex.route.from_query && !ex.rec->backend_session.empty()) edits.pod_session = ex.rec->backend_session;
  edits.drop_session_header = ex.route.drop_session_header;
  edits.body_size = ex.req.body.size();
  if (ex.request_id.generated()) edits.added_request_id = ex.request_id.view();
  head_size_ = write_upstream_head(head_buffer_, ex.req.head, edits);
  request_bytes = {net::buffer(head_buffer_.data(), head_size_), net::buffer(ex.req.body.data(), ex.req.body.size())};
  const std::size_t sent = ctx_.ring != nullptr ? 0 : send_now(up, request_bytes.data(), request_bytes.size(), ec);
  if (ec || sent == head_size_ + ex.req.body.size()) return true;
  consume_front(request_bytes, sent);
  return false;
}

http1::Status Connection::read_response_head(const Exchange& ex, bool& malformed) {
  const Config& cfg = *ex.cfg;
  http1::Head& res = response_;
  if (upstream_buffer_.size() == 0) return http1::Status::need_more;  // nothing to parse yet
  for (;;) {
    const auto st =
        http1::parse_response(view(upstream_buffer_), cfg.backend.max_response_header_size, ex.req.method(), res);
    if (st == http1::Status::complete && res.status >= 100 && res.status < 200 && res.status != 101) {
      upstream_buffer_.consume(res.size);  // an interim response (103 Early Hints): not relayed
      continue;
    }
    if (st == http1::Status::complete && res.status != 101) return st;
    if (st != http1::Status::need_more) malformed = true;
    return st;
  }
}

}  // namespace mcpproxy
