#pragma once
// The session table: Mcp-Session-Id -> the pod that owns the session.
// A bounded, sharded local table in front of an optional remote store (DESIGN.md
// "Session table"). With the `memory` store the local table is the whole table.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/config/config.hpp"

namespace mcpproxy {

struct SessionRecord {
  static constexpr int kVersion = 1;
  int ordinal = 0;
  std::string url;              // the pod URL when the session was placed
  std::string backend_session;  // the pod's own id when it differs (after a re-initialize)
  std::string init;             // the initialize request body, to re-establish the session
  std::string init_target;      // its request target, with the query
  // Its end-to-end fields as "Name: value\r\n" lines, without credentials: a re-initialize
  // takes those from the request that found the session lost (proxy_headers.hpp).
  std::string init_fields;
  std::string principal;     // who created it, when known
  std::int64_t created = 0;  // unix seconds
  // The initialize body was too large to keep (sessions.max_init_body, or the memory
  // store's table bytes): the session cannot be re-initialized on another pod.
  bool init_not_kept = false;
  // Bumped by every move to another pod: a move is written only over the epoch it was
  // decided on (compare-and-set in Redis), so two proxy replicas never move one session
  // to two pods. The store's copy has it; the local table does not need it.
  std::uint64_t epoch = 0;
};

// Versioned JSON: {"v":1,"ordinal":0,"url":"…","backend_session":…,"init":…,"created":…,"epoch":…,
// "init_not_kept":true}
std::string encode_record(const SessionRecord& rec);
// nullopt for anything that is not a record of a version this build understands.
std::optional<SessionRecord> decode_record(std::string_view text);

using clock = std::chrono::steady_clock;

// What the table is to its sessions. A `cache` in front of a remote store may drop any
// session that is not pinned to make room (the store still has it: a later miss reads it
// back). The `store` (the memory store) is the only copy: a live session dropped would be
// lost, so only expired ones make room, and a full table takes no new session.
enum class TableRole : std::uint8_t { cache, store };

// What became of a new session offered to the table (SessionTable::insert_new).
enum class NewSession : std::uint8_t {
  inserted,
  inserted_without_init,  // kept, without its initialize body: it did not fit the table's bytes (store role)
  taken,                  // the id is live already: the record that holds it is unchanged
  full,                   // no room without dropping a live session: not inserted
};

class SessionTable {
 public:
  // `max_bytes` bounds the table's memory (nodes, ids, records and their initialize
  // bodies; a record shared by several sessions is charged to each, so the bound errs high).
  // Both bounds hold whatever the sessions are doing: a pinned session is never dropped,
  // and when pinned (or, in the store role, live) sessions fill a bound nothing new goes in.
  SessionTable(std::size_t max_sessions, duration ttl, std::size_t max_bytes = SIZE_MAX,
               TableRole role = TableRole::cache);
  ~SessionTable();
  SessionTable(const SessionTable&) = delete;
  SessionTable& operator=(const SessionTable&) = delete;

  // Hot path: no I/O. Slides the TTL at most every ttl/10 (`*refreshed` tells when it did,
  // so a remote store gets the same rare refresh). nullptr when unknown or expired.
  std::shared_ptr<const SessionRecord> find(const std::string& id, clock::time_point now = clock::now(),
                                            bool* refreshed = nullptr);

  // Adds or replaces a record. When a bound is reached, the least recently used session
  // that is not pinned goes first in the cache role (of the new one's shard, else of the
  // next ones), an expired one in the store role; false (nothing changed) when no session
  // may go.
  // Replacing the record of an id in the table always succeeds: no session is added, the
  // bytes follow the new record's charge.
  // The table keeps what routing and a re-initialize need: not `url` nor `created` (the
  // remote store keeps the whole record).
  bool insert(const std::string& id, SessionRecord rec, clock::time_point now = clock::now());

  // A session a pod just minted: inserted only when its id is not live already (then
  // `*holder` is the record that holds it, unchanged: an id belongs to the session that had
  // it first) and there is room as insert makes it. In the store role a record whose
  // initialize body does not fit the bytes is kept without it rather than refused.
  NewSession insert_new(const std::string& id, SessionRecord rec, std::shared_ptr<const SessionRecord>* holder,
                        clock::time_point now = clock::now());

  // Whether a new session would find room now (checked before an initialize is sent to a
  // pod; in the store role an expired session may go to make it).
  bool has_room(clock::time_point now = clock::now());

  // Removes a record; true when it was there.
  bool erase(const std::string& id);

  // A session whose stream (or SSE answer) is being relayed is pinned: never evicted while
  // it is. `delta` +1 or -1; a session with 255 pins stays pinned until erased.
  void pin(const std::string& id, int delta);

  // Every live session and its record: what this process would write back into a store
  // that lost its records. A shard at a time, under its lock; never per request.
  std::vector<std::pair<std::string, std::shared_ptr<const SessionRecord>>> held(clock::time_point now = clock::now());

  // Drops expired records; returns how many. Called from a timer, never per request.
  std::size_t sweep(clock::time_point now = clock::now());

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }
  std::size_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  std::size_t pinned() const { return pinned_.load(std::memory_order_relaxed); }
  std::size_t pinned_bytes() const { return pinned_bytes_.load(std::memory_order_relaxed); }
  std::int64_t sessions_on(int ordinal) const;
  std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  std::uint64_t expired() const { return expired_.load(std::memory_order_relaxed); }
  void set_ttl(duration ttl) { ttl_ms_.store(ttl.count(), std::memory_order_relaxed); }

