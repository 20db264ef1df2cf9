#pragma once
// Connections to pods: one keep-alive pool per pod per worker thread, with a short DNS cache
// (dns.hpp: asynchronous, each lookup bounded by backend.dns_timeout; an IP literal is never
// looked up). While DNS fails (not NXDOMAIN) the last addresses serve for
// backend.dns_serve_stale; failed lookups of a name back off (200 ms doubling up to
// backend.dns_retry_max); each lookup's result goes to PodHealth (placement, /pods).
// Lives on one worker's io_context; never touched from another thread.
//
// A request should not wait for what could have been done before it came: each pod keeps
// `backend.warm_connections` connections open ahead of need (made in the background, and
// made again when a pod or the idle timeout closes them), and the name of a pod in use is
// looked up again before its cache entry runs out, while the old one is still served.

#include <chrono>
#include <deque>
#include <memory>
#include <tuple>
#include <vector>

#include "core/config/config.hpp"
#include "core/config/url_template.hpp"
#include "io/dns.hpp"
#include "io/net.hpp"

namespace mcpproxy {

struct Metrics;
class PodHealth;

class UpstreamPool {
 public:
  UpstreamPool(net::io_context& ioc, Metrics& metrics, PodHealth& health);

  // A new config (SIGHUP): connections to pods whose address changed are dropped. The
  // addresses come computed with the config (BackendConfig::pods): nothing here throws.
  void configure(std::shared_ptr<const Config> cfg);

  // `ordinal` is below the replicas of this config or an earlier one.
  const PodAddress& address(int ordinal) { return pod(ordinal).addr; }

  struct Lease {
    error_code ec;
    std::unique_ptr<tcp::socket> stream;
    bool reused = false;
  };
  // An idle pooled connection still open (false when there is none: no wait), and a new
  // connection (resolve, connect). The upstream exchange (upstream_exchange.hpp) takes the
  // first when it may (not for the retry after a stale pooled one), else the second.
  bool take_idle(int ordinal, Lease& lease);
  net::awaitable<Lease> connect(int ordinal);

  // Back into the pool when the exchange ended cleanly and both sides keep it alive.
  void release(int ordinal, std::unique_ptr<tcp::socket> stream);

  // Closes idle connections past their idle timeout or closed by the pod.
  void prune();
  void clear();

  // Called every `period` by the worker (not while it drains): opens the warm connections
  // that are missing and refreshes the names of pods in use ahead of their expiry, each in
  // a coroutine of its own. A pod whose warm connect failed is not tried again before
  // `backend.eject_cooldown` (a request's own connect succeeding ends that wait).
  void maintain(duration period);

 private:
  struct Idle {
    std::unique_ptr<tcp::socket> stream;
    std::chrono::steady_clock::time_point since;
  };
  struct Pod {
    PodAddress addr;
    std::uint16_t port = 0;  // addr.port's number
    std::vector<Idle> idle;
    std::vector<tcp::endpoint> endpoints;
    std::chrono::steady_clock::time_point resolved_until{};  // the answer's TTL
    std::chrono::steady_clock::time_point stale_until{};     // usable while DNS fails
    std::chrono::steady_clock::time_point retry_at{};        // no lookup before (backoff)
    duration backoff{};
    DnsFailure failure = DnsFailure::none;  // of the last lookup
    bool literal = false;                   // an IP address: never looked up
    // Which address this is: a coroutine that finds another when it resumes (a reload
    // changed the address) leaves the pod alone.
    std::uint64_t generation = 0;
    bool used = false;        // acquired since the last lookup: worth refreshing ahead of expiry
    bool resolving = false;   // a background lookup is in flight
    std::size_t warming = 0;  // warm connects in flight
    std::chrono::steady_clock::time_point warm_retry_at{};
  };
  Pod& pod(int ordinal);
  enum class Why : std::uint8_t { request, background };
  // Looks the pod's name up and caches the answer for its TTL (within the config's bounds).
  net::awaitable<error_code> resolve(int ordinal, Why why);
  // Notes a lookup's result: backoff, PodHealth, metric, a log line when the reason changes.
  void note_lookup(int ordinal, Pod& p, const DnsAnswer& a);
  // The pod's addresses are fresh, or looked up now, or stale ones stand in for a failing
  // lookup (backend.dns_serve_stale): no error then.
  net::awaitable<error_code> addresses(int ordinal, Why why);
  // The stale addresses may stand in for a failing lookup.
  bool may_serve_stale(const Pod& p, std::chrono::steady_clock::time_point now) const;
  // A new connection to the pod, its name looked up first when the cache has run out.
  net::awaitable<Lease> open(int ordinal, Why why);
  net::awaitable<void> warm(int ordinal, std::uint64_t generation);
  net::awaitable<void> refresh(int ordinal, std::uint64_t generation);

  net::io_context& ioc_;
  Metrics& metrics_;
  PodHealth& health_;
  std::uint64_t generations_ = 0;
  DnsResolver dns_;
  std::shared_ptr<const Config> cfg_;
  std::deque<Pod> pods_;  // deque: growing it never moves a pod (or its pooled sockets)
};

}  // namespace mcpproxy
