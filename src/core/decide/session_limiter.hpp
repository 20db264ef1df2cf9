#pragma once
// New sessions per client per time window (limits.new_sessions_per_client,
// limits.new_sessions_window): one client's initialize flood cannot fill the session table
// and push out others' sessions. A client is its binding identity when sessions are bound,
// else its address (client_address.hpp: the peer, or what a trusted hop appended). Shared by
// the workers; only initializes ask it, never the hot path.
//
// What a client costs is fixed, whatever it sent: the key is kept as a 64-bit keyed digest
// (SHA-256 under a random per-process key, so a client cannot aim its key at another's),
// at most limits.new_sessions_max_clients windows are open (each of the 16 shards holds its
// share; a shard at its share forgets its oldest window, counted, and that client starts a
// new window when it comes back, as nginx's limit_req and HAProxy's stick tables drop their
// oldest entries). An admission costs O(1): each shard keeps its windows in a ring in the
// order they opened, which is the order they end, with an open-addressing index over it;
// ended windows are dropped from the front as the shard is used and by expire(), and the
// ring and index shrink as they empty, so the memory goes back as windows pass.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace mcpproxy {

class NewSessionLimiter {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::size_t kShards = 16;
  static constexpr std::size_t kDefaultMaxClients = 100000;  // limits.new_sessions_max_clients

  NewSessionLimiter();  // makes the digest key; throws when the system has no randomness

  // 0 when `client` may make a new session now (and it is counted), else the seconds until it
  // may (a fixed window per client, from its first admitted initialize).
  unsigned admit(std::string_view client, clock::time_point now, std::uint32_t limit, std::chrono::milliseconds window,
                 std::size_t max_clients = kDefaultMaxClients);
  // Drops the windows ended by `now` in every shard (a periodic sweep: a shard no
  // initialize reaches gives its memory back too).
  void expire(clock::time_point now, std::chrono::milliseconds window);

  std::size_t clients() const { return clients_.load(std::memory_order_relaxed); }    // windows open
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }  // forgotten at the bound
  std::size_t memory_bytes();  // what the shards' rings and indexes hold (tests)

 private:
  struct Window {
    std::uint64_t client = 0;  // the digest
    clock::time_point start;
    std::uint32_t count = 0;
  };
  // The windows of one shard, oldest first, in a ring whose size is a power of two (or 0);
  // `index_` (twice the ring's size, linear probing) maps a digest to its ring slot + 1.
  class Shard {
   public:
    std::mutex mu;
    clock::time_point newest;  // starts never go back: the ring stays in order
    Window* find(std::uint64_t client);
    Window& open(std::uint64_t client, clock::time_point start);  // at the back; the caller made room
    void drop_oldest();
    void expire(clock::time_point now, std::chrono::milliseconds window, std::atomic<std::size_t>& clients);
    std::size_t size() const { return size_; }
    std::size_t bytes() const { return ring_.capacity() * sizeof(Window) + index_.capacity() * sizeof(std::uint32_t); }

   private:
    std::size_t home(std::uint64_t client) const { return client & (index_.size() - 1); }
    void index_erase(std::size_t at);
    void resize(std::size_t capacity);
    std::vector<Window> ring_;
    std::vector<std::uint32_t> index_;
    std::size_t head_ = 0;
    std::size_t size_ = 0;
  };

  std::uint64_t digest(std::string_view client) const;
  std::string key_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> clients_{0};
  std::atomic<std::uint64_t> dropped_{0};
};

}  // namespace mcpproxy
