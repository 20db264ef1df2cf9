// One worker's view of the session table (sessions.hpp).
#include "store/sessions.hpp"

#include "core/http/http_rules.hpp"
#include "core/telemetry/log.hpp"
#include "store/session_store.hpp"

namespace mcpproxy {

std::shared_ptr<const SessionRecord> Sessions::find_cached(const std::string& id) {
  bool refreshed = false;
  auto rec = table_.find(id, clock::now(), &refreshed);
  if (rec) {
    metrics_.cache_hits.fetch_add(1, std::memory_order_relaxed);
    if (refreshed && store_ != nullptr) store_->touch(id, rec);
  }
  return rec;
}

net::awaitable<std::shared_ptr<const SessionRecord>> Sessions::find_missed(const std::string& id, bool& store_failed) {
  metrics_.cache_misses.fetch_add(1, std::memory_order_relaxed);
  if (store_ == nullptr) {
    metrics_.count_store(StoreOp::get, StoreResult::miss);
    co_return nullptr;
  }
  const auto found = co_await store_->get(id);
  store_failed = !found.ok;
  if (found.record) cache(id, *found.record);
  co_return found.record;
}

net::awaitable<std::shared_ptr<const SessionRecord>> Sessions::authoritative(const std::string& id,
                                                                             std::shared_ptr<const SessionRecord> local,
                                                                             bool& store_failed) {
  // The table is shared by the workers: a recovery that finished meanwhile is seen here.
  if (store_ == nullptr) {
    auto now = find_cached(id);
    co_return now ? now : local;
  }
  const auto current = co_await store_->get(id);
  store_failed = !current.ok;
  co_return current.record;
}

net::awaitable<Sessions::Created> Sessions::create(const std::string& id, SessionRecord rec) {
  Created made;
  if (store_ == nullptr) {
    // The table is the store: one conditional insert decides, across the workers.
    std::shared_ptr<const SessionRecord> holder;
    rec.url = std::string();
    made.outcome = table_.insert_new(id, std::move(rec), &holder);
    if (holder) made.holder = holder->ordinal;
    if (made.recorded()) {
      metrics_.sessions_created.fetch_add(1, std::memory_order_relaxed);
      metrics_.count_store(StoreOp::set, StoreResult::ok);
    }
    co_return made;
  }
  // An id this process holds is refused without a round trip; else Redis decides (SET NX),
  // and the local copy is written only once the id is this session's.
  if (auto holder = table_.find(id)) {
    made.outcome = NewSession::taken;
    made.holder = holder->ordinal;
    co_return made;
  }
  if (!table_.has_room()) {
    made.outcome = NewSession::full;
    co_return made;
  }
  auto written = co_await store_->create(id, rec);
  if (written.taken) {
    made.outcome = NewSession::taken;
    if (written.holder) {
      made.holder = written.holder->ordinal;
      cache(id, std::move(*written.holder));  // the owner's next request here needs no lookup
    }
    co_return made;
  }
  cache(id, std::move(rec));
  metrics_.sessions_created.fetch_add(1, std::memory_order_relaxed);
  co_return made;
}

net::awaitable<std::shared_ptr<const SessionRecord>> Sessions::move(const std::string& id, const SessionRecord& rec,
                                                                    int from) {
  if (store_ == nullptr) {
    // One process: its recoveries are single-flight, so the move cannot race another. The
    // table is the only copy: a move it did not take (the session went meanwhile, and live
    // sessions fill the table) is not a success. The record is returned as the one to
    // follow: the recovery ends the session it opened on the pod, and the request, sent
    // there, is answered as lost.
    if (!cache(id, rec)) {
      metrics_.count_store(StoreOp::set, StoreResult::error);
      log_event(spdlog::level::warn, "moved session not recorded: no room in the session table",
                {{"session", session_hash(id)}, {"pod", std::to_string(rec.ordinal)}});
      co_return std::make_shared<const SessionRecord>(rec);
    }
    metrics_.count_store(StoreOp::set, StoreResult::ok);
    co_return nullptr;
  }
  auto winner = co_await store_->move(id, rec, from);
  if (!winner) {
    cache(id, rec);
    co_return nullptr;
  }
  cache(id, *winner);
  co_return std::make_shared<const SessionRecord>(std::move(*winner));
}

std::int64_t Sessions::sessions_on(int ordinal) const {
  return store_ != nullptr ? store_->sessions_on(ordinal) : table_.sessions_on(ordinal);
}

net::awaitable<void> Sessions::forget(const std::string& id, int ordinal) {
  const bool was_there = table_.erase(id);
  if (store_ != nullptr) {
    co_await store_->remove(id, ordinal);
  } else if (was_there) {
    metrics_.count_store(StoreOp::del, StoreResult::ok);
  }
}

bool Sessions::cache(const std::string& id, SessionRecord rec) {
  // The local table keeps what routing needs. The pod URL follows from the ordinal; with
  // the redis store the initialize body stays in Redis (read back on the rare re-initialize).
  // About 250 bytes a session fewer (bench/bench.py measures the RSS per session).
  rec.url = std::string();
  if (store_ != nullptr) {
    rec.init = std::string();
    rec.init_target = std::string();
    rec.init_fields = std::string();
  }
  // With the redis store, not kept when pinned sessions fill the table: the store has it.
  return table_.insert(id, std::move(rec));
}

}  // namespace mcpproxy
