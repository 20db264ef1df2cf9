#include "mcpproxy/config.hpp"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "mcpproxy/http1.hpp"
#include "mcpproxy/http_rules.hpp"
#include "mcpproxy/redis_codec.hpp"
#include "mcpproxy/session_binding.hpp"
#include "mcpproxy/url_template.hpp"

namespace mcpproxy {
namespace {

using Setter = std::function<void(Config&, const std::string&)>;
using Getter = std::function<std::string(const Config&)>;

// One row per config key: the YAML path, the flag, its help, and how to set and print it.
// This table is the single place where the contract of DESIGN.md's "Configuration" lives.
struct KeySpec {
  std::string key;
  std::string flag;
  std::string help;
  Setter set;
  Getter get;
  bool secret = false;
  // Set for a list key: empties the list. `set` then adds one item (a YAML sequence's
  // element, or one occurrence of the repeatable flag); `get` prints the items with commas.
  std::function<void(Config&)> reset = nullptr;
};

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

long long to_int(const std::string& v) {
  long long out = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc{} || p != end || v.empty()) bad("must be an integer, got '" + v + "'");
  return out;
}

int int_in(const std::string& v, long long lo, long long hi) {
  const long long n = to_int(v);
  if (n < lo || n > hi) {
    bad("must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + v);
  }
  return static_cast<int>(n);
}

bool to_bool(const std::string& v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  bad("must be true or false, got '" + v + "'");
}

std::string one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += list.empty() ? "" : ", ";
    list += a;
  }
  bad("must be one of " + list + ", got '" + v + "'");
}

// An enum's names, in the order of its values.
template <class E, std::size_t N>
E enum_of(const std::string& v, const std::array<std::string_view, N>& names) {
  std::string list;
  for (std::size_t i = 0; i < N; ++i) {
    if (v == names[i]) return static_cast<E>(i);
    list += list.empty() ? "" : ", ";
    list += names[i];
  }
  bad("must be one of " + list + ", got '" + v + "'");
}
constexpr std::array<std::string_view, 2> kStoreNames = {"memory", "redis"};
constexpr std::array<std::string_view, 2> kIoBackendNames = {"epoll", "io_uring"};
constexpr std::array<std::string_view, 3> kRedisModeNames = {"standalone", "sentinel", "cluster"};
constexpr std::array<std::string_view, 2> kOnLostNames = {"reinitialize", "not_found"};
constexpr std::array<std::string_view, 2> kPlacementNames = {"least_sessions", "random"};

duration positive_duration(const std::string& v) {
  const duration d = parse_duration(v);
  if (d.count() <= 0) bad("must be a positive duration, got '" + v + "'");
  return d;
}

std::size_t positive_size(const std::string& v) {
  const std::size_t s = parse_size(v);
  if (s == 0) bad("must be a positive size, got '" + v + "'");
  return s;
}

std::string b(bool v) { return v ? "true" : "false"; }

std::vector<int> ordinal_list(const std::string& v) {
  std::vector<int> out;
  std::size_t at = 0;
  while (at <= v.size() && !v.empty()) {
    const std::size_t comma = std::min(v.find(',', at), v.size());
    std::string item = v.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    out.push_back(int_in(item, 0, kMaxReplicas - 1));
    at = comma + 1;
  }
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

// scheme://host[:port], as browsers send it (or "null").
std::string origin_entry(const std::string& v) {
  if (!valid_origin_entry(v))
    bad("must be an origin like https://app.example.com or http://localhost:3000, got '" + v + "'");
  return v;
}

// host:port, as a Redis node is named.
std::string node_entry(const std::string& v) {
  const auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size() ||
      v.find_first_of("/?# ,@") != std::string::npos) {
    bad("must be host:port like redis-sentinel-0.redis:26379, got '" + v + "'");
  }
  int_in(v.substr(colon + 1), 1, 65535);
  return v;
}

IpNetwork network_entry(const std::string& v) {
  const auto n = parse_network(v);
  if (!n) bad("must be an address or address block like 10.0.0.0/8 or 2001:db8::/32, got '" + v + "'");
  return *n;
}

std::string host_entry(const std::string& v) {
  if (!valid_host_entry(v)) bad("must be a host or host:port like localhost or 127.0.0.1:8080, got '" + v + "'");
  return v;
}

void set_binding(Config& c, const std::string& v) {
  if (v == "none" || v == "authorization") {
    c.sessions.binding = v == "none" ? BindingKind::none : BindingKind::authorization;
    c.sessions.binding_header.clear();
  } else if (v.rfind("header:", 0) == 0 && http1::is_token(std::string_view(v).substr(7))) {
    c.sessions.binding = BindingKind::header;
    c.sessions.binding_header = v.substr(7);
  } else {
    bad("must be none, authorization or header:<Name>, got '" + v + "'");
  }
}

std::string binding_name(const Config& c) {
  switch (c.sessions.binding) {
    case BindingKind::none:
      return "none";
    case BindingKind::authorization:
      return "authorization";
    case BindingKind::header:
      break;
  }
  return "header:" + c.sessions.binding_header;
}

#define MCP_STR(field) [](Config& c, const std::string& v) { c.field = v; }, [](const Config& c) { return c.field; }
#define MCP_DUR(field)                                                     \
  [](Config& c, const std::string& v) { c.field = positive_duration(v); }, \
      [](const Config& c) { return format_duration(c.field); }
#define MCP_SIZE(field)                                                \
  [](Config& c, const std::string& v) { c.field = positive_size(v); }, \
      [](const Config& c) { return std::to_string(c.field); }

// One affinity.handles item, as JSON ({"param":…,"tool":…,"result_pointer":…}): a YAML
// map item is turned into that text by set_list.
HandleRule handle_rule(const std::string& v) {
  const auto j = nlohmann::json::parse(v, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) bad("must be a map {param, tool, result_pointer}, got '" + v + "'");
  HandleRule r;
  for (const auto& [k, item] : j.items()) {
    if (!item.is_string()) bad("'" + k + "' must be a string");
    if (k == "param") {
      r.param = item.get<std::string>();
    } else if (k == "tool") {
      r.tool = item.get<std::string>();
    } else if (k == "result_pointer") {
      r.result_pointer = item.get<std::string>();
    } else {
      bad("unknown field '" + k + "' (param, tool, result_pointer)");
    }
  }
  if (r.param.empty() || !http1::is_token(r.param)) bad("param must be a header name token, got '" + r.param + "'");
  if (r.tool.empty()) bad("tool must name the tool whose answer holds the handle");
  if (!r.result_pointer.empty() && r.result_pointer.front() != '/') {
    bad("result_pointer must be a JSON pointer ('/structuredContent/id'), got '" + r.result_pointer + "'");
  }
  r.header = "Mcp-Param-" + r.param;
  return r;
}

