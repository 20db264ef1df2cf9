#pragma once
// Configuration: the YAML file, the CLI flags (flags win) and validation.
// Start-up code: it may throw ConfigError, which main turns into exit code 2.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config/affinity_config.hpp"
#include "core/config/subscriptions_config.hpp"
#include "core/http/client_address.hpp"

namespace mcpproxy {

using duration = std::chrono::milliseconds;

// Upper bound of backend.replicas; per-pod metrics and counters are arrays of this size.
inline constexpr int kMaxReplicas = 1024;

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ListenAddress {
  std::string host;
  std::uint16_t port = 0;
  std::string str() const;
  bool operator==(const ListenAddress&) const = default;
};

// Choices among names, parsed once when the config is read: the data path compares enums.
enum class StoreKind : std::uint8_t { memory, redis };
// What a worker waits on and does its request path's socket I/O with (io_ring.hpp).
enum class IoBackend : std::uint8_t { epoll, io_uring };
// How the proxy finds the Redis primary: the URL's address, or Sentinel's answer.
enum class RedisMode : std::uint8_t { standalone, sentinel, cluster };
enum class OnLost : std::uint8_t { reinitialize, not_found };
enum class PlacementPolicy : std::uint8_t { least_sessions, random };
enum class BindingKind : std::uint8_t { none, authorization, header, jwt };
// sessions.jwt.non_jwt: a bearer token that is not a JWT binds no session, or its bytes.
enum class NonJwt : std::uint8_t { refuse, exact };

class JwkSet;  // jwt.hpp
std::string_view to_string(StoreKind v);
std::string_view to_string(IoBackend v);
std::string_view to_string(OnLost v);
std::string_view to_string(PlacementPolicy v);

// Where one pod is reached. `authority` is what goes into Host when it is rewritten.
struct PodAddress {
  std::string url;
  std::string host;
  std::string port;
  std::string authority;
  bool operator==(const PodAddress&) const = default;
};

struct BackendConfig {
  std::string url_template;  // empty: the headless-DNS default of DESIGN.md
  std::string statefulset;
  std::string service;
  std::string ns = "default";
  std::string cluster_domain = "cluster.local";
  std::uint16_t port = 8080;
  std::string scheme = "http";
  int replicas = 1;
  // Host: the client's (false, as HAProxy and Envoy do, so the pod's own DNS-rebinding
  // check sees what the client asked for) or the pod's host:port (true, for a pod that
  // only answers to its own name).
  bool rewrite_host = false;
  duration connect_timeout{5000};
  // A session's pod that refuses connections for this long is gone (its sessions are lost,
  // recovered where the policy allows); until then its requests get 503 with Retry-After.
  duration unreachable_grace{15000};
  duration response_timeout{300000};  // until the response head arrives
  // A session the proxy will not hand out (its id is another's, the table has no room) is
  // ended on its pod with a DELETE: best effort, this long at most.
  duration session_end_timeout{5000};
  // A session's requests that come while its GET stream is being opened wait for the pod's
  // answer to the GET, this long at most (stream_gate.hpp); 0: they never wait.
  duration stream_open_wait{200};
  // After the pod accepts a session's notifications/initialized, the SDK clients open its
  // GET stream: the session's next request waits this long at most for it to start
  // opening (then for its head); 0: it never does.
  duration stream_expect_window{20};
  // Pod names (upstream.hpp, dns.hpp): an answer is kept for its record's TTL, at least
  // dns_min_ttl and at most dns_cache_ttl; a lookup gives up after dns_timeout; while DNS
  // fails (not NXDOMAIN) the last addresses serve for dns_serve_stale past their TTL; failed
  // lookups of a name are repeated after 200 ms, doubling up to dns_retry_max.
  duration dns_cache_ttl{5000};
  duration dns_min_ttl{1000};
  duration dns_timeout{2000};
  duration dns_serve_stale{60000};
  duration dns_retry_max{2000};
  // A session's pod whose name is NXDOMAIN this long is gone; until then 503 Retry-After.
  // Unset: backend.unreachable_grace.
  duration dns_gone_grace{0};
  bool dns_gone_grace_set = false;
  duration name_grace() const { return dns_gone_grace_set ? dns_gone_grace : unreachable_grace; }
  duration eject_cooldown{10000};
  duration idle_connection_timeout{60000};  // pooled keep-alive connection to a pod
  std::size_t max_idle_connections = 64;    // per pod, per worker thread
  // Connections per pod per worker opened ahead of need (at most max_idle_connections):
  // a request finds one even when the pod or the idle timeout closed the last (upstream.hpp).
  std::size_t warm_connections = 1;
  std::size_t max_response_header_size = 64 * 1024;
  // Ordinals that get no new sessions (their sessions go on); the admin listener can drain
  // more (POST /pods/N/drain).
  std::vector<int> draining;
  // The active health check (off while `health_check_path` is empty): GET of the path on
  // every pod each interval; a pod that fails `health_check_failures` probes in a row (no
  // 2xx/3xx within the timeout) gets no new sessions until one passes.
  std::string health_check_path;
  duration health_check_interval{10000};
  duration health_check_timeout{2000};
  int health_check_failures = 2;
  // Derived when the config is validated, not a key: the address of every ordinal below
  // `replicas`, so the data path never expands a template (nor throws).
  std::vector<PodAddress> pods;
  bool operator==(const BackendConfig&) const = default;
};

struct RedisConfig {
  RedisMode mode = RedisMode::standalone;
  // sentinel: the sentinels' host:port (the URL then gives credentials, TLS and db; its
  // address is not used).
  std::vector<std::string> nodes;
  std::string sentinel_master;
  std::string sentinel_password_file;  // when the sentinels need a password of their own
  std::string url;
  std::string key_prefix = "mcp-session-proxy:";
  std::string password_file;  // else MCP_SESSION_PROXY_REDIS_PASSWORD, else the URL's password
  std::string tls_ca_file;
  std::string tls_server_name;
  bool tls_verify = true;
  duration connect_timeout{1000};
  duration command_timeout{250};  // also bounds the write-before-answer of a new session
  duration reconnect_max_backoff{5000};
  std::size_t queue_size = 10000;  // records waiting for Redis to come back
  duration counts_interval{1000};
  // Bounds of one reply from Redis (anything past them drops the connection).
  std::size_t max_reply_size = 32U * 1024 * 1024;
  std::size_t max_reply_elements = 65536;
  std::size_t max_reply_depth = 8;  // how often the per-pod live-session counts are read (least_sessions)
  bool operator==(const RedisConfig&) const = default;
};

// sessions.binding: jwt (jwt.hpp, jwks.hpp): the verified claims a session is bound to.
struct JwtConfig {
  std::vector<std::string> claims = {"iss", "sub"};
  std::string jwks_file;  // read again on SIGHUP
  std::string jwks_url;   // fetched by the proxy, http:// or https://
  std::vector<std::string> issuers;
  std::vector<std::string> audiences;
  duration leeway{30000};
  NonJwt non_jwt = NonJwt::refuse;
  // The URL's keys are fetched again after the answer's cache lifetime (Cache-Control
  // max-age), this when it gives none, and never more often than jwks_min_refresh; a token
  // naming an unknown kid makes one fetch at most every jwks_min_refresh.
  duration jwks_refresh{300000};
  duration jwks_min_refresh{10000};
  duration jwks_fetch_timeout{5000};
  // A request whose token names a kid no key has waits this long at most for that fetch.
  duration jwks_fetch_wait{1000};
  // Derived when the config is validated: the keys of jwks_file.
  std::shared_ptr<const JwkSet> file_keys;
  bool operator==(const JwtConfig&) const = default;
};

// A key of the session binding: the secret and its id (session_binding.hpp).
struct BindingKey {
  std::string secret;
  std::string id;
  bool operator==(const BindingKey&) const = default;
};

struct SessionsConfig {
  StoreKind store = StoreKind::memory;
  duration ttl{2 * 3600 * 1000};
  RedisConfig redis;
  OnLost on_lost = OnLost::reinitialize;
  std::size_t max_sessions = 1000000;                // local table bound (the whole table for the memory store)
  std::size_t max_table_bytes = 512U * 1024 * 1024;  // and its memory (records, initialize bodies)
  // An initialize body larger than this is not kept in the record (its session cannot be
  // re-initialized on another pod): the table's and Redis's memory per session stays small.
  std::size_t max_init_body = 64U * 1024;
  // Requests of a lost session that another request is recovering wait this long at most
  // (then 503 with Retry-After).
  duration recovery_wait{10000};
  // Session binding (session_binding.hpp): none, the Authorization header, or a header an
  // auth layer in front sets (`header:<Name>`).
  BindingKind binding = BindingKind::none;
  std::string binding_header;       // for BindingKind::header
  std::string binding_secret_file;  // the HMAC keys; required with binding and the redis store
  // Derived when the config is validated, not a key: the file's keys (the first signs, all
  // verify), or with the memory store and no file, a random key made once per process.
  std::vector<BindingKey> binding_keys;
  JwtConfig jwt;
  bool operator==(const SessionsConfig&) const = default;
};

struct DownstreamLimits {
  std::size_t max_header_size = 16 * 1024;
  std::size_t max_body_size = 8 * 1024 * 1024;
  // The bodies a worker reads and holds at once (those that did not come whole with their
  // head); a request past it gets 503 Retry-After. At least max_body_size.
  std::size_t max_worker_body_bytes = 256 * 1024 * 1024;
  duration header_timeout{10000};  // from the first byte of a request to the end of its head
  duration body_timeout{30000};
  duration idle_timeout{60000};               // keep-alive connection with no request in progress
  std::size_t max_connections = 10000;        // per worker thread
  duration write_timeout{60000};              // one write to a client that stopped reading
  std::size_t relay_buffer_size = 16 * 1024;  // per connection: the most of a body read at once
  // A client's X-Request-Id is kept (to the pod, in the log) when it is one field of at most
  // this many visible ASCII bytes; else the proxy makes one (proxy_headers.hpp RequestId).
  std::size_t max_request_id_length = 128;
  // New sessions (initializes) one client may make per window; 0: no bound (the default:
  // behind a proxy-runner every client has the runner's address). See session_limiter.hpp.
  std::uint32_t new_sessions_per_client = 0;
  duration new_sessions_window{10000};
  // Clients whose windows are kept at once; past it the oldest windows are forgotten.
  std::size_t new_sessions_max_clients = 100000;
  // An IPv6 client counts as its /64 (the block one host or one customer is handed, so a
  // client cannot step past the limit by walking its own addresses); an IPv4 one as itself.
  unsigned new_sessions_ipv6_prefix = 64;
  bool operator==(const DownstreamLimits&) const = default;
};

// The admin listener's bounds: a scrape, a probe or an operator's call is small and short.
struct AdminLimits {
  // Open admin connections; at the bound the longest-idle one is closed for a new one (so
  // idle connections cannot lock the kubelet's probes out), or, with none idle, the new one
  // gets 503.
  std::size_t max_connections = 64;
  duration idle_timeout{10000};             // waiting for (and reading) a request
  std::size_t max_body_size = 64 * 1024;    // 413 past it (the admin calls have no body)
  std::size_t max_header_size = 16 * 1024;  // 431 past it
  bool operator==(const AdminLimits&) const = default;
};

struct LogConfig {
  std::string level = "info";
  std::string format = "text";
  bool access = true;
  bool operator==(const LogConfig&) const = default;
};

struct Config {
  ListenAddress listen{"0.0.0.0", 8080};
  ListenAddress admin_listen{"0.0.0.0", 9090};
  int threads = 0;  // 0 until validated: then the number of cores
  IoBackend io_backend = IoBackend::epoll;
  BackendConfig backend;
  SessionsConfig sessions;
  DownstreamLimits limits;
  PlacementPolicy placement = PlacementPolicy::least_sessions;
  std::string legacy_sse_path = "/sse";
  std::string legacy_endpoint_prefix;  // prepended to the legacy endpoint event's relative URL
  // The hop in front of the proxy (a TLS-terminating ingress, the proxy-runner) is trusted:
  // its X-Forwarded-Host/-Proto reach the pod instead of the proxy's own.
  bool trust_forwarded_headers = false;
  // Which hops in front append to X-Forwarded-For and are believed about the client's
  // address (limits and logs): client_address.trusted_hops / trusted_proxies. Validation
  // makes the count at least 1 with trust_forwarded_headers (the hop in front is trusted).
  TrustedHops client_address;
  // DNS-rebinding defence at the proxy: when set, a request with an Origin not listed, or
  // a Host not listed, gets 403 (empty: not checked; the pod's own check still applies).
  std::vector<std::string> allowed_origins;
  std::vector<std::string> allowed_hosts;
  LogConfig log;
  AffinityConfig affinity;
  SubscriptionsConfig subscriptions;
  duration drain_timeout{20000};
  // The bearer token of the admin listener's state-changing calls (a file holding it);
  // none: those calls are refused.
  std::string admin_token_file;
  AdminLimits admin;
  bool operator==(const Config&) const = default;
};

// What the command line asked for, kept so that SIGHUP can rebuild the config
// (the file is re-read; flags still win).
struct CommandLine {
  bool check_config = false;
  bool version = false;
  bool help = false;
  bool config_reference = false;
  std::string help_text;
  std::optional<std::string> config_file;
  std::vector<std::pair<std::string, std::string>> overrides;  // yaml key, value
};

// Throws ConfigError on an unknown flag or a bad value.
CommandLine parse_command_line(int argc, const char* const* argv);

// File (if any) + overrides + validation. Throws ConfigError naming the key.
Config build_config(const CommandLine& cmd);

// YAML text as a config (for tests and --check-config); `origin` names it in errors.
Config config_from_yaml(const std::string& yaml_text, const std::string& origin,
                        const std::vector<std::pair<std::string, std::string>>& overrides = {});

// The effective config as YAML (secrets masked).
std::string to_yaml(const Config& cfg);

// Keys a SIGHUP reload does not change (a name ending in '.' covers its subtree).
const std::vector<std::string_view>& restart_only_keys();
bool reloadable(std::string_view key);
// Every key as a Markdown table: key, flag, default, whether a reload applies it, meaning.
// docs/configuration.md is generated from it (scripts/docs.sh).
std::string config_reference();

duration parse_duration(const std::string& text);     // "500ms", "30s", "2h"; throws std::invalid_argument
std::size_t parse_size(const std::string& text);      // "8MiB", "512", "16KiB"; throws std::invalid_argument
ListenAddress parse_listen(const std::string& text);  // "0.0.0.0:8080", "[::1]:80", ":8080"
std::string format_duration(duration d);

}  // namespace mcpproxy
