#pragma once
// The process: share-nothing worker threads (one io_context, one listening socket with
// SO_REUSEPORT, one upstream pool each), the admin listener, signals, drain and reload.

#include <atomic>
#include <list>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "mcpproxy/config.hpp"
#include "mcpproxy/metrics.hpp"
#include "mcpproxy/net.hpp"
#include "mcpproxy/placement.hpp"
#include "mcpproxy/session.hpp"
#include "mcpproxy/session_store.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {

class Connection;

// What all workers share: the session table, metrics, pod health, the drain state.
struct Shared {
  explicit Shared(const Config& cfg) : table(cfg.sessions.max_sessions, cfg.sessions.ttl) {
    if (cfg.sessions.store == "redis") {
      store =
          std::make_unique<StoreShared>(cfg.sessions.redis.key_prefix, cfg.sessions.ttl, cfg.sessions.redis.queue_size);
    }
  }
  SessionTable table;
  std::unique_ptr<StoreShared> store;  // the redis store's shared part; null with the memory store
  Metrics metrics;
  PodHealth health;
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> busy{0};  // requests in progress that are not SSE streams
};

class Worker {
 public:
  Worker(Shared& shared, std::shared_ptr<const Config> cfg, int index);
  ~Worker();

  // Binds the listener; throws std::system_error on failure (start-up).
  void listen(const ListenAddress& addr, std::uint16_t port_override);
  std::uint16_t bound_port() const;
  void start();  // thread: accept loop + pool pruning
  void join();

  // Called on the worker's own thread (posted).
  void apply_config(std::shared_ptr<const Config> cfg);
  void stop_accepting();
  void close_idle_connections();
  void close_all_connections();

  net::io_context& ioc() { return ioc_; }
  const Config& cfg() const { return *cfg_; }
  std::shared_ptr<const Config> config() const { return cfg_; }
  Shared& shared() { return shared_; }
  UpstreamPool& pool() { return pool_; }
  RedisStore* store() { return store_.get(); }  // null with the memory store
  void use_redis(const RedisOptions& options);
  std::mt19937_64& rng() { return rng_; }
  int index() const { return index_; }
  // Unique per process: the sequence number times 256 plus the worker index.
  std::uint64_t next_connection_id() { return (++connection_seq_ << 8) | static_cast<std::uint64_t>(index_); }

  // Relay buffers, lent to connections while they relay a body and kept for reuse (at most
  // `kPooledRelayBuffers`). Worker thread only.
  std::unique_ptr<char[]> take_relay_buffer(std::size_t size);
  void give_relay_buffer(std::unique_ptr<char[]> buffer, std::size_t size);

  // Connection registry, for drain. Worker thread only.
  std::list<std::weak_ptr<Connection>>::iterator add(std::weak_ptr<Connection> c);
  void remove(std::list<std::weak_ptr<Connection>>::iterator it);
  std::size_t connections() const { return connection_count_; }
  // Counts the worker's 100 ms ticks (Connection::on_tick): coarse time for deadlines.
  std::uint64_t tick() const { return tick_; }
  bool shutting_down() const { return shutting_down_; }

 private:
  net::awaitable<void> accept_loop();
  net::awaitable<void> prune_loop();
  net::awaitable<void> watch_loop();

  Shared& shared_;
  std::uint64_t tick_ = 0;
  std::shared_ptr<const Config> cfg_;
  int index_;
  // Set when the worker is destroyed: connections still owned by the io_context die with
  // it, after the members below them, and must not touch those members then.
  bool shutting_down_ = false;
  net::io_context ioc_{1};
  tcp::acceptor acceptor_{ioc_};
  UpstreamPool pool_{ioc_};
  std::shared_ptr<RedisClient> redis_;
  std::unique_ptr<RedisStore> store_;
  std::mt19937_64 rng_;
  static constexpr std::size_t kPooledRelayBuffers = 256;
  std::vector<std::unique_ptr<char[]>> relay_buffers_;
  std::size_t relay_buffers_size_ = 0;
  std::list<std::weak_ptr<Connection>> connections_;
  std::size_t connection_count_ = 0;
  std::uint64_t connection_seq_ = 0;
  std::thread thread_;
};

class AdminServer;

class Server {
 public:
  Server(CommandLine cmd, Config cfg);
  ~Server();
  // Runs until SIGTERM/SIGINT and the drain are done. Returns the exit code.
  int run();

 private:
  void on_signal(int signo);
  void reload();
  void begin_drain();
  net::awaitable<void> drain();

  CommandLine cmd_;
  std::shared_ptr<const Config> cfg_;
  Shared shared_;
  net::io_context admin_ioc_{1};
  std::unique_ptr<AdminServer> admin_;
  std::shared_ptr<RedisClient> control_redis_;  // the queue flusher's connection, on the admin context
  std::atomic<bool> stopping_{false};
  Metrics::StoreStatus store_status() const;
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace mcpproxy