std::string handle_rules_text(const std::vector<HandleRule>& rules) {
  std::string out;
  for (const HandleRule& r : rules) {
    out += out.empty() ? "" : ",";
    out += nlohmann::json{{"param", r.param}, {"tool", r.tool}, {"result_pointer", r.result_pointer}}.dump();
  }
  return out;
}

const std::vector<KeySpec>& key_specs() {
  static const std::vector<KeySpec> specs = {
      {"listen", "--listen", "MCP listener, host:port (default 0.0.0.0:8080)",
       [](Config& c, const std::string& v) { c.listen = parse_listen(v); },
       [](const Config& c) { return c.listen.str(); }},
      {"admin_listen", "--admin-listen", "admin listener for /healthz /readyz /metrics (default 0.0.0.0:9090)",
       [](Config& c, const std::string& v) { c.admin_listen = parse_listen(v); },
       [](const Config& c) { return c.admin_listen.str(); }},
      {"threads", "--threads", "worker threads (default: number of cores)",
       [](Config& c, const std::string& v) { c.threads = int_in(v, 1, 256); },
       [](const Config& c) { return std::to_string(c.threads); }},
      {"io_backend", "--io-backend",
       "epoll or io_uring: what the workers wait on and read and write the request path with; io_uring "
       "falls back to epoll where the kernel or a seccomp profile refuses it (default epoll)",
       [](Config& c, const std::string& v) { c.io_backend = enum_of<IoBackend>(v, kIoBackendNames); },
       [](const Config& c) { return std::string(to_string(c.io_backend)); }},
      {"backend.url_template", "--backend-url-template",
       "pod URL with {ordinal}, {statefulset}, {service}, {namespace}, {cluster_domain}, {port}, {scheme}",
       MCP_STR(backend.url_template)},
      {"backend.statefulset", "--statefulset", "StatefulSet name ({statefulset})", MCP_STR(backend.statefulset)},
      {"backend.service", "--service", "headless Service name ({service})", MCP_STR(backend.service)},
      {"backend.namespace", "--namespace", "namespace ({namespace}, default 'default')", MCP_STR(backend.ns)},
      {"backend.cluster_domain", "--cluster-domain", "cluster domain (default cluster.local)",
       MCP_STR(backend.cluster_domain)},
      {"backend.port", "--port", "pod port ({port}, default 8080)",
       [](Config& c, const std::string& v) { c.backend.port = static_cast<std::uint16_t>(int_in(v, 1, 65535)); },
       [](const Config& c) { return std::to_string(c.backend.port); }},
      {"backend.scheme", "--scheme", "pod scheme ({scheme}, default http)",
       [](Config& c, const std::string& v) { c.backend.scheme = one_of(v, {"http"}); },
       [](const Config& c) { return c.backend.scheme; }},
      {"backend.replicas", "--replicas", "StatefulSet replicas (default 1)",
       [](Config& c, const std::string& v) { c.backend.replicas = int_in(v, 1, kMaxReplicas); },
       [](const Config& c) { return std::to_string(c.backend.replicas); }},
      {"backend.rewrite_host", "--rewrite-host",
       "send the pod's host:port as Host instead of the client's (default false)",
       [](Config& c, const std::string& v) { c.backend.rewrite_host = to_bool(v); },
       [](const Config& c) { return b(c.backend.rewrite_host); }},
      {"backend.connect_timeout", "--connect-timeout", "connect to a pod (default 5s)",
       MCP_DUR(backend.connect_timeout)},
      {"backend.unreachable_grace", "--unreachable-grace",
       "a session's pod refusing connections this long is gone; until then 503 Retry-After (default 15s)",
       MCP_DUR(backend.unreachable_grace)},
      {"backend.response_timeout", "--response-timeout", "wait for a pod's response head (default 5m)",
       MCP_DUR(backend.response_timeout)},
      {"backend.session_end_timeout", "--session-end-timeout",
       "wait for a pod to end a session the proxy will not hand out (a duplicate id, no room) (default 5s)",
       MCP_DUR(backend.session_end_timeout)},
      {"backend.stream_open_wait", "--stream-open-wait",
       "a session's requests wait this long at most for its GET stream being opened (default 200ms, 0 off)",
       [](Config& c, const std::string& v) { c.backend.stream_open_wait = parse_duration(v); },
       [](const Config& c) { return format_duration(c.backend.stream_open_wait); }},
      {"backend.stream_expect_window", "--stream-expect-window",
       "after a session's notifications/initialized, its next request waits this long at most for the GET "
       "stream SDK clients open then (default 20ms, 0 off)",
       [](Config& c, const std::string& v) { c.backend.stream_expect_window = parse_duration(v); },
       [](const Config& c) { return format_duration(c.backend.stream_expect_window); }},
      {"backend.dns_cache_ttl", "--dns-cache-ttl",
       "the longest a pod name's answer is kept (its record's TTL, at least backend.dns_min_ttl) (default 5s)",
       MCP_DUR(backend.dns_cache_ttl)},
      {"backend.dns_min_ttl", "--dns-min-ttl",
       "keep a pod name's answer at least this long, whatever its TTL; backend.dns_cache_ttl is the most (default 1s)",
       MCP_DUR(backend.dns_min_ttl)},
      {"backend.dns_timeout", "--dns-timeout", "a lookup of a pod name gives up after this (default 2s)",
       MCP_DUR(backend.dns_timeout)},
      {"backend.dns_serve_stale", "--dns-serve-stale",
       "while DNS fails or times out (not NXDOMAIN), a pod's last addresses are used this long past their TTL "
       "(default 60s)",
       MCP_DUR(backend.dns_serve_stale)},
      {"backend.dns_retry_max", "--dns-retry-max",
       "failed lookups of a pod name are repeated after 200ms, doubling up to this (default 2s)",
       MCP_DUR(backend.dns_retry_max)},
      {"backend.dns_gone_grace", "--dns-gone-grace",
       "a session's pod whose name is NXDOMAIN this long is gone; until then 503 Retry-After (default: "
       "backend.unreachable_grace)",
       [](Config& c, const std::string& v) {
         c.backend.dns_gone_grace = positive_duration(v);
         c.backend.dns_gone_grace_set = true;
       },
       [](const Config& c) { return format_duration(c.backend.name_grace()); }},
      {"backend.eject_cooldown", "--eject-cooldown", "a failing pod stays out of placement (default 10s)",
       MCP_DUR(backend.eject_cooldown)},
      {"backend.idle_connection_timeout", "--upstream-idle-timeout",
       "close pooled pod connections idle this long (default 60s)", MCP_DUR(backend.idle_connection_timeout)},
      {"backend.max_idle_connections", "--upstream-max-idle", "idle pooled connections per pod per thread (default 64)",
       [](Config& c, const std::string& v) {
         c.backend.max_idle_connections = static_cast<std::size_t>(int_in(v, 0, 100000));
       },
       [](const Config& c) { return std::to_string(c.backend.max_idle_connections); }},
      {"backend.warm_connections", "--upstream-warm",
       "connections per pod per thread opened ahead of need, so a request never waits on a connect (default 1, "
       "0 off)",
       [](Config& c, const std::string& v) {
         c.backend.warm_connections = static_cast<std::size_t>(int_in(v, 0, 1000));
       },
       [](const Config& c) { return std::to_string(c.backend.warm_connections); }},
      {"backend.max_response_header_size", "--max-response-header-size",
       "bound of a pod's response head (default 64KiB, 502 past it)", MCP_SIZE(backend.max_response_header_size)},
      {"backend.draining", "--drain-ordinal",
       "an ordinal that gets no new sessions while its own go on (repeatable; default none)",
       [](Config& c, const std::string& v) {
         for (int o : ordinal_list(v)) c.backend.draining.push_back(o);
       },
       [](const Config& c) {
         std::string out;
         for (int o : c.backend.draining) out += (out.empty() ? "" : ",") + std::to_string(o);
         return out;
       },
       false, [](Config& c) { c.backend.draining.clear(); }},
      {"backend.health_check.path", "--health-check-path",
       "active health check: GET this path on every pod; one failing it gets no new sessions (default none: off)",
       [](Config& c, const std::string& v) {
         if (!v.empty() && v.front() != '/') bad("must be a path starting with '/', got '" + v + "'");
         c.backend.health_check_path = v;
       },
       [](const Config& c) { return c.backend.health_check_path; }},
      {"backend.health_check.interval", "--health-check-interval", "time between two probes of a pod (default 10s)",
       MCP_DUR(backend.health_check_interval)},
      {"backend.health_check.timeout", "--health-check-timeout",
       "a probe without a 2xx/3xx answer this soon fails (default 2s)", MCP_DUR(backend.health_check_timeout)},
      {"backend.health_check.failures", "--health-check-failures",
       "failed probes in a row that take a pod out of placement (default 2); one pass brings it back",
       [](Config& c, const std::string& v) { c.backend.health_check_failures = int_in(v, 1, 100); },
       [](const Config& c) { return std::to_string(c.backend.health_check_failures); }},
      {"sessions.store", "--session-store", "memory or redis (default memory)",
       [](Config& c, const std::string& v) { c.sessions.store = enum_of<StoreKind>(v, kStoreNames); },
       [](const Config& c) { return std::string(to_string(c.sessions.store)); }},
      {"sessions.ttl", "--session-ttl", "sliding session TTL (default 2h)", MCP_DUR(sessions.ttl)},
      {"sessions.recovery_wait", "--recovery-wait",
       "requests of a lost session wait this long at most for its recovery by another (default 10s)",
       MCP_DUR(sessions.recovery_wait)},
      {"sessions.binding", "--session-binding",
       "bind sessions to who created them: none, authorization, or header:<Name> (default none)", set_binding,
       binding_name},
      {"sessions.binding_secret_file", "--session-binding-secret-file",
       "file holding the HMAC key of the session binding (required with the redis store: replicas must agree)",
       MCP_STR(sessions.binding_secret_file)},
      {"sessions.redis.url", "--redis-url",
       "redis://[user:pass@]host:port/db or rediss:// (sentinel and cluster mode: credentials, TLS, db only)",
       MCP_STR(sessions.redis.url), true},
      {"sessions.redis.mode", "--redis-mode",
       "standalone (the URL's address), sentinel (the primary Sentinel names) or cluster (Redis Cluster) "
       "(default standalone)",
       [](Config& c, const std::string& v) { c.sessions.redis.mode = enum_of<RedisMode>(v, kRedisModeNames); },
       [](const Config& c) { return std::string(kRedisModeNames[static_cast<std::size_t>(c.sessions.redis.mode)]); }},
      {"sessions.redis.nodes", "--redis-node",
       "host:port of a sentinel (sentinel mode) or of a cluster seed node (cluster mode); repeatable",
       [](Config& c, const std::string& v) { c.sessions.redis.nodes.push_back(node_entry(v)); },
       [](const Config& c) { return joined(c.sessions.redis.nodes); }, false,
       [](Config& c) { c.sessions.redis.nodes.clear(); }},
      {"sessions.redis.sentinel_master", "--redis-sentinel-master", "the master name the sentinels monitor",
       MCP_STR(sessions.redis.sentinel_master)},
      {"sessions.redis.sentinel_password_file", "--redis-sentinel-password-file",
       "file holding the sentinels' password, when they need one (default none)",
       MCP_STR(sessions.redis.sentinel_password_file)},
      {"sessions.redis.key_prefix", "--redis-key-prefix", "key prefix (default mcp-session-proxy:)",
       MCP_STR(sessions.redis.key_prefix)},
      {"sessions.redis.password_file", "--redis-password-file",
       "file holding the Redis password (else MCP_SESSION_PROXY_REDIS_PASSWORD, else the URL's)",
       MCP_STR(sessions.redis.password_file)},
      {"sessions.redis.tls_ca_file", "--redis-tls-ca-file", "CA bundle for rediss:// (default: the system's)",
       MCP_STR(sessions.redis.tls_ca_file)},
      {"sessions.redis.tls_server_name", "--redis-tls-server-name",
       "name checked in the Redis certificate (default: the URL's host)", MCP_STR(sessions.redis.tls_server_name)},
      {"sessions.redis.tls_verify", "--redis-tls-verify", "verify the Redis certificate (default true)",
       [](Config& c, const std::string& v) { c.sessions.redis.tls_verify = to_bool(v); },
       [](const Config& c) { return b(c.sessions.redis.tls_verify); }},
      {"sessions.redis.connect_timeout", "--redis-connect-timeout", "connect and TLS handshake (default 1s)",
       MCP_DUR(sessions.redis.connect_timeout)},
      {"sessions.redis.command_timeout", "--redis-command-timeout",
       "deadline of one command, and of the write before an initialize is answered (default 250ms)",
       MCP_DUR(sessions.redis.command_timeout)},
      {"sessions.redis.reconnect_max_backoff", "--redis-reconnect-max-backoff",
       "cap of the wait between Redis reconnects (100ms doubling, jittered); a connection must last this long to "
       "reset the wait (default 5s)",
       MCP_DUR(sessions.redis.reconnect_max_backoff)},
      {"sessions.redis.queue_size", "--redis-queue-size", "records kept while Redis is down (default 10000)",
       [](Config& c, const std::string& v) {
         c.sessions.redis.queue_size = static_cast<std::size_t>(int_in(v, 1, 10000000));
       },
       [](const Config& c) { return std::to_string(c.sessions.redis.queue_size); }},
      {"sessions.redis.counts_interval", "--redis-counts-interval",
       "how often the live-session count of each pod is read from Redis (least_sessions), and the table marker "
       "checked (records lost: written back) (default 1s)",
       MCP_DUR(sessions.redis.counts_interval)},
      {"sessions.redis.max_reply_size", "--redis-max-reply-size",
       "bound of one Redis reply; past it the connection is dropped (default 32MiB, at least 2 x max_body_size)",
       MCP_SIZE(sessions.redis.max_reply_size)},
      {"sessions.redis.max_reply_elements", "--redis-max-reply-elements", "bound of one Redis array (default 65536)",
       [](Config& c, const std::string& v) {
         c.sessions.redis.max_reply_elements = static_cast<std::size_t>(int_in(v, 1, 100000000));
       },
       [](const Config& c) { return std::to_string(c.sessions.redis.max_reply_elements); }},
      {"sessions.redis.max_reply_depth", "--redis-max-reply-depth", "arrays within arrays in a Redis reply (default 8)",
       [](Config& c, const std::string& v) {
         c.sessions.redis.max_reply_depth = static_cast<std::size_t>(int_in(v, 1, 64));
       },
       [](const Config& c) { return std::to_string(c.sessions.redis.max_reply_depth); }},
      {"sessions.on_lost", "--on-lost-session", "reinitialize or not_found (default reinitialize)",
       [](Config& c, const std::string& v) { c.sessions.on_lost = enum_of<OnLost>(v, kOnLostNames); },
       [](const Config& c) { return std::string(to_string(c.sessions.on_lost)); }},
      {"sessions.max_sessions", "--max-sessions", "sessions kept in the local table (default 1000000)",
       [](Config& c, const std::string& v) {
         c.sessions.max_sessions = static_cast<std::size_t>(int_in(v, 1, 1000000000));
       },
       [](const Config& c) { return std::to_string(c.sessions.max_sessions); }},
      {"sessions.max_init_body", "--session-max-init-body",
       "initialize bodies kept to re-initialize a lost session elsewhere; a larger one is not kept, its session "
       "cannot move (default 64KiB, 0 none)",
       [](Config& c, const std::string& v) { c.sessions.max_init_body = parse_size(v); },
       [](const Config& c) { return std::to_string(c.sessions.max_init_body); }},
      {"sessions.max_table_bytes", "--max-table-bytes",
       "memory bound of the local table, records and initialize bodies (default 512MiB; least recently used go)",
       MCP_SIZE(sessions.max_table_bytes)},
      {"placement", "--placement", "least_sessions or random (default least_sessions)",
       [](Config& c, const std::string& v) { c.placement = enum_of<PlacementPolicy>(v, kPlacementNames); },
       [](const Config& c) { return std::string(to_string(c.placement)); }},
      {"legacy_sse_path", "--legacy-sse-path", "path of the 2024-11-05 SSE endpoint (default /sse)",
       [](Config& c, const std::string& v) {
         if (v.empty() || v.front() != '/') bad("must be a path starting with '/', got '" + v + "'");
         c.legacy_sse_path = v;
       },
       [](const Config& c) { return c.legacy_sse_path; }},
      {"trust_forwarded_headers", "--trust-forwarded-headers",
       "pass the X-Forwarded-Host/-Proto of a trusted hop in front (TLS ingress, runner) to the pod (default false)",
       [](Config& c, const std::string& v) { c.trust_forwarded_headers = to_bool(v); },
       [](const Config& c) { return b(c.trust_forwarded_headers); }},
      {"client_address.trusted_hops", "--trusted-hops",
       "hops in front that append to X-Forwarded-For, the peer the first: the client (for limits and logs) is "
       "the address the farthest of them appended, never what the client wrote; trust_forwarded_headers counts "
       "as 1 (default 0: the peer)",
       [](Config& c, const std::string& v) { c.client_address.count = static_cast<unsigned>(int_in(v, 0, 32)); },
       [](const Config& c) { return std::to_string(c.client_address.count); }},
      {"client_address.trusted_proxies", "--trusted-proxy",
       "an address block (10.0.0.0/8, 2001:db8::/32, or one address) of hops that append to X-Forwarded-For: "
       "walking it from the right, the client is the first address not in one (repeatable; default none)",
       [](Config& c, const std::string& v) { c.client_address.networks.push_back(network_entry(v)); },
       [](const Config& c) {
         std::string out;
         for (const auto& n : c.client_address.networks) out += (out.empty() ? "" : ",") + n.str();
         return out;
       },
       false, [](Config& c) { c.client_address.networks.clear(); }},
      {"allowed_origins", "--allowed-origin",
       "an Origin allowed to call (repeatable; when any is set, other Origins get 403; default: any)",
       [](Config& c, const std::string& v) { c.allowed_origins.push_back(origin_entry(v)); },
       [](const Config& c) { return joined(c.allowed_origins); }, false, [](Config& c) { c.allowed_origins.clear(); }},
      {"allowed_hosts", "--allowed-host",
       "a Host allowed (repeatable; 'name' any port, 'name:port' that one; when any is set, other Hosts get 403)",
       [](Config& c, const std::string& v) { c.allowed_hosts.push_back(host_entry(v)); },
       [](const Config& c) { return joined(c.allowed_hosts); }, false, [](Config& c) { c.allowed_hosts.clear(); }},
      {"legacy_endpoint_prefix", "--legacy-endpoint-prefix",
       "path prefix the proxy is mounted under, prepended to the legacy endpoint URL (default none)",
       [](Config& c, const std::string& v) {
         if (!v.empty() && v.front() != '/') bad("must be empty or a path starting with '/', got '" + v + "'");
         c.legacy_endpoint_prefix = v;
       },
       [](const Config& c) { return c.legacy_endpoint_prefix; }},
      {"limits.max_header_size", "--max-header-size", "request head bound (default 16KiB, 431 past it)",
       MCP_SIZE(limits.max_header_size)},
      {"limits.max_body_size", "--max-body-size", "request body bound (default 8MiB, 413 past it)",
       MCP_SIZE(limits.max_body_size)},
      {"limits.max_worker_body_bytes", "--max-worker-body-bytes",
       "request bodies one worker thread holds at once; past it 503 Retry-After (default 256MiB, at least "
       "max_body_size)",
       MCP_SIZE(limits.max_worker_body_bytes)},
      {"limits.header_timeout", "--header-timeout", "deadline to read a request head (default 10s)",
       MCP_DUR(limits.header_timeout)},
      {"limits.body_timeout", "--body-timeout", "deadline to read a request body (default 30s)",
       MCP_DUR(limits.body_timeout)},
      {"limits.idle_timeout", "--idle-timeout", "idle keep-alive client connection (default 60s)",
       MCP_DUR(limits.idle_timeout)},
      {"limits.write_timeout", "--write-timeout", "one write to a client that stopped reading (default 60s)",
       MCP_DUR(limits.write_timeout)},
      {"limits.relay_buffer_size", "--relay-buffer-size",
       "per connection, the most of a response body relayed per read (default 16KiB)",
       MCP_SIZE(limits.relay_buffer_size)},
      {"limits.max_connections", "--max-connections", "client connections per worker thread (default 10000)",
       [](Config& c, const std::string& v) {
         c.limits.max_connections = static_cast<std::size_t>(int_in(v, 1, 10000000));
       },
       [](const Config& c) { return std::to_string(c.limits.max_connections); }},
      {"limits.max_request_id_length", "--max-request-id-length",
       "longest client X-Request-Id kept; a longer one, one with other than visible ASCII, or two are replaced "
       "by a generated id (default 128)",
       [](Config& c, const std::string& v) {
         c.limits.max_request_id_length = static_cast<std::size_t>(int_in(v, 1, 8192));
       },
       [](const Config& c) { return std::to_string(c.limits.max_request_id_length); }},
      {"limits.new_sessions_per_client", "--new-sessions-per-client",
       "initializes one client (binding identity, else address) may make per window; past it 429 (default 0: no bound)",
       [](Config& c, const std::string& v) {
         c.limits.new_sessions_per_client = static_cast<std::uint32_t>(int_in(v, 0, 1000000000));
       },
       [](const Config& c) { return std::to_string(c.limits.new_sessions_per_client); }},
      {"limits.new_sessions_window", "--new-sessions-window", "the window of new_sessions_per_client (default 10s)",
       MCP_DUR(limits.new_sessions_window)},
      {"limits.new_sessions_max_clients", "--new-sessions-max-clients",
       "clients whose new_sessions_per_client windows are kept at once (the default's take 4MiB at most); past "
       "it the oldest windows are forgotten, counted, and those clients start anew (default 100000)",
       [](Config& c, const std::string& v) {
         c.limits.new_sessions_max_clients = static_cast<std::size_t>(int_in(v, 16, 100000000));
       },
       [](const Config& c) { return std::to_string(c.limits.new_sessions_max_clients); }},
      {"log.level", "--log-level", "trace, debug, info, warn, error or off (default info)",
       [](Config& c, const std::string& v) {
         c.log.level = one_of(v, {"trace", "debug", "info", "warn", "error", "off"});
       },
       [](const Config& c) { return c.log.level; }},
      {"log.format", "--log-format", "text or json (default text)",
       [](Config& c, const std::string& v) {
         c.log.format = one_of(v, {"text", "json"});
       },
       [](const Config& c) { return c.log.format; }},
      {"log.access", "--access-log", "an access log line per request (default true)",
       [](Config& c, const std::string& v) { c.log.access = to_bool(v); },
       [](const Config& c) { return b(c.log.access); }},
      {"admin.token_file", "--admin-token-file",
       "file holding the bearer token of the admin listener's POST calls (default none: refused)",
       MCP_STR(admin_token_file)},
      {"admin.max_connections", "--admin-max-connections",
       "open admin connections; at the bound the longest-idle one is closed for a new one, with none idle "
       "the new one gets 503 (default 64)",
       [](Config& c, const std::string& v) {
         c.admin.max_connections = static_cast<std::size_t>(int_in(v, 1, 100000));
       },
       [](const Config& c) { return std::to_string(c.admin.max_connections); }},
      {"admin.idle_timeout", "--admin-idle-timeout",
       "an admin connection waiting for (and reading) a request is closed after this (default 10s)",
       MCP_DUR(admin.idle_timeout)},
      {"admin.max_body_size", "--admin-max-body-size", "admin request body bound (default 64KiB, 413 past it)",
       MCP_SIZE(admin.max_body_size)},
      {"drain_timeout", "--drain-timeout", "on SIGTERM, wait this long for in-flight requests (default 20s)",
       MCP_DUR(drain_timeout)},
      {"affinity.tasks", "--task-affinity",
       "learn task ids from the answers that create them; route tasks/get|update|cancel|result to their pod "
       "(default true)",
       [](Config& c, const std::string& v) { c.affinity.tasks = to_bool(v); },
       [](const Config& c) { return b(c.affinity.tasks); }},
      {"affinity.task_ttl_default", "--task-ttl-default",
       "how long a task is kept when its answer's ttlMs is null or absent, slid on use; capped by "
       "affinity.task_ttl_max (default 1h)",
       MCP_DUR(affinity.task_ttl_default)},
      {"affinity.task_ttl_max", "--task-ttl-max", "the cap of a task's ttlMs (default 24h)",
       MCP_DUR(affinity.task_ttl_max)},
      {"affinity.handles", "--handle",
       "a handle: {param, tool, result_pointer}: the answer of `tool` holds it at the JSON pointer into its result, "
       "and requests carrying it in Mcp-Param-{param} go to that pod (repeatable; the flag takes the item as "
       "JSON; default none)",
       [](Config& c, const std::string& v) { c.affinity.handles.push_back(handle_rule(v)); },
       [](const Config& c) { return handle_rules_text(c.affinity.handles); }, false,
       [](Config& c) { c.affinity.handles.clear(); }},
      {"affinity.max_keys", "--affinity-max-keys",
       "task ids and handles kept in the local table (memory store: no new one past it while all are live) "
       "(default 1000000)",
       [](Config& c, const std::string& v) {
         c.affinity.max_keys = static_cast<std::size_t>(int_in(v, 1, 1000000000));
       },
       [](const Config& c) { return std::to_string(c.affinity.max_keys); }},
      {"affinity.max_table_bytes", "--affinity-max-table-bytes",
       "memory bound of the task/handle table (default 128MiB)", MCP_SIZE(affinity.max_table_bytes)},
      {"affinity.max_key_length", "--affinity-max-key-length",
       "the longest task id or handle value learned or looked up; a longer one is refused (default 256)",
       [](Config& c, const std::string& v) {
         c.affinity.max_key_length = static_cast<std::size_t>(int_in(v, 1, 65536));
       },
       [](const Config& c) { return std::to_string(c.affinity.max_key_length); }},
      {"affinity.max_answer_scan", "--affinity-max-answer-scan",
       "bytes of one answer (or SSE event) read for a task id; past it the answer is relayed unread (default 1MiB)",
       MCP_SIZE(affinity.max_answer_scan)},
  };
  return specs;
}

