#include "core/telemetry/metrics.hpp"

#include <cstdio>

#include "core/decide/route.hpp"
#include "core/identity/jwt.hpp"
#include "core/tables/session.hpp"

namespace mcpproxy {
namespace {

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  char buf[64];
  if (value == static_cast<double>(static_cast<std::int64_t>(value))) {
    std::snprintf(buf, sizeof buf, " %lld\n", static_cast<long long>(value));
  } else {
    std::snprintf(buf, sizeof buf, " %.9g\n", value);
  }
  out += buf;
}

static_assert(static_cast<std::size_t>(LostCause::no_such_pod) == 3, "Metrics::sessions_lost has a slot per cause");

double load(const std::atomic<std::uint64_t>& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); }

std::string pod_label(int ordinal) { return "pod=\"" + std::to_string(ordinal) + "\""; }

constexpr std::array<std::string_view, 4> kMethods = {"GET", "POST", "DELETE", "OTHER"};
constexpr std::array<std::string_view, 4> kStoreOps = {"get", "set", "del", "expire"};
constexpr std::array<std::string_view, 3> kStoreResults = {"ok", "miss", "error"};
constexpr std::array<std::string_view, 4> kUpstreamErrors = {"connect", "timeout", "io", "local"};

}  // namespace

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  char le[32];
  for (std::size_t i = 0; i <= kBounds.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    if (i < kBounds.size()) {
      std::snprintf(le, sizeof le, "%g", kBounds[i]);
    } else {
      std::snprintf(le, sizeof le, "+Inf");
    }
    sample(out, bucket, prefix + "le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  sample(out, std::string(name) + "_sum", labels, static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9);
  sample(out, std::string(name) + "_count", labels, static_cast<double>(cumulative));
}

MethodClass method_class(std::string_view method) {
  if (method == "POST") return MethodClass::post;
  if (method == "GET") return MethodClass::get;
  if (method == "DELETE") return MethodClass::del;
  return MethodClass::other;
}

Metrics::Metrics()
    : upstream_duration_(new Histogram[kMaxReplicas]),
      upstream_errors_(new std::array<std::atomic<std::uint64_t>, 4>[kMaxReplicas]) {
  for (int i = 0; i < kMaxReplicas; ++i) {
    for (auto& c : upstream_errors_[i]) c.store(0, std::memory_order_relaxed);
  }
}

void Metrics::count_request(MethodClass m, unsigned status) {
  if (status >= 600) status = 599;
  requests[static_cast<int>(m)][status].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_lost(LostCause cause) {
  sessions_lost[static_cast<std::size_t>(cause)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_upstream_error(int ordinal, UpstreamError e) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return;
  upstream_errors_[ordinal][static_cast<int>(e)].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::render_requests(std::string& out) const {
  family(out, "mcp_proxy_requests_total", "counter", "Downstream requests answered, by method and status code.");
  for (std::size_t m = 0; m < kMethods.size(); ++m) {
    for (unsigned code = 100; code < 600; ++code) {
      const auto n = requests[m][code].load(std::memory_order_relaxed);
      if (n == 0) continue;
      sample(out, "mcp_proxy_requests_total",
             "method=\"" + std::string(kMethods[m]) + "\",code=\"" + std::to_string(code) + "\"",
             static_cast<double>(n));
    }
  }
}

void Metrics::render_pods(std::string& out, const std::function<std::int64_t(int)>& live, int replicas) const {
  // Pods: every ordinal below `replicas`, and any beyond it that still holds data.
  auto pod_in_scope = [&](int o) { return o < replicas || upstream_duration_[o].count() > 0 || live(o) > 0; };

  family(out, "mcp_proxy_upstream_duration_seconds", "histogram",
         "Time from sending a request to a pod to the end of its response head.");
  for (int o = 0; o < kMaxReplicas; ++o) {
    if (pod_in_scope(o)) upstream_duration_[o].render(out, "mcp_proxy_upstream_duration_seconds", pod_label(o));
  }
  family(out, "mcp_proxy_upstream_errors_total", "counter", "Failed exchanges with a pod, by pod and reason.");
  for (int o = 0; o < kMaxReplicas; ++o) {
    if (!pod_in_scope(o)) continue;
    for (std::size_t e = 0; e < kUpstreamErrors.size(); ++e) {
      sample(out, "mcp_proxy_upstream_errors_total",
             pod_label(o) + ",reason=\"" + std::string(kUpstreamErrors[e]) + "\"", load(upstream_errors_[o][e]));
    }
  }
  bool probed = false;
  for (int o = 0; o < kMaxReplicas && !probed; ++o) probed = health_check_up[o].load(std::memory_order_relaxed) != 0;
  if (probed) {
    family(out, "mcp_proxy_health_check_up", "gauge",
           "1 when the pod passed its last active health check (backend.health_check.path), else 0.");
    for (int o = 0; o < kMaxReplicas; ++o) {
      const auto v = health_check_up[o].load(std::memory_order_relaxed);
      if (v != 0) sample(out, "mcp_proxy_health_check_up", pod_label(o), v == 2 ? 1 : 0);
    }
  }
  family(out, "mcp_proxy_sessions", "gauge",
         "Live sessions by pod ordinal (with the redis store: of all proxy replicas).");
  for (int o = 0; o < kMaxReplicas; ++o) {
    if (pod_in_scope(o)) sample(out, "mcp_proxy_sessions", pod_label(o), static_cast<double>(live(o)));
  }
}

void Metrics::render_connects(std::string& out) const {
  family(out, "mcp_proxy_upstream_connects_total", "counter",
         "Connects to pods, by reason (request: a request waited for it; warm: made ahead of need, "
         "backend.warm_connections) and result (ok, failed).");
  for (int why = 0; why < 2; ++why) {
    for (int result = 0; result < 2; ++result) {
      sample(out, "mcp_proxy_upstream_connects_total",
             std::string(why == 0 ? "reason=\"request\"" : "reason=\"warm\"") +
                 (result == 0 ? ",result=\"ok\"" : ",result=\"failed\""),
             load(upstream_connects[why][result]));
    }
  }
  family(out, "mcp_proxy_dns_lookups_total", "counter",
         "Lookups of pod names: reason=\"request\" when a request waited for it, \"background\" when made ahead "
         "of need (a warm connection, or a name in use refreshed before backend.dns_cache_ttl ran out).");
  sample(out, "mcp_proxy_dns_lookups_total", "reason=\"request\"", load(dns_lookups[0]));
  sample(out, "mcp_proxy_dns_lookups_total", "reason=\"background\"", load(dns_lookups[1]));
  family(out, "mcp_proxy_dns_failures_total", "counter",
         "Failed lookups of pod names, by reason: nxdomain (the name is gone), servfail, timeout "
         "(backend.dns_timeout), no_server.");
  for (int r = 1; r < kDnsFailureKinds; ++r) {  // none is no failure
    sample(out, "mcp_proxy_dns_failures_total", "reason=\"" + std::string(to_string(static_cast<DnsFailure>(r))) + "\"",
           load(dns_failures[r]));
  }
  family(out, "mcp_proxy_dns_stale_answers_total", "counter",
         "Connects to a pod's last known addresses while its name's lookups failed (backend.dns_serve_stale).");
  sample(out, "mcp_proxy_dns_stale_answers_total", "", load(dns_stale_answers));
}

static_assert(kJwtResults == std::tuple_size_v<decltype(Metrics::jwt_verifications)>);

void Metrics::render_jwt(std::string& out) const {
  family(out, "mcp_proxy_jwt_verifications_total", "counter",
         "Bearer tokens verified for sessions.binding jwt (once per token and connection, again when the keys "
         "change), by result: ok, or why not.");
  for (std::size_t r = 0; r < kJwtResults; ++r) {
    sample(out, "mcp_proxy_jwt_verifications_total",
           "result=\"" + std::string(to_string(static_cast<JwtResult>(r))) + "\"", load(jwt_verifications[r]));
  }
  family(out, "mcp_proxy_jwks_fetches_total", "counter",
         "Fetches of sessions.jwt.jwks_url by result (a failed one keeps the cached keys).");
  sample(out, "mcp_proxy_jwks_fetches_total", "result=\"ok\"", load(jwks_fetches[0]));
  sample(out, "mcp_proxy_jwks_fetches_total", "result=\"failed\"", load(jwks_fetches[1]));
  family(out, "mcp_proxy_jwks_keys", "gauge", "Usable keys of the last good fetch of sessions.jwt.jwks_url.");
  sample(out, "mcp_proxy_jwks_keys", "", static_cast<double>(jwks_keys.load(std::memory_order_relaxed)));
}

void Metrics::render_session_guards(std::string& out) const {
  family(out, "mcp_proxy_session_id_conflicts_total", "counter",
         "Pod answers with a session id the proxy does not hand out, answered 502 (the record unchanged): "
         "cause=\"duplicate\" an initialize answered with an id another session holds (ended on that pod), "
         "\"renamed\" a session's answer carrying another id than the session's.");
  sample(out, "mcp_proxy_session_id_conflicts_total", "cause=\"duplicate\"", load(session_id_conflicts[0]));
  sample(out, "mcp_proxy_session_id_conflicts_total", "cause=\"renamed\"", load(session_id_conflicts[1]));
  family(out, "mcp_proxy_session_table_full_refusals_total", "counter",
         "New sessions answered 503: live sessions (pinned ones; with the memory store any) fill the table's "
         "bounds (sessions.max_sessions, sessions.max_table_bytes), and none is dropped for a new one.");
  sample(out, "mcp_proxy_session_table_full_refusals_total", "", load(table_full_refusals));
  family(out, "mcp_proxy_session_init_not_kept_total", "counter",
         "New sessions recorded without their initialize body, so they cannot be re-initialized on another pod: "
         "reason=\"too_large\" over sessions.max_init_body, \"table_bytes\" past the memory store's "
         "sessions.max_table_bytes.");
  sample(out, "mcp_proxy_session_init_not_kept_total", "reason=\"too_large\"", load(init_not_kept[0]));
  sample(out, "mcp_proxy_session_init_not_kept_total", "reason=\"table_bytes\"", load(init_not_kept[1]));
}

void Metrics::render_pod_states(std::string& out, const PodHealth& health, int replicas) {
  const auto now = std::chrono::steady_clock::now();
  family(out, "mcp_proxy_pod_ejected", "gauge",
         "1 while the pod is out of placement after refusing a connection or timing out (backend.eject_cooldown).");
  for (int o = 0; o < replicas; ++o) sample(out, "mcp_proxy_pod_ejected", pod_label(o), health.healthy(o, now) ? 0 : 1);
  family(out, "mcp_proxy_pod_ejections_total", "counter", "Times the pod was taken out of placement for refusing.");
  for (int o = 0; o < replicas; ++o) {
    sample(out, "mcp_proxy_pod_ejections_total", pod_label(o), static_cast<double>(health.ejections(o)));
  }
  family(out, "mcp_proxy_pod_draining", "gauge",
         "1 while the pod gets no new sessions (backend.draining or POST /pods/N/drain).");
  for (int o = 0; o < replicas; ++o) sample(out, "mcp_proxy_pod_draining", pod_label(o), health.draining(o) ? 1 : 0);
}

void Metrics::render_new_session_clients(std::string& out, std::size_t clients, std::uint64_t dropped) {
  family(out, "mcp_proxy_new_session_clients", "gauge",
         "Clients with a limits.new_sessions_window open (at most limits.new_sessions_max_clients).");
  sample(out, "mcp_proxy_new_session_clients", "", static_cast<double>(clients));
  family(out, "mcp_proxy_new_session_windows_dropped_total", "counter",
         "Clients' windows forgotten before their end because limits.new_sessions_max_clients were open.");
  sample(out, "mcp_proxy_new_session_windows_dropped_total", "", static_cast<double>(dropped));
}

void Metrics::render_sessions_lost(std::string& out, const SessionTable& table, bool redis) const {
  family(out, "mcp_proxy_sessions_lost_total", "counter",
         "Sessions whose pod was gone (README \"What counts as a lost session\"), by cause.");
  for (std::size_t c = 0; c < sessions_lost.size(); ++c) {
    sample(out, "mcp_proxy_sessions_lost_total", "cause=\"" + std::string(to_string(static_cast<LostCause>(c))) + "\"",
           load(sessions_lost[c]));
  }
  // With the memory store the table is the only copy: an eviction loses the session.
  sample(out, "mcp_proxy_sessions_lost_total", "cause=\"evicted\"", redis ? 0.0 : static_cast<double>(table.evicted()));
}

void Metrics::render_counters(std::string& out) const {
  const std::array<std::tuple<const char*, const std::atomic<std::uint64_t>*, const char*>, 17> counters = {{
      {"mcp_proxy_sessions_created_total", &sessions_created, "Sessions created by an initialize through this proxy."},
      {"mcp_proxy_sessions_deleted_total", &sessions_deleted, "Sessions ended by DELETE."},
      {"mcp_proxy_new_sessions_refused_total", &new_sessions_refused,
       "Initializes answered 429: past limits.new_sessions_per_client for their client."},
      {"mcp_proxy_store_records_restored_total", &records_restored,
       "Session records written back (SET NX) from this process's table into a Redis that had lost them."},
      {"mcp_proxy_body_budget_refusals_total", &body_budget_refused,
       "Requests answered 503: their worker held limits.max_worker_body_bytes of request bodies."},
      {"mcp_proxy_redis_protocol_errors_total", &redis_protocol_errors,
       "Redis connections dropped for a reply past sessions.redis.max_reply_* or not RESP."},
      {"mcp_proxy_session_binding_mismatches_total", &binding_mismatches,
       "Requests of a session presented by another identity than the one that made it (answered 404)."},
      {"mcp_proxy_session_binding_unknown_key_total", &binding_unknown_key,
       "Of the binding mismatches, those whose record was made under a key not in sessions.binding_secret_file."},
      {"mcp_proxy_unbound_sessions_ended_total", &unbound_sessions_ended,
       "Sessions a pod made of an initialize without the binding's identity: answered 401 and ended on the pod."},
      {"mcp_proxy_recovery_conflicts_total", &recovery_conflicts,
       "Recoveries that lost the compare-and-set to another proxy replica's and followed its record."},
      {"mcp_proxy_sessions_recovered_total", &sessions_recovered, "Lost sessions re-established on another pod."},
      {"mcp_proxy_session_cache_hits_total", &cache_hits, "Session lookups answered by the local table."},
      {"mcp_proxy_session_cache_misses_total", &cache_misses, "Session lookups the local table could not answer."},
      {"mcp_proxy_client_aborts_total", &client_aborts, "Responses cut short because the client went away."},
      {"mcp_proxy_recovery_waits_total", &recovery_waits,
       "Requests of a lost session that waited for its recovery by another request."},
      {"mcp_proxy_stream_order_waits_total", &stream_order_waits,
       "Requests that waited for their session's GET stream being opened (backend.stream_open_wait)."},
      {"mcp_proxy_config_reloads_failed_total", &config_reloads_failed, "SIGHUP reloads rejected as invalid."},
  }};
  for (const auto& [name, value, help] : counters) {
    family(out, name, "counter", help);
    sample(out, name, "", load(*value));
  }
}

void Metrics::render_process(std::string& out) const {
  family(out, "mcp_proxy_workers", "gauge",
         "Worker threads by what they wait on and do socket I/O with (io_backend; io_uring falls back to epoll "
         "where it is refused).");
  sample(out, "mcp_proxy_workers", "io_backend=\"epoll\"",
         static_cast<double>(workers_by_backend[0].load(std::memory_order_relaxed)));
  sample(out, "mcp_proxy_workers", "io_backend=\"io_uring\"",
         static_cast<double>(workers_by_backend[1].load(std::memory_order_relaxed)));
  family(out, "mcp_proxy_config_generation", "gauge",
         "Generation of the config every worker has applied (1 at start, +1 per reload).");
  sample(out, "mcp_proxy_config_generation", "", load(config_generation));
  family(out, "mcp_proxy_config_reloads_total", "counter", "SIGHUP reloads applied.");
  sample(out, "mcp_proxy_config_reloads_total", "", load(config_reloads_ok));
  family(out, "mcp_proxy_request_body_bytes", "gauge",
         "Request bodies being read or held by the workers (limits.max_worker_body_bytes, per worker).");
  sample(out, "mcp_proxy_request_body_bytes", "",
         static_cast<double>(request_body_bytes.load(std::memory_order_relaxed)));
}

void Metrics::render_table(std::string& out, const SessionTable& table) {
  family(out, "mcp_proxy_session_table_bytes", "gauge",
         "Memory of the local session table: nodes, ids, records, initialize bodies (sessions.max_table_bytes).");
  sample(out, "mcp_proxy_session_table_bytes", "", static_cast<double>(table.bytes()));
  family(out, "mcp_proxy_sessions_evicted_total", "counter", "Sessions dropped because the table was full.");
  sample(out, "mcp_proxy_sessions_evicted_total", "", static_cast<double>(table.evicted()));
  family(out, "mcp_proxy_sessions_expired_total", "counter", "Sessions dropped after their TTL.");
  sample(out, "mcp_proxy_sessions_expired_total", "", static_cast<double>(table.expired()));
}

void Metrics::render_store_ops(std::string& out) const {
  family(out, "mcp_proxy_store_operations_total", "counter", "Session store operations, by operation and result.");
  for (std::size_t op = 0; op < kStoreOps.size(); ++op) {
    for (std::size_t r = 0; r < kStoreResults.size(); ++r) {
      sample(out, "mcp_proxy_store_operations_total",
             "op=\"" + std::string(kStoreOps[op]) + "\",result=\"" + std::string(kStoreResults[r]) + "\"",
             load(store_ops[op][r]));
    }
  }
  family(out, "mcp_proxy_store_duration_seconds", "histogram", "Session store operation latency.");
  store_duration.render(out, "mcp_proxy_store_duration_seconds", "");
}

void Metrics::render_redis(std::string& out, const StoreStatus& store) const {
  family(out, "mcp_proxy_redis_up", "gauge", "1 when the Redis session store answers.");
  sample(out, "mcp_proxy_redis_up", "", store.up ? 1 : 0);
  family(out, "mcp_proxy_store_queue_depth", "gauge", "Session records waiting for Redis to answer again.");
  sample(out, "mcp_proxy_store_queue_depth", "", static_cast<double>(store.queue_depth));
  family(out, "mcp_proxy_store_queue_dropped_total", "counter", "Queued records dropped because the queue was full.");
  sample(out, "mcp_proxy_store_queue_dropped_total", "", static_cast<double>(store.queue_dropped));
  family(out, "mcp_proxy_redis_reconnects_total", "counter",
         "Redis reconnects and cluster slot-map reads tried again, by why (each after a growing wait).");
  for (std::size_t r = 0; r < kRedisRetryReasons; ++r) {
    sample(out, "mcp_proxy_redis_reconnects_total",
           "reason=\"" + std::string(to_string(static_cast<RedisRetryReason>(r))) + "\"", load(redis_reconnects[r]));
  }
  family(out, "mcp_proxy_redis_misconfigured", "gauge",
         "1 when Redis answers that the config is wrong (/readyz names it): a plain Redis in cluster or Sentinel "
         "mode, a master name no sentinel knows, no sentinel answering.");
  sample(out, "mcp_proxy_redis_misconfigured", "", store.misconfigured ? 1 : 0);
  if (store.sentinel) render_sentinel(out, store);
  if (store.cluster) render_cluster(out, store);
}

void Metrics::render_sentinel(std::string& out, const StoreStatus& store) {
  family(out, "mcp_proxy_redis_primary", "gauge", "The Redis primary sentinel named, by address (sentinel mode).");
  if (!store.primary.empty()) sample(out, "mcp_proxy_redis_primary", "address=\"" + store.primary + "\"", 1);
  family(out, "mcp_proxy_redis_failovers_total", "counter",
         "Changes of the Redis primary seen by this process (sentinel mode).");
  sample(out, "mcp_proxy_redis_failovers_total", "", static_cast<double>(store.failovers));
}

void Metrics::render_cluster(std::string& out, const StoreStatus& store) {
  family(out, "mcp_proxy_redis_cluster_primaries", "gauge",
         "Primaries in the last slot map read, and how many of them are connected (cluster mode).");
  sample(out, "mcp_proxy_redis_cluster_primaries", "state=\"known\"", store.cluster_primaries);
  sample(out, "mcp_proxy_redis_cluster_primaries", "state=\"reachable\"", store.cluster_reachable);
  family(out, "mcp_proxy_redis_redirects_total", "counter", "MOVED and ASK redirects followed (cluster mode).");
  sample(out, "mcp_proxy_redis_redirects_total", "kind=\"moved\"", static_cast<double>(store.moves));
  sample(out, "mcp_proxy_redis_redirects_total", "kind=\"ask\"", static_cast<double>(store.asks));
}

void Metrics::render_connections(std::string& out) const {
  family(out, "mcp_proxy_downstream_connections", "gauge", "Open client connections.");
  sample(out, "mcp_proxy_downstream_connections", "",
         static_cast<double>(downstream_connections.load(std::memory_order_relaxed)));
  family(out, "mcp_proxy_sse_streams", "gauge", "SSE responses being relayed now.");
  sample(out, "mcp_proxy_sse_streams", "", static_cast<double>(sse_streams.load(std::memory_order_relaxed)));
  affinity.render(out, tasks);
  listen.render(out);
  family(out, "mcp_proxy_draining", "gauge", "1 while the proxy drains after SIGTERM.");
  sample(out, "mcp_proxy_draining", "", draining.load(std::memory_order_relaxed) ? 1 : 0);
}

std::string Metrics::render(const SessionTable& table, const std::function<std::int64_t(int)>& live, int replicas,
                            const StoreStatus& store) const {
  std::string out;
  out.reserve(16384);
  render_requests(out);
  render_pods(out, live, replicas);
  render_sessions_lost(out, table, store.redis);
  render_counters(out);
  render_connects(out);
  render_process(out);
  render_table(out, table);
  render_session_guards(out);
  render_jwt(out);
  render_store_ops(out);
  if (store.redis) render_redis(out, store);
  render_connections(out);
  return out;
}

}  // namespace mcpproxy
