#pragma once
// Stage: the relay of a pod's answer to the client. The head goes out as the plan says
// (relay_plan.hpp, proxy_headers), then every chunk of the body as it arrives (read_some:
// never wait to fill a buffer), deframed in place and reframed for the client; a legacy SSE
// stream's endpoint event is read as it passes (the session is recorded before the event
// goes on). What happened is a value (RelayOutcome); `settle` turns it into the request's
// Outcome and puts the pod connection back or closes it.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "core/decide/outcome.hpp"
#include "core/decide/relay_plan.hpp"
#include "core/decide/route.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"
#include "path/upstream_exchange.hpp"

namespace mcpproxy {

struct RelayOutcome {
  bool client_gone = false;
  bool pod_failed = false;    // the pod's body failed: cut short, or malformed
  bool head_sent = false;     // the client has the response head (a failure is then a cut body)
  bool pod_reusable = false;  // the pod connection may go back to the pool
};

class Relay {
 public:
  Relay(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // The client's head for `plan`, written once before the body.
  void begin(const RelayPlan& plan, const http1::Head& res);
  // A body that came whole with the head (or none), relayed without a coroutine: `done`
  // (`out` is the outcome), `rest` (ClientLink::unsent() holds what the socket did not
  // take: the driver writes it, then rest_written), or `no` (pump's, untouched).
  enum class AtOnce : std::uint8_t { no, done, rest };
  AtOnce at_once(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan, bool legacy_stream, RelayOutcome& out);
  void rest_written(bool written, RelayOutcome& out);
  // The body as it arrives (a coroutine: a body still arriving, an SSE stream).
  net::awaitable<RelayOutcome> pump(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan, bool legacy_stream);
  // After the relay: the pod connection pooled or closed, a failure counted; the request's
  // outcome, or the answer still owed to a client that has not had the head when the pod
  // failed (`owed`).
  Outcome settle(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan, const RelayOutcome& out,
                 std::optional<Refusal>& owed);
  void release_buffer();

 private:
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
  struct Bytes {
    char* at = nullptr;
    std::size_t size = 0;
  };
  // Feeds the tap; `hold` while the bytes are held back. May replace `data`.
  net::awaitable<Pumped> tap_endpoint(Exchange& ex, LegacyTap& tap, std::string_view& data, bool body_done);
  // Body bytes that came with the head, taken where they lie; none when there are none.
  std::optional<Bytes> take_buffered(UpstreamExchange& up);
  RelayOutcome outcome(const RelayPlan& plan, const http1::BodyFraming& body, UpstreamExchange& up, bool client_failed,
                       bool pod_failed) const;
  // The payload of `got` (chunk framing removed in place); nothing: the pod failed.
  Pumped deframe(const Exchange& ex, http1::BodyFraming& body, const std::optional<Bytes>& got, std::string_view& data);
  // The next bytes of the pod's body into the relay buffer; none when the pod failed.
  net::awaitable<std::optional<Bytes>> read_pod(Exchange& ex, UpstreamExchange& up, http1::BodyFraming& body,
                                                const RelayPlan& plan);
  // The head (first time only) and `data`, as the plan frames it; false when the client
  // failed; `pending`: the rest is the driver's or write_rest's.
  bool write(std::string_view data, bool last, const RelayPlan& plan, bool& head_sent, bool& pending);
  net::awaitable<bool> write_rest(const Exchange& ex);
  // The head alone (an answer whose body has not begun: an SSE stream opens at once).
  net::awaitable<bool> write_head_alone(const Exchange& ex, const RelayPlan& plan, bool& head_sent);

  ConnectionContext& ctx_;
  ClientLink& client_;
  std::unique_ptr<char[]> buffer_;  // lent by the worker while a body is relayed
  std::size_t buffer_size_ = 0;
  std::string head_;  // the client's head; reused
  std::size_t head_size_ = 0;
};

}  // namespace mcpproxy