const KeySpec* find_key(const std::string& key) {
  for (const auto& s : key_specs()) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

void apply(Config& cfg, const KeySpec& spec, const std::string& value, const std::string& where) {
  try {
    spec.set(cfg, value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(spec.key + ": " + e.what() + " (" + where + ")");
  }
}

// A list key takes a sequence of scalars, one scalar, or nothing (`key: []`, `key:`).
void set_list(Config& cfg, const KeySpec& spec, const YAML::Node& value, const std::string& where) {
  spec.reset(cfg);
  if (value.IsNull()) return;
  if (value.IsScalar()) {
    apply(cfg, spec, value.Scalar(), where);
    return;
  }
  if (!value.IsSequence()) throw ConfigError(spec.key + ": must be a list of values (" + where + ")");
  for (const auto& item : value) {
    if (item.IsMap() && spec.key == "affinity.handles") {
      // A list of maps: each map goes to the key's setter as JSON.
      nlohmann::json j = nlohmann::json::object();
      for (const auto& kv : item) {
        if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
          throw ConfigError(spec.key + ": every field must be a single value (" + where + ")");
        }
        j[kv.first.Scalar()] = kv.second.Scalar();
      }
      apply(cfg, spec, j.dump(), where);
      continue;
    }
    if (!item.IsScalar()) throw ConfigError(spec.key + ": every item must be a single value (" + where + ")");
    apply(cfg, spec, item.Scalar(), where);
  }
}

void walk(Config& cfg, const YAML::Node& node, const std::string& prefix, const std::string& origin) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      throw ConfigError((prefix.empty() ? std::string("the top level") : prefix) + ": keys must be plain names (" +
                        origin + ":" + std::to_string(kv.first.Mark().line + 1) + ")");
    }
    const std::string name = kv.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = kv.second;
    const std::string where = origin + ":" + std::to_string(kv.first.Mark().line + 1);
    if (value.IsMap()) {
      walk(cfg, value, key, origin);
      continue;
    }
    const KeySpec* spec = find_key(key);
    if (spec == nullptr) throw ConfigError(key + ": unknown key (" + where + ")");
    if (spec->reset) {
      set_list(cfg, *spec, value, where);
      continue;
    }
    if (!value.IsScalar()) throw ConfigError(key + ": must be a single value (" + where + ")");
    apply(cfg, *spec, value.Scalar(), where);
  }
}

