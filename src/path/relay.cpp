// Stage: the relay of a pod's answer to the client (relay.hpp).
#include "path/relay.hpp"

#include <ctime>

#include "core/http/proxy_headers.hpp"
#include "core/telemetry/log.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"
#include "path/session_ids.hpp"
#include "store/sessions.hpp"
#include "store/tasks.hpp"

namespace mcpproxy {
namespace {

// Counts an open SSE stream for as long as it is relayed.
class SseGauge {
 public:
  SseGauge(Metrics& m, bool on) : m_(m), on_(on) {
    if (on_) m_.sse_streams.fetch_add(1, std::memory_order_relaxed);
  }
  ~SseGauge() {
    if (on_) m_.sse_streams.fetch_sub(1, std::memory_order_relaxed);
  }
  SseGauge(const SseGauge&) = delete;
  SseGauge& operator=(const SseGauge&) = delete;

 private:
  Metrics& m_;
  bool on_;
};

// Counts something for as long as it lasts.
class Gauge {
 public:
  Gauge(std::atomic<std::int64_t>& g, bool on) : g_(g), on_(on) {
    if (on_) g_.fetch_add(1, std::memory_order_relaxed);
  }
  ~Gauge() {
    if (on_) g_.fetch_sub(1, std::memory_order_relaxed);
  }
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

 private:
  std::atomic<std::int64_t>& g_;
  bool on_;
};

// Pins a session in the local table while one of its SSE streams is relayed: a flood of
// new sessions cannot evict a session whose only activity is an open stream.
class StreamPin {
 public:
  StreamPin(Sessions& s, const std::string& id, bool on) : s_(s), id_(id), on_(on) {
    if (on_) s_.pin(id_, +1);
  }
  ~StreamPin() {
    if (on_) s_.pin(id_, -1);
  }
  StreamPin(const StreamPin&) = delete;
  StreamPin& operator=(const StreamPin&) = delete;

