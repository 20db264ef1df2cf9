#pragma once
// One client connection and the stages of its requests. The connection loop, deadlines,
// the client watch, local replies and the per-request finish live in downstream.cpp; the
// stages a proxied request meets after `route` (route.hpp) are members defined in their
// own files, in the order a request meets them:
//   upstream_exchange.cpp  acquire a pod connection, send, read the response head
//   (downstream.cpp)       session bookkeeping on the response (response_action)
//   session_ids.cpp        a new session recorded, or an id the proxy does not hand out
//   relay.cpp              the body pump and the legacy SSE endpoint tap
//   session_recovery.cpp   lost sessions: move to a new pod, or 404
// A proxied request that waits only for the pod and the client runs in one coroutine,
// `proxy`: the stages' decisions are plain functions and their waits are in proxy's loop
// (a coroutine frame per stage cost about 300 instructions a request); a stage has a
// coroutine of its own only on its slow path (a connect, a body still arriving, an SSE
// stream, a recovery, a local reply).
// A connection lives its whole life on one worker thread and reaches its worker only
// through a ConnectionContext.

#include <atomic>
#include <boost/beast/http/status.hpp>
#include <chrono>
#include <list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "mcpproxy/http1.hpp"
#include "mcpproxy/http_rules.hpp"
#include "mcpproxy/metrics.hpp"
#include "mcpproxy/net.hpp"
#include "mcpproxy/placement.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/route.hpp"
#include "mcpproxy/session.hpp"
#include "mcpproxy/session_limiter.hpp"
#include "mcpproxy/sessions.hpp"
#include "mcpproxy/single_flight.hpp"
#include "mcpproxy/stream_gate.hpp"
#include "mcpproxy/task_routing.hpp"

namespace mcpproxy {

class Connection;
class IoRing;
class UpstreamPool;
namespace http = beast::http;

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
};

