#pragma once
// One client connection: the driver of its requests' stages (the idea of Pingora's driver
// loop: the stages return what happened as values, the driver decides what comes next, and
// one `finish` takes every request's Outcome). Each stage is a type with its own header and
// its own state, held here by value, and reaches the connection only through its
// ClientLink (deadlines, the client watch, the client write). In the order a request meets
// them:
//   request_reader.hpp     read the request (bounded; a refusal is a value)
//   (downstream.cpp)       the routing decision (route.hpp), waits the decision needs
//   upstream_exchange.hpp  acquire a pod connection, send, read the response head
//   (downstream.cpp)       session bookkeeping on the response (response_action);
//   session_ids.cpp        a new session recorded, or an id the proxy does not hand out
//   relay.hpp              the body pump and the legacy SSE endpoint tap (relay_plan.hpp)
//   session_recovery.hpp   lost sessions: moved (the driver replays once), or not
// A proxied request that waits only for the pod and the client runs in one coroutine,
// `proxy`: the stages' steps are plain functions and their waits are in proxy's loop (a
// coroutine frame per stage cost about 300 instructions a request); a stage has a coroutine
// of its own only on its slow path (a connect, a body still arriving, an SSE stream, a
// recovery, a local reply).
// A connection lives its whole life on one worker thread and reaches its worker only
// through a ConnectionContext.

#include <memory>
#include <optional>
#include <string>

#include "core/decide/outcome.hpp"
#include "core/decide/placement.hpp"
#include "core/decide/route.hpp"
#include "core/decide/session_limiter.hpp"
#include "core/identity/jwks.hpp"
#include "core/telemetry/metrics.hpp"
#include "path/client_link.hpp"
#include "path/connection_context.hpp"
#include "path/exchange.hpp"
#include "path/listen_fanout.hpp"
#include "path/relay.hpp"
#include "path/request_reader.hpp"
#include "path/session_recovery.hpp"
#include "path/single_flight.hpp"
#include "path/task_list_fanout.hpp"
#include "path/upstream_exchange.hpp"
#include "store/sessions.hpp"

namespace mcpproxy {

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
  void close() { client_.close(); }

  // The worker's tick (every kTickMs): deadlines, and the client watch of long exchanges.
  static constexpr std::int64_t kTickMs = ClientLink::kTickMs;
  void on_tick(std::uint64_t tick);

 private:
  // --- the request loop and the one end of every request
  net::awaitable<void> run();
  // The wait for a request's first byte failed: logged unless it is part of normal life.
  void note_read_failure(const error_code& ec) const;
  // A request refused before it was read whole: answered (unless the deadline closed the
  // socket), finished, the connection closed.
  net::awaitable<void> refuse_request(const std::shared_ptr<const Config>& cfg);
  // Once per request: counters and the log line from its Outcome; then the request's
  // storage kept or freed. False (the connection's write side shut) when the connection
  // ends here.
  bool end_request(Exchange& ex, const Outcome& out);
  FinishRecord finish(const Exchange& ex, const Outcome& out);
  void set_in_flight(bool in_flight);

  // --- the routing decision, made without a wait where none is needed: `proxy` (ex.ordinal
  // is the pod), or what handle must wait for first: the JWKS URL's refetch (`jwt_keys`, a
  // token naming a kid no key has), the store (`look_up`, the table did not know the
  // session), a local reply, a lost session, or a session stream's order; for a
  // sessionless request's task or handle (task_routing.hpp): the store (`look_up_key`), or
  // every pod's list (`list_tasks`, task_list_fanout.hpp); a sessionless subscriptions/listen
  // with subscriptions.fanout: every pod's stream merged (`fan_out_listen`, listen_fanout.hpp).
  struct Decision {
    enum class Kind : std::uint8_t {
      proxy,
      jwt_keys,
      look_up,
      reply,
      lost,
      stream_order,
      look_up_key,
      list_tasks,
      fan_out_listen
    };
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
  // The decision once the request's identity is known (decide's, after the JWT step).
  Decision decide_request(Exchange& ex);
  // A request without a session (sessionless): its task or handle first (task_routing.hpp).
  Decision decide_sessionless(Exchange& ex);
  // The decision once the session's record is known (from the table, or the store).
  Decision decide_known(Exchange& ex, bool store_failed);
  // Carries out a decision that waits, then the stages.
  net::awaitable<Outcome> handle(Exchange& ex, Decision d);
  // The stages, from the pod connection to the relayed answer, in one coroutine frame;
  // a session found lost is recovered and the request replayed here, once.
  // `may_recover`: a lost session may be moved (sessions.on_lost); a replay's may not.
  net::awaitable<Outcome> proxy(Exchange& ex, bool may_recover);
  // A session's GET stream holds back the session's requests that come after it until the
  // pod has answered the GET's head (stream_gate.hpp).
  net::awaitable<void> keep_stream_order(Exchange& ex);
  void expect_stream(const Exchange& ex);

