#pragma once
// New sessions per client per time window (limits.new_sessions_per_client,
// limits.new_sessions_window): one client's initialize flood cannot fill the session table
// and push out others' sessions. A client is its binding identity when sessions are bound,
// else its address (the first X-Forwarded-For of a trusted hop, else the peer). Shared by
// the workers; only initializes ask it, never the hot path.

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mcpproxy {

class NewSessionLimiter {
 public:
  using clock = std::chrono::steady_clock;
  // 0 when `key` may make a new session now (and it is counted), else the seconds until it
  // may (a fixed window per client).
  unsigned admit(std::string_view key, clock::time_point now, std::uint32_t limit, std::chrono::milliseconds window);

 private:
  struct Window {
    clock::time_point start;
    std::uint32_t count = 0;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Window> clients;
  };
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kSweepAbove = 4096;  // clients per shard before expired windows are dropped
  std::array<Shard, kShards> shards_;
};

}  // namespace mcpproxy
