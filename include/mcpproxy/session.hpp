#pragma once
// The session table: Mcp-Session-Id -> the pod that owns the session.
// A bounded, sharded local table in front of an optional remote store (DESIGN.md
// "Session table"). With the `memory` store the local table is the whole table.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "mcpproxy/config.hpp"

namespace mcpproxy {

struct SessionRecord {
  static constexpr int kVersion = 1;
  int ordinal = 0;
  std::string url;              // the pod URL when the session was placed
  std::string backend_session;  // the pod's own id when it differs (after a re-initialize)
  std::string init;             // the initialize request body, to re-establish the session
  std::string principal;        // who created it, when known
  std::int64_t created = 0;     // unix seconds
};

// Versioned JSON: {"v":1,"ordinal":0,"url":"…","backend_session":…,"init":…,"created":…}
std::string encode_record(const SessionRecord& rec);
// nullopt for anything that is not a record of a version this build understands.
std::optional<SessionRecord> decode_record(std::string_view text);

using clock = std::chrono::steady_clock;

class SessionTable {
 public:
  SessionTable(std::size_t max_sessions, duration ttl);

  // Hot path: no I/O. Slides the TTL at most every ttl/10 (`*refreshed` tells when it did,
  // so a remote store gets the same rare refresh). nullptr when unknown or expired.
  std::shared_ptr<const SessionRecord> find(const std::string& id, clock::time_point now = clock::now(),
                                            bool* refreshed = nullptr);

  // Adds or replaces a record. Evicts the least recently used entry of its shard when full.
  void insert(const std::string& id, SessionRecord rec, clock::time_point now = clock::now());

  // Removes a record; true when it was there.
  bool erase(const std::string& id);

  // Drops expired records; returns how many. Called from a timer, never per request.
  std::size_t sweep(clock::time_point now = clock::now());

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }
  std::int64_t sessions_on(int ordinal) const;
  std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  std::uint64_t expired() const { return expired_.load(std::memory_order_relaxed); }
  void set_ttl(duration ttl) { ttl_ms_.store(ttl.count(), std::memory_order_relaxed); }

 private:
  struct Entry {
    std::string id;
    std::shared_ptr<const SessionRecord> rec;
    clock::time_point refreshed;
  };
  struct Shard {
    std::mutex mu;
    std::list<Entry> lru;  // front: most recently used
    std::unordered_map<std::string_view, std::list<Entry>::iterator> index;
  };
  static constexpr std::size_t kShards = 64;

  Shard& shard_for(const std::string& id);
  void count(int ordinal, int delta);
  void drop_locked(Shard& s, std::list<Entry>::iterator it);
  duration ttl() const { return duration{ttl_ms_.load(std::memory_order_relaxed)}; }

  std::array<Shard, kShards> shards_;
  std::size_t max_per_shard_;
  std::atomic<std::int64_t> ttl_ms_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> evicted_{0};
  std::atomic<std::uint64_t> expired_{0};
  std::unique_ptr<std::atomic<std::int64_t>[]> per_pod_;
};

}  // namespace mcpproxy
