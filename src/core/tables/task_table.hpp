#pragma once
// The affinity table: task id or handle -> the pod that holds it (DESIGN.md request flow
// step 8), with no I/O. With the memory store it is the whole table; with the redis store
// it is a cache in front of Redis (a key another replica learned is read from Redis once).
// Bounded in keys and bytes like the session table; each key has its own TTL (the task's
// `ttlMs`, capped), slid on use.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/tables/session.hpp"

namespace mcpproxy {

struct TaskRecord {
  static constexpr int kVersion = 1;
  int ordinal = 0;
  std::chrono::milliseconds ttl{0};  // kept for as long after each use
  std::string principal;             // who created it, with sessions.binding
  bool operator==(const TaskRecord&) const = default;
};

// Versioned JSON: {"v":1,"ordinal":0,"ttl":60000,"principal":"…"}.
std::string encode_task_record(const TaskRecord& rec);
std::optional<TaskRecord> decode_task_record(std::string_view text);

// What became of a key offered to the table (TaskTable::insert).
enum class TaskInsert : std::uint8_t {
  inserted,
  same,   // the key was held by the same pod already: its TTL slid
  taken,  // another pod holds the key: unchanged (a key is the pod's that created it first)
  full,   // no room without dropping a live key (store role): not inserted
};

class TaskTable {
 public:
  TaskTable(std::size_t max_keys, std::size_t max_bytes, TableRole role);
  TaskTable(const TaskTable&) = delete;
  TaskTable& operator=(const TaskTable&) = delete;

  // nullopt when unknown or expired. A hit slides the key's expiry; `*refresh` is set when
  // a remote store's copy should slide too (at most every ttl/10 per key).
  std::optional<TaskRecord> find(const std::string& key, clock::time_point now = clock::now(), bool* refresh = nullptr);
  // A key an answer created: inserted only when no live key of another pod holds it
  // (`*holder` is then that pod's record). Room is made from expired keys (store role) or
  // any key (cache role: the remote store still has it).
  TaskInsert insert(const std::string& key, const TaskRecord& rec, clock::time_point now = clock::now(),
                    TaskRecord* holder = nullptr);
  // A record read from the remote store, kept so the next request needs no round trip.
  void cache(const std::string& key, const TaskRecord& rec, clock::time_point now = clock::now());
  bool erase(const std::string& key);
  std::size_t sweep(clock::time_point now = clock::now());

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }
  std::size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  void set_bounds(std::size_t max_keys, std::size_t max_bytes);

 private:
  struct Entry {
    TaskRecord rec;
    clock::time_point expires;
    clock::time_point refreshed;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, Entry> keys;
    // No key of this shard expires before this: a full shard is not searched again until then.
    clock::time_point no_expiry_before{};
  };
  static constexpr std::size_t kShards = 32;
  static std::size_t charge_of(const std::string& key, const TaskRecord& rec);
  static std::size_t shard_index(const std::string& key) { return std::hash<std::string>{}(key) % kShards; }
  Shard& shard_for(const std::string& key) { return shards_[shard_index(key)]; }
  // Room for `charge` more bytes and one key, no shard lock held: expired keys go first,
  // then (cache role) any, from shard `first` on; false when none may.
  bool room_for(std::size_t charge, std::size_t first, clock::time_point now);
  void drop_locked(Shard& s, std::unordered_map<std::string, Entry>::iterator it);
  bool fits(std::size_t charge) const;
  void add_locked(Shard& s, const std::string& key, const TaskRecord& rec, clock::time_point now);

  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> max_keys_;
  std::atomic<std::size_t> max_bytes_;
  TableRole role_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::uint64_t> evicted_{0};
};

}  // namespace mcpproxy