 private:
  Sessions& s_;
  const std::string& id_;
  bool on_;
};

}  // namespace

void Relay::begin(const RelayPlan& plan, const http1::Head& res) {
  head_size_ = write_client_head(head_, res, plan.head);
}

void Relay::release_buffer() {
  if (buffer_) ctx_.relay_buffers.give(std::move(buffer_), buffer_size_);
}

bool Relay::write(std::string_view data, bool last, const RelayPlan& plan, bool& head_sent, bool& pending) {
  const std::string_view head = head_sent ? std::string_view() : std::string_view(head_.data(), head_size_);
  head_sent = true;
  return client_.write_now(head, data, last, plan.chunked, pending);
}

net::awaitable<bool> Relay::write_rest(const Exchange& ex) {
  const bool written = co_await client_.write_rest(ex.cfg->limits.write_timeout);
  co_return written;
}

net::awaitable<bool> Relay::write_head_alone(const Exchange& ex, const RelayPlan& plan, bool& head_sent) {
  bool pending = false;
  if (!write({}, false, plan, head_sent, pending)) co_return false;
  if (!pending) co_return true;
  const bool written = co_await write_rest(ex);
  co_return written;
}

net::awaitable<std::optional<Relay::Bytes>> Relay::read_pod(Exchange& ex, UpstreamExchange& up,
                                                            http1::BodyFraming& body, const RelayPlan& plan) {
  const Config& cfg = *ex.cfg;
  tcp::socket& pod = up.pod();
  // The relay buffer is lent by the worker. A GET stream waiting for its next event holds
  // none: it waits for the pod's socket to turn readable first, so ten thousand idle
  // streams cost ten thousand sockets, not ten thousand buffers.
  if (plan.long_lived) {
    release_buffer();
    if (up.buffer().capacity() != 0) up.buffer().shrink_to_fit();  // the head's buffer
    auto [wait_ec] = co_await pod.async_wait(tcp::socket::wait_read, use_tuple);
    if (wait_ec) co_return std::nullopt;
  }
  const std::size_t relay_size = cfg.limits.relay_buffer_size;
  if (!buffer_) {
    buffer_ = ctx_.relay_buffers.take(relay_size);
    buffer_size_ = relay_size;
  }
  // SSE is never cut by a timeout: only by either side closing.
  if (!plan.sse) client_.expect_within(ClientLink::Wait::upstream, cfg.backend.response_timeout, &pod);
  auto [ec, n] = co_await read_some(ctx_.ring, pod, net::buffer(buffer_.get(), buffer_size_));
  client_.stop_waiting();
  if (ec == net::error::eof && body.framing == http1::Framing::close) {
    body.done = true;  // the end of a body that ends with the connection
    co_return Bytes{};
  }
  if (ec) {
    const bool timed_out = client_.expired(ClientLink::Wait::upstream);
    if (timed_out || (!client_.client_gone() && !harmless(ec))) {
      log_event(spdlog::level::warn, "pod response cut short",
                {{"conn", client_.conn()},
                 {"pod", std::to_string(ex.ordinal)},
                 {"error", timed_out ? std::string("timeout") : ec.message()}});
    }
    co_return std::nullopt;
  }
  co_return Bytes{buffer_.get(), n};
}

net::awaitable<Relay::Pumped> Relay::tap_endpoint(Exchange& ex, LegacyTap& tap, std::string_view& data,
                                                  bool body_done) {
  const Config& cfg = *ex.cfg;
  if (tap.rewrite) tap.held.append(data);
  if (auto id = tap.scanner.feed(data)) {
    SessionRecord rec;
    rec.ordinal = ex.ordinal;
    rec.url = ctx_.pool.address(ex.ordinal).url;
    rec.created = static_cast<std::int64_t>(std::time(nullptr));
    rec.principal = ex.principal;
    const Sessions::Created made = co_await ctx_.sessions.create(*id, std::move(rec));
    if (!made.recorded()) {
      // Another session holds the id, or there is no room: the event never reaches the
      // client, and the stream (the legacy session's life on its pod) is cut here.
      count_unrecorded(ctx_, client_, ex, *id, made);
      co_return Pumped::pod_failed;
    }
    ctx_.sessions.pin(*id, +1);  // for the stream's life: the record goes when the stream ends
    ex.session_for_log = session_hash(*id);
    tap.session_id = std::move(*id);
  }
  if (!tap.rewrite) co_return Pumped::data;
  // Held back until the endpoint event is complete, then sent with the prefix.
  if (!tap.scanner.done() && !body_done) co_return Pumped::hold;
  tap.held = prefix_legacy_endpoint(std::move(tap.held), cfg.legacy_endpoint_prefix);
  data = tap.held;
  co_return Pumped::data;
}

Relay::Pumped Relay::deframe(const Exchange& ex, http1::BodyFraming& body, const std::optional<Bytes>& got,
                             std::string_view& data) {
  if (!got) return Pumped::pod_failed;  // read_pod logged why
  const std::size_t payload = got->size == 0 ? 0 : body.take(got->at, got->size);
  if (body.error) {
    log_event(spdlog::level::warn, "pod sent a malformed chunked body",
              {{"conn", client_.conn()}, {"pod", std::to_string(ex.ordinal)}});
    return Pumped::pod_failed;
  }
  data = std::string_view(got->at, payload);
  return data.empty() && !body.done ? Pumped::hold : Pumped::data;
}

Relay::AtOnce Relay::at_once(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan, bool legacy_stream,
                             RelayOutcome& out) {
  // The common answer: a body that came whole with its head (or none), going out in one
  // write. Relayed here without the pump's coroutine frame; anything else is pump's.
  const http1::Head& res = up.head();
  const bool whole = res.framing == http1::Framing::none ||
                     (res.framing == http1::Framing::length && up.buffer().size() - res.size >= res.content_length);
  // An answer that may create a task is read by the pump, which can wait for its record.
  if (legacy_stream || !whole || ex.tasks.watching(res.status)) return AtOnce::no;
  const SseGauge sse_gauge(ctx_.metrics, plan.sse);
  const StreamPin pin(ctx_.sessions, ex.route.session_id, plan.sse && ex.route.cls == RequestClass::session);
  up.buffer().consume(res.size);  // the head's views are not used past this point
  http1::BodyFraming body(res);
  std::string_view data;
  if (!body.done && (deframe(ex, body, take_buffered(up), data) != Pumped::data || !body.done)) {
    out = outcome(plan, body, up, false, /*pod_failed=*/true);  // cannot be, with the body whole
    client_.stop_waiting();
    client_.end_watch();
    return AtOnce::done;
  }
  bool head_sent = false;
  bool pending = false;
  const bool client_failed = !write(data, /*last=*/true, plan, head_sent, pending);
  out = outcome(plan, body, up, client_failed, false);
  out.head_sent = head_sent;
  if (pending) return AtOnce::rest;
  client_.stop_waiting();
  client_.end_watch();
  return AtOnce::done;
}

void Relay::rest_written(bool written, RelayOutcome& out) {
  client_.stop_waiting();
  if (!written || client_.client_gone()) {
    out.client_gone = true;
    out.pod_reusable = false;
  }
  client_.end_watch();
}

// Exempt from the complexity bound: the pump's one loop (read, deframe, the legacy endpoint
// tap, the task tap, write) with its waits written out, each step a function beside it.
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
net::awaitable<RelayOutcome> Relay::pump(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan,
                                         bool legacy_stream) {
  const SseGauge sse_gauge(ctx_.metrics, plan.sse);
  const StreamPin pin(ctx_.sessions, ex.route.session_id, plan.sse && ex.route.cls == RequestClass::session);
  const Gauge listen_gauge(ctx_.metrics.affinity.listen_streams, plan.sse && ex.tasks.listen());
  const bool watching = ex.tasks.watching(up.head().status);
  up.buffer().consume(up.head().size);  // the head's views are not used past this point
  http1::BodyFraming body(up.head());
  std::optional<LegacyTap> tap;
  if (legacy_stream) {
    tap.emplace();
    tap->rewrite = !ex.cfg->legacy_endpoint_prefix.empty();
  }
  // When body bytes came with the head (a small JSON answer, usually) the head goes out
  // with the first chunk in one write; otherwise it goes out at once, so an SSE client
  // sees its stream open before the first event.
  bool head_sent = false;
  bool client_failed = false;
  if (up.buffer().size() == 0 && !body.done) {
    // (Results are named before they are used: GCC 12 miscompiles some co_await in conditions.)
    const bool written = co_await write_head_alone(ex, plan, head_sent);
    client_failed = !written;
  }
  bool pod_failed = false;
  while (!client_failed) {
    std::string_view data;
    Pumped p = Pumped::data;
    if (!body.done) {
      std::optional<Bytes> got = take_buffered(up);
      if (!got) got = co_await read_pod(ex, up, body, plan);
      p = deframe(ex, body, got, data);
    }
    if (p == Pumped::data && tap && tap->wants(data)) p = co_await tap_endpoint(ex, *tap, data, body.done);
    // What this piece completes is recorded before the piece goes on (task_routing.hpp).
    if (p == Pumped::data && watching) {
      co_await ex.tasks.on_answer(data, body.done, plan.sse, *ex.cfg, ctx_.tasks, ctx_.metrics, ex.ordinal,
                                  ex.principal);
    }
    if (p == Pumped::pod_failed) {
      pod_failed = true;
      break;
    }
    if (p == Pumped::hold) continue;
    const bool last = body.done;
    // Sent on the spot; a coroutine only for what the socket did not take.
    bool pending = false;
    client_failed = !write(data, last, plan, head_sent, pending);
    if (pending) {
      const bool written = co_await write_rest(ex);
      client_failed = !written;
    }
    if (client_failed || last) break;
  }
  client_.stop_waiting();
  release_buffer();
  RelayOutcome out = outcome(plan, body, up, client_failed, pod_failed);
  out.head_sent = head_sent;
  client_.end_watch();
  if (tap && !tap->session_id.empty()) {
    // The legacy transport's session lives exactly as long as its GET stream.
    ctx_.metrics.sessions_deleted.fetch_add(1, std::memory_order_relaxed);
    co_await ctx_.sessions.forget(tap->session_id, ex.ordinal);
  }
  co_return out;
}

std::optional<Relay::Bytes> Relay::take_buffered(UpstreamExchange& up) {
  // Body bytes that came with the head: used where they are.
  beast::flat_buffer& in = up.buffer();
  if (in.size() == 0) return std::nullopt;
  const Bytes got{static_cast<char*>(in.data().data()), in.size()};
  in.consume(got.size);
  return got;
}

RelayOutcome Relay::outcome(const RelayPlan& plan, const http1::BodyFraming& body, UpstreamExchange& up,
                            bool client_failed, bool pod_failed) const {
  RelayOutcome out;
  out.client_gone = client_failed || client_.client_gone();
  out.pod_failed = pod_failed;
  // Bytes past the body (after a 204, say) mean the pod and the proxy disagree on framing.
  out.pod_reusable = !out.client_gone && !pod_failed && body.done && plan.pod_keep_alive && !body.extra &&
                     up.buffer().size() == 0 && body.framing != http1::Framing::close;
  return out;
}

Outcome Relay::settle(Exchange& ex, UpstreamExchange& up, const RelayPlan& plan, const RelayOutcome& out,
                      std::optional<Refusal>& owed) {
  if (out.pod_reusable) {
    up.release();
  } else {
    up.close();  // a client that left cancels the pod's exchange: its connection closes
  }
  if (out.client_gone) {
    ctx_.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
    return Outcome::relayed(ex.status, false);
  }
  if (!out.pod_failed) return Outcome::relayed(ex.status, plan.keep_alive);
  // A pod error either way. A client that has nothing yet gets it as an answer (502, 504
  // for time); one that has the head sees the connection close before the body's end,
  // so it cannot take the body for whole, and the access line says 502 (504).
  const bool timed_out = client_.expired(ClientLink::Wait::upstream);
  ctx_.metrics.count_upstream_error(ex.ordinal, timed_out ? UpstreamError::timeout : UpstreamError::io);
  const Refusal& r = timed_out ? kPodTimedOut : kPodFailed;
  if (!out.head_sent) owed = r;
  return Outcome::relayed(r.status, false);
}

}  // namespace mcpproxy