void validate_memory_bounds(const Config& cfg) {
  if (cfg.limits.max_worker_body_bytes < cfg.limits.max_body_size) {
    throw ConfigError("limits.max_worker_body_bytes: must be at least limits.max_body_size (" +
                      std::to_string(cfg.limits.max_body_size) + " bytes)");
  }
  if (cfg.sessions.max_table_bytes < 4 * cfg.limits.max_body_size) {
    throw ConfigError("sessions.max_table_bytes: must be at least 4 x limits.max_body_size (" +
                      std::to_string(4 * cfg.limits.max_body_size) + " bytes)");
  }
}

void validate_reply_bound(const Config& cfg) {
  // A record holds an initialize body, JSON-escaped (up to twice its size), and Redis must
  // be able to hand it back.
  if (cfg.sessions.redis.max_reply_size < 2 * cfg.limits.max_body_size + 64 * 1024) {
    throw ConfigError("sessions.redis.max_reply_size: must be at least 2 x limits.max_body_size + 64KiB (" +
                      std::to_string(2 * cfg.limits.max_body_size + 64 * 1024) + " bytes)");
  }
}

void validate_binding(Config& cfg) {
  auto& s = cfg.sessions;
  if (s.binding == BindingKind::none) {
    if (!s.binding_secret_file.empty()) {
      throw ConfigError("sessions.binding_secret_file: set, but sessions.binding is none");
    }
    s.binding_key.clear();
    return;
  }
  if (s.binding_secret_file.empty()) {
    if (s.store == StoreKind::redis) {
      throw ConfigError(
          "sessions.binding_secret_file: required with sessions.binding and the redis store (the replicas must agree "
          "on the key)");
    }
    s.binding_key = process_binding_key();
    return;
  }
  std::ifstream in(s.binding_secret_file, std::ios::binary);
  if (!in) throw ConfigError("sessions.binding_secret_file: cannot read " + s.binding_secret_file);
  std::ostringstream key;
  key << in.rdbuf();
  s.binding_key = key.str();
  while (!s.binding_key.empty() && std::isspace(static_cast<unsigned char>(s.binding_key.back())) != 0) {
    s.binding_key.pop_back();
  }
  if (s.binding_key.size() < 16) {
    throw ConfigError("sessions.binding_secret_file: must hold a key of 16 bytes or more (" + s.binding_secret_file +
                      ")");
  }
}

