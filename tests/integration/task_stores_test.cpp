// Task affinity on the highly available Redis layouts (issue 27: both stores, Sentinel and
// Cluster): two proxy replicas in front of task_pods.py, each task made through one replica
// and polled through the other at once, then a failover during traffic. A task request that
// reaches a pod which never made the task is counted by that pod (TaskPods::misses).
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "redis_ha_support.hpp"
#include "task_support.hpp"

using namespace task_test;
using namespace redis_ha;

namespace {

using Clock = std::chrono::steady_clock;

std::vector<std::string> with_random_placement(std::vector<std::string> args) {
  args.insert(args.end(), {"--placement", "random"});
  return args;
}

std::string task_key(const std::string& id) { return "mcp-session-proxy:task:" + id; }

// The task keys a node holds.
long task_keys_on(std::uint16_t port) {
  return std::stol(redis_cmd(port, {"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", task_key("*")}));
}

// The primary that was not one of `before` (the killed primary's promoted replica).
std::optional<std::uint16_t> promoted_replica(const ClusterSetup& cluster, const std::vector<std::uint16_t>& before) {
  for (const std::uint16_t p : cluster.primaries()) {
    if (std::find(before.begin(), before.end(), p) == before.end()) return p;
  }
  return std::nullopt;
}

struct Made {
  std::string id;
  bool modern = false;  // 2026 (Mcp-Name) or 2025 (params.taskId)
  const Proxy* via = nullptr;
};

// The tasks of `list` that `c` routes to their pod.
int routed_by(const Proxy& c, const std::vector<Made>& list) {
  int routed = 0;
  for (const Made& m : list) routed += poll_outcome(c.port, m.id, m.modern) == "routed" ? 1 : 0;
  return routed;
}

std::vector<Made> slice(const std::vector<Made>& v, std::size_t from, std::size_t to) {
  return {v.begin() + static_cast<std::ptrdiff_t>(from), v.begin() + static_cast<std::ptrdiff_t>(to)};
}

// Tasks made and polled through two proxy replicas while Redis changes, and what went
// wrong, by phase and kind.
struct TaskTraffic {
  // Two proxy replicas on `proxy_args`, placing at random (tasks on every pod).
  TaskTraffic(std::vector<std::string> proxy_args, const std::string& name)
      : args(with_random_placement(std::move(proxy_args))), a(args, name + "-a"), b(args, name + "-b") {}
  std::vector<std::string> args;
  Proxy a;
  Proxy b;
  std::vector<Made> made;
  std::map<std::string, int> errors;  // what must never happen
  // Polls through the other replica of a task made during the failover, by outcome.
  std::map<std::string, int> failover_cross;
  std::string phase = "before";
  std::string last_cross;  // the outcome of the last such poll

  const Proxy& other(const Proxy& p) const { return &p == &a ? b : a; }

