#include "io/upstream.hpp"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>

#include "core/decide/placement.hpp"
#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"

namespace mcpproxy {
namespace {

// True when the pod closed (or reset) a pooled connection while it sat idle: a
// non-blocking peek sees end-of-stream or an error instead of "would block".
bool closed_by_peer(tcp::socket& s) {
  char c = 0;
  const ssize_t n = ::recv(s.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;
  if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
  return true;  // unsolicited bytes from an idle pod: do not trust the connection
}

}  // namespace

UpstreamPool::UpstreamPool(net::io_context& ioc, Metrics& metrics, PodHealth& health)
    : ioc_(ioc), metrics_(metrics), health_(health), dns_(ioc) {}

void UpstreamPool::configure(std::shared_ptr<const Config> cfg) {
  cfg_ = std::move(cfg);
  const auto& addrs = cfg_->backend.pods;
  // Never shrinks: an exchange in progress on an ordinal a reload removed keeps a valid
  // address; only its pooled connections go.
  if (pods_.size() < addrs.size()) pods_.resize(addrs.size());
  for (std::size_t i = 0; i < pods_.size(); ++i) {
    Pod& p = pods_[i];
    if (i >= addrs.size()) {
      p.idle.clear();
    } else if (p.addr != addrs[i] || p.generation == 0) {
      // The old address's lookups say nothing of the new one: a name that was gone
      // (NXDOMAIN) must not keep the pod out of placement once it is an IP literal or
      // another name (the next lookup, if any, notes the new name's state).
      if (p.generation != 0) health_.forget_name(static_cast<int>(i));
      p = Pod{};
      p.addr = addrs[i];
      // Validated with the config (parse_pod_url); 0 (never at this point) fails the connect.
      p.port = port_number(p.addr.port);
      p.generation = ++generations_;
      // An IP literal is its own answer, for good: no lookup, no DNS state.
      error_code ec;
      const auto ip = net::ip::make_address(p.addr.host, ec);
      if (!ec) {
        p.literal = true;
        p.endpoints = {tcp::endpoint(ip, p.port)};
        p.resolved_until = std::chrono::steady_clock::time_point::max();
      }
    }
  }
}

UpstreamPool::Pod& UpstreamPool::pod(int ordinal) { return pods_[static_cast<std::size_t>(ordinal)]; }

bool UpstreamPool::take_idle(int ordinal, Lease& lease) {
  Pod& p = pod(ordinal);
  p.used = true;
  const auto now = std::chrono::steady_clock::now();
  while (!p.idle.empty()) {
    Idle idle = std::move(p.idle.back());
    p.idle.pop_back();
    // A connection used within the last second is taken without the peek (a syscall per
    // request): if the pod closed it just now, nothing reached the pod and the request is
    // sent again on a fresh connection (retry_rules.hpp).
    const auto idle_for = now - idle.since;
    if (idle_for < cfg_->backend.idle_connection_timeout &&
        (idle_for < std::chrono::seconds(1) || !closed_by_peer(*idle.stream))) {
      lease.stream = std::move(idle.stream);
      lease.reused = true;
      return true;
    }
  }
  return false;
}

net::awaitable<UpstreamPool::Lease> UpstreamPool::connect(int ordinal) {
  pod(ordinal).used = true;
  Lease lease = co_await open(ordinal, Why::request);
  co_return lease;
}

net::awaitable<error_code> UpstreamPool::resolve(int ordinal, Why why) {
  const std::string host = pod(ordinal).addr.host;
  const std::uint16_t port = pod(ordinal).port;
  const std::uint64_t generation = pod(ordinal).generation;
  if (pod(ordinal).literal) co_return error_code{};
  // Backing off after a failure: the last reason stands until the next try is due.
  if (std::chrono::steady_clock::now() < pod(ordinal).retry_at) co_return make_error_code(pod(ordinal).failure);
  metrics_.dns_lookups[static_cast<int>(why)].fetch_add(1, std::memory_order_relaxed);
  const auto cfg = cfg_;
  const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(cfg->backend.dns_timeout);
  const DnsAnswer a = co_await dns_.lookup(host, port, limit);
  // The pod vector may grow while this coroutine waits: the pod is looked up again.
  Pod& p = pod(ordinal);
  if (p.generation != generation) co_return make_error_code(a.failure);
  note_lookup(ordinal, p, a);
  if (a.failure != DnsFailure::none) co_return make_error_code(a.failure);
  const BackendConfig& b = cfg->backend;
  const duration ttl = std::clamp<duration>(a.ttl, std::min(b.dns_min_ttl, b.dns_cache_ttl), b.dns_cache_ttl);
  p.endpoints = a.endpoints;
  p.resolved_until = std::chrono::steady_clock::now() + ttl;
  p.stale_until = p.resolved_until + b.dns_serve_stale;
  p.used = false;
  co_return error_code{};
}

void UpstreamPool::note_lookup(int ordinal, Pod& p, const DnsAnswer& a) {
  const auto now = std::chrono::steady_clock::now();
  p.failure = a.failure;
  if (a.failure == DnsFailure::none) {
    p.backoff = {};
    p.retry_at = {};
  } else {
    metrics_.dns_failures[static_cast<int>(a.failure)].fetch_add(1, std::memory_order_relaxed);
    p.backoff = std::min<duration>(p.backoff.count() == 0 ? std::chrono::milliseconds(200) : p.backoff * 2,
                                   cfg_->backend.dns_retry_max);
    p.retry_at = now + p.backoff;
    // NXDOMAIN is an answer: the name (the pod) is gone, its old address is not served.
    if (a.failure == DnsFailure::nxdomain) p.stale_until = {};
  }
  const auto before = static_cast<DnsFailure>(health_.dns_result(ordinal, static_cast<std::uint8_t>(a.failure), now));
  if (before == a.failure) return;
  log_event(a.failure == DnsFailure::none ? spdlog::level::info : spdlog::level::warn,
            a.failure == DnsFailure::none ? "pod name resolves again" : "pod name lookup failed",
            {{"pod", std::to_string(ordinal)},
             {"name", p.addr.host},
             {"reason", std::string(to_string(a.failure))},
             {"before", std::string(to_string(before))},
             {"serving_stale", may_serve_stale(p, now) ? "true" : "false"}});
}

bool UpstreamPool::may_serve_stale(const Pod& p, std::chrono::steady_clock::time_point now) const {
  return p.failure != DnsFailure::nxdomain && !p.endpoints.empty() && now < p.stale_until;
}

net::awaitable<error_code> UpstreamPool::addresses(int ordinal, Why why) {
  const auto started = std::chrono::steady_clock::now();
  if (started < pod(ordinal).resolved_until) co_return error_code{};
  // While the name's lookups fail, the last addresses serve without waiting on DNS; the
  // background refresh (maintain) keeps trying.
  const bool stale_now = pod(ordinal).failure != DnsFailure::none && may_serve_stale(pod(ordinal), started);
  const error_code ec = stale_now ? make_error_code(pod(ordinal).failure) : co_await resolve(ordinal, why);
  if (!ec) co_return ec;
  if (!may_serve_stale(pod(ordinal), std::chrono::steady_clock::now())) co_return ec;
  metrics_.dns_stale_answers.fetch_add(1, std::memory_order_relaxed);
  co_return error_code{};
}

net::awaitable<UpstreamPool::Lease> UpstreamPool::open(int ordinal, Why why) {
  Lease lease;
  const auto cfg = cfg_;
  const error_code name_ec = co_await addresses(ordinal, why);
  if (name_ec) {
    lease.ec = name_ec;
    co_return lease;
  }
  const auto endpoints = pod(ordinal).endpoints;
  const std::uint64_t generation = pod(ordinal).generation;
  auto stream = std::make_unique<tcp::socket>(ioc_);
  // The connect has its own timer (a connect is rare: pooled connections are the rule).
  // `done` keeps a late expiry from closing a socket that has moved on to an exchange.
  struct ConnectState {
    bool done = false;
    bool expired = false;
  };
  auto state = std::make_shared<ConnectState>();
  net::steady_timer deadline(ioc_);
  deadline.expires_after(cfg->backend.connect_timeout);
  deadline.async_wait([state, sock = stream.get()](error_code ec) {
    if (!ec && !state->done) {
      state->expired = true;
      error_code ignored;
      sock->close(ignored);
    }
  });
  // Each address in turn, the socket opened here: Asio's range connect reports a socket it
  // could not open (EMFILE) as an abort, and that is the proxy's trouble, not the pod's.
  error_code ec = net::error::host_not_found;
  for (const auto& entry : endpoints) {
    error_code open_ec;
    if (stream->is_open()) stream->close(open_ec);
    stream->open(entry.protocol(), open_ec);
    if (open_ec) {
      ec = open_ec;
      break;
    }
    auto [connect_ec] = co_await stream->async_connect(entry, use_tuple);
    ec = connect_ec;
    if (!ec || state->expired) break;
  }
  state->done = true;
  deadline.cancel();
  metrics_.upstream_connects[static_cast<int>(why)][ec ? 1 : 0].fetch_add(1, std::memory_order_relaxed);
  Pod& p = pod(ordinal);
  if (ec) {
    // A pod that moved gets a fresh lookup next time.
    if (p.generation == generation && !p.literal) p.resolved_until = {};
    lease.ec = state->expired ? error_code(beast::error::timeout) : ec;
    co_return lease;
  }
  if (p.generation == generation) p.warm_retry_at = {};  // the pod takes connections again
  error_code ignored;
  stream->set_option(tcp::no_delay(true), ignored);
  lease.stream = std::move(stream);
  co_return lease;
}

net::awaitable<void> UpstreamPool::warm(int ordinal, std::uint64_t generation) {
  Lease lease = co_await open(ordinal, Why::background);
  Pod& p = pod(ordinal);
  if (p.generation != generation) co_return;  // the address changed meanwhile: not this pod's
  --p.warming;
  if (lease.ec) {
    p.warm_retry_at = std::chrono::steady_clock::now() + cfg_->backend.eject_cooldown;
    co_return;
  }
  if (ordinal < cfg_->backend.replicas && p.idle.size() < cfg_->backend.max_idle_connections) {
    p.idle.push_back(Idle{std::move(lease.stream), std::chrono::steady_clock::now()});
  }
}

net::awaitable<void> UpstreamPool::refresh(int ordinal, std::uint64_t generation) {
  // A failed refresh is tried again when its backoff has passed (resolve notes it).
  co_await resolve(ordinal, Why::background);
  Pod& p = pod(ordinal);
  if (p.generation == generation) p.resolving = false;
}

void UpstreamPool::maintain(duration period) {
  if (!cfg_) return;
  const BackendConfig& b = cfg_->backend;
  const auto now = std::chrono::steady_clock::now();
  const std::size_t want = std::min(b.warm_connections, b.max_idle_connections);
  // A quarter of the TTL ahead, and never less than three calls: the old answer is served
  // until the new one is in, and no call lands past the window.
  const duration ahead = std::max(b.dns_cache_ttl / 4, 3 * period);
  for (int o = 0; o < b.replicas; ++o) {
    Pod& p = pod(o);
    // A name in use, ahead of its expiry; or one whose lookups fail, when its backoff is
    // over (so that requests use the stale addresses, or get their 503, without waiting).
    const bool due = p.used ? now >= p.resolved_until - ahead : p.failure != DnsFailure::none;
    if (!p.literal && due && !p.resolving && now >= p.retry_at && (p.used || p.failure != DnsFailure::none)) {
      p.resolving = true;
      net::co_spawn(ioc_, refresh(o, p.generation), net::detached);
    }
    if (p.idle.size() + p.warming < want && now >= p.warm_retry_at) {
      ++p.warming;
      net::co_spawn(ioc_, warm(o, p.generation), net::detached);
    }
  }
}

void UpstreamPool::release(int ordinal, std::unique_ptr<tcp::socket> stream) {
  if (ordinal >= cfg_->backend.replicas) return;  // removed by a reload meanwhile
  Pod& p = pods_[static_cast<std::size_t>(ordinal)];
  if (p.idle.size() >= cfg_->backend.max_idle_connections) return;
  p.idle.push_back(Idle{std::move(stream), std::chrono::steady_clock::now()});
}

void UpstreamPool::prune() {
  const auto now = std::chrono::steady_clock::now();
  for (Pod& p : pods_) {
    std::erase_if(p.idle, [&](Idle& i) {
      return now - i.since >= cfg_->backend.idle_connection_timeout || closed_by_peer(*i.stream);
    });
  }
}

void UpstreamPool::clear() {
  for (Pod& p : pods_) p.idle.clear();
}

}  // namespace mcpproxy