void validate_admin(const Config& cfg) {
  if (cfg.backend.health_check_timeout >= cfg.backend.health_check_interval) {
    throw ConfigError("backend.health_check.timeout: must be shorter than backend.health_check.interval (" +
                      format_duration(cfg.backend.health_check_interval) + ")");
  }
  if (!cfg.admin_token_file.empty() && !std::ifstream(cfg.admin_token_file)) {
    throw ConfigError("admin.token_file: cannot read " + cfg.admin_token_file);
  }
}

void validate_redis_mode(const Config& cfg) {
  const auto& redis = cfg.sessions.redis;
  switch (redis.mode) {
    case RedisMode::standalone:
      if (redis.url.empty()) throw ConfigError("sessions.redis.url: required when sessions.store is redis");
      if (!redis.nodes.empty() || !redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.nodes: set, but sessions.redis.mode is standalone (set mode: sentinel)");
      }
      break;
    case RedisMode::sentinel:
      if (redis.nodes.empty()) throw ConfigError("sessions.redis.nodes: required in sentinel mode (the sentinels)");
      if (redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.sentinel_master: required in sentinel mode (the master name)");
      }
      if (!redis.sentinel_password_file.empty() && !std::ifstream(redis.sentinel_password_file)) {
        throw ConfigError("sessions.redis.sentinel_password_file: cannot read " + redis.sentinel_password_file);
      }
      break;
    case RedisMode::cluster:
      if (redis.nodes.empty()) throw ConfigError("sessions.redis.nodes: required in cluster mode (seed nodes)");
      if (!redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.sentinel_master: set, but sessions.redis.mode is cluster");
      }
      break;
  }
}

