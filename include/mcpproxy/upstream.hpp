#pragma once
// Connections to pods: one keep-alive pool per pod per worker thread, with a short DNS cache.
// Lives on one worker's io_context; never touched from another thread.

#include <chrono>
#include <deque>
#include <memory>
#include <tuple>
#include <vector>

#include "mcpproxy/config.hpp"
#include "mcpproxy/net.hpp"
#include "mcpproxy/url_template.hpp"

namespace mcpproxy {

class UpstreamPool {
 public:
  explicit UpstreamPool(net::io_context& ioc);

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
  // A pooled connection when one is idle and still open, else a new one (resolve, connect).
  net::awaitable<Lease> acquire(int ordinal);

  // Back into the pool when the exchange ended cleanly and both sides keep it alive.
  void release(int ordinal, std::unique_ptr<tcp::socket> stream);

  // Closes idle connections past their idle timeout or closed by the pod.
  void prune();
  void clear();

 private:
  struct Idle {
    std::unique_ptr<tcp::socket> stream;
    std::chrono::steady_clock::time_point since;
  };
  struct Pod {
    PodAddress addr;
    std::vector<Idle> idle;
    tcp::resolver::results_type endpoints;
    std::chrono::steady_clock::time_point resolved_until{};
  };
  Pod& pod(int ordinal);

  net::io_context& ioc_;
  tcp::resolver resolver_;
  std::shared_ptr<const Config> cfg_;
  std::deque<Pod> pods_;  // deque: growing it never moves a pod (or its pooled sockets)
};

}  // namespace mcpproxy
