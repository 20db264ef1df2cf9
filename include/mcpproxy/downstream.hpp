#pragma once
// One client connection: reads requests (bounded, with deadlines), routes each one, relays
// the pod's response as it arrives. Lives its whole life on one worker thread.

#include <boost/beast/http/status.hpp>
#include <chrono>
#include <list>
#include <memory>
#include <string>

#include "mcpproxy/http1.hpp"
#include "mcpproxy/http_rules.hpp"
#include "mcpproxy/net.hpp"
#include "mcpproxy/session.hpp"

namespace mcpproxy {

class Worker;
namespace http = beast::http;

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Worker& worker, tcp::socket socket);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  // Drain: a connection waiting for its next request closes now; one in a request
  // finishes it and closes after. `close` ends it whatever it is doing.
  void close_if_idle();
  void close();

  // Shared between the exchange and the client watcher (see watch_client).
  // Most exchanges end within a millisecond; watching the client's socket costs a
  // reactor registration each time, so the watch is armed only for an exchange that is
  // still running at the worker's next watch tick (every 100 ms): a client that leaves
  // during a long tool call or an SSE stream is noticed within about 200 ms.
  struct Watch {
    bool done = false;
    bool armed = false;
    bool client_gone = false;
    tcp::socket* upstream = nullptr;
    std::uint64_t started_tick = 0;
  };
  // The worker's tick (every kTickMs): deadlines, and the client watch of long exchanges.
  static constexpr std::int64_t kTickMs = 100;
  void on_tick(std::uint64_t tick);

 private:
  // Deadlines of the data path are counted in worker ticks and checked by the tick, not
  // armed as a timer around every read and write (that was a tenth of the proxy's
  // user-space instructions): one deadline at a time, as a connection waits for one thing.
  enum class Wait : std::uint8_t { none, idle, head, body, write, upstream };
  // `upstream`: the pod socket an upstream wait is on (closed when the deadline passes).
  void expect_within(Wait what, duration limit, tcp::socket* upstream = nullptr);
  void stop_waiting() { waiting_ = Wait::none; }
  bool expired(Wait what) const { return expired_ == what; }
  Wait waiting_ = Wait::none;
  Wait expired_ = Wait::none;
  std::uint64_t deadline_tick_ = 0;
  tcp::socket* deadline_upstream_ = nullptr;

  // The request of the exchange in progress: its own copy, so the read buffer moves on.
  struct Request {
    http1::Head head;
    std::string bytes;  // the head as received, then the body (decoded when it came chunked)
    std::string_view body;
    std::string_view method() const { return head.method; }
    std::string_view target() const { return head.target; }
    int version() const { return head.version; }
    std::optional<std::string_view> get(std::string_view name) const { return head.get(name); }
  };

  struct Exchange {
    explicit Exchange(Request& r) : req(r) {}
    Request& req;
    Classified route;
    std::shared_ptr<const SessionRecord> rec;
    std::shared_ptr<const Config> cfg;
    int ordinal = -1;
    unsigned status = 0;
    bool keep_alive = true;
    std::chrono::steady_clock::time_point start;
    std::string session_for_log;  // a session this exchange created; else route.session_id
  };

  net::awaitable<void> run();
  // Returns false when the connection must close after this request.
  net::awaitable<bool> handle(Exchange& ex);
  // `may_recover`: a lost session may be re-established once (sessions.on_lost).
  net::awaitable<bool> forward(Exchange& ex, bool may_recover = true);
  // Lost session, policy reinitialize: replays the stored initialize and
  // notifications/initialized on a newly placed pod and points the record there.
  net::awaitable<bool> reestablish(Exchange& ex);
  bool can_reestablish(const Exchange& ex) const;
  net::awaitable<bool> session_lost(Exchange& ex, bool may_recover);
  net::awaitable<void> record_new_session(const std::string& id, SessionRecord rec);
  net::awaitable<void> forget_session(const std::string& id);
  void cache_session(const std::string& id, SessionRecord rec);
  net::awaitable<bool> reply(Exchange& ex, http::status status, std::string body,
                             std::string_view content_type = "application/json");
  net::awaitable<bool> reply_jsonrpc_error(Exchange& ex, http::status status, int code, std::string_view message);
  net::awaitable<void> reply_and_close(http::status status, std::string_view message);
  // A pod for a new session or a sessionless request (placement policy, healthy pods).
  int place_new(const Config& cfg, int avoid = -1);
  // The request head for the pod, edited as it is written: hop-by-hop fields out, Host and
  // the session id for that pod, X-Forwarded-*, the body's length.
  void append_upstream_head(std::string& out, const Exchange& ex);
  // The response head for the client: hop-by-hop fields out, the client's session id, framing.
  void append_client_head(std::string& out, const Exchange& ex, const http1::Head& res, bool chunked);
  // Reads one request (head and body) into request_; a refusal is answered here.
  enum class ReadResult { request, closed };
  net::awaitable<ReadResult> read_request(const Config& cfg);
  void watch_client(const std::shared_ptr<Watch>& watch);
  void finish_watch(const std::shared_ptr<Watch>& watch);
  void log_access(const Exchange& ex);
  static std::string session_label(const Exchange& ex);

  Worker& worker_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;  // bytes from the client not yet used
  Request request_;
  http1::Head response_;
  beast::flat_buffer upstream_buffer_;    // reused for every exchange of this connection
  std::unique_ptr<char[]> relay_buffer_;  // lent by the worker while a body is relayed
  std::size_t relay_buffer_size_ = 0;
  void release_relay_buffer();
  std::string head_buffer_;  // reused for every serialised request and response head
  std::uint64_t id_;
  std::string peer_ip_;
  bool idle_ = false;
  bool closed_ = false;
  bool counted_busy_ = false;  // this connection's request is counted in Shared::busy
  void set_in_flight(bool in_flight);
  std::shared_ptr<Watch> watch_;
  std::list<std::weak_ptr<Connection>>::iterator registry_;
  bool registered_ = false;
};

}  // namespace mcpproxy
