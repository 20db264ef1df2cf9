#include <algorithm>
#include <cstring>
#include <functional>

#include "mcpproxy/session.hpp"

namespace mcpproxy {

SessionTable::SessionTable(std::size_t max_sessions, duration ttl, std::size_t max_bytes)
    : max_sessions_(std::max<std::size_t>(1, max_sessions)),
      max_bytes_(max_bytes),
      ttl_ms_(ttl.count()),
      per_pod_(new std::atomic<std::int64_t>[kMaxReplicas]),
      plain_(kMaxReplicas) {
  for (int i = 0; i < kMaxReplicas; ++i) per_pod_[i].store(0, std::memory_order_relaxed);
}

SessionTable::~SessionTable() {
  for (Shard& s : shards_) {
    for (std::uint32_t i = 0; i < s.nodes; ++i) {
      Node& n = s.at(i);
      if (n.used && n.len > kInlineKey) delete[] n.key.big;
    }
  }
}

std::uint32_t SessionTable::hash_of(std::string_view id) {
  const std::size_t h = std::hash<std::string_view>{}(id);
  return static_cast<std::uint32_t>(h ^ (h >> 32U));
}

// ---- one shard: node storage, LRU list and open-addressing index (callers hold `mu`) ----

std::uint32_t SessionTable::Shard::lookup(std::string_view id, std::uint32_t hash) const {
  if (slots.empty()) return kNil;
  const std::size_t mask = slots.size() - 1;
  for (std::size_t p = hash & mask;; p = (p + 1) & mask) {
    const std::uint32_t slot = slots[p];
    if (slot == 0) return kNil;
    const Node& n = chunks[(slot - 1) / kChunk][(slot - 1) % kChunk];
    if (n.hash == hash && n.id() == id) return slot - 1;
  }
}

void SessionTable::Shard::index_insert(std::uint32_t i) {
  if ((count + 1) * 4 > slots.size() * 3) {
    // Grow to keep the load under 3/4; every node is placed again.
    std::vector<std::uint32_t> old = std::move(slots);
    slots.assign(std::max<std::size_t>(16, old.size() * 2), 0);
    const std::size_t mask = slots.size() - 1;
    for (const std::uint32_t slot : old) {
      if (slot == 0) continue;
      std::size_t p = at(slot - 1).hash & mask;
      while (slots[p] != 0) p = (p + 1) & mask;
      slots[p] = slot;
    }
  }
  const std::size_t mask = slots.size() - 1;
  std::size_t p = at(i).hash & mask;
  while (slots[p] != 0) p = (p + 1) & mask;
  slots[p] = i + 1;
  ++count;
}

void SessionTable::Shard::index_erase(std::uint32_t i) {
  // Backward-shift deletion: no tombstones, probe chains stay short.
  const std::size_t mask = slots.size() - 1;
  std::size_t hole = at(i).hash & mask;
  while (slots[hole] != i + 1) hole = (hole + 1) & mask;
  for (std::size_t p = (hole + 1) & mask;; p = (p + 1) & mask) {
    const std::uint32_t slot = slots[p];
    if (slot == 0) break;
    const std::size_t home = at(slot - 1).hash & mask;
    // The entry at p may move into the hole when its home is not between hole and p.
    const bool movable = hole <= p ? (home <= hole || home > p) : (home <= hole && home > p);
    if (movable) {
      slots[hole] = slot;
      hole = p;
    }
  }
  slots[hole] = 0;
  --count;
}

void SessionTable::Shard::unlink(std::uint32_t i) {
  Node& n = at(i);
  (n.prev == kNil ? head : at(n.prev).next) = n.next;
  (n.next == kNil ? tail : at(n.next).prev) = n.prev;
  n.prev = n.next = kNil;
}

void SessionTable::Shard::push_front(std::uint32_t i) {
  Node& n = at(i);
  n.prev = kNil;
  n.next = head;
  if (head != kNil) at(head).prev = i;
  head = i;
  if (tail == kNil) tail = i;
}

std::uint32_t SessionTable::Shard::new_node() {
  if (free != kNil) {
    const std::uint32_t i = free;
    free = at(i).next;
    return i;
  }
  if (nodes % kChunk == 0) chunks.push_back(std::make_unique<Node[]>(kChunk));
  return nodes++;
}

// ---- the table ----

void SessionTable::count(int ordinal, int delta) {
  if (ordinal >= 0 && ordinal < kMaxReplicas) per_pod_[ordinal].fetch_add(delta, std::memory_order_relaxed);
}

std::int64_t SessionTable::sessions_on(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return 0;
  return per_pod_[ordinal].load(std::memory_order_relaxed);
}

std::size_t SessionTable::charge_of(std::size_t id_size, const SessionRecord& rec) {
  const std::size_t payload = rec.init.size() + rec.init_target.size() + rec.init_fields.size() +
                              rec.backend_session.size() + rec.principal.size();
  // A record with nothing of its own is the one its pod's sessions share: not charged.
  return sizeof(Node) + (id_size > kInlineKey ? id_size : 0) + (payload == 0 ? 0 : sizeof(SessionRecord) + payload);
}

void SessionTable::drop_locked(Shard& s, std::uint32_t i) {
  Node& n = s.at(i);
  bytes_.fetch_sub(charge_of(n.len, *n.rec), std::memory_order_relaxed);
  count(n.rec->ordinal, -1);
  s.index_erase(i);
  s.unlink(i);
  if (n.len > kInlineKey) delete[] n.key.big;
  release(n.rec);
  n.rec.reset();
  n.used = false;
  n.pins = 0;
  n.len = 0;
  n.next = s.free;
  s.free = i;
  size_.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<const SessionRecord> SessionTable::find(const std::string& id, clock::time_point now, bool* refreshed) {
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  std::lock_guard lock(s.mu);
  const std::uint32_t i = s.lookup(id, hash);
  if (i == kNil) return nullptr;
  Node& n = s.at(i);
  const duration life = ttl();
  if (now - n.refreshed >= life) {
    drop_locked(s, i);
    expired_.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  // Slide the TTL at most every ttl/10 (DESIGN.md): cheap here, and the same rule
  // bounds the refresh writes a remote store would see.
  if (now - n.refreshed >= life / 10) {
    n.refreshed = now;
    if (refreshed != nullptr) *refreshed = true;
  }
  if (s.head != i) {
    s.unlink(i);
    s.push_front(i);
  }
  return n.rec;
}

std::size_t SessionTable::record_hash(const SessionRecord& rec) {
  std::size_t h = std::hash<std::string>{}(rec.init);
  h = h * 31U + std::hash<std::string>{}(rec.backend_session);
  h = h * 31U + std::hash<std::string>{}(rec.principal);
  h = h * 31U + std::hash<std::string>{}(rec.init_fields);
  return h * 31U + static_cast<std::size_t>(rec.ordinal);
}

void SessionTable::release(const std::shared_ptr<const SessionRecord>& rec) {
  // The last session of a record that is not its pod's shared one: the interning index
  // lets go of it now, so an evicted initialize body is freed at once, not at the next sweep.
  if (charge_of(0, *rec) == sizeof(Node)) return;
  std::lock_guard lock(intern_mu_);
  if (rec.use_count() > 2) return;  // the node's reference and the index's: others still use it
  const auto [first, last] = interned_.equal_range(record_hash(*rec));
  for (auto it = first; it != last; ++it) {
    if (it->second == rec) {
      interned_.erase(it);
      return;
    }
  }
}

std::shared_ptr<const SessionRecord> SessionTable::intern(SessionRecord rec) {
  // What the table keeps: routing and re-initialize need the rest, Redis keeps all.
  rec.url = std::string();
  rec.created = 0;
  rec.epoch = 0;
  std::lock_guard lock(intern_mu_);
  if (rec.backend_session.empty() && rec.init.empty() && rec.init_target.empty() && rec.init_fields.empty() &&
      rec.principal.empty()) {
    auto& plain = plain_[static_cast<std::size_t>(rec.ordinal)];
    if (!plain) plain = std::make_shared<const SessionRecord>(std::move(rec));
    return plain;
  }
  const std::size_t h = record_hash(rec);
  const auto [first, last] = interned_.equal_range(h);
  for (auto it = first; it != last; ++it) {
    const SessionRecord& r = *it->second;
    if (r.ordinal == rec.ordinal && r.init == rec.init && r.backend_session == rec.backend_session &&
        r.principal == rec.principal && r.init_target == rec.init_target && r.init_fields == rec.init_fields) {
      return it->second;
    }
  }
  auto shared = std::make_shared<const SessionRecord>(std::move(rec));
  interned_.emplace(h, shared);
  return shared;
}

void SessionTable::insert(const std::string& id, SessionRecord rec, clock::time_point now) {
  if (rec.ordinal < 0 || rec.ordinal >= kMaxReplicas || id.empty() || id.size() > UINT16_MAX) return;
  auto shared = intern(std::move(rec));
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  const std::size_t charge = charge_of(id.size(), *shared);
  const auto replace = [&](std::uint32_t i) {
    Node& n = s.at(i);
    bytes_.fetch_sub(charge_of(n.len, *n.rec), std::memory_order_relaxed);
    bytes_.fetch_add(charge, std::memory_order_relaxed);
    count(n.rec->ordinal, -1);
    count(shared->ordinal, +1);
    n.rec = std::move(shared);
    n.refreshed = now;
    s.unlink(i);
    s.push_front(i);
  };
  {
    std::lock_guard lock(s.mu);
    if (const std::uint32_t i = s.lookup(id, hash); i != kNil) {
      replace(i);
      return;
    }
  }
  // The bound is the table's, not a shard's: room is made before this shard is locked
  // again (never two shard locks at once).
  while (size_.load(std::memory_order_relaxed) >= max_sessions_ ||
         bytes_.load(std::memory_order_relaxed) + charge > max_bytes_) {
    if (!make_room(hash % kShards)) break;  // every session is pinned: the bound gives way
  }
  std::lock_guard lock(s.mu);
  if (const std::uint32_t i = s.lookup(id, hash); i != kNil) {
    replace(i);
    return;
  }
  const std::uint32_t i = s.new_node();
  Node& n = s.at(i);
  n.used = true;
  n.hash = hash;
  n.len = static_cast<std::uint16_t>(id.size());
  if (n.len <= kInlineKey) {
    std::memcpy(n.key.small.data(), id.data(), n.len);
  } else {
    n.key.big = new char[n.len];
    std::memcpy(n.key.big, id.data(), n.len);
  }
  n.refreshed = now;
  count(shared->ordinal, +1);
  n.rec = std::move(shared);
  s.index_insert(i);
  s.push_front(i);
  size_.fetch_add(1, std::memory_order_relaxed);
  bytes_.fetch_add(charge, std::memory_order_relaxed);
}

bool SessionTable::make_room(std::size_t first) {
  constexpr std::uint32_t kLookBack = 64;  // pinned sessions passed over in one shard before the next one
  for (std::size_t k = 0; k < kShards; ++k) {
    Shard& s = shards_[(first + k) % kShards];
    std::lock_guard lock(s.mu);
    std::uint32_t steps = 0;
    for (std::uint32_t i = s.tail; i != kNil && steps < kLookBack; i = s.at(i).prev, ++steps) {
      if (s.at(i).pins == 0) {
        drop_locked(s, i);
        evicted_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
  }
  return false;
}

void SessionTable::pin(const std::string& id, int delta) {
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  std::lock_guard lock(s.mu);
  const std::uint32_t i = s.lookup(id, hash);
  if (i == kNil) return;
  Node& n = s.at(i);
  if (n.pins == UINT8_MAX) return;  // sticky
  if (delta > 0) {
    ++n.pins;
  } else if (n.pins > 0) {
    --n.pins;
  }
}

bool SessionTable::erase(const std::string& id) {
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  std::lock_guard lock(s.mu);
  const std::uint32_t i = s.lookup(id, hash);
  if (i == kNil) return false;
  drop_locked(s, i);
  return true;
}

std::vector<std::pair<std::string, std::shared_ptr<const SessionRecord>>> SessionTable::held(clock::time_point now) {
  std::vector<std::pair<std::string, std::shared_ptr<const SessionRecord>>> out;
  out.reserve(size());
  const duration life = ttl();
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (std::uint32_t i = s.head; i != kNil; i = s.at(i).next) {
      const Node& n = s.at(i);
      if (now - n.refreshed < life) out.emplace_back(std::string(n.id()), n.rec);
    }
  }
  return out;
}

std::size_t SessionTable::sweep(clock::time_point now) {
  std::size_t dropped = 0;
  const duration life = ttl();
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    // Every node is looked at: LRU order is use order, not refresh order.
    for (std::uint32_t i = s.tail; i != kNil;) {
      const std::uint32_t prev = s.at(i).prev;
      if (now - s.at(i).refreshed >= life) {
        drop_locked(s, i);
        ++dropped;
      }
      i = prev;
    }
  }
  expired_.fetch_add(dropped, std::memory_order_relaxed);
  // Shared records nobody points at any more.
  std::lock_guard lock(intern_mu_);
  std::erase_if(interned_, [](const auto& kv) { return kv.second.use_count() == 1; });
  return dropped;
}

}  // namespace mcpproxy