 private:
  // About 90 bytes a session (bench/bench.py measures the RSS): the id is kept inline in a
  // node (ids up to kInlineKey bytes, which covers UUIDs), nodes live in fixed chunks that
  // never move, the index is open addressing over 32-bit node numbers, and the LRU links
  // are node numbers too. A pinned session leaves the LRU list for the shard's pinned list,
  // so making room never walks past pinned sessions. The record is shared: every session of a pod that has nothing of
  // its own (the redis store keeps the initialize body in Redis) points at one record for
  // that pod, and equal records (the same initialize body, typical of one agent fleet)
  // are stored once.
  static constexpr std::uint32_t kNil = 0xffffffffU;
  static constexpr std::size_t kInlineKey = 40;
  static constexpr std::size_t kChunk = 256;  // nodes per chunk
  struct Node {
    std::uint32_t prev = kNil;
    std::uint32_t next = kNil;  // also the free list's link
    std::uint32_t hash = 0;
    std::uint16_t len = 0;
    bool used = false;
    std::uint8_t pins = 0;
    clock::time_point refreshed{};
    std::shared_ptr<const SessionRecord> rec;
    union {
      std::array<char, kInlineKey> small;
      char* big;
    } key{};
    std::string_view id() const { return {len <= kInlineKey ? key.small.data() : key.big, len}; }
  };
  struct List {
    std::uint32_t head = kNil;  // most recently used
    std::uint32_t tail = kNil;
  };
  struct Shard {
    std::mutex mu;
    std::vector<std::unique_ptr<Node[]>> chunks;
    std::uint32_t nodes = 0;  // nodes handed out so far
    std::uint32_t free = kNil;
    List lru;     // sessions not pinned, the least recently used last
    List pinned;  // pinned sessions
    std::uint32_t count = 0;
    std::vector<std::uint32_t> slots;  // node + 1, 0 empty; linear probing
    Node& at(std::uint32_t i) { return chunks[i / kChunk][i % kChunk]; }
    List& list_of(std::uint32_t i) { return at(i).pins == 0 ? lru : pinned; }
    std::uint32_t lookup(std::string_view id, std::uint32_t hash) const;
    void unlink(std::uint32_t i);
    void push_front(std::uint32_t i);
    void index_insert(std::uint32_t i);
    void index_erase(std::uint32_t i);
    std::uint32_t new_node();
  };
  static constexpr std::size_t kShards = 64;

  static std::uint32_t hash_of(std::string_view id);
  Shard& shard_for(std::uint32_t hash) { return shards_[hash % kShards]; }
  void count(int ordinal, int delta);
  void drop_locked(Shard& s, std::uint32_t i);
  // Points node i at `rec` (charge, per-pod counts and pinned bytes follow); s.mu held.
  // Never refused: the session is there already, only its charge changes (a record that
  // grows may pass max_bytes by that much).
  void replace_locked(Shard& s, std::uint32_t i, std::shared_ptr<const SessionRecord> rec, std::size_t charge,
                      clock::time_point now);
  // Node i leaves the pinned list with no pins (the pinned sums follow); s.mu held.
  void unpin_locked(Shard& s, std::uint32_t i);
  // A new node for `id` (not in the table; its room reserved), at the front of the LRU
  // list; s.mu held.
  void add_locked(Shard& s, const std::string& id, std::uint32_t hash, std::shared_ptr<const SessionRecord> rec,
                  clock::time_point now);
  // Takes a session's place and `charge` bytes within both bounds; false (nothing taken)
  // when they are not there.
  bool reserve(std::size_t charge);
  static constexpr int kAttempts = 4;  // to insert while other writers take the room made
  // Makes room for a session charged `charge` (make_room, as the role allows); false when
  // the sessions that may not go fill a bound.
  bool room_for(std::size_t charge, std::size_t first, clock::time_point now);
  std::shared_ptr<const SessionRecord> intern(SessionRecord rec);
  duration ttl() const { return duration{ttl_ms_.load(std::memory_order_relaxed)}; }

  std::array<Shard, kShards> shards_;
  // Drops the least recently used session that may go (cache: any unpinned one; store: an
  // expired one), looking at the shards from `first` on; false when none may.
  bool make_room(std::size_t first, clock::time_point now);
  std::size_t max_sessions_;
  std::size_t max_bytes_;
  TableRole role_;
  std::atomic<std::size_t> bytes_{0};
  std::atomic<std::size_t> pinned_{0};        // sessions pinned now
  std::atomic<std::size_t> pinned_bytes_{0};  // and their charge
  static std::size_t charge_of(std::size_t id_size, const SessionRecord& rec);
  static std::size_t record_hash(const SessionRecord& rec);
  void release(const std::shared_ptr<const SessionRecord>& rec);
  std::atomic<std::int64_t> ttl_ms_;
  std::atomic<std::size_t> size_{0};
  std::atomic<std::uint64_t> evicted_{0};
  std::atomic<std::uint64_t> expired_{0};
  std::unique_ptr<std::atomic<std::int64_t>[]> per_pod_;
  std::mutex intern_mu_;
  std::vector<std::shared_ptr<const SessionRecord>> plain_;  // per pod: a record with nothing else
  std::unordered_multimap<std::size_t, std::shared_ptr<const SessionRecord>> interned_;
};

}  // namespace mcpproxy
