#pragma once
// Stage: one request's exchange with a pod up to the pod's response head (the idea of
// Envoy's UpstreamRequest). It owns what the exchange needs: the pod connection, the bytes
// read from it, the response head, the request head as sent, and the attempts under the
// retry rules (retry_rules.hpp). It never waits: each step says what it needs next (a
// connect, the rest of a write, more of the answer), and its driver waits and hands the
// result to the next step. The proxied request's driver is Connection::proxy (one
// coroutine frame for a whole request); the proxy's own requests to a pod (pod_request.hpp)
// drive one of their own.

#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "core/decide/outcome.hpp"
#include "core/decide/retry_rules.hpp"
#include "core/decide/route.hpp"
#include "core/http/http1.hpp"
#include "io/net.hpp"
#include "io/upstream.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

// What a failed connect to a pod says (route.hpp's judge_unreachable decides from it).
ConnectFailure classify_connect_failure(const error_code& ec);

// A pod for a new session or a sessionless request (placement policy, healthy pods), not
// `avoid` unless it is the only one.
int place_new(ConnectionContext& ctx, const Config& cfg, int avoid = -1);

// What a stage leaves its driver to do: go on to the next stage, answer with a local
// reply, treat the session as lost (recovery), or end the request with `outcome`. (One
// more kind of next step is one more Kind here, handled in Connection::proxy.)
struct Next {
  enum class Kind : std::uint8_t { go_on, reply, lost, done };
  Kind kind = Kind::go_on;
  Refusal refusal;
  LostCause cause = LostCause::unreachable;
  Outcome outcome;
  static Next go_on() { return {}; }
  static Next reply(const Refusal& r) { return {Kind::reply, r, {}, {}}; }
  static Next lost(LostCause c) { return {Kind::lost, {}, c, {}}; }
  static Next done(const Outcome& o) { return {Kind::done, {}, {}, o}; }
};

class UpstreamExchange {
 public:
  UpstreamExchange(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}
  UpstreamExchange(const UpstreamExchange&) = delete;
  UpstreamExchange& operator=(const UpstreamExchange&) = delete;

  // What the exchange needs next: a new connection to pod `ordinal` (ctx.pool.connect),
  // the rest of the request written (unsent(), to pod()), more of the answer read (into
  // read_space(), then received()), or nothing: result() says how it ended.
  enum class Need : std::uint8_t { connect, write, read, done };
  enum class Result : std::uint8_t { head, client_gone, unreachable, refused };

  // The proxied request: a pooled connection when one is idle (no wait), else a connect.
  // Its request head is written for each attempt's pod (proxy_headers), the client is
  // watched while the pod works, and failures are counted and logged.
  Need start(Exchange& ex);
  // A request of the proxy's own (pod_request.hpp): the head is in request_head(), the
  // connection `kept` (from an earlier request of the same errand) or a pooled one.
  Need start_own(int ordinal, std::unique_ptr<tcp::socket> kept, std::string_view method, std::string_view body,
                 const Config& cfg, duration limit);
  std::string& request_head() { return head_; }
  // A request of the proxy's own, driven to its end with plain Asio I/O (no io_uring: the
  // errands are rare, and their reads need no ring): start_own, each connect, write and
  // read it needs, then (Result::head) the answer's body to its end, chunk framing removed,
  // no further than `max_body` bytes, kept in `body` when `keep_body`. The pod deadline
  // holds until the body's end. The pod connection stays with the exchange (release, take).
  // What the errands need of the head is copied before the body is read (the head's fields
  // are views into the read buffer, which the body's reads reuse).
  struct OwnAnswer {
    Result result = Result::refused;
    unsigned status = 0;
    std::optional<std::string> session_id;  // Mcp-Session-Id
    bool sse = false;                       // Content-Type text/event-stream
    bool whole = false;                     // the body came to its end, within `max_body`
    bool reusable = false;                  // whole, and the connection may carry another request
    std::string body;
  };
  net::awaitable<OwnAnswer> run_own(int ordinal, std::unique_ptr<tcp::socket> kept, std::string_view method,
                                    std::string_view body, const Config& cfg, duration limit, std::size_t max_body,
                                    bool keep_body);

  Need connected(Exchange* ex, UpstreamPool::Lease lease);
  Need written(Exchange* ex, const error_code& ec);
  Need received(Exchange* ex, const error_code& ec, std::size_t n);

  int ordinal() const { return ordinal_; }
  tcp::socket& pod() { return *pod_; }
  const std::array<net::const_buffer, 2>& unsent() const { return unsent_; }
  net::mutable_buffer read_space() { return buffer_.prepare(8192); }

  Result result() const { return result_; }
  // Result::head: the pod's response head, and the bytes read past it (the body's first).
  http1::Head& head() { return head_in_; }
  beast::flat_buffer& buffer() { return buffer_; }
  // Without a head: what the request gets instead (a value; the driver acts on it). A
  // client that left is counted here.
  Next failed(const Exchange& ex);
  // The pod connection: handed back to the pool (the exchange ended cleanly on both
  // sides), taken, or closed (an exchange abandoned: the pod's work is cancelled with it).
  void release() { ctx_.pool.release(ordinal_, std::move(pod_)); }
  std::unique_ptr<tcp::socket> take() { return std::move(pod_); }
  void close() { pod_.reset(); }
  // The client's answer will not come from this exchange: the watch ends, the pod
  // connection closes.
  void abandon() {
    client_.end_watch();
    pod_.reset();
  }

 private:
  Need attempt(Exchange* ex);
  Need send(Exchange* ex);
  Need attempt_ended(Exchange* ex, const error_code& ec, bool malformed);
  Need connect_failed(Exchange& ex, const error_code& ec);
  // A pod that could not be connected to: counted, ejected from placement, logged.
  void on_connect_failure(Exchange& ex, const error_code& ec);
  // A pod exchange that failed after the connect: counted, logged; the refusal to answer.
  Refusal on_exchange_failure(const Exchange& ex, const error_code& ec, bool malformed);
  void write_head(Exchange& ex);
  // Parses the pod's response head from what has arrived (interim answers dropped):
  // complete, need_more, or an error (then `malformed`; a 101 counts as one).
  http1::Status read_head(bool& malformed);
  // After Result::head: the answer's body (run_own).
  net::awaitable<void> read_own_body(OwnAnswer& out, std::size_t max_body, bool keep_body);
  Need done(Result r) {
    result_ = r;
    return Need::done;
  }

  ConnectionContext& ctx_;
  ClientLink& client_;
  beast::flat_buffer buffer_;  // what the pod sent; reused for every exchange of the connection
  http1::Head head_in_;
  std::unique_ptr<tcp::socket> pod_;
  std::string head_;  // the request head as sent; reused
  std::size_t head_size_ = 0;
  std::string_view body_;
  std::array<net::const_buffer, 2> unsent_{};
  // This request's attempts.
  const Config* cfg_ = nullptr;
  std::string_view method_;
  duration limit_{};
  int ordinal_ = -1;
  bool own_ = false;  // a request of the proxy's own: not watched, not counted
  bool reused_ = false;
  RetryRules retry_;
  std::chrono::steady_clock::time_point sent_at_;
  Result result_ = Result::refused;
  Refusal refusal_;
  ConnectFailure connect_failure_ = ConnectFailure::refused;
  std::chrono::steady_clock::duration refusing_for_{};  // since the pod last answered
};

}  // namespace mcpproxy
