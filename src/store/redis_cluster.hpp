#pragma once
// The session store on Redis Cluster: the slot map read with CLUSTER SLOTS from any node
// that answers, one pipelined connection (RedisClient) per primary, each command sent to
// the primary of its key's slot. MOVED updates the map (and asks for a fresh read); ASK
// sends that one command, after ASKING, to the node named. While a slot's primary is not
// connected (it failed, its replica not promoted yet), a GET is read from its replica
// (READONLY): a session no replica has cached still routes during a failover. Every command the store sends
// names one key, so a resharding or a failover moves commands, never splits one.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "store/redis_client.hpp"

namespace mcpproxy {

inline constexpr int kClusterSlots = 16384;

// The cluster slot of a key (CRC16/XMODEM of the key, or of its {hash tag}, mod 16384).
int key_slot(std::string_view key);

// "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381": the node named, or nothing.
struct Redirect {
  bool ask = false;
  RedisEndpoint to;
};
std::optional<Redirect> parse_redirect(std::string_view error);

class RedisCluster : public RedisLink, public std::enable_shared_from_this<RedisCluster> {
 public:
  RedisCluster(net::io_context& ioc, RedisOptions options, std::string name);
  void start() override;
  void stop() override;
  // The map is known and the primary of every slot is connected.
  bool up() const override;
  RedisDiagnosis diagnosis() const override;
  net::awaitable<Result> command(std::vector<std::string> args) override;

 private:
  // A command whose slot's primary is not connected: a GET goes to its replica.
  net::awaitable<Result> without_primary(int slot, const std::vector<std::string>& args);
  // Counts a redirect and returns the node it names (a MOVED also remaps the slot).
  std::shared_ptr<RedisClient> follow(int slot, const Redirect& redirect);
  // The slot map of a CLUSTER SLOTS reply; false when it leaves slots out.
  bool read_map(const RedisReply& reply);
  // The connection to a node, made (and started) on first use.
  std::shared_ptr<RedisClient> node(const RedisEndpoint& at);
  // Waits (at most the command timeout) for a connection being made.
  net::awaitable<bool> wait_up(const std::shared_ptr<RedisClient>& c);
  // One slot-map read: whether a node was asked at all, whether one gave a map, and if
  // none did, why.
  struct MapRead {
    bool asked = false;
    bool read = false;
    std::string problem;
    bool misconfigured = false;  // a node answered that it is not a cluster node
  };
  net::awaitable<void> refresh_loop();
  // CLUSTER SLOTS from the first connected node that answers.
  net::awaitable<MapRead> refresh();
  // After a read: when the next may be, and what is logged and counted. A read that gave no
  // map is retried with a growing wait (RedisRetry), so is one whose primaries are not all
  // connected yet; a cluster that is up is read again every 5 s or on a topology error.
  void settle(const MapRead& m);

  net::io_context& ioc_;
  RedisOptions options_;
  std::string name_;
  std::map<std::string, std::shared_ptr<RedisClient>> nodes_;  // by host:port
  std::vector<std::shared_ptr<RedisClient>> slots_;            // the primary of each slot
  std::vector<std::shared_ptr<RedisClient>> replicas_;         // a replica of each slot (or none)
  std::vector<std::shared_ptr<RedisClient>> primaries_;        // distinct owners of slots_
  bool mapped_ = false;
  bool stopped_ = false;
  bool refresh_wanted_ = false;
  RedisRetry retry_;  // of the slot-map read
  std::chrono::steady_clock::time_point next_read_{};
  std::string problem_;  // why the last read gave no map
  bool misconfigured_ = false;
  std::mt19937_64 rng_{std::random_device{}()};
  net::steady_timer refresh_timer_;
};

}  // namespace mcpproxy
