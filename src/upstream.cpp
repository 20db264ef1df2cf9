#include "mcpproxy/upstream.hpp"

#include <sys/socket.h>

#include <boost/asio/connect.hpp>

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

UpstreamPool::UpstreamPool(net::io_context& ioc) : ioc_(ioc), resolver_(ioc) {}

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
    } else if (p.addr != addrs[i]) {
      p = Pod{};
      p.addr = addrs[i];
    }
  }
}

UpstreamPool::Pod& UpstreamPool::pod(int ordinal) { return pods_[static_cast<std::size_t>(ordinal)]; }

net::awaitable<UpstreamPool::Lease> UpstreamPool::acquire(int ordinal) {
  Lease lease;
  {
    Pod& p = pod(ordinal);
    const auto now = std::chrono::steady_clock::now();
    while (!p.idle.empty()) {
      Idle idle = std::move(p.idle.back());
      p.idle.pop_back();
      // A connection used within the last second is taken without the peek (a syscall per
      // request): if the pod closed it just now, nothing reached the pod and the request is
      // sent again on a fresh connection (Connection::forward).
      const auto idle_for = now - idle.since;
      if (idle_for < cfg_->backend.idle_connection_timeout &&
          (idle_for < std::chrono::seconds(1) || !closed_by_peer(*idle.stream))) {
        lease.stream = std::move(idle.stream);
        lease.reused = true;
        co_return lease;
      }
    }
  }
  // The pod vector may grow while this coroutine waits: look the pod up again after each wait.
  const auto cfg = cfg_;
  if (std::chrono::steady_clock::now() >= pod(ordinal).resolved_until) {
    const PodAddress addr = pod(ordinal).addr;
    // Asio resolves on its own background thread: the worker never blocks on DNS.
    auto [ec, results] = co_await resolver_.async_resolve(addr.host, addr.port, use_tuple);
    if (ec) {
      lease.ec = ec;
      co_return lease;
    }
    Pod& p = pod(ordinal);
    p.endpoints = std::move(results);
    p.resolved_until = std::chrono::steady_clock::now() + cfg->backend.dns_cache_ttl;
  }
  const auto endpoints = pod(ordinal).endpoints;
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
    stream->open(entry.endpoint().protocol(), open_ec);
    if (open_ec) {
      ec = open_ec;
      break;
    }
    auto [connect_ec] = co_await stream->async_connect(entry.endpoint(), use_tuple);
    ec = connect_ec;
    if (!ec || state->expired) break;
  }
  state->done = true;
  deadline.cancel();
  if (ec) {
    pod(ordinal).resolved_until = {};  // a pod that moved gets a fresh lookup next time
    lease.ec = state->expired ? error_code(beast::error::timeout) : ec;
    co_return lease;
  }
  error_code ignored;
  stream->set_option(tcp::no_delay(true), ignored);
  lease.stream = std::move(stream);
  co_return lease;
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
