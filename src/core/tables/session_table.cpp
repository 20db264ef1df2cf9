#include <algorithm>
#include <cstring>
#include <functional>

#include "core/tables/session.hpp"

namespace mcpproxy {

SessionTable::SessionTable(std::size_t max_sessions, duration ttl, std::size_t max_bytes, TableRole role)
    : max_sessions_(std::max<std::size_t>(1, max_sessions)),
      max_bytes_(max_bytes),
      role_(role),
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

// A node is on the list its pins say (list_of): pins change only while it is off its list.
void SessionTable::Shard::unlink(std::uint32_t i) {
  List& l = list_of(i);
  Node& n = at(i);
  (n.prev == kNil ? l.head : at(n.prev).next) = n.next;
  (n.next == kNil ? l.tail : at(n.next).prev) = n.prev;
  n.prev = n.next = kNil;
}

void SessionTable::Shard::push_front(std::uint32_t i) {
  List& l = list_of(i);
  Node& n = at(i);
  n.prev = kNil;
  n.next = l.head;
  if (l.head != kNil) at(l.head).prev = i;
  l.head = i;
  if (l.tail == kNil) l.tail = i;
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
  const std::size_t charge = charge_of(n.len, *n.rec);
  bytes_.fetch_sub(charge, std::memory_order_relaxed);
  if (n.pins != 0) {
    pinned_.fetch_sub(1, std::memory_order_relaxed);
    pinned_bytes_.fetch_sub(charge, std::memory_order_relaxed);
  }
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
  if (n.pins == 0 && s.lru.head != i) {  // a pinned session is in no use order
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
  h = h * 31U + (rec.init_not_kept ? 1U : 0U);
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
      rec.principal.empty() && !rec.init_not_kept) {
    auto& plain = plain_[static_cast<std::size_t>(rec.ordinal)];
    if (!plain) plain = std::make_shared<const SessionRecord>(std::move(rec));
    return plain;
  }
  const std::size_t h = record_hash(rec);
  const auto [first, last] = interned_.equal_range(h);
  for (auto it = first; it != last; ++it) {
    const SessionRecord& r = *it->second;
    if (r.ordinal == rec.ordinal && r.init == rec.init && r.backend_session == rec.backend_session &&
        r.principal == rec.principal && r.init_target == rec.init_target && r.init_fields == rec.init_fields &&
        r.init_not_kept == rec.init_not_kept) {
      return it->second;
    }
  }
  auto shared = std::make_shared<const SessionRecord>(std::move(rec));
  interned_.emplace(h, shared);
  return shared;
}

void SessionTable::replace_locked(Shard& s, std::uint32_t i, std::shared_ptr<const SessionRecord> rec,
                                  std::size_t charge, clock::time_point now) {
  Node& n = s.at(i);
  // The difference in one step (modular: a smaller record subtracts): a moment with the old
  // charge taken off would let another writer's reserve use room that is not there.
  const std::size_t grow = charge - charge_of(n.len, *n.rec);
  bytes_.fetch_add(grow, std::memory_order_relaxed);
  if (n.pins != 0) pinned_bytes_.fetch_add(grow, std::memory_order_relaxed);
  count(n.rec->ordinal, -1);
  count(rec->ordinal, +1);
  n.rec = std::move(rec);
  n.refreshed = now;
  s.unlink(i);
  s.push_front(i);
}

void SessionTable::unpin_locked(Shard& s, std::uint32_t i) {
  Node& n = s.at(i);
  if (n.pins == 0) return;
  const std::size_t charge = charge_of(n.len, *n.rec);
  s.unlink(i);
  pinned_.fetch_sub(1, std::memory_order_relaxed);
  pinned_bytes_.fetch_sub(charge, std::memory_order_relaxed);
  n.pins = 0;
  s.push_front(i);
}

void SessionTable::add_locked(Shard& s, const std::string& id, std::uint32_t hash,
                              std::shared_ptr<const SessionRecord> rec, clock::time_point now) {
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
  count(rec->ordinal, +1);
  n.rec = std::move(rec);
  s.index_insert(i);
  s.push_front(i);
}

bool SessionTable::reserve(std::size_t charge) {
  // Compare-and-swap, so that writers on several shards at once never pass a bound together.
  std::size_t n = size_.load(std::memory_order_relaxed);
  do {
    if (n >= max_sessions_) return false;
  } while (!size_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  std::size_t b = bytes_.load(std::memory_order_relaxed);
  do {
    if (b + charge > max_bytes_) {
      size_.fetch_sub(1, std::memory_order_relaxed);
      return false;
    }
  } while (!bytes_.compare_exchange_weak(b, b + charge, std::memory_order_relaxed));
  return true;
}

bool SessionTable::room_for(std::size_t charge, std::size_t first, clock::time_point now) {
  // The bound is the table's, not a shard's: room is made with no shard locked but the one
  // make_room looks at (never two at once). Pinned sessions never go: when they alone fill
  // a bound nothing is dropped for a session that could not go in anyway.
  while (size_.load(std::memory_order_relaxed) >= max_sessions_ ||
         bytes_.load(std::memory_order_relaxed) + charge > max_bytes_) {
    if (pinned_.load(std::memory_order_relaxed) >= max_sessions_ ||
        pinned_bytes_.load(std::memory_order_relaxed) + charge > max_bytes_) {
      return false;
    }
    if (!make_room(first, now)) return false;
  }
  return true;
}

bool SessionTable::insert(const std::string& id, SessionRecord rec, clock::time_point now) {
  if (rec.ordinal < 0 || rec.ordinal >= kMaxReplicas || id.empty() || id.size() > UINT16_MAX) return false;
  auto shared = intern(std::move(rec));
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  const std::size_t charge = charge_of(id.size(), *shared);
  // Another writer may take the room made (bounded: a few attempts, then no room).
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    {
      std::lock_guard lock(s.mu);
      if (const std::uint32_t i = s.lookup(id, hash); i != kNil) {
        replace_locked(s, i, std::move(shared), charge, now);
        return true;
      }
      if (reserve(charge)) {
        add_locked(s, id, hash, std::move(shared), now);
        return true;
      }
    }
    if (!room_for(charge, hash % kShards, now)) break;
  }
  release(shared);
  return false;
}

NewSession SessionTable::insert_new(const std::string& id, SessionRecord rec,
                                    std::shared_ptr<const SessionRecord>* holder, clock::time_point now) {
  if (rec.ordinal < 0 || rec.ordinal >= kMaxReplicas || id.empty() || id.size() > UINT16_MAX) return NewSession::full;
  const std::uint32_t hash = hash_of(id);
  Shard& s = shard_for(hash);
  const duration life = ttl();
  // The id's current holder, when it is live (s.mu held): it keeps the id, and its record.
  const auto held_live = [&](std::uint32_t i) {
    if (i == kNil || now - s.at(i).refreshed >= life) return false;
    if (holder != nullptr) *holder = s.at(i).rec;
    return true;
  };
  {
    std::lock_guard lock(s.mu);
    if (held_live(s.lookup(id, hash))) return NewSession::taken;
  }
  auto shared = intern(std::move(rec));
  NewSession kept = NewSession::inserted;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const std::size_t charge = charge_of(id.size(), *shared);
    {
      std::lock_guard lock(s.mu);
      const std::uint32_t i = s.lookup(id, hash);
      if (held_live(i)) {  // another writer of this process got it meanwhile
        release(shared);
        return NewSession::taken;
      }
      if (i != kNil) {
        // Its expired record: another session had the id. Its pins were that session's
        // streams: the new one starts with none (their late unpins stop at zero).
        unpin_locked(s, i);
        replace_locked(s, i, std::move(shared), charge, now);
        return kept;
      }
      if (reserve(charge)) {
        add_locked(s, id, hash, std::move(shared), now);
        return kept;
      }
    }
    if (room_for(charge, hash % kShards, now)) continue;
    // The memory store keeps the session without its initialize rather than refuse it: it
    // routes, it only cannot be re-initialized on another pod.
    if (role_ != TableRole::store || shared->init.empty()) break;
    SessionRecord bare = *shared;
    bare.init = std::string();
    bare.init_target = std::string();
    bare.init_fields = std::string();
    bare.init_not_kept = true;
    release(shared);
    shared = intern(std::move(bare));
    kept = NewSession::inserted_without_init;
  }
  release(shared);
  return NewSession::full;
}