  // A task made through one replica (2026 and 2025 in turn).
  std::optional<Made> create(int i) {
    Made m{"", i % 2 == 0, i % 4 < 2 ? &a : &b};
    m.id = m.modern ? create_task_2026(m.via->port, i) : create_task_2025(m.via->port, i);
    if (m.id.empty()) {
      ++errors[phase + ": create"];
      return std::nullopt;
    }
    made.push_back(m);
    return m;
  }
  void expect_routed(const Proxy& via, const Made& m, const std::string& what) {
    const std::string got = poll_outcome(via.port, m.id, m.modern);
    if (got != "routed") ++errors[phase + ": " + what + " " + got];
  }
  // Made through one replica, polled at once through the other, which never saw it.
  void create_and_poll(int i) {
    if (const auto m = create(i)) expect_routed(other(*m->via), *m, "poll through the other replica");
  }
  // During a failover: polled through its own replica (which holds it whatever Redis did),
  // and through the other, which may not reach Redis yet (503, retry), or reach a primary
  // the record never got to (its write failed while there was none: not found).
  void create_during_failover(int i) {
    const auto m = create(i);
    if (!m) return;
    expect_routed(*m->via, *m, "poll through its own replica");
    const std::string cross = poll_outcome(other(*m->via).port, m->id, m->modern);
    last_cross = cross;
    if (cross == "routed" || cross == "not_found" || cross == "status 503") {
      ++failover_cross[cross];
    } else {
      ++errors[phase + ": poll through the other replica " + cross];
    }
  }
  // `n` tasks, each made through one replica and polled through the other at once: how
  // many were made.
  std::size_t create_and_poll_each(int n) {
    for (int i = 0; i < n; ++i) create_and_poll(i);
    return made.size();
  }
  // The first `n` tasks, each through one replica (in turn from round to round).
  void poll_first(std::size_t n, int round) {
    for (std::size_t i = 0; i < n; ++i) {
      expect_routed((static_cast<int>(i) + round) % 2 == 0 ? a : b, made[i], "poll of an earlier task");
    }
  }
  // After the failover: 20 more tasks made and polled through the other replica; then a
  // proxy replica started afresh routes every task made before the failover (the replicated
  // records) and after it. Returns what became of the tasks made during it.
  std::string after_failover(const std::string& name, std::size_t before) {
    const std::size_t during = made.size();
    phase = "after";
    for (int i = 0; i < 20; ++i) create_and_poll(2000 + i);
    EXPECT_TRUE(errors.empty()) << error_list(errors);
    const Proxy c(args, name);
    EXPECT_EQ(routed_by(c, slice(made, 0, before)), static_cast<int>(before)) << "the tasks made before the failover";
    EXPECT_EQ(routed_by(c, slice(made, during, made.size())), 20) << "the tasks made after it";
    const int kept = routed_by(c, slice(made, before, during));
    return "tasks made during the failover, polled through the other replica at once: " + error_list(failover_cross) +
           "; " + std::to_string(kept) + " of " + std::to_string(during - before) + " of them in Redis afterwards";
  }
};

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

// kill -9 of the primary while tasks are made and polled through two replicas: the records
// that reached the replica survive its promotion (a third proxy replica started afterwards
// routes them all), every task request is answered, and none reaches a pod without the task.
TEST(TaskStoresSentinel, TasksMadeOnOneReplicaArePolledOnTheOtherThroughAFailover) {
  SentinelSetup redis;
  TaskPods pods;
  TaskTraffic traffic(redis.proxy_args(pods.url_template()), "tasks-sentinel");
  const std::size_t before = traffic.create_and_poll_each(40);
  ASSERT_EQ(before, 40U);
  ASSERT_TRUE(eventually([&] {
    for (const Made& m : traffic.made) {
      if (redis_cmd(redis.replica->port, {"EXISTS", task_key(m.id)}) != "1") return false;
    }
    return true;
  })) << "every record has reached the replica before the primary dies";

  redis.primary->kill();
  const auto killed = Clock::now();
  const std::string promoted_name = "[127.0.0.1 " + std::to_string(redis.replica->port) + "]";
  std::optional<Clock::duration> promoted;
  std::optional<Clock::duration> new_record;
  std::set<const Proxy*> writing;
  traffic.phase = "failover";
  int round = 0;
  // Until a task made through each proxy replica after the promotion has its record on the
  // new primary and was routed through the other replica at once (bounded: 30 s).
  for (; writing.size() < 2 && Clock::now() - killed < 30s; ++round) {
    traffic.poll_first(before, round);
    if (!promoted && redis.named_primary() == promoted_name) promoted = Clock::now() - killed;
    traffic.create_during_failover(1000 + round);
    if (promoted && traffic.last_cross == "routed" &&
        redis_cmd(redis.replica->port, {"EXISTS", task_key(traffic.made.back().id)}) == "1") {
      if (!new_record) new_record = Clock::now() - killed;
      writing.insert(traffic.made.back().via);
    }
  }
  ASSERT_TRUE(promoted.has_value()) << "the sentinels never promoted the replica";
  ASSERT_EQ(writing.size(), 2U) << "new task records reach the new primary through both proxy replicas";
  const std::string during = traffic.after_failover("tasks-sentinel-c", before);
  EXPECT_EQ(pods.misses(), 0) << "no task request reached a pod without the task";
  std::cout << "sentinel: replica promoted " << ms(*promoted) << " ms after the kill, a new task's record on it "
            << ms(*new_record) << " ms after; " << round << " rounds; " << during << "\n";
}

// Task keys spread over a three-primary cluster (each key once, on several nodes); one
// primary killed during traffic, its replica promoted: the records it held are routed by a
// proxy replica started afterwards, and no task request reaches a pod without the task.
TEST(TaskStoresCluster, TaskKeysSpreadOverTheNodesAndSurviveAFailover) {
  ClusterSetup cluster;
  TaskPods pods;
  // One worker a proxy replica: each worker's link reads the slot map on its own, paced,
  // and a task record written through a link that has not read the new map yet is lost (it
  // is not queued as a session record is), so "both replicas write again" below is only
  // known for the replica's one link.
  std::vector<std::string> args = cluster.proxy_args(pods.url_template());
  *(std::find(args.begin(), args.end(), "--threads") + 1) = "1";
  TaskTraffic traffic(args, "tasks-cluster");
  const std::size_t before = traffic.create_and_poll_each(90);
  ASSERT_EQ(before, 90U);
  const std::vector<std::uint16_t> primaries = cluster.primaries();
  ASSERT_EQ(primaries.size(), 3U);
  long total = 0;
  int holding = 0;
  for (const std::uint16_t p : primaries) {
    const long n = task_keys_on(p);
    total += n;
    holding += n > 0 ? 1 : 0;
  }
  EXPECT_EQ(total, 90) << "each task's key on one primary";
  EXPECT_GE(holding, 2) << "the task keys are spread over the primaries by their slots";
  ASSERT_TRUE(eventually([&] {
    long replicated = 0;
    for (const auto& n : cluster.nodes) {
      if (redis_cmd(n->port, {"ROLE"}).rfind("[slave", 0) == 0) replicated += task_keys_on(n->port);
    }
    return replicated == 90;
  })) << "every record has reached its primary's replica before the kill";

  const std::uint16_t victim = primaries[2];
  const long on_victim = task_keys_on(victim);
  for (const auto& n : cluster.nodes) {
    if (n->port == victim) n->kill();
  }
  const auto killed = Clock::now();
  traffic.phase = "failover";
  // Until the replica is promoted and a task made through each proxy replica since then
  // has its record on it (the killed primary's slots are written again) and was routed
  // through the other replica at once.
  std::set<const Proxy*> writing;
  int round = 0;
  for (; writing.size() < 2 && Clock::now() - killed < 30s; ++round) {
    traffic.poll_first(before, round);
    traffic.create_during_failover(1000 + round);
    const auto promoted = promoted_replica(cluster, primaries);
    if (promoted && traffic.last_cross == "routed" &&
        redis_cmd(*promoted, {"EXISTS", task_key(traffic.made.back().id)}) == "1") {
      writing.insert(traffic.made.back().via);
    }
  }
  const auto settled = Clock::now() - killed;
  ASSERT_EQ(writing.size(), 2U) << "both proxy replicas write the promoted replica's slots";
  const std::string during = traffic.after_failover("tasks-cluster-c", before);
  EXPECT_EQ(pods.misses(), 0) << "no task request reached a pod without the task";
  std::cout << "cluster: " << on_victim << " of 90 task keys on the killed primary (routed afterwards as the "
            << "others); settled " << ms(settled) << " ms after the kill, " << round << " rounds; " << during << "\n";
}
