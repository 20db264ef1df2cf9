#pragma once
// The keys of sessions.jwt.jwks_url: fetched by the proxy on the admin context, cached for the
// answer's lifetime (Cache-Control max-age, else sessions.jwt.jwks_refresh, never more often
// than jwks_min_refresh) and refreshed in the background; a fetch that fails keeps the keys
// it had. A token naming a kid no key has asks for one refetch (at most one per
// jwks_min_refresh); its request waits for it sessions.jwt.jwks_fetch_wait at most.

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "core/config/config.hpp"
#include "core/identity/jwt.hpp"

namespace mcpproxy {

class JwksCache {
 public:
  // The URL's keys; null before the first good fetch.
  std::shared_ptr<const JwkSet> keys() const { return keys_.load(std::memory_order_acquire); }
  // Bumped with every new set: a token verified under older keys is verified again.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }
  void set_keys(std::shared_ptr<const JwkSet> keys);
  // A token named a kid no key has. True when this call asked the fetcher for a fetch, or one
  // is under way; false when the last was asked for less than `min_gap` ago.
  bool ask_refetch(std::chrono::steady_clock::time_point now, duration min_gap);
  // `wake` runs (on the fetcher's thread) once the next fetch has ended, good or not.
  void wait_next(std::function<void()> wake);
  // The fetcher: how it is woken for an asked fetch; that a fetch ended.
  void set_kick(std::function<void()> kick);
  void fetched();

 private:
  std::atomic<std::shared_ptr<const JwkSet>> keys_;
  std::atomic<std::uint64_t> version_{0};
  std::mutex mu_;
  std::function<void()> kick_;
  std::vector<std::function<void()>> waiters_;
  std::chrono::steady_clock::time_point last_ask_{};
  bool asked_ = false;  // a fetch asked for and not ended
};

// Seconds of a Cache-Control's max-age (nullopt without one, or with no-store / no-cache).
std::optional<std::int64_t> cache_max_age(std::string_view cache_control);

}  // namespace mcpproxy