void validate_redis(const Config& cfg) {
  const auto& redis = cfg.sessions.redis;
  if (cfg.sessions.store == StoreKind::redis) {
    validate_redis_mode(cfg);
    try {
      const RedisUrl url = parse_redis_url(redis.url.empty() ? "redis://from-the-nodes" : redis.url);
      if (redis.mode == RedisMode::cluster && url.db != 0) {
        throw ConfigError("sessions.redis.url: Redis Cluster has only database 0, the URL names " +
                          std::to_string(url.db));
      }
      if (!url.tls && (!redis.tls_ca_file.empty() || !redis.tls_server_name.empty())) {
        throw ConfigError("sessions.redis.tls_ca_file: TLS options need a rediss:// URL");
      }
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("sessions.redis.url: ") + e.what());
    }
    validate_reply_bound(cfg);
    for (const auto& [key, path] : {std::pair{"sessions.redis.password_file", redis.password_file},
                                    std::pair{"sessions.redis.tls_ca_file", redis.tls_ca_file}}) {
      if (!path.empty() && !std::ifstream(path)) throw ConfigError(std::string(key) + ": cannot read " + path);
    }
  } else {
    // Redis options with the memory store would be silent no-ops.
    if (!redis.password_file.empty() || !redis.tls_ca_file.empty() || !redis.tls_server_name.empty() ||
        redis.mode != RedisMode::standalone || !redis.nodes.empty() || !redis.sentinel_master.empty()) {
      throw ConfigError("sessions.redis: options set, but sessions.store is memory");
    }
  }
}

