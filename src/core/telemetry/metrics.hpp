#pragma once
// Prometheus metrics. Counters are relaxed atomics updated on the data plane; the text
// is built only when /metrics is scraped. Labels are bounded: a pod ordinal, an HTTP
// method class, a status code; never a session id.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/config/config.hpp"
#include "core/decide/placement.hpp"
#include "core/tables/redis_retry.hpp"
#include "core/telemetry/affinity_metrics.hpp"
#include "core/telemetry/dns_failure.hpp"
#include "core/telemetry/listen_metrics.hpp"

namespace mcpproxy {

class SessionTable;
class TaskTable;
enum class LostCause : std::uint8_t;  // route.hpp

class Histogram {
 public:
  static constexpr std::array<double, 15> kBounds = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,   0.5,   1,      2.5,   5,    10,    60};
  void observe(double seconds);
  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  // Appends the _bucket/_sum/_count lines; `labels` is e.g. `pod="0"` or empty.
  void render(std::string& out, std::string_view name, std::string_view labels) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

enum class MethodClass : std::uint8_t { get, post, del, other };
MethodClass method_class(std::string_view method);

enum class StoreOp : std::uint8_t { get, set, del, expire };
enum class StoreResult : std::uint8_t { ok, miss, error };

enum class UpstreamError : std::uint8_t { connect, timeout, io, local };

struct Metrics {
  Metrics();
  void count_request(MethodClass m, unsigned status);
  void count_store(StoreOp op, StoreResult r) {
    store_ops[static_cast<int>(op)][static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed);
  }
  void count_upstream_error(int ordinal, UpstreamError e);
  Histogram& upstream_duration(int ordinal) { return upstream_duration_[ordinal]; }

  std::array<std::array<std::atomic<std::uint64_t>, 600>, 4> requests{};
  std::atomic<std::uint64_t> sessions_created{0};
  std::atomic<std::uint64_t> sessions_deleted{0};
  void count_lost(LostCause cause);
  std::array<std::atomic<std::uint64_t>, 4> sessions_lost{};  // by LostCause
  // A recovery that re-initialized the session while another proxy replica moved it
  // first: its record won the compare-and-set, this one followed it.
  std::atomic<std::uint64_t> recovery_conflicts{0};
  std::atomic<std::uint64_t> binding_mismatches{0};  // requests of a session from another identity
  // Of those, the ones whose record names a binding key this proxy does not have.
  std::atomic<std::uint64_t> binding_unknown_key{0};
  // New sessions a pod made of an initialize without the binding's identity: refused (401)
  // and ended on the pod.
  std::atomic<std::uint64_t> unbound_sessions_ended{0};
  // sessions.binding jwt: verifications by JwtResult (jwt.hpp); fetches of the JWKS URL
  // ([0] ok, [1] failed) and the keys it gave.
  std::array<std::atomic<std::uint64_t>, 11> jwt_verifications{};
  std::array<std::atomic<std::uint64_t>, 2> jwks_fetches{};
  std::atomic<std::int64_t> jwks_keys{0};
  // Pod answers presenting a session id the proxy does not hand out (answered 502), by
  // cause: [0] duplicate, an initialize answered with an id another session holds;
  // [1] renamed, a session's answer with another id than the session's.
  std::array<std::atomic<std::uint64_t>, 2> session_id_conflicts{};
  std::atomic<std::uint64_t> table_full_refusals{0};  // new sessions answered 503: live sessions fill the table
  // New sessions whose initialize body was not kept: [0] over sessions.max_init_body,
  // [1] past the memory store's table bytes.
  std::array<std::atomic<std::uint64_t>, 2> init_not_kept{};
  std::atomic<std::uint64_t> redis_protocol_errors{0};  // replies past the bounds, or not RESP
  std::atomic<std::uint64_t> new_sessions_refused{0};   // initializes past limits.new_sessions_per_client
  std::atomic<std::uint64_t> records_restored{0};       // records written back into a Redis that lost them
  std::atomic<std::uint64_t> body_budget_refused{0};    // requests past limits.max_worker_body_bytes
  std::atomic<std::int64_t> request_body_bytes{0};      // bodies being read or held, all workers
  // The last active health check per pod: 0 none, 1 failed, 2 passed.
  std::array<std::atomic<std::uint8_t>, kMaxReplicas> health_check_up{};
  std::atomic<std::uint64_t> sessions_recovered{0};
  std::atomic<std::uint64_t> cache_hits{0};
  std::atomic<std::uint64_t> cache_misses{0};
  std::array<std::array<std::atomic<std::uint64_t>, 3>, 4> store_ops{};
  Histogram store_duration;
  std::atomic<std::int64_t> downstream_connections{0};
  std::atomic<std::int64_t> sse_streams{0};
  AffinityMetrics affinity;          // era, method, task and handle routing
  ListenMetrics listen;              // fanned-out subscriptions/listen streams
  const TaskTable* tasks = nullptr;  // the affinity table, for its size (set once at start)
  std::atomic<std::uint64_t> config_reloads_ok{0};
  std::atomic<std::uint64_t> config_reloads_failed{0};
  std::atomic<std::uint64_t> config_generation{1};  // of the config every worker has applied
  std::atomic<std::uint64_t> client_aborts{0};
  std::atomic<std::uint64_t> stream_order_waits{0};
  std::atomic<std::uint64_t> recovery_waits{0};
  // By why: [0] a request waited for it, [1] made ahead of need (UpstreamPool::maintain);
  // connects then by result: [0] open, [1] failed.
  std::array<std::array<std::atomic<std::uint64_t>, 2>, 2> upstream_connects{};
  std::array<std::atomic<std::uint64_t>, 2> dns_lookups{};
  // Failed lookups of pod names by DnsFailure (dns.hpp; [0] unused), and connects made to a
  // pod's last addresses while its lookups failed (backend.dns_serve_stale).
  std::array<std::atomic<std::uint64_t>, kDnsFailureKinds> dns_failures{};
  std::atomic<std::uint64_t> dns_stale_answers{0};
  // Workers running on each io backend: [0] epoll, [1] io_uring (config io_backend).
  std::array<std::atomic<std::int64_t>, 2> workers_by_backend{};
  std::atomic<bool> draining{false};
  // Redis reconnects (and slot-map reads tried again), by RedisRetryReason.
  std::array<std::atomic<std::uint64_t>, kRedisRetryReasons> redis_reconnects{};

