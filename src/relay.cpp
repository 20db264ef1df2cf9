// Stage: the relay of a pod's response to the client. The head goes out edited
// (proxy_headers), then every chunk of the body as it arrives (read_some: never wait to
// fill a buffer), deframed in place and reframed for the client; a legacy SSE stream's
// endpoint event is read as it passes (the session is recorded before the event goes on).
#include <boost/asio/write.hpp>
#include <ctime>

#include "mcpproxy/downstream.hpp"
#include "mcpproxy/io_ring.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/sessions.hpp"
#include "mcpproxy/upstream.hpp"

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

bool Connection::write_client(std::string_view data, bool last, bool chunked, bool& head_sent, bool& pending) {
  std::array<net::const_buffer, 5>& out = client_out_;
  out = {};
  if (!head_sent) out[0] = net::buffer(head_buffer_.data(), head_size_);
  if (!data.empty()) {
    if (chunked) {
      const int n = std::snprintf(chunk_line_.data(), chunk_line_.size(), "%zx\r\n", data.size());
      out[1] = net::buffer(chunk_line_.data(), static_cast<std::size_t>(n));
      out[3] = net::buffer("\r\n", 2);
    }
    out[2] = net::buffer(data.data(), data.size());
  }
  if (last && chunked) out[4] = net::buffer("0\r\n\r\n", 5);
  head_sent = true;
  if (ctx_.ring != nullptr) {
    pending = true;  // the io_uring sends it with the loop turn's other writes
    return true;
  }
  error_code ec;
  const std::size_t sent = send_now(socket_, out.data(), out.size(), ec);
  if (ec) return false;
  pending = sent != net::buffer_size(out);
  if (pending) consume_front(out, sent);
  return true;
}

net::awaitable<bool> Connection::write_client_head_alone(bool chunked, bool& head_sent, const Config& cfg) {
  bool pending = false;
  if (!write_client({}, false, chunked, head_sent, pending)) co_return false;
  if (!pending) co_return true;
  const bool written = co_await write_client_rest(cfg);
  co_return written;
}

net::awaitable<bool> Connection::write_client_rest(const Config& cfg) {
  expect_within(Wait::write, cfg.limits.write_timeout);
  auto [wec, wn] = co_await write_all(ctx_.ring, socket_, client_out_);
  stop_waiting();
  co_return !wec;
}

net::awaitable<bool> Connection::read_pod(Exchange& ex, http1::BodyFraming& body, const RelayPlan& plan, char*& bytes,
                                          std::size_t& got) {
  const Config& cfg = *ex.cfg;
  tcp::socket& up = *ex.upstream;
  // The relay buffer is lent by the worker. A GET stream waiting for its next event holds
  // none: it waits for the pod's socket to turn readable first, so ten thousand idle
  // streams cost ten thousand sockets, not ten thousand buffers.
  if (plan.long_lived) {
    release_relay_buffer();
    if (upstream_buffer_.capacity() != 0) upstream_buffer_.shrink_to_fit();  // the head's buffer
    auto [wait_ec] = co_await up.async_wait(tcp::socket::wait_read, use_tuple);
    if (wait_ec) co_return false;
  }
  const std::size_t relay_size = cfg.limits.relay_buffer_size;
  if (!relay_buffer_) {
    relay_buffer_ = ctx_.relay_buffers.take(relay_size);
    relay_buffer_size_ = relay_size;
  }
  // SSE is never cut by a timeout: only by either side closing.
  if (!plan.sse) expect_within(Wait::upstream, cfg.backend.response_timeout, &up);
  auto [ec, n] = co_await read_some(ctx_.ring, up, net::buffer(relay_buffer_.get(), relay_buffer_size_));
  stop_waiting();
  if (ec == net::error::eof && body.framing == http1::Framing::close) {
    body.done = true;  // the end of a body that ends with the connection
    got = 0;
    co_return true;
  }
  if (ec) {
    if (expired(Wait::upstream) || (!client_gone() && !harmless(ec))) {
      log_event(spdlog::level::warn, "pod response cut short",
                {{"conn", std::to_string(id_)},
                 {"pod", std::to_string(ex.ordinal)},
                 {"error", expired(Wait::upstream) ? std::string("timeout") : ec.message()}});
    }
    co_return false;
  }
  bytes = relay_buffer_.get();
  got = n;
  co_return true;
}

