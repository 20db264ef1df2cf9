#pragma once
// A Redis connection owned by Asio: TCP or TLS, pipelined commands with a deadline each,
// AUTH and SELECT on connect, reconnect with exponential backoff and jitter. hiredis is
// only the codec (redis_codec). One client per io_context; never used from another thread.

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "core/config/config.hpp"
#include "core/tables/redis_codec.hpp"
#include "core/tables/redis_retry.hpp"
#include "io/net.hpp"

namespace boost::asio::ssl {
class context;
template <typename Stream>
class stream;
}  // namespace boost::asio::ssl

namespace mcpproxy {

struct RedisEndpoint {
  std::string host;
  std::string port;
  std::string str() const { return host + ":" + port; }
  bool operator==(const RedisEndpoint&) const = default;
};

struct RedisOptions {
  RedisUrl url;
  // Sentinel mode (sentinels non-empty): the primary is the address the sentinels give for
  // `sentinel_master`, checked with ROLE on every connection; a READONLY reply, a lost
  // connection or a +switch-master event makes the client ask again. The URL's address is
  // not used.
  std::vector<RedisEndpoint> sentinels;
  std::string sentinel_master;
  std::string sentinel_password;
  // Called with the primary's address each time a connection to it is set up.
  std::function<void(const RedisEndpoint&)> on_primary;
  // Cluster mode (cluster_seeds non-empty): the slot map is read from these nodes, then one
  // connection per primary follows it (MOVED, ASK, a refresh on topology errors).
  std::vector<RedisEndpoint> cluster_seeds;
  std::function<void(bool ask)> on_redirect;                         // a MOVED (false) or ASK (true)
  std::function<void(int primaries, int reachable)> on_cluster_map;  // after each slot-map read
  std::string password;  // from the URL, the password file or the environment
  duration connect_timeout{1000};
  duration command_timeout{250};
  duration backoff_max{5000};
  std::size_t max_pending = 10000;  // commands in flight on the connection
  std::string tls_ca_file;
  std::string tls_server_name;  // default: the URL's host
  bool tls_verify = true;
  // Called once, when the first connection attempt has succeeded or failed (readiness).
  std::function<void()> on_first_attempt;
  RedisReplyLimits reply_limits;
  // Called when the server sent what is not a reply within the limits (the connection is dropped).
  std::function<void()> on_protocol_error;
  // Called before each reconnect (and each slot-map read tried again), with why.
  std::function<void(RedisRetryReason)> on_retry;
};

// What is wrong with a link, for /readyz, /metrics and the log.
struct RedisDiagnosis {
  std::string problem;         // empty while up
  bool misconfigured = false;  // Redis answered, and its answers prove the config wrong (or no sentinel answers)
  bool ever_up = false;        // it has been usable since the start
};

// What the session store speaks to: one Redis (standalone or the primary Sentinel names),
// or a Redis Cluster (redis_cluster.hpp). One per io_context; never used from another thread.
class RedisLink {
 public:
  struct Result {
    error_code ec;
    RedisReply reply;
  };
  virtual ~RedisLink() = default;
  virtual void start() = 0;  // connects in the background and keeps reconnecting
  virtual void stop() = 0;
  virtual bool up() const = 0;
  virtual RedisDiagnosis diagnosis() const = 0;
  // Fails at once when not connected: callers decide what waits (the record queue), so a
  // down Redis never holds a request. Every command the store sends names one key (args[1],
  // or EVAL's first key): a cluster routes it by that key's slot.
  virtual net::awaitable<Result> command(std::vector<std::string> args) = 0;
};

// A standalone client, or a cluster (options.cluster_seeds set).
std::shared_ptr<RedisLink> make_redis_link(net::io_context& ioc, const RedisOptions& options, std::string name);

// Errors of the client itself (the connection, the deadline), apart from Redis error replies.
enum class RedisError { not_connected = 1, timeout, connection_lost, too_many_pending, no_primary };
const boost::system::error_category& redis_category();
inline error_code make_error_code(RedisError e) { return {static_cast<int>(e), redis_category()}; }

class RedisClient : public RedisLink, public std::enable_shared_from_this<RedisClient> {
 public:
  RedisClient(net::io_context& ioc, RedisOptions options, std::string name);
  ~RedisClient() override;