void validate(Config& cfg) {
  if (cfg.threads == 0) cfg.threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  if (cfg.sessions.store == StoreKind::memory && !cfg.sessions.redis.url.empty()) {
    throw ConfigError(
        "sessions.redis.url: set, but sessions.store is memory (set sessions.store: redis, or remove the URL)");
  }
  validate_redis(cfg);
  validate_admin(cfg);
  validate_binding(cfg);
  validate_memory_bounds(cfg);
  // trust_forwarded_headers says the hop in front is trusted: so is what it appends.
  if (cfg.trust_forwarded_headers && cfg.client_address.count == 0) cfg.client_address.count = 1;

  if (cfg.listen.port == cfg.admin_listen.port && cfg.listen.port != 0 && cfg.listen.host == cfg.admin_listen.host) {
    throw ConfigError("admin_listen: must differ from listen (" + cfg.listen.str() + ")");
  }
  // Every placeholder the template uses must have a value: never a silent empty host.
  validate_url_template(cfg.backend);
  cfg.backend.pods.clear();
  for (int o = 0; o < cfg.backend.replicas; ++o) {
    cfg.backend.pods.push_back(parse_pod_url(expand_pod_url(cfg.backend, o)));
    // The default template's name is fully qualified: looked up as it is (one name, not the
    // resolv.conf search list first under ndots:5); the URL and the authority keep no dot.
    if (cfg.backend.url_template.empty() && !cfg.backend.pods.back().host.ends_with('.')) {
      cfg.backend.pods.back().host += '.';
    }
  }
}

}  // namespace