  // --- session bookkeeping on the pod's response head, before it goes downstream
  ResponseFacts response_facts(const Exchange& ex, bool may_recover);
  net::awaitable<Next> on_response_head(Exchange& ex, ResponseAction action);
  // session_ids.cpp: a session the pod minted (its id in the response head) recorded
  // before the answer goes on, unless another session holds the id or the table has no room
  // (then refused, counted, and ended on the pod).
  net::awaitable<Next> record_new_session(Exchange& ex);
  // A session's answer that carries another id than the session's: 502, the record kept.
  net::awaitable<Next> refuse_renamed_session(Exchange& ex);
  // Ends a session on pod `ex.ordinal` (a DELETE with its id, backend.session_end_timeout).
  net::awaitable<void> end_on_pod(const Exchange& ex, const std::string& id);
  // A new session whose initialize had no identity the binding accepts: 401, ended on its pod.
  net::awaitable<Next> refuse_unbound_session(Exchange& ex, ResponseAction action);

  // --- the relay's plan and what it changes here
  RelayPlan relay_plan(Exchange& ex);
  // The one way to answer locally: a JSON-RPC error body with the request's id echoed.
  // `keep_alive`: the client's wish as the exchange left it.
  net::awaitable<Outcome> send_local_reply(Exchange& ex, const Refusal& r);
  net::awaitable<Outcome> send_local_reply(Exchange& ex, const Refusal& r, bool keep_alive);

  // Session binding: the principal of this request's identity ("" without one).
  const std::string& principal_of_request(const Exchange& ex);
  // Who counts as one client for limits.new_sessions_per_client: the binding principal, else
  // the client's address (client_address.hpp: never an X-Forwarded-For entry the client wrote).
  std::string client_key(const Exchange& ex) const;
  // False (and counted, logged) when the session is bound to another identity.
  bool binding_holds(const Exchange& ex);
  // The request's identity for a task or handle record's principal (task_routing.hpp).
  BoundCaller caller_of(const Exchange& ex) const;
  // sessions.binding jwt (jwt_binding.cpp): the request's verified identity and principal
  // into binding_identity_ / binding_principal_. False when its token names a kid no key has
  // and a JWKS URL may have it: await_jwt_keys then waits for the refetch (bounded) and
  // resolves again.
  bool resolve_jwt(const Exchange& ex, bool may_wait);
  net::awaitable<void> await_jwt_keys(const Exchange& ex);

  ConnectionContext& ctx_;
  ClientLink client_;
  RequestReader reader_;
  UpstreamExchange upstream_;
  Relay relay_;
  SessionRecovery recovery_;
  TaskListFanout task_lists_;
  ListenFanout listens_;
  std::string session_id_storage_;  // the session id's buffer, handed from exchange to exchange
  // The last identity seen on this connection and its principal: a client sends the same
  // credential on every request, so the HMAC is computed once per connection, not per request.
  std::string binding_identity_;
  std::string binding_principal_;
  // With binding jwt: the token they were verified from, until when, under which keys.
  std::string jwt_token_;
  std::int64_t jwt_until_ = 0;
  std::shared_ptr<const JwkSet> jwt_file_keys_;  // held: a later set cannot take its address
  std::uint64_t jwt_keys_version_ = 0;
  bool idle_ = false;
  bool counted_busy_ = false;  // this connection's request is counted in ctx_.busy
  ConnectionRegistry::Handle registry_;
  bool registered_ = false;
};

}  // namespace mcpproxy
