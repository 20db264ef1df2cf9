// The key table: one row per config key (YAML path, flag, help, how to set and print it).
#include "core/config/config_keys.hpp"
#include "core/http/http_rules.hpp"
#include "core/tables/redis_codec.hpp"

namespace mcpproxy::config_detail {

#define MCP_STR(field) [](Config& c, const std::string& v) { c.field = v; }, [](const Config& c) { return c.field; }
#define MCP_DUR(field)                                                     \
  [](Config& c, const std::string& v) { c.field = positive_duration(v); }, \
      [](const Config& c) { return format_duration(c.field); }
#define MCP_SIZE(field)                                                \
  [](Config& c, const std::string& v) { c.field = positive_size(v); }, \
      [](const Config& c) { return std::to_string(c.field); }

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
       "bind sessions to who created them: none, authorization, jwt (verified claims), or header:<Name> "
       "(default none)",
       set_binding, binding_name},
      {"sessions.binding_secret_file", "--session-binding-secret-file",
       "file of HMAC keys of the session binding, one a line: the first signs, every one verifies (required with "
       "the redis store: replicas must agree)",
       MCP_STR(sessions.binding_secret_file)},
      {"sessions.jwt.claims", "--jwt-claim",
       "a claim of the verified token a session is bound to (repeatable; default iss and sub)",
       [](Config& c, const std::string& v) { c.sessions.jwt.claims.push_back(v); },
       [](const Config& c) { return joined(c.sessions.jwt.claims); }, false,
       [](Config& c) { c.sessions.jwt.claims.clear(); }},
      {"sessions.jwt.jwks_file", "--jwks-file", "JWKS file of the keys tokens are signed with (read again on SIGHUP)",
       MCP_STR(sessions.jwt.jwks_file)},
      {"sessions.jwt.jwks_url", "--jwks-url",
       "http(s) URL of a JWKS the proxy fetches, caches for the answer's max-age and refreshes in the background",
       MCP_STR(sessions.jwt.jwks_url)},
      {"sessions.jwt.issuers", "--jwt-issuer", "an accepted iss (repeatable; required with binding jwt)",
       [](Config& c, const std::string& v) { c.sessions.jwt.issuers.push_back(v); },
       [](const Config& c) { return joined(c.sessions.jwt.issuers); }, false,
       [](Config& c) { c.sessions.jwt.issuers.clear(); }},
      {"sessions.jwt.audiences", "--jwt-audience",
       "an accepted aud, this server's resource indicator (repeatable; required with binding jwt)",
       [](Config& c, const std::string& v) { c.sessions.jwt.audiences.push_back(v); },
       [](const Config& c) { return joined(c.sessions.jwt.audiences); }, false,
       [](Config& c) { c.sessions.jwt.audiences.clear(); }},
      {"sessions.jwt.leeway", "--jwt-leeway", "clock skew allowed on exp and nbf (default 30s)",
       [](Config& c, const std::string& v) { c.sessions.jwt.leeway = parse_duration(v); },
       [](const Config& c) { return format_duration(c.sessions.jwt.leeway); }},
      {"sessions.jwt.non_jwt", "--jwt-non-jwt",
       "a bearer token that is not a JWT: refuse (no session) or exact (bound to its bytes) (default refuse)",
       [](Config& c, const std::string& v) { c.sessions.jwt.non_jwt = enum_of<NonJwt>(v, kNonJwtNames); },
       [](const Config& c) { return std::string(kNonJwtNames[static_cast<std::size_t>(c.sessions.jwt.non_jwt)]); }},
      {"sessions.jwt.jwks_refresh", "--jwks-refresh",
       "refetch the JWKS URL this often when its answer gives no max-age (default 5m)",
       MCP_DUR(sessions.jwt.jwks_refresh)},
      {"sessions.jwt.jwks_min_refresh", "--jwks-min-refresh",
       "fetch the JWKS URL at most this often, an unknown kid's refetch included (default 10s)",
       MCP_DUR(sessions.jwt.jwks_min_refresh)},
      {"sessions.jwt.jwks_fetch_timeout", "--jwks-fetch-timeout", "one fetch of the JWKS URL (default 5s)",
       MCP_DUR(sessions.jwt.jwks_fetch_timeout)},
      {"sessions.jwt.jwks_fetch_wait", "--jwks-fetch-wait",
       "a request whose token names an unknown kid waits this long at most for the refetch (default 1s; 0: none)",
       [](Config& c, const std::string& v) { c.sessions.jwt.jwks_fetch_wait = parse_duration(v); },
       [](const Config& c) { return format_duration(c.sessions.jwt.jwks_fetch_wait); }},
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
      {"limits.new_sessions_ipv6_prefix", "--new-sessions-ipv6-prefix",
       "an IPv6 client counts against new_sessions_per_client as its block of this many bits, so it cannot walk "
       "its own addresses past the limit; 128: each address alone (default 64)",
       [](Config& c, const std::string& v) {
         c.limits.new_sessions_ipv6_prefix = static_cast<unsigned>(int_in(v, 16, 128));
       },
       [](const Config& c) { return std::to_string(c.limits.new_sessions_ipv6_prefix); }},
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
      {"admin.max_header_size", "--admin-max-header-size", "admin request head bound (default 16KiB, 431 past it)",
       MCP_SIZE(admin.max_header_size)},
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
      {"subscriptions.fanout", "--listen-fanout",
       "open each 2026-07-28 subscriptions/listen on every pod and merge their notifications into the client's one "
       "stream (default false; leave it off for servers that share an event bus: docs/architecture.md)",
       [](Config& c, const std::string& v) { c.subscriptions.fanout = to_bool(v); },
       [](const Config& c) { return b(c.subscriptions.fanout); }},
      {"subscriptions.max_legs_per_listen", "--listen-max-legs-per-listen",
       "pods one fanned-out listen opens a leg on; backend.replicas may not exceed it with subscriptions.fanout "
       "(default 64)",
       [](Config& c, const std::string& v) { c.subscriptions.max_legs_per_listen = int_in(v, 1, kMaxReplicas); },
       [](const Config& c) { return std::to_string(c.subscriptions.max_legs_per_listen); }},
      {"subscriptions.max_legs", "--listen-max-legs",
       "legs (pod streams) of fanned-out listens open at once in the process; a listen past it is answered 503, a "
       "leg past it is opened again later (default 30000)",
       [](Config& c, const std::string& v) {
         c.subscriptions.max_legs = static_cast<std::size_t>(int_in(v, 1, 10000000));
       },
       [](const Config& c) { return std::to_string(c.subscriptions.max_legs); }},
      {"subscriptions.max_leg_buffer", "--listen-max-leg-buffer",
       "bytes of one leg's notifications held for a client that does not read them (default 64KiB); past it, "
       "subscriptions.slow_client",
       MCP_SIZE(subscriptions.max_leg_buffer)},
      {"subscriptions.slow_client", "--listen-slow-client",
       "a listen whose leg fills subscriptions.max_leg_buffer: close (the stream ends with a JSON-RPC error for "
       "the listen) or drop (the notifications that do not fit are dropped) (default close)",
       [](Config& c, const std::string& v) {
         c.subscriptions.slow_client = enum_of<SlowListenClient>(v, kSlowListenClientNames);
       },
       [](const Config& c) {
         return std::string(kSlowListenClientNames[static_cast<std::size_t>(c.subscriptions.slow_client)]);
       }},
      {"subscriptions.keepalive", "--listen-keepalive",
       "a fanned-out listen's keep-alive comment to its client after this long without an event; the pods' own "
       "are not relayed (default 15s)",
       MCP_DUR(subscriptions.keepalive)},
      {"subscriptions.reopen_backoff_max", "--listen-reopen-backoff-max",
       "a leg that failed or ended is opened again after 100ms, doubling up to this (default 5s)",
       MCP_DUR(subscriptions.reopen_backoff_max)},
  };
  return specs;
}

const KeySpec* find_key(const std::string& key) {
  for (const auto& s : key_specs()) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

}  // namespace mcpproxy::config_detail