std::string_view to_string(StoreKind v) { return kStoreNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(IoBackend v) { return kIoBackendNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(OnLost v) { return kOnLostNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(PlacementPolicy v) { return kPlacementNames[static_cast<std::size_t>(v)]; }

std::string ListenAddress::str() const {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                             : host + ":" + std::to_string(port);
}

duration parse_duration(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
  if (i == 0) bad("must be a duration like 500ms, 30s, 5m or 2h, got '" + text + "'");
  const long long n = to_int(text.substr(0, i));
  const std::string unit = text.substr(i);
  long long ms = 0;
  if (unit == "ms") {
    ms = n;
  } else if (unit == "s" || unit.empty()) {
    ms = n * 1000;
  } else if (unit == "m") {
    ms = n * 60 * 1000;
  } else if (unit == "h") {
    ms = n * 3600 * 1000;
  } else {
    bad("must be a duration like 500ms, 30s, 5m or 2h, got '" + text + "'");
  }
  return duration{ms};
}

std::string format_duration(duration d) {
  const long long ms = d.count();
  if (ms % 3600000 == 0 && ms != 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0 && ms != 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::size_t parse_size(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
  if (i == 0 || i > 12) bad("must be a size like 512, 16KiB or 8MiB, got '" + text + "'");
  const auto n = static_cast<std::size_t>(to_int(text.substr(0, i)));
  const std::string unit = text.substr(i);
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB" || unit == "K" || unit == "k") return n * 1024;
  if (unit == "MiB" || unit == "M") return n * 1024 * 1024;
  if (unit == "GiB" || unit == "G") return n * 1024 * 1024 * 1024;
  bad("must be a size like 512, 16KiB or 8MiB, got '" + text + "'");
}

ListenAddress parse_listen(const std::string& text) {
  ListenAddress out;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      bad("must be host:port or [v6]:port, got '" + text + "'");
    }
    out.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) bad("must be host:port, got '" + text + "'");
    out.host = text.substr(0, colon);
    if (out.host.find(':') != std::string::npos) bad("an IPv6 host needs brackets: [::1]:8080, got '" + text + "'");
    port = text.substr(colon + 1);
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  out.port = static_cast<std::uint16_t>(int_in(port, 0, 65535));
  return out;
}

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cmd;
  CLI::App app{"mcp-session-proxy: pins MCP Streamable HTTP sessions to StatefulSet pods", "mcp-session-proxy"};
  app.set_help_flag();  // handled below, so that --help works whatever else is on the line
  std::string config_file;
  app.add_option("--config", config_file, "YAML config file");
  app.add_flag("--check-config", cmd.check_config, "validate the config, print the effective config, exit 0 (or 2)");
  app.add_flag("--version", cmd.version, "print the version and exit");
  app.add_flag("--config-reference", cmd.config_reference,
               "print every config key (flag, default, reloadable, meaning) as Markdown and exit");
  app.add_flag("-h,--help", cmd.help, "print this help and exit");
  std::vector<std::string> values(key_specs().size());
  std::vector<std::vector<std::string>> lists(key_specs().size());
  std::vector<CLI::Option*> options;
  for (std::size_t i = 0; i < key_specs().size(); ++i) {
    const auto& spec = key_specs()[i];
    const std::string help = spec.help + " [" + spec.key + "]";
    if (spec.reset) {
      // Repeatable, one value per occurrence.
      options.push_back(app.add_option(spec.flag, lists[i], help)->allow_extra_args(false));
    } else {
      options.push_back(app.add_option(spec.flag, values[i], help));
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    throw ConfigError(std::string("command line: ") + e.what() + " (see --help)");
  }
  cmd.help_text = app.help();
  if (!config_file.empty()) cmd.config_file = config_file;
  for (std::size_t i = 0; i < options.size(); ++i) {
    if (options[i]->count() == 0) continue;
    if (key_specs()[i].reset) {
      for (const auto& item : lists[i]) cmd.overrides.emplace_back(key_specs()[i].key, item);
    } else {
      cmd.overrides.emplace_back(key_specs()[i].key, values[i]);
    }
  }
  return cmd;
}

Config config_from_yaml(const std::string& yaml_text, const std::string& origin,
                        const std::vector<std::pair<std::string, std::string>>& overrides) {
  Config cfg;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
  if (root.IsMap()) {
    try {
      walk(cfg, root, "", origin);
    } catch (const YAML::Exception& e) {
      // Whatever shape yaml-cpp refuses is a bad file, never an exception past this point.
      throw ConfigError(origin + ": " + e.what());
    }
  } else if (!root.IsNull()) {
    throw ConfigError(origin + ": the top level must be a map of keys");
  }
  std::vector<const KeySpec*> lists_from_flags;  // a repeated flag replaces the file's list
  for (const auto& [key, value] : overrides) {
    const KeySpec* spec = find_key(key);
    if (spec == nullptr) throw ConfigError(key + ": unknown key");
    if (spec->reset && std::find(lists_from_flags.begin(), lists_from_flags.end(), spec) == lists_from_flags.end()) {
      spec->reset(cfg);
      lists_from_flags.push_back(spec);
    }
    apply(cfg, *spec, value, spec->flag);
  }
  validate(cfg);
  return cfg;
}

Config build_config(const CommandLine& cmd) {
  std::string text;
  std::string origin = "command line";
  if (cmd.config_file) {
    std::ifstream in(*cmd.config_file);
    if (!in) throw ConfigError("--config: cannot read " + *cmd.config_file);
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    origin = *cmd.config_file;
  }
  return config_from_yaml(text, origin, cmd.overrides);
}

std::string to_yaml(const Config& cfg) {
  YAML::Node root;
  for (const auto& spec : key_specs()) {
    std::string value = spec.get(cfg);
    if (spec.secret && !value.empty()) value = mask_url_password(value);
    YAML::Node node(value);
    if (spec.reset) {
      node = YAML::Node(YAML::NodeType::Sequence);
      std::stringstream items(value);
      for (std::string item; std::getline(items, item, ',');) node.push_back(item);
    }
    std::vector<std::string> parts;
    std::stringstream ss(spec.key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    // Keys are at most three levels deep (sessions.redis.url).
    switch (parts.size()) {
      case 1:
        root[parts[0]] = node;
        break;
      case 2:
        root[parts[0]][parts[1]] = node;
        break;
      default:
        root[parts[0]][parts[1]][parts[2]] = node;
        break;
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

namespace {

// "text (default X)" -> "text": the reference has a column of its own for the default.
std::string without_default(std::string help) {
  const auto at = help.find(" (default");
  if (at == std::string::npos) return help;
  const auto close = help.find(')', at);
  if (close == std::string::npos) return help;
  help.erase(at, close + 1 - at);
  return help;
}

std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

bool reloadable(std::string_view key) {
  for (std::string_view k : restart_only_keys()) {
    if (key == k || (k.back() == '.' && key.substr(0, k.size()) == k)) return false;
  }
  return true;
}

const std::vector<std::string_view>& restart_only_keys() {
  // Server::reload keeps these as they were (it compares the same fields).
  static const std::vector<std::string_view> keys = {
      "listen", "admin_listen", "threads", "io_backend", "sessions.store", "sessions.max_sessions", "sessions.redis."};
  return keys;
}

std::string config_reference() {
  const Config defaults;
  std::string out =
      "| Key | Flag | Default | On SIGHUP | Meaning |\n"
      "|---|---|---|---|---|\n";
  for (const auto& spec : key_specs()) {
    std::string value = spec.get(defaults);
    // The default of `threads` is the machine's core count, decided at start.
    if (spec.key == "threads") value = "number of cores";
    std::string shown = value.empty() ? "(none)" : "`" + value + "`";
    if (spec.reset) shown += " (list: repeat the flag)";
    out += "| `" + spec.key + "` | `" + spec.flag + "` | " + cell(shown) + " | " +
           (reloadable(spec.key) ? "applied" : "restart") + " | " + cell(without_default(spec.help)) + " |\n";
  }
  return out;
}

}  // namespace mcpproxy
