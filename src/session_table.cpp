#include <functional>

#include "mcpproxy/session.hpp"

namespace mcpproxy {

SessionTable::SessionTable(std::size_t max_sessions, duration ttl)
    : max_per_shard_(std::max<std::size_t>(1, (max_sessions + kShards - 1) / kShards)),
      ttl_ms_(ttl.count()),
      per_pod_(new std::atomic<std::int64_t>[kMaxReplicas]) {
  for (int i = 0; i < kMaxReplicas; ++i) per_pod_[i].store(0, std::memory_order_relaxed);
}

SessionTable::Shard& SessionTable::shard_for(const std::string& id) {
  return shards_[std::hash<std::string>{}(id) % kShards];
}

void SessionTable::count(int ordinal, int delta) {
  if (ordinal >= 0 && ordinal < kMaxReplicas) per_pod_[ordinal].fetch_add(delta, std::memory_order_relaxed);
}

std::int64_t SessionTable::sessions_on(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return 0;
  return per_pod_[ordinal].load(std::memory_order_relaxed);
}

void SessionTable::drop_locked(Shard& s, std::list<Entry>::iterator it) {
  count(it->rec->ordinal, -1);
  s.index.erase(std::string_view(it->id));
  s.lru.erase(it);
  size_.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<const SessionRecord> SessionTable::find(const std::string& id, clock::time_point now, bool* refreshed) {
  Shard& s = shard_for(id);
  std::lock_guard lock(s.mu);
  const auto found = s.index.find(std::string_view(id));
  if (found == s.index.end()) return nullptr;
  const auto it = found->second;
  const duration life = ttl();
  if (now - it->refreshed >= life) {
    drop_locked(s, it);
    expired_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  // Slide the TTL at most every ttl/10 (DESIGN.md): cheap here, and the same rule
  // bounds the refresh writes a remote store would see.
  if (now - it->refreshed >= life / 10) {
    it->refreshed = now;
    if (refreshed != nullptr) *refreshed = true;
  }
  s.lru.splice(s.lru.begin(), s.lru, it);
  return it->rec;
}

void SessionTable::insert(const std::string& id, SessionRecord rec, clock::time_point now) {
  Shard& s = shard_for(id);
  auto shared = std::make_shared<const SessionRecord>(std::move(rec));
  std::lock_guard lock(s.mu);
  const auto found = s.index.find(std::string_view(id));
  if (found != s.index.end()) {
    const auto it = found->second;
    count(it->rec->ordinal, -1);
    count(shared->ordinal, +1);
    it->rec = std::move(shared);
    it->refreshed = now;
    s.lru.splice(s.lru.begin(), s.lru, it);
    return;
  }
  if (s.lru.size() >= max_per_shard_) {
    drop_locked(s, std::prev(s.lru.end()));
    evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  count(shared->ordinal, +1);
  s.lru.push_front(Entry{id, std::move(shared), now});
  // The key views the entry's own string: list nodes never move.
  s.index.emplace(std::string_view(s.lru.front().id), s.lru.begin());
  size_.fetch_add(1, std::memory_order_relaxed);
}

bool SessionTable::erase(const std::string& id) {
  Shard& s = shard_for(id);
  std::lock_guard lock(s.mu);
  const auto found = s.index.find(std::string_view(id));
  if (found == s.index.end()) return false;
  drop_locked(s, found->second);
  return true;
}

std::size_t SessionTable::sweep(clock::time_point now) {
  std::size_t dropped = 0;
  const duration life = ttl();
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto it = s.lru.begin(); it != s.lru.end();) {
      if (now - it->refreshed >= life) {
        const auto next = std::next(it);
        drop_locked(s, it);
        it = next;
        ++dropped;
      } else {
        ++it;
      }
    }
  }
  expired_.fetch_add(dropped, std::memory_order_relaxed);
  return dropped;
}

}  // namespace mcpproxy