  void start() override;
  void stop() override;
  bool up() const override { return up_; }
  RedisDiagnosis diagnosis() const override;
  net::awaitable<Result> command(std::vector<std::string> args) override;
  // `first` (its reply dropped) then `args`, next to each other on the connection: a
  // cluster's ASKING before the command it applies to.
  net::awaitable<Result> command_after(std::vector<std::string> first, std::vector<std::string> args);

 private:
  struct Pending;
  using ssl_stream = net::ssl::stream<tcp::socket>;
  // Why an attempt failed, or its connection ended.
  struct Failure {
    RedisRetryReason reason = RedisRetryReason::connection_lost;
    std::string detail;
    bool misconfigured = false;
  };

  net::awaitable<void> run();
  // One connection: (sentinel discovery,) connect, handshake, then replies until it ends.
  net::awaitable<Failure> attempt();
  // Counts and (as RedisRetry says) logs a failure; returns the wait before the next attempt.
  duration note_failure(const Failure& f);
  // Sentinel mode: sets target_ from the first sentinel that names the primary; else says why none did.
  net::awaitable<SentinelVerdict> discover();
  net::awaitable<SentinelAnswer> ask_sentinel(const RedisEndpoint& sentinel);
  // Follows +switch-master on a sentinel connection: the client reconnects to the new primary.
  net::awaitable<void> watch_switches();
  net::awaitable<void> watch_one(const RedisEndpoint& sentinel);
  net::awaitable<error_code> handshake();
  bool sentinel_mode() const { return !options_.sentinels.empty(); }
  net::awaitable<error_code> connect_once();
  net::awaitable<error_code> read_loop();
  net::awaitable<void> write_loop();
  void fail_all(error_code ec);
  void drop_connection();
  // Drops the connection, saying why (the first reason given for a connection is kept).
  void end_connection(RedisRetryReason reason, std::string detail);
  void first_attempt_finished();
  void handshake_succeeded();
  // One reply off the wire to the command waiting for it; false when it ends the connection.
  bool take_reply(RedisReply reply);
  double jitter() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }
  tcp::socket& socket();

  net::io_context& ioc_;
  RedisOptions options_;
  std::string name_;
  std::unique_ptr<net::ssl::context> tls_;
  std::unique_ptr<ssl_stream> stream_;
  std::deque<std::shared_ptr<Pending>> pending_;
  std::string out_;
  std::string writing_;
  bool write_active_ = false;
  std::size_t handshake_left_ = 0;             // AUTH/SELECT/PING(/ROLE) replies still to come on this connection
  RedisEndpoint target_;                       // the address connect_once goes to
  std::unique_ptr<tcp::socket> watch_socket_;  // the +switch-master subscription
  bool up_ = false;
  bool stopped_ = false;
  bool first_attempt_done_ = false;
  std::uint64_t generation_ = 0;  // bumps on every reconnect
  // The wait before the next attempt and what is logged (redis_retry.hpp): a server that
  // accepts and then drops every connection is retried with a growing wait too.
  RedisRetry retry_;
  RedisRetry watch_retry_;         // the +switch-master subscription's
  std::optional<Failure> ending_;  // why the current connection ends, once known
  bool misconfigured_ = false;     // the last attempt's failure proved the config wrong
  std::mt19937_64 rng_{std::random_device{}()};
  net::steady_timer backoff_timer_;
};

}  // namespace mcpproxy

template <>
struct boost::system::is_error_code_enum<mcpproxy::RedisError> : std::true_type {};