bool SessionTable::has_room(clock::time_point now) {
  // A cache makes room by dropping sessions that are not pinned: only pins can fill it.
  if (role_ == TableRole::cache) {
    return pinned_.load(std::memory_order_relaxed) < max_sessions_ &&
           pinned_bytes_.load(std::memory_order_relaxed) + sizeof(Node) <= max_bytes_;
  }
  return room_for(sizeof(Node), 0, now);
}

bool SessionTable::make_room(std::size_t first, clock::time_point now) {
  const duration life = ttl();
  for (std::size_t k = 0; k < kShards; ++k) {
    Shard& s = shards_[(first + k) % kShards];
    std::lock_guard lock(s.mu);
    const std::uint32_t i = s.lru.tail;
    if (i == kNil) continue;
    if (now - s.at(i).refreshed >= life) {
      drop_locked(s, i);
      expired_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (role_ == TableRole::cache) {
      drop_locked(s, i);
      evicted_.fetch_add(1, std::memory_order_relaxed);
      return true;
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
  if (delta < 0 && n.pins == 0) return;
  const bool was_pinned = n.pins != 0;
  const bool pinned = delta > 0 || n.pins > 1;
  if (was_pinned != pinned) {
    // It moves between the LRU list and the pinned list, and the pinned sums follow.
    const std::size_t charge = charge_of(n.len, *n.rec);
    s.unlink(i);
    if (pinned) {
      pinned_.fetch_add(1, std::memory_order_relaxed);
      pinned_bytes_.fetch_add(charge, std::memory_order_relaxed);
    } else {
      pinned_.fetch_sub(1, std::memory_order_relaxed);
      pinned_bytes_.fetch_sub(charge, std::memory_order_relaxed);
    }
    n.pins = static_cast<std::uint8_t>(n.pins + (delta > 0 ? 1 : -1));
    s.push_front(i);
    return;
  }
  n.pins = static_cast<std::uint8_t>(n.pins + (delta > 0 ? 1 : -1));
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
    for (const List* l : {&s.lru, &s.pinned}) {
      for (std::uint32_t i = l->head; i != kNil; i = s.at(i).next) {
        const Node& n = s.at(i);
        if (now - n.refreshed < life) out.emplace_back(std::string(n.id()), n.rec);
      }
    }
  }
  return out;
}

std::size_t SessionTable::sweep(clock::time_point now) {
  std::size_t dropped = 0;
  const duration life = ttl();
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    // Every node is looked at: LRU order is use order, not refresh order. A pinned session
    // expires too (its stream keeps it pinned, not alive: a request refreshes it).
    for (const List* l : {&s.lru, &s.pinned}) {
      for (std::uint32_t i = l->tail; i != kNil;) {
        const std::uint32_t prev = s.at(i).prev;
        if (now - s.at(i).refreshed >= life) {
          drop_locked(s, i);
          ++dropped;
        }
        i = prev;
      }
    }
  }
  expired_.fetch_add(dropped, std::memory_order_relaxed);
  // Shared records nobody points at any more.
  std::lock_guard lock(intern_mu_);
  std::erase_if(interned_, [](const auto& kv) { return kv.second.use_count() == 1; });
  return dropped;
}

}  // namespace mcpproxy
