#include "mcpproxy/session_limiter.hpp"

#include <functional>

namespace mcpproxy {

unsigned NewSessionLimiter::admit(std::string_view key, clock::time_point now, std::uint32_t limit,
                                  std::chrono::milliseconds window) {
  if (limit == 0) return 0;
  Shard& s = shards_[std::hash<std::string_view>{}(key) % kShards];
  std::lock_guard lock(s.mu);
  if (s.clients.size() > kSweepAbove) {
    std::erase_if(s.clients, [&](const auto& kv) { return now - kv.second.start >= window; });
  }
  auto [it, fresh] = s.clients.try_emplace(std::string(key), Window{now, 0});
  Window& w = it->second;
  if (!fresh && now - w.start >= window) w = Window{now, 0};
  if (w.count < limit) {
    ++w.count;
    return 0;
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(w.start + window - now);
  return static_cast<unsigned>((left.count() + 999) / 1000);
}

}  // namespace mcpproxy
