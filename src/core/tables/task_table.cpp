// The affinity table (task_table.hpp).
#include "core/tables/task_table.hpp"

#include <nlohmann/json.hpp>

namespace mcpproxy {

std::string encode_task_record(const TaskRecord& rec) {
  nlohmann::json j = {{"v", TaskRecord::kVersion}, {"ordinal", rec.ordinal}, {"ttl", rec.ttl.count()}};
  if (!rec.principal.empty()) j["principal"] = rec.principal;
  return j.dump();
}

std::optional<TaskRecord> decode_task_record(std::string_view text) {
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto v = j.find("v");
  const auto ordinal = j.find("ordinal");
  const auto ttl = j.find("ttl");
  if (v == j.end() || *v != TaskRecord::kVersion || ordinal == j.end() || !ordinal->is_number_integer() ||
      ttl == j.end() || !ttl->is_number_integer()) {
    return std::nullopt;
  }
  TaskRecord rec;
  const auto o = ordinal->get<std::int64_t>();
  const auto t = ttl->get<std::int64_t>();
  if (o < 0 || o >= kMaxReplicas || t <= 0) return std::nullopt;
  rec.ordinal = static_cast<int>(o);
  rec.ttl = std::chrono::milliseconds(t);
  if (const auto p = j.find("principal"); p != j.end()) {
    if (!p->is_string()) return std::nullopt;
    rec.principal = p->get<std::string>();
  }
  return rec;
}

TaskTable::TaskTable(std::size_t max_keys, std::size_t max_bytes, TableRole role)
    : max_keys_(max_keys), max_bytes_(max_bytes), role_(role) {}

void TaskTable::set_bounds(std::size_t max_keys, std::size_t max_bytes) {
  max_keys_.store(max_keys, std::memory_order_relaxed);
  max_bytes_.store(max_bytes, std::memory_order_relaxed);
}

std::size_t TaskTable::charge_of(const std::string& key, const TaskRecord& rec) {
  // The map node, its hash bucket and the strings' heap blocks, roughly.
  constexpr std::size_t kNode = 128;
  return kNode + key.size() + rec.principal.size();
}

bool TaskTable::fits(std::size_t charge) const {
  return size_.load(std::memory_order_relaxed) < max_keys_.load(std::memory_order_relaxed) &&
         bytes_.load(std::memory_order_relaxed) + charge <= max_bytes_.load(std::memory_order_relaxed);
}

void TaskTable::drop_locked(Shard& s, std::unordered_map<std::string, Entry>::iterator it) {
  bytes_.fetch_sub(charge_of(it->first, it->second.rec), std::memory_order_relaxed);
  size_.fetch_sub(1, std::memory_order_relaxed);
  s.keys.erase(it);
}

void TaskTable::add_locked(Shard& s, const std::string& key, const TaskRecord& rec, clock::time_point now) {
  s.keys.insert_or_assign(key, Entry{rec, now + rec.ttl, now});
  bytes_.fetch_add(charge_of(key, rec), std::memory_order_relaxed);
  size_.fetch_add(1, std::memory_order_relaxed);
}

bool TaskTable::room_for(std::size_t charge, std::size_t first, clock::time_point now) {
  // One shard locked at a time (never two: no lock order to keep). Expired keys first, in
  // every shard, searched for only where one may have expired since the last search: a
  // flood into a full table costs a check per shard, not a walk of the table.
  for (std::size_t k = 0; k < kShards && !fits(charge); ++k) {
    Shard& s = shards_[(first + k) % kShards];
    const std::lock_guard lock(s.mu);
    if (now < s.no_expiry_before) continue;
    clock::time_point earliest = clock::time_point::max();
    for (auto it = s.keys.begin(); it != s.keys.end();) {
      if (it->second.expires <= now) {
        drop_locked(s, it++);
      } else {
        earliest = std::min(earliest, it->second.expires);
        ++it;
      }
    }
    s.no_expiry_before = earliest;
  }
  if (fits(charge) || role_ == TableRole::store) return fits(charge);
  // A cache may drop any key: the remote store has it.
  for (std::size_t k = 0; k < kShards && !fits(charge); ++k) {
    Shard& s = shards_[(first + k) % kShards];
    const std::lock_guard lock(s.mu);
    while (!fits(charge) && !s.keys.empty()) {
      drop_locked(s, s.keys.begin());
      evicted_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return fits(charge);
}

std::optional<TaskRecord> TaskTable::find(const std::string& key, clock::time_point now, bool* refresh) {
  Shard& s = shard_for(key);
  const std::lock_guard lock(s.mu);
  const auto it = s.keys.find(key);
  if (it == s.keys.end()) return std::nullopt;
  Entry& e = it->second;
  if (e.expires <= now) {
    drop_locked(s, it);
    return std::nullopt;
  }
  e.expires = now + e.rec.ttl;
  if (refresh != nullptr) {
    *refresh = now - e.refreshed >= e.rec.ttl / 10;
    if (*refresh) e.refreshed = now;
  }
  return e.rec;
}

TaskInsert TaskTable::insert(const std::string& key, const TaskRecord& rec, clock::time_point now, TaskRecord* holder) {
  const std::size_t index = shard_index(key);
  Shard& s = shards_[index];
  const std::size_t charge = charge_of(key, rec);
  for (int attempt = 0;; ++attempt) {
    {
      const std::lock_guard lock(s.mu);
      if (const auto it = s.keys.find(key); it != s.keys.end()) {
        Entry& e = it->second;
        if (e.expires > now && e.rec.ordinal != rec.ordinal) {
          if (holder != nullptr) *holder = e.rec;
          return TaskInsert::taken;
        }
        if (e.expires > now) {
          // The same pod's key again: it slides, in place.
          bytes_.fetch_add(charge, std::memory_order_relaxed);
          bytes_.fetch_sub(charge_of(it->first, e.rec), std::memory_order_relaxed);
          e = Entry{rec, now + rec.ttl, now};
          return TaskInsert::same;
        }
        drop_locked(s, it);
      }
      if (fits(charge)) {
        add_locked(s, key, rec, now);
        return TaskInsert::inserted;
      }
    }
    if (attempt == 1 || !room_for(charge, index, now)) return TaskInsert::full;
  }
}

void TaskTable::cache(const std::string& key, const TaskRecord& rec, clock::time_point now) {
  const std::size_t index = shard_index(key);
  Shard& s = shards_[index];
  const std::size_t charge = charge_of(key, rec);
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      const std::lock_guard lock(s.mu);
      if (const auto it = s.keys.find(key); it != s.keys.end()) drop_locked(s, it);
      if (fits(charge)) {
        add_locked(s, key, rec, now);
        return;
      }
    }
    if (!room_for(charge, index, now)) return;
  }
}

bool TaskTable::erase(const std::string& key) {
  Shard& s = shard_for(key);
  const std::lock_guard lock(s.mu);
  const auto it = s.keys.find(key);
  if (it == s.keys.end()) return false;
  drop_locked(s, it);
  return true;
}

std::size_t TaskTable::sweep(clock::time_point now) {
  std::size_t dropped = 0;
  for (Shard& s : shards_) {
    const std::lock_guard lock(s.mu);
    for (auto it = s.keys.begin(); it != s.keys.end();) {
      if (it->second.expires <= now) {
        drop_locked(s, it++);
        ++dropped;
      } else {
        ++it;
      }
    }
  }
  return dropped;
}

}  // namespace mcpproxy
