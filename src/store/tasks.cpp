// One worker's view of the affinity table (tasks.hpp).
#include "store/tasks.hpp"

#include "core/telemetry/log.hpp"
#include "store/redis_client.hpp"

namespace mcpproxy {

void Tasks::use_store(std::shared_ptr<RedisLink> link, std::string key_prefix) {
  link_ = std::move(link);
  key_prefix_ = std::move(key_prefix);
}

void Tasks::count_learned(const Learned& l) {
  (l.task ? metrics_.affinity.tasks_learned : metrics_.affinity.handles_learned)
      .fetch_add(1, std::memory_order_relaxed);
}

std::optional<TaskRecord> Tasks::find_cached(const std::string& key) {
  bool refresh = false;
  auto rec = table_.find(key, clock::now(), &refresh);
  if (rec && refresh && link_) slide_in_store(key, *rec);
  return rec;
}

void Tasks::slide_in_store(const std::string& key, const TaskRecord& rec) {
  // In the background: routing does not wait for a TTL to slide.
  net::co_spawn(
      ioc_,
      [link = link_, k = redis_key(key), ttl = std::to_string(rec.ttl.count()),
       &metrics = metrics_]() -> net::awaitable<void> {
        std::vector<std::string> args{"PEXPIRE", k, ttl};
        const auto r = co_await link->command(std::move(args));
        const bool failed = r.ec || r.reply.is_error();
        metrics.count_store(StoreOp::expire, failed ? StoreResult::error : StoreResult::ok);
      },
      net::detached);
}

net::awaitable<std::optional<TaskRecord>> Tasks::find_missed(const std::string& key, bool& store_failed) {
  if (!link_) co_return std::nullopt;
  std::vector<std::string> args{"GET", redis_key(key)};
  const auto r = co_await link_->command(std::move(args));
  if (r.ec || r.reply.is_error()) {
    metrics_.count_store(StoreOp::get, StoreResult::error);
    store_failed = true;
    co_return std::nullopt;
  }
  if (r.reply.type != RedisReply::Type::string) {
    metrics_.count_store(StoreOp::get, StoreResult::miss);
    co_return std::nullopt;
  }
  metrics_.count_store(StoreOp::get, StoreResult::ok);
  auto rec = decode_task_record(r.reply.str);
  if (!rec) {
    log_event(spdlog::level::warn, "redis holds a task record this build cannot read; treated as unknown", {});
    co_return std::nullopt;
  }
  table_.cache(key, *rec);
  // Read through: slid as a hit would be (the table's copy is fresh now).
  slide_in_store(key, *rec);
  co_return rec;
}

net::awaitable<bool> Tasks::learn_one(const Learned& l, const TaskRecord& rec) {
  std::vector<std::string> set{"SET", redis_key(l.key), encode_task_record(rec), "PX", std::to_string(rec.ttl.count()),
                               "NX"};
  const auto r = co_await link_->command(std::move(set));
  if (r.ec || r.reply.is_error()) {
    // Kept in this process: its own replica routes the task; another one cannot.
    metrics_.count_store(StoreOp::set, StoreResult::error);
    metrics_.affinity.count_refused(KeyRefused::store_failed);
    table_.cache(l.key, rec);
    co_return true;
  }
  if (r.reply.type != RedisReply::Type::nil) {
    metrics_.count_store(StoreOp::set, StoreResult::ok);
    table_.cache(l.key, rec);
    co_return true;
  }
  // Held already: by this pod (the same answer seen twice) or by another, which keeps it.
  metrics_.count_store(StoreOp::set, StoreResult::miss);
  bool failed = false;
  const auto holder = co_await find_missed(l.key, failed);
  co_return holder && holder->ordinal == rec.ordinal;
}

net::awaitable<void> Tasks::learn(const std::vector<Learned>& keys, int ordinal, const std::string& principal) {
  for (const Learned& l : keys) {
    TaskRecord rec;
    rec.ordinal = ordinal;
    rec.ttl = l.ttl;
    rec.principal = principal;
    if (link_) {
      // Redis decides across the replicas; the local table is its cache.
      if (co_await learn_one(l, rec)) {
        count_learned(l);
      } else {
        metrics_.affinity.count_refused(KeyRefused::taken);
      }
      continue;
    }
    switch (table_.insert(l.key, rec)) {
      case TaskInsert::inserted:
      case TaskInsert::same:
        count_learned(l);
        break;
      case TaskInsert::taken:
        metrics_.affinity.count_refused(KeyRefused::taken);
        break;
      case TaskInsert::full:
        metrics_.affinity.count_refused(KeyRefused::full);
        break;
    }
  }
}

}  // namespace mcpproxy