// What a failed connect to a pod says (route.hpp's judge_unreachable decides from it).
ConnectFailure classify_connect_failure(const error_code& ec);

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ConnectionContext& ctx, tcp::socket socket, std::uint64_t id);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  // Drain: a connection waiting for its next request closes now; one in a request
  // finishes it and closes after. `close` ends it whatever it is doing.
  void close_if_idle();
  void close();

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

  // While the pod works, the only way to learn that the client left is to watch its
  // socket. Most exchanges end within a millisecond and a watch costs a reactor
  // registration, so it is armed only for an exchange still running at the worker's next
  // tick: a client that leaves during a long tool call or an SSE stream is noticed within
  // about 200 ms. One watch per connection, reused; `generation` tells a late completion
  // of an earlier exchange's watch from the current one.
  struct Watch {
    std::uint64_t generation = 0;
    bool active = false;
    bool armed = false;
    bool client_gone = false;
    tcp::socket* upstream = nullptr;
    std::uint64_t started_tick = 0;
  };
  void begin_watch(tcp::socket* upstream);
  void end_watch();
  void arm_watch();
  bool client_gone() const { return watch_.client_gone || closed_; }

  // The request of the exchange in progress: its own copy, so the read buffer moves on.
  struct Request {
    http1::Head head;
    std::string bytes;  // the head as received, then the body (decoded when it came chunked)
    std::string_view body;
    std::string_view method() const { return head.method; }
    std::string_view target() const { return head.target; }
    int version() const { return head.version; }
    std::optional<std::string_view> get(std::string_view name) const { return head.get(name); }
    std::optional<std::string_view> get(http1::FieldId id) const { return head.get(id); }
  };

  // One request and what became of it; `finish` reads it once the request is over.
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
    std::string session_for_log;                               // a session this exchange created; else route.session_id
    std::unique_ptr<tcp::socket> upstream;                     // the pod connection of the exchange in progress
    StreamOpening stream_opening;                              // a session's GET stream until the pod answers its head
    ConnectFailure connect_failure = ConnectFailure::refused;  // when the pod could not be connected to
    std::chrono::steady_clock::duration refusing_for{};        // since the pod last answered
    std::string principal;  // with sessions.binding, of a request that may create a session: its identity's HMAC
    RequestId request_id;   // X-Request-Id: the client's, or made here
    TaskRouting tasks;      // era, method, and a sessionless request's task or handle
  };

  // --- downstream.cpp: the connection loop and the driver of the stages
  net::awaitable<void> run();
  enum class ReadResult { request, closed };
  // What of a request the read buffer holds: all of it (read, no coroutine needed), or
  // not yet its whole head, or its head but not its whole body.
  enum class Buffered : std::uint8_t { request, need_head, need_body };
  Buffered take_buffered_request(const Config& cfg);
  // Reads the rest of a request (head and body) into request_; a refusal is answered here.
  net::awaitable<ReadResult> read_request(const Config& cfg, Buffered from);
  net::awaitable<ReadResult> read_head(const Config& cfg);
  net::awaitable<ReadResult> read_body(const Config& cfg);
  void keep_head();
  // A request whose every byte is in the read buffer is read there, no copy (the rule);
  // false when it is not whole, then keep_head copies its head out.
  bool take_in_place(const Config& cfg);
  // A request read in place moves to its own copy (request_.bytes), and the read buffer is
  // free: before anything frees or moves the buffer while the request lives.
  void own_request(Exchange& ex);
  // True when the whole body is here already (or there is none): then the request is read.
  bool body_buffered(const Config& cfg);
  void end_of_request(std::size_t raw_body);
  // A Content-Length body, read to its end; false when the connection was answered or left.
  net::awaitable<bool> read_length_body(const Config& cfg);
  // A chunked body decoded in place; `raw` is set to its bytes on the wire.
  net::awaitable<bool> read_chunked_body(const Config& cfg, std::size_t& raw);
  net::awaitable<bool> read_more(std::size_t want);
  void append_body(std::string_view body);
  // The worker's budget of request bodies (limits.max_worker_body_bytes): this request holds
  // `total` bytes of it, or false when the worker has not that much left (nothing changes).
  // A body takes it as its bytes arrive, never ahead of them: heads alone take none.
  bool hold_body_bytes(std::size_t total, const Config& cfg);
  void release_body_bytes();
  net::awaitable<void> refuse_over_budget();  // 503 Retry-After, counted
  // The routing decision, made without a wait where none is needed: `proxy` (ex.ordinal is
  // the pod), or what handle must wait for first: the store (`look_up`, the table did not
  // know the session), a local reply, a lost session, or a session stream's order.
  struct Decision {
    enum class Kind : std::uint8_t { proxy, look_up, reply, lost, stream_order, look_up_key, list_tasks };
    Kind kind = Kind::proxy;
    Refusal refusal;
    LostCause cause{};
    static Decision to(Kind k) {
      Decision d;
      d.kind = k;
      return d;
    }
    static Decision reply(const Refusal& r) {
      Decision d = to(Kind::reply);
      d.refusal = r;
      return d;
    }
  };
  Decision decide(Exchange& ex);
  // The decision once the session's record is known (from the table, or the store).
  Decision decide_known(Exchange& ex, bool store_failed);
  // Carries out a decision that waits, then the stages. Returns false when the connection
  // must close after this request (as proxy does).
  net::awaitable<bool> handle(Exchange& ex, Decision d);
  // `may_recover`: a lost session may be moved once (sessions.on_lost); a replay may not.
  net::awaitable<bool> proxy(Exchange& ex, bool may_recover);
  // A session's GET stream holds back the session's requests that come after it until the
  // pod has answered the GET's head (stream_gate.hpp).
  net::awaitable<void> keep_stream_order(Exchange& ex);
  void expect_stream(const Exchange& ex);
  // Session bookkeeping on the pod's response head, before it goes downstream.
  ResponseFacts response_facts(const Exchange& ex, bool may_recover) const;
  enum class Bookkeeping { relay, answered };
  net::awaitable<Bookkeeping> on_response_head(Exchange& ex, ResponseAction action, bool& again);
  // A pod for a new session or a sessionless request (placement policy, healthy pods).
  int place_new(const Config& cfg, int avoid = -1);
  // The one way to refuse: a JSON-RPC error body with the request's id echoed.
  net::awaitable<bool> send_local_reply(Exchange& ex, const Refusal& r);
  // A refusal before a request could be read whole: answered, counted, logged, closed.
  net::awaitable<void> reply_and_close(http::status status, std::string_view message, unsigned retry_after = 0);
  // Once per request: counters and the access line.
  void finish(const Exchange& ex);
  // After a request: finished, its storage kept or freed; false (the connection's write
  // side shut) when the connection ends here.
  bool end_request(Exchange& ex, bool again);
  static std::string session_label(const Exchange& ex);

  // --- upstream_exchange.cpp: acquire, send, read the response head (the waits are in
  // `proxy`'s loop, these are its steps)
  enum class UpstreamResult : std::uint8_t { head, client_gone, unreachable, refused };
  // One request's attempts at the pod. On `head` the pod's response head is in response_
  // and ex.upstream holds its connection; on `refused` and `unreachable`, `refusal` is the
  // answer.
  struct UpstreamTry {
    int attempt = 0;
    bool stale_retry_used = false;
    std::chrono::steady_clock::time_point sent_at;
    UpstreamResult result = UpstreamResult::refused;
    Refusal refusal;
  };
  // A connect that failed: true when retry rule 1 places the request on another pod.
  bool connect_failed(Exchange& ex, const error_code& ec, UpstreamTry& t);
  // An attempt whose head was read, or that failed: true when retry rule 2 (a stale pooled
  // connection) makes another; else t.result says what came of it.
  bool attempt_ended(Exchange& ex, bool reused, const error_code& ec, bool malformed, UpstreamTry& t);
  // The answer when no response head came: the client left, a lost session, or a refusal.
  net::awaitable<bool> upstream_failed(Exchange& ex, const UpstreamTry& t, bool may_recover);
  // A pod that could not be connected to: counted, ejected from placement, logged.
  // Classifies the failure (ex.connect_failure), ejects a refusing pod and notes for how
  // long it has refused (ex.refusing_for).
  void on_connect_failure(Exchange& ex, const error_code& ec);
  // A pod exchange that failed after the connect: counted, logged; the refusal to answer.
  Refusal on_exchange_failure(const Exchange& ex, const error_code& ec, bool malformed);
  // The edited request head written and sent as far as the socket takes it at once; false
  // when `request_bytes` holds a rest to write (none on error: `ec`).
  bool send_request(Exchange& ex, std::array<net::const_buffer, 2>& request_bytes, error_code& ec);
  // Parses the pod's response head from what has arrived (interim answers dropped):
  // complete, need_more, or an error (then `malformed`; a 101 counts as one).
  http1::Status read_response_head(const Exchange& ex, bool& malformed);

  // --- session_ids.cpp: who a session id belongs to
  // A session the pod minted (its id in response_): recorded before the answer goes on,
  // unless another session holds the id or the table has no room (then refused, counted,
  // and ended on the pod).
  net::awaitable<Bookkeeping> record_new_session(Exchange& ex, bool& again);
  // The record of a new session (the initialize body kept when it is small enough).
  SessionRecord new_record(const Exchange& ex) const;
  // A new session create() did not record: counted and logged (hash only).
  void count_unrecorded(const Exchange& ex, const std::string& id, const Sessions::Created& made);
  // A session's answer that carries another id than the session's: 502, the record kept.
  net::awaitable<Bookkeeping> refuse_renamed_session(Exchange& ex, bool& again);
  // Ends a session on pod `ex.ordinal` (a DELETE with its id, backend.session_end_timeout).
  net::awaitable<void> end_on_pod(const Exchange& ex, const std::string& id);

  // --- relay.cpp: the body pump
  struct RelayOutcome {
    bool client_gone = false;
    bool pod_failed = false;    // the pod's body failed: cut short, or malformed
    bool head_sent = false;     // the client has the response head (a failure is then a cut body)
    bool pod_reusable = false;  // the pod connection may go back to the pool
  };
  net::awaitable<RelayOutcome> relay(Exchange& ex, bool legacy_stream);
  // A body that came whole with the head (or none), relayed without a coroutine: `done`
  // (`out` is the outcome), `rest` (client_out_ holds what the client socket did not take:
  // the caller writes it, then relay_rest_written), or `no` (relay's, untouched).
  enum class AtOnce : std::uint8_t { no, done, rest };
  AtOnce relay_at_once(Exchange& ex, bool legacy_stream, RelayOutcome& out);
  void relay_rest_written(bool written, RelayOutcome& out);
  // After the relay: the pod connection pooled or closed, the outcome counted; the answer
  // still owed to a client that has not had the head when the pod failed.
  std::optional<Refusal> relayed(Exchange& ex, const RelayOutcome& out);
  // How this response is relayed; writes the client's head into head_buffer_.
  struct RelayPlan {
    bool sse = false;
    bool long_lived = false;  // a GET stream: waits for the pod without holding a buffer
    bool chunked = false;     // chunked to the client
    bool pod_keep_alive = true;
  };
  RelayPlan plan_relay(Exchange& ex);
  // The legacy (2024-11-05) stream's endpoint event, watched as the stream passes; with a
  // mount prefix, the stream's first bytes are held until the event is complete.
  struct LegacyTap {
    SseEndpointScanner scanner;
    bool rewrite = false;
    std::string held;
    std::string session_id;  // once the endpoint event announced it
    bool wants(std::string_view data) const { return !data.empty() && !scanner.done(); }
  };
  enum class Pumped : std::uint8_t { data, hold, pod_failed };
  // Feeds the tap; `hold` while the bytes are held back. May replace `data`.
  net::awaitable<Pumped> tap_endpoint(Exchange& ex, LegacyTap& tap, std::string_view& data, bool body_done);
  // Body bytes that came with the head, taken where they lie; false when there are none.
  bool take_buffered(char*& bytes, std::size_t& got);
  RelayOutcome relay_outcome(const RelayPlan& plan, const http1::BodyFraming& body, bool client_failed,
                             bool pod_failed) const;
  // The payload of `got` bytes at `bytes` in `data` (chunk framing removed in place).
  // `have`: read_pod got bytes (else the pod failed).
  Pumped deframe(const Exchange& ex, http1::BodyFraming& body, bool have, char* bytes, std::size_t got,
                 std::string_view& data);
  // The next bytes of the pod's body into the relay buffer; false when the pod failed.
  net::awaitable<bool> read_pod(Exchange& ex, http1::BodyFraming& body, const RelayPlan& plan, char*& bytes,
                                std::size_t& got);
  // One gathered write to the client: [head] [chunk size] [data] [CRLF] [last chunk], sent
  // at once as far as the socket takes it; false when the client failed. `pending`: the
  // rest is in client_out_, for write_client_rest.
  bool write_client(std::string_view data, bool last, bool chunked, bool& head_sent, bool& pending);
  net::awaitable<bool> write_client_rest(const Config& cfg);
  // The head alone (an answer whose body has not begun: an SSE stream opens at once).
  net::awaitable<bool> write_client_head_alone(bool chunked, bool& head_sent, const Config& cfg);
  void release_relay_buffer();

  // Session binding: the principal of this request's identity ("" without one).
  const std::string& principal_of_request(const Exchange& ex);
  // Who counts as one client for limits.new_sessions_per_client: the binding principal, else
  // the client's address (client_address.hpp: never an X-Forwarded-For entry the client wrote).
  std::string client_key(const Exchange& ex) const;
  // False (and counted, logged) when the session is bound to another identity.
  bool binding_holds(const Exchange& ex);

  // --- task_list_fanout.cpp: a sessionless tasks/list, asked of every pod and merged
  net::awaitable<bool> list_tasks(Exchange& ex);
  // One pod's answer to `body` (the client's request with the pod's cursor): its JSON-RPC
  // response message, or nullopt when it gave none.
  net::awaitable<std::optional<std::string>> ask_pod(Exchange& ex, int ordinal, const std::string& body);
  // A JSON answer of the proxy's own (200), counted and logged by finish like any other.
  net::awaitable<bool> send_local_json(Exchange& ex, const std::string& body);

  // --- session_recovery.cpp: lost sessions
  net::awaitable<bool> session_lost(Exchange& ex, LostCause cause, bool may_recover);
  enum class Recovery : std::uint8_t {
    moved,              // ex.rec is the session's new record (re-established here, or by another replica)
    lost,               // it could not move: its record is gone (404)
    store_unavailable,  // Redis could not be asked: nothing was decided (503)
  };
  // The recovery itself (one per session at a time).
  net::awaitable<Recovery> recover(Exchange& ex, LostCause cause);
  // Whether `now` is a record that moved the session away from ex.rec.
  bool moved(const Exchange& ex, const std::shared_ptr<const SessionRecord>& now) const;
  net::awaitable<bool> give_up_session(Exchange& ex, LostCause cause);
  net::awaitable<void> forget_lost(Exchange& ex, LostCause cause);
  // Replays the stored initialize and notifications/initialized on a newly placed pod and
  // points the record there.
  net::awaitable<bool> reestablish(Exchange& ex);
  struct Reply {
    unsigned status = 0;  // 0: no answer
    std::optional<std::string> session_id;
  };
  // One request of the proxy's own on the session's behalf (the replayed initialize and
  // notifications/initialized; the DELETE of a session a lost compare-and-set orphaned).
  net::awaitable<Reply> send_to_pod(std::string_view method, int ordinal, std::unique_ptr<tcp::socket>& up,
                                    std::string_view target, std::string_view body, std::string_view session,
                                    const Exchange& ex);
  // Reads the pod's answer to send_to_pod: the head into `res` (`ec`: why it did not come),
  // the body to its end (dropped).
  net::awaitable<bool> read_pod_head(tcp::socket& up, beast::flat_buffer& in, http1::Head& res, std::string_view method,
                                     const Config& cfg, error_code& ec);
  net::awaitable<bool> drain_pod_body(tcp::socket& up, beast::flat_buffer& in, const http1::Head& res,
                                      const Config& cfg);

  ConnectionContext& ctx_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;  // bytes from the client not yet used
  Request request_;
  http1::Head response_;
  beast::flat_buffer upstream_buffer_;    // reused for every exchange of this connection
  std::unique_ptr<char[]> relay_buffer_;  // lent by the worker while a body is relayed
  std::size_t relay_buffer_size_ = 0;
  std::string head_buffer_;         // reused for every serialised request and response head
  std::size_t head_size_ = 0;       // of the head at its start (the buffer may be longer)
  std::string session_id_storage_;  // the session id's buffer, handed from exchange to exchange
  std::size_t in_place_ = 0;        // bytes at the read buffer's start the request in progress is read from
  // A write to the client that the socket did not take whole: what is left, and the chunk
  // size line it may point into.
  std::array<net::const_buffer, 5> client_out_{};
  std::array<char, 20> chunk_line_{};
  std::uint64_t id_;
  // The last identity seen on this connection and its principal: a client sends the same
  // credential on every request, so the HMAC is computed once per connection, not per request.
  std::string binding_identity_;
  std::string binding_principal_;
  std::string peer_ip_;
  IpAddress peer_;  // peer_ip_ parsed: where the walk to the client's address starts
  bool idle_ = false;
  bool closed_ = false;
  bool counted_busy_ = false;  // this connection's request is counted in ctx_.busy
  std::size_t body_held_ = 0;  // of ctx_.body_bytes
  void set_in_flight(bool in_flight);
  Wait waiting_ = Wait::none;
  Wait expired_ = Wait::none;
  std::uint64_t deadline_tick_ = 0;
  tcp::socket* deadline_upstream_ = nullptr;
  Watch watch_;
  ConnectionRegistry::Handle registry_;
  bool registered_ = false;
};

}  // namespace mcpproxy