Connection::RelayPlan Connection::plan_relay(Exchange& ex) {
  const http1::Head& res = response_;
  RelayPlan plan;
  const auto content_type = res.get(http1::FieldId::content_type);
  plan.sse = content_type && http1::starts_with_ci(*content_type, "text/event-stream");
  plan.pod_keep_alive = res.keep_alive;
  const bool client_http11 = ex.req.version() >= 11;
  if (ctx_.draining.load(std::memory_order_relaxed)) ex.keep_alive = false;
  // A body whose end the pod marks by chunks or by closing goes to the client in chunks
  // (HTTP/1.1), or ends with the client's connection (HTTP/1.0).
  const bool open_ended = res.framing == http1::Framing::chunked || res.framing == http1::Framing::close;
  plan.chunked = open_ended && client_http11;
  if (open_ended && !client_http11) ex.keep_alive = false;
  const bool is_get = ex.req.method() == "GET";
  // GET streams (the standalone stream, the legacy stream) idle for minutes; an SSE answer
  // to a POST is a call in progress whose events come soon: it reads directly, one wakeup
  // less per event.
  plan.long_lived = plan.sse && is_get;
  if (plan.sse) {
    // A stream may stay open for hours: it keeps no request-sized read buffer meanwhile
    // (a request read in place moves to its own copy first).
    own_request(ex);
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
    // A GET stream never ends by itself: the drain does not wait for it, it closes it at
    // the end. A POST answered with SSE is a call in progress, and the drain waits for its
    // result like any other request.
    if (is_get) set_in_flight(false);
  }

  ClientHeadEdits edits;
  edits.http11 = client_http11;
  edits.keep_alive = ex.keep_alive;
  edits.chunked = plan.chunked;
  // The client keeps the id it knows when the pod now knows the session by another.
  if (ex.route.cls == RequestClass::session && ex.rec && !ex.rec->backend_session.empty()) {
    edits.client_session = ex.route.session_id;
  }
  head_size_ = write_client_head(head_buffer_, res, edits);
  return plan;
}

net::awaitable<Connection::Pumped> Connection::tap_endpoint(Exchange& ex, LegacyTap& tap, std::string_view& data,
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
      count_unrecorded(ex, *id, made);
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

Connection::Pumped Connection::deframe(const Exchange& ex, http1::BodyFraming& body, bool have, char* bytes,
                                       std::size_t got, std::string_view& data) {
  if (!have) return Pumped::pod_failed;  // read_pod logged why
  const std::size_t payload = got == 0 ? 0 : body.take(bytes, got);
  if (body.error) {
    log_event(spdlog::level::warn, "pod sent a malformed chunked body",
              {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}});
    return Pumped::pod_failed;
  }
  data = std::string_view(bytes, payload);
  return data.empty() && !body.done ? Pumped::hold : Pumped::data;
}

Connection::AtOnce Connection::relay_at_once(Exchange& ex, bool legacy_stream, RelayOutcome& out) {
  // The common answer: a body that came whole with its head (or none), going out in one
  // write. Relayed here without the pump's coroutine frame; anything else is relay's.
  const http1::Head& res = response_;
  const bool whole = res.framing == http1::Framing::none || (res.framing == http1::Framing::length &&
                                                             upstream_buffer_.size() - res.size >= res.content_length);
  // An answer that may create a task is read by the pump, which can wait for its record.
  if (legacy_stream || !whole || ex.tasks.watching(res.status)) return AtOnce::no;
  const RelayPlan plan = plan_relay(ex);
  const SseGauge sse_gauge(ctx_.metrics, plan.sse);
  const StreamPin pin(ctx_.sessions, ex.route.session_id, plan.sse && ex.route.cls == RequestClass::session);
  upstream_buffer_.consume(res.size);  // the head's views are not used past this point
  http1::BodyFraming body(response_);
  std::string_view data;
  if (!body.done) {
    char* bytes = nullptr;
    std::size_t got = 0;
    const bool have = take_buffered(bytes, got);
    if (deframe(ex, body, have, bytes, got, data) != Pumped::data || !body.done) {
      out = relay_outcome(plan, body, false, /*pod_failed=*/true);  // cannot be, with the body whole
      stop_waiting();
      end_watch();
      return AtOnce::done;
    }
  }
  bool head_sent = false;
  bool pending = false;
  const bool client_failed = !write_client(data, /*last=*/true, plan.chunked, head_sent, pending);
  out = relay_outcome(plan, body, client_failed, false);
  out.head_sent = head_sent;
  if (pending) return AtOnce::rest;
  stop_waiting();
  end_watch();
  return AtOnce::done;
}

