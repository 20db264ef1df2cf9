#pragma once
// The fetcher of sessions.jwt.jwks_url (jwks.hpp): a loop on the admin context.

#include <atomic>
#include <memory>

#include "core/config/config.hpp"
#include "core/identity/jwks.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"

namespace mcpproxy {

// `cfg` is the admin context's current config (a reload's URL is fetched on the next round).
net::awaitable<void> jwks_fetch_loop(JwksCache& cache, Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                     const std::atomic<bool>& stopping);

}  // namespace mcpproxy
