#pragma once
// Where a new session (or a sessionless request) goes.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string_view>
#include <vector>

#include "core/config/config.hpp"

namespace mcpproxy {

// Picks an ordinal in [0, replicas). least_sessions: power of two random choices over
// healthy pods by `load`; random: uniform over healthy pods. When no pod is healthy every
// pod is a candidate again: refusing all traffic would be worse than trying.
int place(PlacementPolicy policy, int replicas, const std::function<bool(int)>& healthy,
          const std::function<std::int64_t(int)>& load, std::mt19937_64& rng);

// Pods that refused a connection or timed out stay out of placement for a cool-down.
// Shared by all workers; lock-free.
class PodHealth {
 public:
  PodHealth();
  void eject(int ordinal, std::chrono::steady_clock::time_point until);
  // The pod answered: it is placed on again and no longer refusing.
  void clear(int ordinal);
  bool healthy(int ordinal, std::chrono::steady_clock::time_point now) const;
  // The pod refused a connection at `now`: how long it has been refusing since it last
  // answered (0 for the first refusal).
  std::chrono::steady_clock::duration refused(int ordinal, std::chrono::steady_clock::time_point now);
  // Ejected until then (the epoch: not ejected).
  std::chrono::steady_clock::time_point ejected_until(int ordinal) const;
  // Ejections of the pod since start (mcp_proxy_pod_ejections_total).
  std::uint64_t ejections(int ordinal) const;

  // Drained pods get no new sessions; their sessions go on. Drained by the config
  // (backend.draining, replaced on reload) or by the admin listener (kept).
  void drain_from_config(const std::vector<int>& ordinals);
  void drain_from_admin(int ordinal, bool on);
  bool draining(int ordinal) const;
  bool placeable(int ordinal, std::chrono::steady_clock::time_point now) const {
    return healthy(ordinal, now) && !draining(ordinal) && !probe_failing(ordinal) && !name_gone(ordinal);
  }

  // The last lookup of the pod's name (upstream.hpp): 0 resolved, else a DnsFailure (dns.hpp).
  // Returns the one before, so that a change is logged once. A name that does not resolve
  // (NXDOMAIN) takes the pod out of placement and starts the count of name_gone_for.
  std::uint8_t dns_result(int ordinal, std::uint8_t failure, std::chrono::steady_clock::time_point now);
  // The pod's address changed (a reload): what its old name's lookups said is forgotten,
  // the pod is placeable again as far as DNS goes (an IP literal is never looked up).
  void forget_name(int ordinal);
  std::uint8_t dns_failure(int ordinal) const;
  bool name_gone(int ordinal) const;
  // How long the name has not resolved (0: it resolves, or this is the first NXDOMAIN).
  std::chrono::steady_clock::duration name_gone_for(int ordinal, std::chrono::steady_clock::time_point now) const;

  // The active health check (health_check.hpp): a pod that fails it gets no new sessions;
  // its sessions are not moved for it (only a lost session moves).
  void probe_result(int ordinal, bool up);
  bool probe_failing(int ordinal) const;

 private:
  std::unique_ptr<std::atomic<std::uint8_t>[]> drained_;         // bit 0: config, bit 1: admin
  std::unique_ptr<std::atomic<std::int64_t>[]> until_;           // steady-clock ns since epoch
  std::unique_ptr<std::atomic<std::int64_t>[]> refusing_since_;  // 0: answering
  std::unique_ptr<std::atomic<bool>[]> probe_failing_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> ejections_;
  std::unique_ptr<std::atomic<std::uint8_t>[]> dns_failure_;
  std::unique_ptr<std::atomic<std::int64_t>[]> name_gone_since_;  // 0: resolves
};

}  // namespace mcpproxy
