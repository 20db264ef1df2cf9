#pragma once
// The process: share-nothing worker threads (one io_context and one upstream pool each, all
// accepting from one listening socket), the admin listener, signals, drain and reload.

#include <atomic>
#include <boost/asio/signal_set.hpp>
#include <list>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "core/config/config.hpp"
#include "core/decide/placement.hpp"
#include "core/identity/jwks.hpp"
#include "core/tables/session.hpp"
#include "core/tables/task_table.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/net.hpp"
#include "io/upstream.hpp"
#include "path/downstream.hpp"
#include "path/stream_gate.hpp"
#include "store/session_store.hpp"
#include "store/sessions.hpp"
#include "store/tasks.hpp"

namespace mcpproxy {

// What all workers share: the session table, metrics, pod health, the drain state.
struct Shared {
  explicit Shared(const Config& cfg)
      : table(cfg.sessions.max_sessions, cfg.sessions.ttl, cfg.sessions.max_table_bytes,
              cfg.sessions.store == StoreKind::redis ? TableRole::cache : TableRole::store),
        tasks(cfg.affinity.max_keys, cfg.affinity.max_table_bytes,
              cfg.sessions.store == StoreKind::redis ? TableRole::cache : TableRole::store) {
    if (cfg.sessions.store == StoreKind::redis) {
      store =
          std::make_unique<StoreShared>(cfg.sessions.redis.key_prefix, cfg.sessions.ttl, cfg.sessions.redis.queue_size);
    }
    metrics.tasks = &tasks;
  }
  SessionTable table;
  // Task ids and handles -> pod: the whole table with the memory store, a cache of Redis's.
  TaskTable tasks;
  std::unique_ptr<StoreShared> store;  // the redis store's shared part; null with the memory store
  Metrics metrics;
  PodHealth health;
  StreamGate streams;
  SingleFlight recoveries;
  NewSessionLimiter new_sessions;
  JwksCache jwks;
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> busy{0};  // requests in progress that are not SSE streams
  std::int64_t sessions_on(int ordinal) const {
    return store ? store->counts.load(ordinal) : table.sessions_on(ordinal);
  }
};

class Worker {
 public:
  Worker(Shared& shared, std::shared_ptr<const Config> cfg, int index);
  ~Worker();

  // Binds the listener; throws std::system_error on failure (start-up).
  void listen(const ListenAddress& addr);
  // The other workers accept from the first one's listening socket.
  void share_listener(Worker& first);
  std::uint16_t bound_port() const;
  // The thread: accept loop, pool pruning, the tick; on an io_uring loop or on Asio's epoll.
  void start(IoBackend backend);
  void join();

  // Called on the worker's own thread (posted).
  void apply_config(std::shared_ptr<const Config> cfg);
  void stop_accepting();
  void close_idle_connections();
  void close_all_connections();

  net::io_context& ioc() { return ioc_; }
  void use_redis(const RedisOptions& options);

 private:
  net::awaitable<void> accept_loop();
  net::awaitable<void> prune_loop();
  net::awaitable<void> watch_loop();

  Shared& shared_;
  // Counts the worker's 100 ms ticks (Connection::on_tick): coarse time for deadlines.
  std::uint64_t tick_ = 0;
  // Bytes of request bodies the worker's connections are reading or holding
  // (limits.max_worker_body_bytes). Outlives the io_context, as connections release theirs.
  std::size_t body_bytes_ = 0;
  std::shared_ptr<const Config> cfg_;
  int index_;
  // Set when the worker is destroyed: connections still owned by the io_context die with
  // it, after the members below them, and must not touch those members then.
  bool shutting_down_ = false;
  // The worker's io_uring while its thread runs one (io_backend: io_uring); else null.
  IoRing* ring_ = nullptr;
  // What connections reach of this worker. Declared before the io_context: connections
  // that the io_context still owns when it is destroyed hold a reference to it.
  ConnectionContext context_;
  // One thread runs it, and every socket of the worker is used from that thread only (other
  // threads post to it; the listener and Redis links are set up before the thread starts):
  // the reactor skips its per-descriptor lock (Asio's UNSAFE_IO hint; the scheduler, timers
  // and registration keep theirs, so posts from other threads and async resolve work).
  net::io_context ioc_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  tcp::acceptor acceptor_{ioc_};
  UpstreamPool pool_{ioc_, shared_.metrics, shared_.health};
  std::shared_ptr<RedisLink> redis_;
  std::shared_ptr<RedisStore> store_;  // shared: its background commands hold it
  Sessions sessions_;
  Tasks tasks_{ioc_, shared_.tasks, shared_.metrics};
  std::mt19937_64 rng_;
  RelayBuffers relay_buffers_;
  ConnectionRegistry connections_;
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
  // Each worker bound to the listen address: the first binds it, the others share its socket.
  void start_workers_listening();
  // Waits for the next signal, and again after each until the drain begins.
  void wait_signal(net::signal_set& signals);
  // Drops expired sessions from the table every tenth of the TTL (100 ms to 30 s).
  void sweep_sessions(net::steady_timer& sweeper);
  // The redis store's connections: one per worker, the control one, its flusher and counter.
  void start_redis();
  // The options from the config, with the hooks that feed readiness and the metrics.
  RedisOptions redis_options_with_hooks();
  // The configured io backend, or epoll where the kernel refuses io_uring.
  static IoBackend usable_io_backend(IoBackend wanted);
  void log_listening(IoBackend backend) const;
  void on_signal(int signo);
  void reload();
  void begin_drain();
  net::awaitable<void> drain();

  CommandLine cmd_;
  std::shared_ptr<const Config> cfg_;
  Shared shared_;
  net::io_context admin_ioc_{1};
  std::unique_ptr<AdminServer> admin_;
  std::shared_ptr<RedisLink> control_redis_;  // the queue flusher's connection, on the admin context
  std::atomic<bool> stopping_{false};
  std::uint64_t generation_ = 1;  // of the config: 1 at start, +1 per applied reload
  Metrics::StoreStatus store_status() const;
  std::string ready_text() const;  // the body of /readyz
  // Drained ordinals and the admin token, from the config (at start and on reload).
  void apply_pod_settings(const Config& cfg);
  std::string pods_json() const;
  std::string admin_token_;  // admin thread only
  std::vector<std::unique_ptr<Worker>> workers_;
};

}  // namespace mcpproxy
