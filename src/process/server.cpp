#include "process/server.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/system/system_error.hpp>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/telemetry/log.hpp"
#include "io/dns.hpp"
#include "io/io_ring.hpp"
#include "path/downstream.hpp"
#include "process/admin.hpp"
#include "process/health_check.hpp"
#include "process/jwks_fetch.hpp"

namespace mcpproxy {

namespace {
// Redis has never been usable since the start, and its answers say the config is why.
bool redis_blocks_readiness(const std::shared_ptr<RedisLink>& link) {
  if (!link) return false;
  const RedisDiagnosis d = link->diagnosis();
  return d.misconfigured && !d.ever_up;
}
}  // namespace

Worker::Worker(Shared& shared, std::shared_ptr<const Config> cfg, int index)
    : shared_(shared),
      cfg_(std::move(cfg)),
      index_(index),
      context_{cfg_,           shared.metrics,    shared.health,       pool_,          sessions_,      tasks_,
               shared.streams, shared.recoveries, shared.new_sessions, relay_buffers_, connections_,   rng_,
               tick_,          body_bytes_,       shared.draining,     shared.busy,    shutting_down_, ring_,
               shared.jwks},
      sessions_(shared.table, shared.metrics),
      rng_(std::random_device{}()) {
  pool_.configure(cfg_);
}

Worker::~Worker() {
  ioc_.stop();
  join();
  shutting_down_ = true;
}

void Worker::listen(const ListenAddress& addr) {
  const tcp::endpoint ep{net::ip::make_address(addr.host), addr.port};
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen(net::socket_base::max_listen_connections);
}

void Worker::share_listener(Worker& first) {
  // One listening socket and one accept queue for all workers, each watching its own
  // descriptor of it: a connection goes to whichever worker takes it first, not to one
  // the kernel hashed it to. And a port is bound once, without SO_REUSEPORT: a second
  // process started on a port in use fails with "address in use" instead of silently
  // taking half the connections (with a session table that never saw their sessions).
  const int fd = ::dup(first.acceptor_.native_handle());
  if (fd < 0) throw boost::system::system_error(error_code(errno, boost::system::system_category()), "dup");
  acceptor_.assign(first.acceptor_.local_endpoint().protocol(), fd);
}

std::uint16_t Worker::bound_port() const { return acceptor_.local_endpoint().port(); }

void Worker::start(IoBackend backend) {
  net::co_spawn(ioc_, accept_loop(), net::detached);
  net::co_spawn(ioc_, prune_loop(), net::detached);
  net::co_spawn(ioc_, watch_loop(), net::detached);
  thread_ = std::thread([this, backend] {
    if (backend == IoBackend::io_uring) {
      std::string why;
      if (auto ring = IoRing::open(ioc_, why)) {
        ring_ = ring.get();
        shared_.metrics.workers_by_backend[1].fetch_add(1, std::memory_order_relaxed);
        ring->run();
        ring.reset();  // drops what is still in flight, before the io_context goes
        ring_ = nullptr;
        return;
      }
      // Server::run checked the kernel at start; a refusal here is unexpected but not fatal.
      log_event(spdlog::level::warn, "io_uring refused, this worker runs on epoll",
                {{"worker", std::to_string(index_)}, {"error", why}});
    }
    shared_.metrics.workers_by_backend[0].fetch_add(1, std::memory_order_relaxed);
    ioc_.run();
  });
}

void Worker::use_redis(const RedisOptions& options) {
  redis_ = make_redis_link(ioc_, options, "worker-" + std::to_string(index_));
  store_ = std::make_shared<RedisStore>(ioc_, redis_, *shared_.store, shared_.metrics);
  sessions_.use_store(store_.get());
  tasks_.use_store(redis_, cfg_->sessions.redis.key_prefix);
  redis_->start();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::apply_config(std::shared_ptr<const Config> cfg) {
  cfg_ = std::move(cfg);
  pool_.configure(cfg_);
}

void Worker::stop_accepting() {
  error_code ec;
  acceptor_.close(ec);
}

void Worker::close_idle_connections() {
  connections_.for_each([](Connection& c) { c.close_if_idle(); });
}

void Worker::close_all_connections() {
  connections_.for_each([](Connection& c) { c.close(); });
  pool_.clear();
}

net::awaitable<void> Worker::accept_loop() {
  net::steady_timer backoff(ioc_);
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (!acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors: wait a little instead of spinning on the error.
      log_event(spdlog::level::warn, "accept failed", {{"worker", std::to_string(index_)}, {"error", ec.message()}});
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    if (connections_.size() >= cfg_->limits.max_connections) {
      log_event(spdlog::level::warn, "connection refused: limits.max_connections reached",
                {{"worker", std::to_string(index_)}, {"limit", std::to_string(cfg_->limits.max_connections)}});
      error_code ignored;
      socket.close(ignored);
      continue;
    }
    // Unique per process: the sequence number times 256 plus the worker index.
    const std::uint64_t id = (++connection_seq_ << 8) | static_cast<std::uint64_t>(index_);
    std::make_shared<Connection>(context_, std::move(socket), id)->start();
  }
}

net::awaitable<void> Worker::watch_loop() {
  net::steady_timer timer(ioc_);
  for (;;) {
    // The pool's warm connections and name lookups happen between requests, not in them.
    if (!shared_.draining.load(std::memory_order_relaxed))
      pool_.maintain(std::chrono::milliseconds(Connection::kTickMs));
    timer.expires_after(std::chrono::milliseconds(Connection::kTickMs));
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    ++tick_;
    connections_.for_each([tick = tick_](Connection& c) { c.on_tick(tick); });
    if (!acceptor_.is_open() && connections_.size() == 0) co_return;
  }
}

net::awaitable<void> Worker::prune_loop() {
  net::steady_timer timer(ioc_);
  for (;;) {
    // Twice per idle timeout (at most every 2 s): an idle pod connection lives at most one
    // and a half times backend.idle_connection_timeout.
    const auto period = std::clamp<duration>(cfg_->backend.idle_connection_timeout / 2, std::chrono::milliseconds(50),
                                             std::chrono::seconds(2));
    timer.expires_after(period);
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec || shared_.draining.load(std::memory_order_relaxed)) co_return;
    pool_.prune();
    // Ended new-session windows go, and their memory, even in shards no initialize reaches.
    if (index_ == 0) shared_.new_sessions.expire(std::chrono::steady_clock::now(), cfg_->limits.new_sessions_window);
  }
}

Server::Server(CommandLine cmd, Config cfg)
    : cmd_(std::move(cmd)), cfg_(std::make_shared<const Config>(std::move(cfg))), shared_(*cfg_) {
  AdminHandlers handlers;
  // Ready while not draining: with Redis down the proxy still serves (cached sessions, new
  // sessions queued), so readiness stays; the body and /metrics say what is wrong. Not ready
  // while Redis has never been usable because the config is wrong (a plain Redis in cluster
  // or Sentinel mode, a master name no sentinel knows, no sentinel answering): a rollout of
  // such a config stops at its first pod.
  handlers.ready = [this] {
    return !shared_.draining.load() &&
           (!shared_.store || (shared_.store->connecting.load() == 0 && !redis_blocks_readiness(control_redis_)));
  };
  handlers.ready_body = [this] { return ready_text(); };
  handlers.metrics = [this] {
    std::string out = shared_.metrics.render(
        shared_.table, [this](int o) { return shared_.sessions_on(o); }, cfg_->backend.replicas, store_status());
    Metrics::render_pod_states(out, shared_.health, cfg_->backend.replicas);
    Metrics::render_new_session_clients(out, shared_.new_sessions.clients(), shared_.new_sessions.dropped());
    admin_->render_metrics(out);
    return out;
  };
  handlers.pods = [this] { return pods_json(); };
  handlers.token = [this] { return admin_token_; };
  handlers.limits = [this] { return cfg_->admin; };
  handlers.drain = [this](int ordinal, bool on) {
    if (ordinal >= cfg_->backend.replicas) return false;
    shared_.health.drain_from_admin(ordinal, on);
    log_event(spdlog::level::info, on ? "pod drained (admin)" : "pod undrained (admin)",
              {{"pod", std::to_string(ordinal)}});
    return true;
  };
  apply_pod_settings(*cfg_);
  admin_ = std::make_unique<AdminServer>(admin_ioc_, std::move(handlers));
}

void Server::apply_pod_settings(const Config& cfg) {
  shared_.health.drain_from_config(cfg.backend.draining);
  admin_token_.clear();
  if (!cfg.admin_token_file.empty()) {
    std::ifstream in(cfg.admin_token_file);
    std::getline(in, admin_token_);
    while (!admin_token_.empty() && std::isspace(static_cast<unsigned char>(admin_token_.back())) != 0) {
      admin_token_.pop_back();
    }
  }
}

std::string Server::pods_json() const {
  const auto now = std::chrono::steady_clock::now();
  nlohmann::json out = nlohmann::json::array();
  for (int o = 0; o < cfg_->backend.replicas; ++o) {
    const auto until = shared_.health.ejected_until(o);
    nlohmann::json pod = {{"ordinal", o},
                          {"sessions", shared_.sessions_on(o)},
                          {"healthy", shared_.health.healthy(o, now)},
                          {"draining", shared_.health.draining(o)},
                          {"health_check_failing", shared_.health.probe_failing(o)}};
    // The last lookup of the pod's name: "none", or why it failed (dns.hpp).
    pod["dns"] = to_string(static_cast<DnsFailure>(shared_.health.dns_failure(o)));
    if (until > now) {
      pod["ejected_for_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count();
    }
    out.push_back(std::move(pod));
  }
  return out.dump() + "\n";
}

std::string Server::ready_text() const {
  std::string body = shared_.draining.load() ? "draining\n" : "ready\n";
  if (!shared_.store) return body;
  const RedisDiagnosis redis = control_redis_ ? control_redis_->diagnosis() : RedisDiagnosis{};
  if (shared_.store->connecting.load() > 0) body = "starting: connecting to redis\n";
  if (redis_blocks_readiness(control_redis_))
    body = "not ready: redis is not usable as configured: " + redis.problem + "\n";
  body += shared_.store->up.load() ? "redis: up\n" : "redis: DOWN (sessions route from the local table)\n";
  if (!redis.problem.empty()) body += "redis problem: " + redis.problem + "\n";
  if (cfg_->sessions.redis.mode == RedisMode::cluster) {
    body += "redis cluster: " + std::to_string(shared_.store->cluster_reachable.load()) + " of " +
            std::to_string(shared_.store->cluster_primaries.load()) + " primaries reachable\n";
  }
  if (cfg_->sessions.redis.mode == RedisMode::sentinel) {
    const std::string primary = shared_.store->primary();
    body += "redis primary (sentinel): " + (primary.empty() ? std::string("not known yet") : primary) +
            ", failovers seen: " + std::to_string(shared_.store->failovers()) + "\n";
  }
  body += "redis queue: " + std::to_string(shared_.store->depth()) + " records waiting\n";
  return body;
}

Metrics::StoreStatus Server::store_status() const {
  Metrics::StoreStatus st;
  if (shared_.store) {
    st.redis = true;
    st.up = shared_.store->up.load();
    st.queue_depth = shared_.store->depth();
    st.queue_dropped = shared_.store->dropped();
    st.sentinel = cfg_->sessions.redis.mode == RedisMode::sentinel;
    st.primary = shared_.store->primary();
    st.failovers = shared_.store->failovers();
    st.cluster = cfg_->sessions.redis.mode == RedisMode::cluster;
    st.cluster_primaries = shared_.store->cluster_primaries.load(std::memory_order_relaxed);
    st.cluster_reachable = shared_.store->cluster_reachable.load(std::memory_order_relaxed);
    st.moves = shared_.store->moves.load(std::memory_order_relaxed);
    st.asks = shared_.store->asks.load(std::memory_order_relaxed);
    st.misconfigured = control_redis_ && control_redis_->diagnosis().misconfigured;
  }
  return st;
}

Server::~Server() {
  for (auto& w : workers_) w->ioc().stop();
  for (auto& w : workers_) w->join();
}

int Server::run() {
  start_workers_listening();
  try {
    admin_->listen(cfg_->admin_listen);
  } catch (const boost::system::system_error& e) {
    throw ConfigError("admin_listen " + cfg_->admin_listen.str() + ": " + e.code().message());
  }
  net::signal_set signals(admin_ioc_, SIGTERM, SIGINT, SIGHUP);
  wait_signal(signals);
  net::steady_timer sweeper(admin_ioc_);
  sweep_sessions(sweeper);
  if (shared_.store) start_redis();
  net::co_spawn(admin_ioc_, health_check_loop(shared_.health, shared_.metrics, cfg_, stopping_), net::detached);
  net::co_spawn(admin_ioc_, jwks_fetch_loop(shared_.jwks, shared_.metrics, cfg_, stopping_), net::detached);
  admin_->start();
  const IoBackend backend = usable_io_backend(cfg_->io_backend);
  for (auto& w : workers_) w->start(backend);
  log_listening(backend);
  admin_ioc_.run();
  for (auto& w : workers_) w->ioc().stop();
  for (auto& w : workers_) w->join();
  log_event(spdlog::level::info, "stopped");
  return 0;
}

void Server::start_workers_listening() {
  const Config& cfg = *cfg_;
  for (int i = 0; i < cfg.threads; ++i) {
    auto w = std::make_unique<Worker>(shared_, cfg_, i);
    try {
      if (i == 0) {
        w->listen(cfg.listen);
      } else {
        w->share_listener(*workers_.front());
      }
    } catch (const boost::system::system_error& e) {  // Asio's bind and listen
      // The listen address cannot be used (in use by another process, say): the config
      // cannot run here, so it exits like an invalid one (code 2).
      throw ConfigError("listen " + cfg.listen.str() + ": " + e.code().message());
    }
    workers_.push_back(std::move(w));
  }
}

void Server::wait_signal(net::signal_set& signals) {
  signals.async_wait([this, &signals](error_code ec, int signo) {
    if (ec) return;
    on_signal(signo);
    if (!shared_.draining.load()) wait_signal(signals);
  });
}

void Server::sweep_sessions(net::steady_timer& sweeper) {
  // Expired sessions leave the table on a timer, never on the request path.
  const auto every = std::min<duration>(cfg_->sessions.ttl / 10, std::chrono::seconds(30));
  sweeper.expires_after(std::max<duration>(every, std::chrono::milliseconds(100)));
  sweeper.async_wait([this, &sweeper](error_code ec) {
    if (ec) return;
    shared_.table.sweep();
    shared_.tasks.sweep();
    sweep_sessions(sweeper);
  });
}

RedisOptions Server::redis_options_with_hooks() {
  RedisOptions options = redis_options(*cfg_);
  options.on_first_attempt = [store = shared_.store.get()] { store->connecting.fetch_sub(1); };
  options.on_primary = [store = shared_.store.get()](const RedisEndpoint& primary) {
    store->note_primary(primary.str());
  };
  options.on_redirect = [store = shared_.store.get()](bool ask) { store->count_redirect(ask); };
  options.on_cluster_map = [store = shared_.store.get()](int primaries, int reachable) {
    store->cluster_primaries.store(primaries, std::memory_order_relaxed);
    store->cluster_reachable.store(reachable, std::memory_order_relaxed);
  };
  options.on_protocol_error = [metrics = &shared_.metrics] {
    metrics->redis_protocol_errors.fetch_add(1, std::memory_order_relaxed);
  };
  options.on_retry = [metrics = &shared_.metrics](RedisRetryReason reason) {
    metrics->redis_reconnects[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  };
  return options;
}

void Server::start_redis() {
  // Each worker talks to Redis on its own connection; the control connection writes
  // queued records and tells whether Redis is up. None of them blocks start-up; readiness
  // waits for each connection's first attempt, and the first read of the table marker
  // (count_loop): a record written before that read could not be written back after a flush.
  shared_.store->connecting.store(static_cast<int>(workers_.size()) + 2);
  const RedisOptions options = redis_options_with_hooks();
  for (auto& w : workers_) w->use_redis(options);
  control_redis_ = make_redis_link(admin_ioc_, options, "control");
  control_redis_->start();
  net::co_spawn(admin_ioc_, flush_queue_loop(control_redis_, *shared_.store, shared_.metrics, stopping_),
                net::detached);
  // The live-session counts of all replicas: placement, the sessions gauge, /pods.
  net::co_spawn(admin_ioc_, count_loop(control_redis_, *shared_.store, shared_.table, shared_.metrics, cfg_, stopping_),
                net::detached);
}

IoBackend Server::usable_io_backend(IoBackend wanted) {
  // io_uring where the kernel gives it; else every worker on epoll, said once here.
  if (wanted == IoBackend::io_uring) {
    std::string why;
    if (!IoRing::available(why)) {
      log_event(spdlog::level::warn, "io_backend io_uring is refused here: the workers run on epoll", {{"error", why}});
      return IoBackend::epoll;
    }
  }
  return wanted;
}

void Server::log_listening(IoBackend backend) const {
  const Config& cfg = *cfg_;
  log_event(spdlog::level::info, "listening",
            {{"listen", cfg.listen.host + ":" + std::to_string(workers_.front()->bound_port())},
             {"admin", cfg.admin_listen.str()},
             {"threads", std::to_string(cfg.threads)},
             {"io_backend", std::string(to_string(backend))},
             {"replicas", std::to_string(cfg.backend.replicas)},
             {"store", std::string(to_string(cfg.sessions.store))},
             {"pod0", expand_pod_url(cfg.backend, 0)}});
}

void Server::on_signal(int signo) {
  if (signo == SIGHUP) {
    reload();
    return;
  }
  begin_drain();
}

void Server::reload() {
  Config next;
  try {
    next = build_config(cmd_);
  } catch (const ConfigError& e) {
    shared_.metrics.config_reloads_failed.fetch_add(1);
    log_event(spdlog::level::err, "config reload rejected, keeping the running config", {{"error", e.what()}});
    return;
  }
  if (next.listen != cfg_->listen || next.admin_listen != cfg_->admin_listen || next.threads != cfg_->threads ||
      next.io_backend != cfg_->io_backend || next.sessions.store != cfg_->sessions.store ||
      next.sessions.max_sessions != cfg_->sessions.max_sessions || next.sessions.redis != cfg_->sessions.redis) {
    std::string keys;
    for (std::string_view k : restart_only_keys()) {
      keys += keys.empty() ? "" : ", ";
      keys += k.back() == '.' ? std::string(k) + "*" : std::string(k);
    }
    log_event(spdlog::level::warn, "config reload: these keys take effect on restart only; the rest is applied",
              {{"keys", keys}});
    next.listen = cfg_->listen;
    next.admin_listen = cfg_->admin_listen;
    next.threads = cfg_->threads;
    next.io_backend = cfg_->io_backend;
    next.sessions.store = cfg_->sessions.store;
    next.sessions.max_sessions = cfg_->sessions.max_sessions;
    next.sessions.redis = cfg_->sessions.redis;
  }
  auto shared_cfg = std::make_shared<const Config>(std::move(next));
  cfg_ = shared_cfg;
  shared_.table.set_ttl(shared_cfg->sessions.ttl);
  shared_.tasks.set_bounds(shared_cfg->affinity.max_keys, shared_cfg->affinity.max_table_bytes);
  apply_pod_settings(*shared_cfg);
  if (shared_.store) shared_.store->set_ttl(shared_cfg->sessions.ttl);
  apply_log_level(shared_cfg->log.level);
  // Applied (counted, logged, its generation shown) once every worker has it: every request
  // that starts afterwards, on any worker, sees it.
  const std::uint64_t generation = ++generation_;
  auto pending = std::make_shared<std::atomic<std::size_t>>(workers_.size());
  for (auto& w : workers_) {
    net::post(w->ioc(), [this, w = w.get(), shared_cfg, pending, generation] {
      w->apply_config(shared_cfg);
      if (pending->fetch_sub(1) != 1) return;
      shared_.metrics.config_generation.store(generation);
      shared_.metrics.config_reloads_ok.fetch_add(1);
      log_event(spdlog::level::info, "config reloaded",
                {{"generation", std::to_string(generation)},
                 {"replicas", std::to_string(shared_cfg->backend.replicas)},
                 {"placement", std::string(to_string(shared_cfg->placement))},
                 {"log_level", shared_cfg->log.level}});
    });
  }
}

void Server::begin_drain() {
  if (shared_.draining.exchange(true)) return;
  shared_.metrics.draining.store(true);
  log_event(spdlog::level::info, "draining", {{"timeout", format_duration(cfg_->drain_timeout)}});
  for (auto& w : workers_) {
    net::post(w->ioc(), [w = w.get()] {
      w->stop_accepting();
      w->close_idle_connections();
    });
  }
  net::co_spawn(admin_ioc_, drain(), net::detached);
}

net::awaitable<void> Server::drain() {
  // In-flight requests finish (each connection closes after its response); SSE streams
  // are not waited for. The check interval only bounds how late the exit notices.
  net::steady_timer timer(admin_ioc_);
  const auto deadline = std::chrono::steady_clock::now() + cfg_->drain_timeout;
  while (shared_.busy.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(use_tuple);
  }
  if (shared_.busy.load() > 0) {
    log_event(spdlog::level::warn, "drain timeout: closing requests still in flight",
              {{"in_flight", std::to_string(shared_.busy.load())}});
  }
  for (auto& w : workers_) {
    net::post(w->ioc(), [w = w.get()] { w->close_all_connections(); });
  }
  const auto close_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (shared_.metrics.downstream_connections.load() > 0 && std::chrono::steady_clock::now() < close_deadline) {
    timer.expires_after(std::chrono::milliseconds(10));
    co_await timer.async_wait(use_tuple);
  }
  stopping_.store(true);
  if (control_redis_) control_redis_->stop();
  admin_ioc_.stop();
}

}  // namespace mcpproxy