void Connection::relay_rest_written(bool written, RelayOutcome& out) {
  stop_waiting();
  if (!written || client_gone()) {
    out.client_gone = true;
    out.pod_reusable = false;
  }
  end_watch();
}

// Exempt from the complexity bound: the pump's loop (read, deframe, the legacy endpoint tap,
// the task tap, write) with each step's decisions in plain functions beside it; the
// request path's reshaping into stage types (arch-stages) splits it.
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
net::awaitable<Connection::RelayOutcome> Connection::relay(Exchange& ex, bool legacy_stream) {
  const Config& cfg = *ex.cfg;
  const RelayPlan plan = plan_relay(ex);
  const SseGauge sse_gauge(ctx_.metrics, plan.sse);
  const StreamPin pin(ctx_.sessions, ex.route.session_id, plan.sse && ex.route.cls == RequestClass::session);
  const Gauge listen_gauge(ctx_.metrics.affinity.listen_streams, plan.sse && ex.tasks.listen());
  const bool watching = ex.tasks.watching(response_.status);
  upstream_buffer_.consume(response_.size);  // the head's views are not used past this point
  http1::BodyFraming body(response_);
  std::optional<LegacyTap> tap;
  if (legacy_stream) {
    tap.emplace();
    tap->rewrite = !cfg.legacy_endpoint_prefix.empty();
  }

  // When body bytes came with the head (a small JSON answer, usually) the head goes out
  // with the first chunk in one write; otherwise it goes out at once, so an SSE client
  // sees its stream open before the first event.
  bool head_sent = false;
  bool client_failed = false;
  if (upstream_buffer_.size() == 0 && !body.done) {
    const bool written = co_await write_client_head_alone(plan.chunked, head_sent, cfg);
    client_failed = !written;
  }
  bool pod_failed = false;
  while (!client_failed) {
    std::string_view data;
    Pumped p = Pumped::data;
    if (!body.done) {
      char* bytes = nullptr;
      std::size_t got = 0;
      bool have = take_buffered(bytes, got);
      if (!have) have = co_await read_pod(ex, body, plan, bytes, got);
      p = deframe(ex, body, have, bytes, got, data);
    }
    if (p == Pumped::data && tap && tap->wants(data)) p = co_await tap_endpoint(ex, *tap, data, body.done);
    // What this piece completes is recorded before the piece goes on (task_routing.hpp).
    if (p == Pumped::data && watching) {
      co_await ex.tasks.on_answer(data, body.done, plan.sse, cfg, ctx_.tasks, ctx_.metrics, ex.ordinal, ex.principal);
    }
    if (p == Pumped::pod_failed) {
      pod_failed = true;
      break;
    }
    if (p == Pumped::hold) continue;
    const bool last = body.done;
    // Sent on the spot; a coroutine only for what the socket did not take.
    bool pending = false;
    client_failed = !write_client(data, last, plan.chunked, head_sent, pending);
    if (pending) {
      const bool written = co_await write_client_rest(cfg);
      client_failed = !written;
    }
    if (client_failed || last) break;
  }
  stop_waiting();
  release_relay_buffer();
  RelayOutcome out = relay_outcome(plan, body, client_failed, pod_failed);
  out.head_sent = head_sent;
  end_watch();
  if (tap && !tap->session_id.empty()) {
    // The legacy transport's session lives exactly as long as its GET stream.
    ctx_.metrics.sessions_deleted.fetch_add(1, std::memory_order_relaxed);
    co_await ctx_.sessions.forget(tap->session_id, ex.ordinal);
  }
  co_return out;
}

bool Connection::take_buffered(char*& bytes, std::size_t& got) {
  // Body bytes that came with the head: used where they are.
  if (upstream_buffer_.size() == 0) return false;
  bytes = static_cast<char*>(upstream_buffer_.data().data());
  got = upstream_buffer_.size();
  upstream_buffer_.consume(got);
  return true;
}

Connection::RelayOutcome Connection::relay_outcome(const RelayPlan& plan, const http1::BodyFraming& body,
                                                   bool client_failed, bool pod_failed) const {
  RelayOutcome out;
  out.client_gone = client_failed || client_gone();
  out.pod_failed = pod_failed;
  // Bytes past the body (after a 204, say) mean the pod and the proxy disagree on framing.
  out.pod_reusable = !out.client_gone && !pod_failed && body.done && plan.pod_keep_alive && !body.extra &&
                     upstream_buffer_.size() == 0 && body.framing != http1::Framing::close;
  return out;
}

}  // namespace mcpproxy
