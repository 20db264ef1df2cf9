#pragma once
// How a Redis connection (and a cluster's slot-map read) is tried again, and what of it is
// logged, with no I/O: the client says what happened, RedisRetry answers how long to wait
// and whether to log. And what the answers of a misconfigured Redis look like: a plain
// Redis asked as a sentinel or for a cluster's slot map, a sentinel that does not know the
// master name. (The Asio side is redis_client and redis_cluster.)

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config/config.hpp"
#include "core/tables/redis_codec.hpp"

namespace mcpproxy {

// Why a connection (or a slot-map read) is tried again: the `reason` label of
// mcp_proxy_redis_reconnects_total, a fixed set.
enum class RedisRetryReason : std::uint8_t {
  connect_failed,   // resolve, TCP connect or TLS handshake failed or timed out
  connection_lost,  // the server closed or reset a connection
  protocol_error,   // a reply that is not RESP, or past sessions.redis.max_reply_*
  setup_refused,    // AUTH or SELECT answered with an error
  not_primary,      // ROLE, a READONLY reply or +switch-master: not (or no longer) the primary
  command_timeout,  // the command at the head of the pipeline passed its deadline
  sentinel,         // no sentinel named a primary
  slot_map,         // no cluster node gave a whole slot map
};
inline constexpr std::size_t kRedisRetryReasons = 8;
std::string_view to_string(RedisRetryReason reason);

class RedisRetry {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr duration kFloor{100};
  // A failure that goes on is logged again at most this often, with how often it happened.
  static constexpr std::chrono::seconds kSummaryEvery{30};

  // What to log. An outage is logged when it starts (`lost` after a connection that had
  // lasted, `failing` otherwise), when its failure is one not logged in it yet (`changed`),
  // every kSummaryEvery while it goes on (`still_failing`), and when a connection is set up
  // again (`reconnected`); never once per attempt.
  struct Report {
    enum class Kind : std::uint8_t { connected, reconnected, lost, failing, changed, still_failing };
    Kind kind = Kind::connected;
    std::uint64_t attempts = 0;  // failed attempts of this outage so far
    std::uint64_t unlogged = 0;  // of them, those since the last line
  };
  struct Next {
    duration wait{0};  // before the next attempt
    std::optional<Report> report;
  };

  // `cap`: sessions.redis.reconnect_max_backoff. The wait starts at kFloor and doubles to
  // `cap`, jittered down to half. Only a connection that lasted `cap` or longer before it
  // ended starts the next outage at the floor: one that a server drops right after its setup
  // (a protocol error, a refusal) is one more failed attempt of the same outage, so such a
  // server is retried no faster than one that refuses the connection.
  explicit RedisRetry(duration cap);

  // The connection is set up (its handshake answered). A report the first time in an outage.
  std::optional<Report> connected(time_point now);
  // An attempt failed, or the connection ended; `detail` says how (a failure is "new" to an
  // outage by its detail). `unit` is a random number in [0, 1), for the jitter.
  Next failed(std::string detail, time_point now, double unit);
  // A wait that grows as failed()'s does, for what is retried without a failure to count or
  // log (a sentinel subscription that ended, a slot map whose primaries are not all connected).
  duration paced(time_point now, double unit);
  // The next wait is the floor again (a sentinel announced the new primary).
  void retry_now() { backoff_ = kFloor; }

  bool up() const { return up_; }
  bool ever_up() const { return ever_up_; }
  // The last failure, while not up.
  const std::string& detail() const { return detail_; }

 private:
  // Ends the up period at `now`; a period that lasted `cap_` starts a new outage.
  void went_down(time_point now);
  duration next_wait(double unit);

  duration cap_;
  duration backoff_ = kFloor;
  bool up_ = false;
  bool ever_up_ = false;
  bool connected_logged_ = false;  // in this outage
  time_point up_since_{};
  std::uint64_t attempts_ = 0;
  std::uint64_t unlogged_ = 0;
  time_point logged_at_{};
  std::string detail_;
  std::vector<std::string> logged_details_;  // of this outage (bounded)
};

// Logs what `report` says, for `what` ("redis", "redis cluster slot map") of `client`;
// `detail` the failure, `wait` the time until the next attempt.
void log_retry(const RedisRetry::Report& report, std::string_view what, std::string_view client,
               RedisRetryReason reason, const std::string& detail, bool misconfigured, duration wait);

// One sentinel's answer to [AUTH,] SENTINEL get-master-addr-by-name.
struct SentinelAnswer {
  enum class Kind : std::uint8_t { primary, unreachable, not_a_sentinel, unknown_master, auth_refused, other };
  Kind kind = Kind::other;
  std::string detail;  // the error, when not `primary`
  std::string host;    // the primary named
  std::string port;
};
// From the replies read (`with_auth`: the first answers AUTH).
SentinelAnswer read_sentinel_answer(const std::vector<RedisReply>& replies, bool with_auth);

// Why no sentinel named a primary, from each one's answer (by its host:port).
// `misconfigured` when the answers prove the config wrong (a node that is not a sentinel, a
// master name no sentinel knows, a refused password), or when no sentinel answered at all.
struct SentinelVerdict {
  std::string reason;
  bool misconfigured = false;
};
SentinelVerdict judge_sentinels(const std::vector<std::pair<std::string, SentinelAnswer>>& answers,
                                std::string_view master);

// A CLUSTER SLOTS error from a node that is not a cluster node (cluster support disabled,
// or a server that does not know the command, such as a sentinel).
bool says_not_a_cluster(std::string_view error);

}  // namespace mcpproxy
