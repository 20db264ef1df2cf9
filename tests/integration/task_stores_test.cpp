// Task affinity on the highly available Redis layouts (issue 27: both stores, Sentinel and
// Cluster): two proxy replicas in front of task_pods.py, each task made through one replica
// and polled through the other at once, then a failover during traffic. A task request that
// reaches a pod which never made the task is counted by that pod (TaskPods::misses).
#include <chrono>
#include <iostream>
#include <map>
#include <optional>

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

struct Made {
  std::string id;
  bool modern = false;  // 2026 (Mcp-Name) or 2025 (params.taskId)
  const Proxy* via = nullptr;
};

// Tasks made and polled through two proxy replicas while Redis changes, and what went
// wrong, by phase and kind.
struct TaskTraffic {
  TaskTraffic(const Proxy& first, const Proxy& second) : a(first), b(second) {}
  const Proxy& a;
  const Proxy& b;
  std::vector<Made> made;
  std::map<std::string, int> errors;  // what must never happen
  // Polls through the other replica of a task made during the failover, by outcome.
  std::map<std::string, int> failover_cross;
  std::string phase = "before";

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
    if (cross == "routed" || cross == "not_found" || cross == "status 503") {
      ++failover_cross[cross];
    } else {
      ++errors[phase + ": poll through the other replica " + cross];
    }
  }
  // The first `n` tasks, each through one replica (in turn from round to round).
  void poll_first(std::size_t n, int round) {
    for (std::size_t i = 0; i < n; ++i) {
      expect_routed((static_cast<int>(i) + round) % 2 == 0 ? a : b, made[i], "poll of an earlier task");
    }
  }
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

long long ms(Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

}  // namespace

// kill -9 of the primary while tasks are made and polled through two replicas: the records
// that reached the replica survive its promotion (a third proxy replica started afterwards
// routes them all), every task request is answered, and none reaches a pod without the task.
TEST(TaskStoresSentinel, TasksMadeOnOneReplicaArePolledOnTheOtherThroughAFailover) {
  SentinelSetup redis;
  TaskPods pods;
  const std::vector<std::string> args = with_random_placement(redis.proxy_args(pods.url_template()));
  Proxy a(args, "tasks-sentinel-a");
  Proxy b(args, "tasks-sentinel-b");
  TaskTraffic traffic(a, b);
  for (int i = 0; i < 40; ++i) traffic.create_and_poll(i);
  ASSERT_EQ(traffic.made.size(), 40U);
  const std::size_t before = traffic.made.size();
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
  traffic.phase = "failover";
  int round = 0;
  // Until a task made after the promotion has its record on the new primary (bounded: 30 s).
  for (; !new_record && Clock::now() - killed < 30s; ++round) {
    traffic.poll_first(before, round);
    if (!promoted && redis.named_primary() == promoted_name) promoted = Clock::now() - killed;
    traffic.create_during_failover(1000 + round);
    if (promoted && redis_cmd(redis.replica->port, {"EXISTS", task_key(traffic.made.back().id)}) == "1") {
      new_record = Clock::now() - killed;
    }
  }
  ASSERT_TRUE(promoted.has_value()) << "the sentinels never promoted the replica";
  ASSERT_TRUE(new_record.has_value()) << "no new task record reached the new primary";
  const std::size_t during = traffic.made.size();
  traffic.phase = "after";
  for (int i = 0; i < 20; ++i) traffic.create_and_poll(2000 + i);
  EXPECT_TRUE(traffic.errors.empty()) << error_list(traffic.errors);

  Proxy c(args, "tasks-sentinel-c");
  EXPECT_EQ(routed_by(c, slice(traffic.made, 0, before)), static_cast<int>(before)) << "the replicated records";
  EXPECT_EQ(routed_by(c, slice(traffic.made, during, traffic.made.size())), 20);
  const int kept = routed_by(c, slice(traffic.made, before, during));
  EXPECT_EQ(pods.misses(), 0) << "no task request reached a pod without the task";
  std::cout << "sentinel: replica promoted " << ms(*promoted) << " ms after the kill, a new task's record on it "
            << ms(*new_record) << " ms after; " << round << " rounds; tasks made during the failover, polled "
            << "through the other replica at once: " << error_list(traffic.failover_cross) << "; " << kept << " of "
            << during - before << " of them in Redis afterwards\n";
}

// Task keys spread over a three-primary cluster (each key once, on several nodes); one
// primary killed during traffic, its replica promoted: the records it held are routed by a
// proxy replica started afterwards, and no task request reaches a pod without the task.
TEST(TaskStoresCluster, TaskKeysSpreadOverTheNodesAndSurviveAFailover) {
  ClusterSetup cluster;
  TaskPods pods;
  const std::vector<std::string> args = with_random_placement(cluster.proxy_args(pods.url_template()));
  Proxy a(args, "tasks-cluster-a");
  Proxy b(args, "tasks-cluster-b");
  TaskTraffic traffic(a, b);
  for (int i = 0; i < 90; ++i) traffic.create_and_poll(i);
  ASSERT_EQ(traffic.made.size(), 90U);
  const std::size_t before = traffic.made.size();
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
  int round = 0;
  for (; Clock::now() - killed < 30s; ++round) {
    traffic.poll_first(before, round);
    traffic.create_during_failover(1000 + round);
    if (cluster.primaries().size() == 3 &&
        metric(a.metrics(), R"(mcp_proxy_redis_cluster_primaries{state="reachable"})").value_or(0) == 3 &&
        metric(b.metrics(), R"(mcp_proxy_redis_cluster_primaries{state="reachable"})").value_or(0) == 3) {
      break;
    }
  }
  const auto settled = Clock::now() - killed;
  ASSERT_EQ(cluster.primaries().size(), 3U) << "the replica was promoted";
  const std::size_t during = traffic.made.size();
  traffic.phase = "after";
  for (int i = 0; i < 20; ++i) traffic.create_and_poll(2000 + i);
  EXPECT_TRUE(traffic.errors.empty()) << error_list(traffic.errors);

  Proxy c(args, "tasks-cluster-c");
  EXPECT_EQ(routed_by(c, slice(traffic.made, 0, before)), static_cast<int>(before))
      << "the records, the killed primary's " << on_victim << " among them";
  EXPECT_EQ(routed_by(c, slice(traffic.made, during, traffic.made.size())), 20);
  const int kept = routed_by(c, slice(traffic.made, before, during));
  EXPECT_EQ(pods.misses(), 0) << "no task request reached a pod without the task";
  std::cout << "cluster: " << on_victim << " of 90 task keys on the killed primary; settled " << ms(settled)
            << " ms after the kill, " << round << " rounds; tasks made during the failover, polled through the "
            << "other replica at once: " << error_list(traffic.failover_cross) << "; " << kept << " of "
            << during - before << " of them in Redis afterwards\n";
}
