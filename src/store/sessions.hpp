#pragma once
// One worker's view of the session table: the process-wide local table, this worker's
// Redis store when there is one, and their metrics behind one interface, so the request
// path never asks which store is configured.

#include <cstdint>
#include <memory>
#include <random>
#include <string>

#include "core/decide/placement.hpp"
#include "core/tables/session.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"

namespace mcpproxy {

class RedisStore;

class Sessions {
 public:
  Sessions(SessionTable& table, Metrics& metrics) : table_(table), metrics_(metrics) {}

  // With the redis store: this worker's store (set once at start-up, before any request).
  void use_store(RedisStore* store) { store_ = store; }
  // The cached records keep no initialize (nor its target and fields): the store has them.
  bool init_in_store() const { return store_ != nullptr; }

  // The hot path: the local table, with no network round trip (counted as a hit).
  // nullptr: not cached; then find_missed.
  std::shared_ptr<const SessionRecord> find_cached(const std::string& id);
  // A miss (counted): the store is asked (a session created through another replica, or
  // before a restart). nullptr: unknown.
  // `store_failed` is set when the store could not be asked (Redis down or timed out):
  // then a missing record says nothing about the session.
  net::awaitable<std::shared_ptr<const SessionRecord>> find_missed(const std::string& id, bool& store_failed);

  // The store's current record, for a session this process takes to be lost: another
  // replica may have moved it already, and the local copy lacks the initialize body with
  // the redis store. With the memory store the shared table is the store: its current
  // record (a recovery by another request may have moved the session), else `local`.
  // `store_failed` is set when Redis could not be asked: then nothing is known.
  net::awaitable<std::shared_ptr<const SessionRecord>> authoritative(const std::string& id,
                                                                     std::shared_ptr<const SessionRecord> local,
                                                                     bool& store_failed);

  // What became of a new session (create).
  struct Created {
    NewSession outcome = NewSession::inserted;
    int holder = -1;  // taken: the pod of the session that holds the id; -1 when not known
    bool recorded() const { return outcome == NewSession::inserted || outcome == NewSession::inserted_without_init; }
  };
  // A session a pod just minted, recorded before its answer goes downstream, only when its
  // id is not live already: in this process's table, and with the redis store in Redis
  // (SET NX: another proxy replica's record of it wins). An id is the session's that had
  // it first: a record is never changed by a new session. `full`: the table's live
  // sessions leave no room (nothing is recorded).
  net::awaitable<Created> create(const std::string& id, SessionRecord rec);

  // Whether a new session would find room in the table now (before its initialize goes to a pod).
  bool room_for_new() { return table_.has_room(); }

  // A session moved to another pod (recovery; `rec.epoch` one past the record it was
  // decided on). With the redis store the move is a compare-and-set: when another proxy
  // replica moved the session first, its record is returned (and cached) and `rec` is not
  // written. With the memory store a move the table cannot take (the session went meanwhile
  // and live sessions fill the table; counted as a failed set) returns `rec` itself: the
  // caller ends the session it opened on that pod and follows it, so the request is
  // answered as lost rather than served by a session nothing records.
  net::awaitable<std::shared_ptr<const SessionRecord>> move(const std::string& id, const SessionRecord& rec, int from);

  // The session (on `ordinal`) ended (DELETE) or is lost for good.
  net::awaitable<void> forget(const std::string& id, int ordinal);

  // A record read from the store, kept locally so the next request routes without it.
  // False when the table did not take it (no room; a record already there is always replaced).
  bool cache(const std::string& id, SessionRecord rec);

  // Live sessions on a pod: the shared counts of all proxy replicas with the redis store
  // (PodCounts), the local table's with the memory store.
  std::int64_t sessions_on(int ordinal) const;

  // A session whose stream is being relayed is never evicted from the local table.
  void pin(const std::string& id, int delta) { table_.pin(id, delta); }

 private:
  SessionTable& table_;
  Metrics& metrics_;
  RedisStore* store_ = nullptr;
};

}  // namespace mcpproxy
