#pragma once
// Real Redis high-availability layouts on loopback for the store tests (redis_ha_test,
// task_stores_test): a Sentinel setup (a primary, its replica, three sentinels) and a
// Cluster (three primaries with a replica each), and a proxy replica's arguments for them.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.hpp"

namespace redis_ha {

using namespace harness;
using namespace std::chrono_literals;

// A proxy replica on the redis store in `mode` (sentinel or cluster), given its nodes.
inline std::vector<std::string> ha_proxy_args(const std::string& url_template, const std::string& mode,
                                              const std::vector<std::uint16_t>& node_ports) {
  std::vector<std::string> args{
      "--replicas",   "3",  "--backend-url-template",  url_template, "--session-store", "redis",
      "--redis-mode", mode, "--redis-counts-interval", "200ms",      "--threads",       "2"};
  for (const std::uint16_t p : node_ports) {
    args.emplace_back("--redis-node");
    args.push_back("127.0.0.1:" + std::to_string(p));
  }
  return args;
}

// A primary, its replica and three sentinels (quorum 2, down after 500 ms) on free
// loopback ports: the Sentinel layout of the usual Helm charts, in one test.
struct SentinelSetup {
  SentinelSetup() {
    primary = std::make_unique<RedisServer>();
    replica = std::make_unique<RedisServer>(
        std::vector<std::string>{"--replicaof", "127.0.0.1", std::to_string(primary->port)});
    if (!eventually([&] {
          return redis_cmd(replica->port, {"INFO", "replication"}).find("master_link_status:up") != std::string::npos;
        })) {
      throw std::runtime_error("the replica did not sync");
    }
    for (int i = 0; i < 3; ++i) {
      const std::uint16_t port = free_port();
      const std::string conf = std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".conf";
      std::ofstream(conf) << "port " << port << "\nbind 127.0.0.1\ndaemonize no\n"
                          << "sentinel monitor mymaster 127.0.0.1 " << primary->port << " 2\n"
                          << "sentinel down-after-milliseconds mymaster 500\n"
                          << "sentinel failover-timeout mymaster 3000\n"
                          << "sentinel parallel-syncs mymaster 1\n";
      sentinels.push_back(
          std::make_unique<Process>(std::vector<std::string>{"redis-server", conf, "--sentinel"},
                                    std::string(MCPPROXY_TEST_TMP_DIR) + "/sentinel-" + std::to_string(port) + ".log"));
      ports.push_back(port);
    }
    // Each sentinel knows the other two (a failover needs a majority of them).
    for (const std::uint16_t p : ports) {
      if (!eventually(
              [&] {
                return redis_cmd(p, {"SENTINEL", "master", "mymaster"}).find("num-other-sentinels 2") !=
                       std::string::npos;
              },
              20s)) {
        throw std::runtime_error("the sentinels did not find each other");
      }
    }
  }
  ~SentinelSetup() {
    for (auto& s : sentinels) {
      s->signal(SIGKILL);
      s->wait(10s);
    }
  }
  // The primary's port as the sentinels name it now.
  std::string named_primary() const {
    return redis_cmd(ports.front(), {"SENTINEL", "get-master-addr-by-name", "mymaster"});
  }
  std::vector<std::string> proxy_args(const std::string& url_template) const {
    std::vector<std::string> args = ha_proxy_args(url_template, "sentinel", ports);
    args.insert(args.end(), {"--redis-sentinel-master", "mymaster"});
    return args;
  }
  std::unique_ptr<RedisServer> primary;
  std::unique_ptr<RedisServer> replica;
  std::vector<std::unique_ptr<Process>> sentinels;
  std::vector<std::uint16_t> ports;
};

// Six consecutive free ports whose cluster bus ports (+10000) are free too, below the
// ephemeral range (so no port picked for another server lands on a bus port).
inline std::uint16_t cluster_ports() {
  const auto bindable = [](int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  };
  std::mt19937 rng(std::random_device{}());
  for (;;) {
    const int base = 20000 + static_cast<int>(rng() % 9000);
    bool free = true;
    for (int i = 0; i < 6 && free; ++i) free = bindable(base + i) && bindable(base + i + 10000);
    if (free) return static_cast<std::uint16_t>(base);
  }
}

// Six cluster nodes on free loopback ports, three primaries with a replica each
// (`redis-cli --cluster create`), node timeout 1 s.
struct ClusterSetup {
  ClusterSetup() {
    std::vector<std::string> create{"redis-cli", "--cluster", "create"};
    const std::uint16_t base = cluster_ports();
    for (int i = 0; i < 6; ++i) {
      const auto port = static_cast<std::uint16_t>(base + i);
      std::filesystem::remove(std::string(MCPPROXY_TEST_TMP_DIR) + "/nodes-" + std::to_string(port) + ".conf");
      nodes.push_back(std::make_unique<RedisServer>(
          std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-config-file",
                                   std::string(MCPPROXY_TEST_TMP_DIR) + "/nodes-" + std::to_string(port) + ".conf",
                                   "--cluster-node-timeout", "1000",
                                   // Reads go on while a failed primary's replica is promoted
                                   // (README: Redis Cluster).
                                   "--cluster-allow-reads-when-down", "yes"},
          port));
      create.push_back("127.0.0.1:" + std::to_string(port));
    }
    create.insert(create.end(), {"--cluster-replicas", "1", "--cluster-yes"});
    Process made(create, std::string(MCPPROXY_TEST_TMP_DIR) + "/cluster-create.log");
    while (made.read_line(1s)) {
    }
    if (made.wait(60s) != 0) throw std::runtime_error("redis-cli --cluster create failed");
    for (const auto& n : nodes) {
      if (!eventually(
              [&] {
                return redis_cmd(n->port, {"CLUSTER", "INFO"}).find("cluster_state:ok") != std::string::npos;
              },
              30s)) {
        throw std::runtime_error("the cluster did not settle");
      }
    }
  }
  std::vector<std::uint16_t> primaries() const {
    std::vector<std::uint16_t> out;
    for (const auto& n : nodes) {
      if (redis_cmd(n->port, {"ROLE"}).rfind("[master", 0) == 0) out.push_back(n->port);
    }
    return out;
  }
  std::string id(std::uint16_t port) const { return redis_cmd(port, {"CLUSTER", "MYID"}); }
  std::vector<std::string> proxy_args(const std::string& url_template) const {
    return ha_proxy_args(url_template, "cluster", {nodes[0]->port, nodes[1]->port});
  }
  std::vector<std::unique_ptr<RedisServer>> nodes;
};

// "kind xN" for each kind of error counted, for a failure message.
inline std::string error_list(const std::map<std::string, int>& errors) {
  std::string out;
  for (const auto& [kind, n] : errors) out += kind + " x" + std::to_string(n) + " ";
  return out;
}

}  // namespace redis_ha
