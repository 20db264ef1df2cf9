#pragma once
// The active health check (backend.health_check.*): every interval, GET of the configured
// path on every pod, each probe bounded by the timeout. A pod that fails the configured
// number of probes in a row (no 2xx/3xx answer in time) leaves placement until one passes;
// its sessions keep routing to it (only a lost session moves, route.hpp). Runs on the admin
// context; off while the path is empty.

#include <atomic>
#include <memory>

#include "core/config/config.hpp"
#include "core/decide/placement.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"

namespace mcpproxy {

// One probe: true when the pod answered the GET with a 2xx or 3xx status within `timeout`.
net::awaitable<bool> probe_pod(PodAddress addr, std::string path, duration timeout);

// `cfg` is the admin context's current config (a reload takes effect on the next round).
net::awaitable<void> health_check_loop(PodHealth& health, Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                       const std::atomic<bool>& stopping);

}  // namespace mcpproxy
