#pragma once
// What a client connection and its stages use of their worker and of the process:
// references only, set up once by the worker (ConnectionContext), and the worker's pools a
// connection borrows from (RelayBuffers) or registers in (ConnectionRegistry).

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <random>
#include <vector>

#include "core/config/config.hpp"

namespace mcpproxy {

class Connection;
class IoRing;
class UpstreamPool;
class PodHealth;
class Sessions;
class Tasks;
class StreamGate;
class SingleFlight;
class NewSessionLimiter;
class JwksCache;
struct Metrics;

// Relay buffers, lent to connections while they relay a body and kept for reuse (at most
// `kPooled`). One per worker; worker thread only.
class RelayBuffers {
 public:
  std::unique_ptr<char[]> take(std::size_t size);
  void give(std::unique_ptr<char[]> buffer, std::size_t size);

 private:
  static constexpr std::size_t kPooled = 256;
  std::vector<std::unique_ptr<char[]>> buffers_;
  std::size_t size_ = 0;
};

// The worker's live connections, for the drain and the tick. Worker thread only.
class ConnectionRegistry {
 public:
  using Handle = std::list<std::weak_ptr<Connection>>::iterator;
  Handle add(std::weak_ptr<Connection> c);
  void remove(Handle it);
  std::size_t size() const { return count_; }
  // Calls f(Connection&) for every connection still alive.
  template <class F>
  void for_each(F&& f) {
    for (auto& weak : connections_) {
      if (auto c = weak.lock()) f(*c);
    }
  }

 private:
  std::list<std::weak_ptr<Connection>> connections_;
  std::size_t count_ = 0;
};

// What a connection uses of its worker and of the process: references only, set up once
// by the worker. `config` is the worker's current config (a reload swaps it).
struct ConnectionContext {
  const std::shared_ptr<const Config>& config;
  Metrics& metrics;
  PodHealth& health;
  UpstreamPool& pool;
  Sessions& sessions;
  Tasks& tasks;                     // task ids and handles -> pod (task_routing.hpp)
  StreamGate& streams;              // shared by the workers
  SingleFlight& recoveries;         // shared by the workers: one recovery per session
  NewSessionLimiter& new_sessions;  // shared by the workers: initializes per client
  RelayBuffers& relay_buffers;
  ConnectionRegistry& registry;
  std::mt19937_64& rng;
  const std::uint64_t& tick;  // the worker's 100 ms ticks (Connection::on_tick)
  std::size_t& body_bytes;    // the worker's request bodies being read or held (max_worker_body_bytes)
  const std::atomic<bool>& draining;
  std::atomic<std::int64_t>& busy;  // requests in progress the drain waits for
  const bool& shutting_down;        // the worker is being destroyed
  // The worker's io_uring (io_backend: io_uring), set on its thread before it accepts;
  // null with epoll. The request path's reads and writes go through it (io_ring.hpp).
  IoRing* const& ring;
  JwksCache& jwks;  // shared by the workers: the keys of sessions.jwt.jwks_url
};

}  // namespace mcpproxy
