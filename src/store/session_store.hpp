#pragma once
// The `redis` session store behind the session table: records as versioned JSON under
// `<key_prefix>session:<id>` with a sliding TTL. A worker's own Redis connection does the
// work of its requests; records that could not be written wait in a bounded queue shared
// by all workers, flushed by the control connection when Redis answers again.

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "core/tables/session.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"
#include "store/redis_client.hpp"

namespace mcpproxy {

struct QueuedWrite {
  std::string id;
  std::string value;
  bool only_if_absent = true;  // a new session: SET NX; an update: SET
  int ordinal = 0;             // its pod, for the pod's live-session index
};

// Live sessions per pod as all proxy replicas see them, for least_sessions. Redis keeps an
// index per pod, `<key_prefix>pod:<ordinal>:sessions`, a sorted set of session ids scored
// by their expiry (unix ms): written with the record, rescored when its TTL is refreshed,
// removed on DELETE or a move. A session that expires drops out of the count by its score,
// so the counts stay right when sessions end by TTL and when the proxy that created them
// is gone. Each process reads the counts every `sessions.redis.counts_interval` and adds
// what it placed itself since.
class PodCounts {
 public:
  PodCounts();
  std::int64_t load(int ordinal) const;
  void add(int ordinal, std::int64_t delta);  // placed (+1) or ended (-1) by this process
  // The count read from Redis; `placed_before` is what add() had summed when the read began.
  std::int64_t placed(int ordinal) const;
  void synced(int ordinal, std::int64_t stored, std::int64_t placed_before);

 private:
  std::unique_ptr<std::atomic<std::int64_t>[]> stored_;
  std::unique_ptr<std::atomic<std::int64_t>[]> placed_;
};

// Shared by all workers (thread-safe).
class StoreShared {
 public:
  StoreShared(std::string key_prefix, duration ttl, std::size_t queue_max)
      : key_prefix_(std::move(key_prefix)), ttl_ms_(ttl.count()), queue_max_(queue_max) {}
  std::string key(std::string_view id) const { return key_prefix_ + "session:" + std::string(id); }
  // A key with no TTL whose value changes only when it is gone: a process that finds
  // another value than it last saw knows Redis lost its records (a flush, a restart
  // without persistence, a failover to a replica that had not got them).
  std::string marker_key() const { return key_prefix_ + "table-marker"; }
  std::string pod_key(int ordinal) const { return key_prefix_ + "pod:" + std::to_string(ordinal) + ":sessions"; }
  // The score of a session in its pod's index: when it expires, unix ms.
  std::string expiry_score() const;
  std::string ttl_ms() const { return std::to_string(ttl_ms_.load(std::memory_order_relaxed)); }
  void set_ttl(duration ttl) { ttl_ms_.store(ttl.count(), std::memory_order_relaxed); }

  // Oldest first; when full the oldest is dropped (and counted).
  void enqueue(QueuedWrite w);
  std::optional<QueuedWrite> pop();
  void push_front(QueuedWrite w);
  std::size_t depth() const { return depth_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  // The primary a connection was last set up with (sentinel mode); a change of address
  // after the first counts as a failover.
  void note_primary(const std::string& address);
  std::string primary() const;
  std::uint64_t failovers() const { return failovers_.load(std::memory_order_relaxed); }
  // Cluster mode: redirects followed, and the primaries of the last slot map read.
  void count_redirect(bool ask) { (ask ? asks : moves).fetch_add(1, std::memory_order_relaxed); }
  std::atomic<std::uint64_t> moves{0};
  std::atomic<std::uint64_t> asks{0};
  std::atomic<int> cluster_primaries{0};
  std::atomic<int> cluster_reachable{0};

  PodCounts counts;
  std::atomic<bool> up{false};
  // Redis connections that have not finished their first attempt yet: the proxy reports
  // ready only after each has (connected or failed), so a record written right after
  // start-up is not queued merely because the connection was still being made. The table
  // marker's first read counts as one more (count_loop).
  std::atomic<int> connecting{0};

 private:
  std::string key_prefix_;
  std::atomic<std::int64_t> ttl_ms_;
  std::size_t queue_max_;
  std::mutex mu_;
  std::deque<QueuedWrite> queue_;
  std::atomic<std::size_t> depth_{0};
  std::atomic<std::uint64_t> dropped_{0};
  mutable std::mutex primary_mu_;
  std::string primary_;
  std::atomic<std::uint64_t> failovers_{0};
};

// Per worker: the store operations of that worker's requests. Owned by a shared_ptr: the
// commands it sends in the background (index entries, touches) hold it until they end.
class RedisStore : public std::enable_shared_from_this<RedisStore> {
 public:
  RedisStore(net::io_context& ioc, std::shared_ptr<RedisLink> client, StoreShared& shared, Metrics& metrics);