  struct StoreStatus {
    bool redis = false;
    bool up = false;
    std::size_t queue_depth = 0;
    std::uint64_t queue_dropped = 0;
    bool sentinel = false;
    std::string primary;  // host:port, sentinel mode
    std::uint64_t failovers = 0;
    bool cluster = false;
    int cluster_primaries = 0;
    int cluster_reachable = 0;
    std::uint64_t moves = 0;
    std::uint64_t asks = 0;
    bool misconfigured = false;  // Redis answers that the config is wrong (RedisDiagnosis)
  };
  // Renders the exposition text (format 0.0.4). `replicas` bounds the pod label set.
  // `live`: the live sessions of a pod (the shared counts with the redis store).
  std::string render(const SessionTable& table, const std::function<std::int64_t(int)>& live, int replicas,
                     const StoreStatus& store) const;
  // Where each pod stands for placement: ejected (refused a connection, for
  // backend.eject_cooldown), drained, and how often it was ejected.
  static void render_pod_states(std::string& out, const PodHealth& health, int replicas);
  // The new-session limiter's windows: open now, and forgotten at limits.new_sessions_max_clients.
  static void render_new_session_clients(std::string& out, std::size_t clients, std::uint64_t dropped);

 private:
  void render_requests(std::string& out) const;
  // Per pod: upstream latency and errors, the health check, live sessions.
  void render_pods(std::string& out, const std::function<std::int64_t(int)>& live, int replicas) const;
  // Connects to pods and lookups of their names, by whether a request waited for them.
  void render_connects(std::string& out) const;
  // Session ids refused, new sessions refused for room, initialize bodies not kept.
  void render_session_guards(std::string& out) const;
  // Lost sessions by cause (with the memory store, evictions among them).
  void render_sessions_lost(std::string& out, const SessionTable& table, bool redis) const;
  // The plain counters, one family each.
  void render_counters(std::string& out) const;
  // Workers by io backend, the config's generation and reloads, request bodies held.
  void render_process(std::string& out) const;
  // The local session table: its memory, evictions, expiries.
  static void render_table(std::string& out, const SessionTable& table);
  // Store operations by result, and their latency (either store).
  void render_store_ops(std::string& out) const;
  // The redis store: up, its queue, reconnects, a wrong config; then its mode's own.
  void render_redis(std::string& out, const StoreStatus& store) const;
  static void render_sentinel(std::string& out, const StoreStatus& store);
  static void render_cluster(std::string& out, const StoreStatus& store);
  // Open client connections, SSE streams, the drain.
  void render_connections(std::string& out) const;
  // sessions.binding jwt: verifications by result, JWKS fetches and keys.
  void render_jwt(std::string& out) const;
  std::unique_ptr<Histogram[]> upstream_duration_;
  std::unique_ptr<std::array<std::atomic<std::uint64_t>, 4>[]> upstream_errors_;
};

}  // namespace mcpproxy
