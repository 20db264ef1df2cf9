#pragma once
// One worker's view of the affinity table (task ids and handles -> pod): the process-wide
// TaskTable, and with the redis store this worker's Redis link, behind one interface (as
// Sessions is for sessions). Keys live in Redis as `<key_prefix>task:<id>` and
// `<key_prefix>handle:<param>:<value>`, one key per command (a cluster routes each by its
// slot), with the key's own TTL (PX), written NX: a key is the pod's that created it first.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mcp/task_affinity.hpp"
#include "core/tables/task_table.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"

namespace mcpproxy {

class RedisLink;

class Tasks {
 public:
  Tasks(net::io_context& ioc, TaskTable& table, Metrics& metrics) : ioc_(ioc), table_(table), metrics_(metrics) {}

  // With the redis store: this worker's link (set once at start-up, before any request).
  void use_store(std::shared_ptr<RedisLink> link, std::string key_prefix);
  bool has_store() const { return link_ != nullptr; }

  // The local table, no round trip; slides the key (and, now and then, its Redis TTL).
  std::optional<TaskRecord> find_cached(const std::string& key);
  // A key the local table does not have: Redis is asked (learned by another replica, or
  // before a restart). `store_failed`: Redis could not be asked.
  net::awaitable<std::optional<TaskRecord>> find_missed(const std::string& key, bool& store_failed);

  // Records the keys an answer created, before it goes downstream: the table, then Redis
  // (SET NX PX; a key another pod holds stays that pod's). Counted as learned or refused.
  net::awaitable<void> learn(const std::vector<Learned>& keys, int ordinal, const std::string& principal);

 private:
  std::string redis_key(const std::string& key) const { return key_prefix_ + key; }
  net::awaitable<bool> learn_one(const Learned& l, const TaskRecord& rec);
  void slide_in_store(const std::string& key, const TaskRecord& rec);
  void count_learned(const Learned& l);

  net::io_context& ioc_;
  TaskTable& table_;
  Metrics& metrics_;
  std::shared_ptr<RedisLink> link_;
  std::string key_prefix_;
};

}  // namespace mcpproxy