  struct Lookup {
    bool ok = false;  // false: Redis could not be asked
    std::shared_ptr<const SessionRecord> record;
  };
  // One GET; concurrent lookups of one id on this worker share it.
  net::awaitable<Lookup> get(const std::string& id);
  // What a new session's SET NX found: the record written (or queued while Redis cannot be
  // asked), or the id taken by another record (`holder`, when it could be read).
  struct Creation {
    bool taken = false;
    std::optional<SessionRecord> holder;
  };
  // Writes a new session's record (SET NX PX), never over another's. On failure it is queued.
  net::awaitable<Creation> create(const std::string& id, const SessionRecord& rec);
  // Moves a session: writes `rec` only if the stored record's epoch is still
  // `rec.epoch - 1` (or the record is gone), in one Lua script. Returns the record that won
  // when another writer moved the session first. Queued (unconditionally) when Redis
  // cannot be asked: the process that has the session must keep it routable.
  net::awaitable<std::optional<SessionRecord>> move(const std::string& id, const SessionRecord& rec, int from);
  net::awaitable<void> remove(const std::string& id, int ordinal);
  // PEXPIRE and its index score, in the background. A record Redis no longer has is
  // written back from `rec` (the local copy) with SET NX: a newer one another replica
  // wrote meanwhile wins.
  void touch(const std::string& id, std::shared_ptr<const SessionRecord> rec);
  std::int64_t sessions_on(int ordinal) const { return shared_.counts.load(ordinal); }

 private:
  net::awaitable<RedisLink::Result> timed(StoreOp op, std::vector<std::string> args);
  // Index commands go out in the background: placement tolerates a count a moment late.
  void in_background(StoreOp op, std::vector<std::string> args);
  void index(const std::string& id, int ordinal);
  void unindex(const std::string& id, int ordinal);
  struct Inflight;

  net::io_context& ioc_;
  std::shared_ptr<RedisLink> client_;
  StoreShared& shared_;
  Metrics& metrics_;
  std::unordered_map<std::string, std::shared_ptr<Inflight>> inflight_;
};

// Writes queued records once Redis answers, and keeps `up` current. Runs on the admin context.
net::awaitable<void> flush_queue_loop(std::shared_ptr<RedisLink> client, StoreShared& shared, Metrics& metrics,
                                      const std::atomic<bool>& stopping);

// Writes a record Redis lost back from the local copy (SET NX PX, then its index entry);
// true when it was written (counted as restored).
net::awaitable<bool> restore_record(RedisLink& client, StoreShared& shared, Metrics& metrics, const std::string& id,
                                    const SessionRecord& rec);

// Every `sessions.redis.counts_interval` of the config: reads the live-session count of
// every pod from Redis (trimming the entries that expired), and checks the table marker;
// when Redis lost its records, writes back every session `table` holds. Runs on the admin
// context.
net::awaitable<void> count_loop(std::shared_ptr<RedisLink> client, StoreShared& shared, SessionTable& table,
                                Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                const std::atomic<bool>& stopping);

// Options from the config (password from the URL, the file, or MCP_SESSION_PROXY_REDIS_PASSWORD).
RedisOptions redis_options(const Config& cfg);

}  // namespace mcpproxy
