// The client connection: the request loop, deadlines, the client watch, local replies,
// the driver of a request's stages and the one place a request is counted and logged.
#include "mcpproxy/downstream.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio/write.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mcpproxy/io_ring.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/session_binding.hpp"
#include "mcpproxy/sessions.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {
namespace {
// A body not whole with its head is read in pieces that grow with what arrived, from this.
constexpr std::size_t kFirstBodyRead = 4096;
}  // namespace

std::size_t send_now(tcp::socket& s, const net::const_buffer* buffers, std::size_t count, error_code& ec) {
  constexpr std::size_t kMax = 8;
  // Only the first n entries are read: no need to clear the rest on every send.
  std::array<iovec, kMax> iov;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  std::size_t n = 0;
  for (std::size_t i = 0; i < count && n < kMax; ++i) {
    if (buffers[i].size() == 0) continue;
    iov[n].iov_base =
        const_cast<void*>(buffers[i].data());  // NOLINT(cppcoreguidelines-pro-type-const-cast): sendmsg's iovec
    iov[n].iov_len = buffers[i].size();
    ++n;
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = n;
  for (;;) {
    // The system call itself: libc's sendmsg is a thread cancellation point, and its
    // enabling and disabling of asynchronous cancellation around every call (the proxy never
    // cancels a thread) cost more than the rest of this function.
    const long sent = ::syscall(SYS_sendmsg, s.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) return static_cast<std::size_t>(sent);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) ec = error_code(errno, boost::system::system_category());
    return 0;
  }
}

std::unique_ptr<char[]> RelayBuffers::take(std::size_t size) {
  if (size != size_) {
    buffers_.clear();  // the size changed with a reload
    size_ = size;
  }
  if (buffers_.empty()) return std::unique_ptr<char[]>(new char[size]);  // not zeroed: written before read
  auto buffer = std::move(buffers_.back());
  buffers_.pop_back();
  return buffer;
}

void RelayBuffers::give(std::unique_ptr<char[]> buffer, std::size_t size) {
  if (size == size_ && buffers_.size() < kPooled) buffers_.push_back(std::move(buffer));
}

ConnectionRegistry::Handle ConnectionRegistry::add(std::weak_ptr<Connection> c) {
  ++count_;
  return connections_.insert(connections_.end(), std::move(c));
}

void ConnectionRegistry::remove(Handle it) {
  --count_;
  connections_.erase(it);
}

Connection::Connection(ConnectionContext& ctx, tcp::socket socket, std::uint64_t id)
    : ctx_(ctx), socket_(std::move(socket)), id_(id) {
  error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    peer_ip_ = ep.address().to_string();
    peer_ = parse_ip(peer_ip_).value_or(IpAddress{});
  }
  socket_.set_option(tcp::no_delay(true), ec);
  ctx_.metrics.downstream_connections.fetch_add(1, std::memory_order_relaxed);
}

void Connection::set_in_flight(bool in_flight) {
  // ctx_.busy counts the requests the drain waits for; each connection adds at most one.
  if (in_flight == counted_busy_) return;
  counted_busy_ = in_flight;
  ctx_.busy.fetch_add(in_flight ? 1 : -1, std::memory_order_relaxed);
}

void Connection::release_relay_buffer() {
  if (relay_buffer_) ctx_.relay_buffers.give(std::move(relay_buffer_), relay_buffer_size_);
}

Connection::~Connection() {
  ctx_.metrics.downstream_connections.fetch_sub(1, std::memory_order_relaxed);
  set_in_flight(false);
  release_body_bytes();            // the worker's counter outlives its io_context
  if (ctx_.shutting_down) return;  // the worker's pool and registry are gone already
  release_relay_buffer();
  if (registered_) ctx_.registry.remove(registry_);
}

void Connection::start() {
  registry_ = ctx_.registry.add(weak_from_this());
  registered_ = true;
  net::co_spawn(
      socket_.get_executor(), [self = shared_from_this()]() { return self->run(); }, net::detached);
}

void Connection::close_if_idle() {
  if (idle_) close();
}

void Connection::close() {
  if (closed_) return;
  closed_ = true;
  close_socket(socket_);
  if (watch_.active && watch_.upstream != nullptr) close_socket(*watch_.upstream);
}

net::awaitable<void> Connection::run() {
  for (;;) {
    if (closed_) co_return;
    // Between requests: wait for the first byte with the idle timeout; the head then has
    // its own deadline, so a slow client cannot hold a connection with a trickle.
    if (buffer_.size() == 0) {
      if (ctx_.draining.load(std::memory_order_relaxed)) co_return;
      idle_ = true;
      expect_within(Wait::idle, ctx_.config->limits.idle_timeout);
      auto [ec, n] = co_await read_some(ctx_.ring, socket_, buffer_.prepare(8192));
      stop_waiting();
      idle_ = false;
      if (ec) {
        if (!harmless(ec)) {
          log_event(spdlog::level::debug, "client read failed",
                    {{"conn", std::to_string(id_)}, {"error", ec.message()}});
        }
        co_return;
      }
      buffer_.commit(n);
    }
    // Each request takes the worker's config as it is when the request's first byte is
    // here: a reload applied while a keep-alive connection was idle holds for its next one.
    auto cfg = ctx_.config;
    // A request that came whole in one read (nearly every MCP request) is taken here,
    // without another coroutine; the rest is read by read_request.
    const Buffered buffered = take_buffered_request(*cfg);
    if (buffered != Buffered::request) {
      const ReadResult read = co_await read_request(*cfg, buffered);
      if (read == ReadResult::closed) co_return;
    }

    Exchange ex(request_);
    ex.route.session_id = std::move(session_id_storage_);  // its capacity, from the last request
    ex.cfg = std::move(cfg);
    ex.start = std::chrono::steady_clock::now();
    ex.request_id.assign(request_.head, ex.cfg->limits.max_request_id_length);
    ex.keep_alive = request_.head.keep_alive;
    set_in_flight(true);
    // Routed without a wait (the rule: a session the table knows, a placed request), it
    // goes to the pod from here; a decision that waits (the store, a local reply, a lost
    // session, a stream's order) is handle's.
    const Decision d = decide(ex);
    bool again = false;
    if (d.kind == Decision::Kind::proxy) {
      again = co_await proxy(ex, /*may_recover=*/true);
    } else {
      again = co_await handle(ex, d);
    }
    if (!end_request(ex, again)) co_return;
  }
}

bool Connection::end_request(Exchange& ex, bool again) {
  set_in_flight(false);
  finish(ex);
  session_id_storage_ = std::move(ex.route.session_id);
  release_body_bytes();
  if (in_place_ != 0) {  // the request read where it lay gives the read buffer its bytes back
    buffer_.consume(in_place_);
    in_place_ = 0;
    if (buffer_.size() == 0 && buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
  }
  // A large body once does not pin its buffer for the connection's life.
  if (request_.bytes.capacity() > 64 * 1024) {
    request_.head = http1::Head();
    request_.bytes = std::string();
    request_.body = {};
  }
  if (again && ex.keep_alive && !closed_) return true;
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_send, ec);
  return false;
}

Connection::Buffered Connection::take_buffered_request(const Config& cfg) {
  expect_within(Wait::head, cfg.limits.header_timeout);
  if (http1::parse_request(view(buffer_), cfg.limits.max_header_size, request_.head) != http1::Status::complete) {
    return Buffered::need_head;
  }
  if (take_in_place(cfg)) return Buffered::request;
  keep_head();
  return body_buffered(cfg) ? Buffered::request : Buffered::need_body;
}

bool Connection::take_in_place(const Config& cfg) {
  // The whole request is here (a head, and a Content-Length body or none), the rule: the
  // exchange reads it where it lies, and the read buffer gives its bytes up when the request
  // ends (end_request). Nothing reads into the buffer meanwhile; what would free or move it
  // (an SSE stream's shrink) takes the request out first (own_request).
  Request& req = request_;
  std::size_t length = 0;
  if (req.head.framing == http1::Framing::length) {
    length = static_cast<std::size_t>(req.head.content_length);
    if (length > cfg.limits.max_body_size || buffer_.size() < req.head.size + length) return false;
  } else if (req.head.framing != http1::Framing::none) {
    return false;
  }
  stop_waiting();
  req.body = view(buffer_).substr(req.head.size, length);
  in_place_ = req.head.size + length;
  return true;
}

void Connection::own_request(Exchange& ex) {
  if (in_place_ == 0) return;
  Request& req = request_;
  const char* const at = view(buffer_).data();
  req.bytes.clear();
  req.bytes.append(at, in_place_);
  req.head.rebase(at, req.bytes.data());
  ex.request_id.rebase(at, req.bytes.data());
  req.body = std::string_view(req.bytes).substr(req.head.size);
  buffer_.consume(in_place_);
  in_place_ = 0;
}

net::awaitable<Connection::ReadResult> Connection::read_request(const Config& cfg, Buffered from) {
  // (Results are named before they are compared: GCC 12 miscompiles a co_await inside the
  // condition of this coroutine.)
  if (from == Buffered::need_head) {
    const ReadResult head = co_await read_head(cfg);
    if (head == ReadResult::closed) co_return head;
    keep_head();
    if (body_buffered(cfg)) co_return ReadResult::request;
  }
  const ReadResult body = co_await read_body(cfg);
  co_return body;
}

void Connection::keep_head() {
  // The exchange keeps its own copy of the head: the read buffer may move while the body
  // arrives, and is free for the next request as soon as this one is read.
  Request& req = request_;
  const char* const parsed_at = view(buffer_).data();
  req.bytes.clear();  // then an append: assign's general replace costs twice as much
  req.bytes.append(parsed_at, req.head.size);
  req.head.rebase(parsed_at, req.bytes.data());
}

bool Connection::body_buffered(const Config& cfg) {
  Request& req = request_;
  const std::size_t head_size = req.head.size;
  std::size_t length = 0;
  if (req.head.framing == http1::Framing::length) {
    length = static_cast<std::size_t>(req.head.content_length);
    if (length > cfg.limits.max_body_size || buffer_.size() < head_size + length) return false;
    append_body(view(buffer_).substr(head_size, length));
  } else if (req.head.framing != http1::Framing::none) {
    return false;
  }
  end_of_request(length);
  return true;
}

void Connection::end_of_request(std::size_t raw_body) {
  stop_waiting();
  Request& req = request_;
  req.body = std::string_view(req.bytes).substr(req.head.size);
  buffer_.consume(req.head.size + raw_body);
  // A large body once does not keep its buffer for the connection's life.
  if (buffer_.size() == 0 && buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
}

net::awaitable<Connection::ReadResult> Connection::read_head(const Config& cfg) {
  // The head is parsed when it is whole: a head that arrives in pieces is scanned for its
  // end only in the bytes each read adds (a head trickled a few bytes at a time costs
  // linear time, not a parse from its start per read), then parsed once.
  http1::Status st = http1::parse_request(view(buffer_), cfg.limits.max_header_size, request_.head);
  std::size_t scanned = buffer_.size();
  while (st == http1::Status::need_more) {
    const std::size_t want = cfg.limits.max_header_size - buffer_.size() + 1;
    auto [ec, n] = co_await read_some(ctx_.ring, socket_, buffer_.prepare(std::clamp<std::size_t>(want, 4096, 65536)));
    if (ec && expired(Wait::head)) {
      co_await reply_and_close(http::status::request_timeout, "request head not received in time");
      co_return ReadResult::closed;
    }
    if (ec) co_return ReadResult::closed;  // the client left mid-head
    buffer_.commit(n);
    const std::string_view bytes = view(buffer_);
    const std::size_t from = scanned < 3 ? 0 : scanned - 3;  // the end may straddle two reads
    scanned = bytes.size();
    if (bytes.find("\r\n\r\n", from) == std::string_view::npos && bytes.size() <= cfg.limits.max_header_size) {
      continue;
    }
    st = http1::parse_request(bytes, cfg.limits.max_header_size, request_.head);
  }
  if (st == http1::Status::too_large) {
    co_await reply_and_close(http::status::request_header_fields_too_large, "request head too large");
    co_return ReadResult::closed;
  }
  if (st != http1::Status::complete) {
    co_await reply_and_close(http::status::bad_request, st == http1::Status::bad_framing
                                                            ? "malformed request: body framing"
                                                            : "malformed request");
    co_return ReadResult::closed;
  }
  co_return ReadResult::request;
}

net::awaitable<bool> Connection::read_more(std::size_t want) {
  auto [ec, n] = co_await read_some(ctx_.ring, socket_, buffer_.prepare(std::clamp<std::size_t>(want, 4096, 65536)));
  if (ec && expired(Wait::body)) {
    co_await reply_and_close(http::status::request_timeout, "request body not received in time");
    co_return false;
  }
  if (ec) {
    if (!harmless(ec) && ec != net::error::eof)
      co_await reply_and_close(http::status::bad_request, "malformed request body");
    co_return false;
  }
  buffer_.commit(n);
  co_return true;
}

bool Connection::hold_body_bytes(std::size_t total, const Config& cfg) {
  if (total <= body_held_) return true;
  const std::size_t more = total - body_held_;
  if (ctx_.body_bytes + more > cfg.limits.max_worker_body_bytes) return false;
  ctx_.body_bytes += more;
  body_held_ = total;
  ctx_.metrics.request_body_bytes.fetch_add(static_cast<std::int64_t>(more), std::memory_order_relaxed);
  return true;
}

void Connection::release_body_bytes() {
  if (body_held_ == 0) return;
  ctx_.body_bytes -= body_held_;
  ctx_.metrics.request_body_bytes.fetch_sub(static_cast<std::int64_t>(body_held_), std::memory_order_relaxed);
  body_held_ = 0;
}

void Connection::append_body(std::string_view body) {
  // The body goes after the head in bytes; the head's views follow when it grows.
  Request& req = request_;
  if (req.bytes.capacity() < req.bytes.size() + body.size()) {
    std::string grown;
    grown.reserve(req.bytes.size() + body.size());
    grown.append(req.bytes);
    req.head.rebase(req.bytes.data(), grown.data());
    req.bytes.swap(grown);
  }
  req.bytes.append(body);
}

net::awaitable<bool> Connection::read_chunked_body(const Config& cfg, std::size_t& raw) {
  const std::size_t head_size = request_.head.size;
  http1::ChunkedDecoder chunks;
  std::size_t payload = 0;
  for (;;) {
    // The bytes that arrived hold the budget (framing included), never those announced.
    if (!hold_body_bytes(buffer_.size() - head_size, cfg)) {
      co_await refuse_over_budget();
      co_return false;
    }
    char* const base = static_cast<char*>(buffer_.data().data()) + head_size;
    const auto r = chunks.decode(base + payload, base + raw, buffer_.size() - head_size - raw);
    // A chunk declared past the bound is refused at its size line, not after its bytes.
    if (r.too_large || payload + r.payload + chunks.pending() > cfg.limits.max_body_size) {
      co_await reply_and_close(http::status::payload_too_large, "request body too large");
      co_return false;
    }
    if (r.error) {
      co_await reply_and_close(http::status::bad_request, "malformed request body");
      co_return false;
    }
    payload += r.payload;
    raw += r.consumed;
    // The framing may not cost more than the payload it carries, or 64 KiB.
    if (payload > cfg.limits.max_body_size || raw > 2 * cfg.limits.max_body_size + 65536) {
      co_await reply_and_close(http::status::payload_too_large, "request body too large");
      co_return false;
    }
    if (chunks.done()) break;
    if (!co_await read_more(std::max<std::size_t>(buffer_.size() - head_size, kFirstBodyRead))) co_return false;
  }
  append_body(view(buffer_).substr(head_size, payload));
  co_return true;
}

net::awaitable<bool> Connection::read_length_body(const Config& cfg) {
  const std::size_t head_size = request_.head.size;
  const auto length = static_cast<std::size_t>(request_.head.content_length);
  // The budget is taken as the bytes arrive, never ahead of them: a head that declares a
  // large body and sends none of it holds none (heads alone cannot starve the others), and
  // what is read next grows with what came (the buffer ahead of the bytes is bounded too).
  for (;;) {
    const std::size_t arrived = std::min(buffer_.size() - head_size, length);
    if (!hold_body_bytes(arrived, cfg)) {
      co_await refuse_over_budget();
      co_return false;
    }
    if (arrived == length) break;
    if (!co_await read_more(std::min(length - arrived, std::max(arrived, kFirstBodyRead)))) co_return false;
  }
  append_body(view(buffer_).substr(head_size, length));
  co_return true;
}

net::awaitable<Connection::ReadResult> Connection::read_body(const Config& cfg) {
  Request& req = request_;
  const std::size_t head_size = req.head.size;
  const auto framing = req.head.framing;
  if (framing == http1::Framing::length && req.head.content_length > cfg.limits.max_body_size) {
    co_await reply_and_close(http::status::payload_too_large, "request body too large");
    co_return ReadResult::closed;
  }
  // A body that cannot fit the worker's budget now is refused before it is read (and before
  // a client that waits for "100 Continue" sends it). Nothing is taken for it yet.
  if (framing == http1::Framing::length &&
      ctx_.body_bytes + req.head.content_length > cfg.limits.max_worker_body_bytes) {
    co_await refuse_over_budget();
    co_return ReadResult::closed;
  }
  // A client that waits for "100 Continue" before sending its body gets it from us: the
  // body is read here, so the pod never sees the Expect header. An HTTP/1.0 client's
  // expectation is ignored (RFC 9110 10.1.1): it cannot read a 1xx answer.
  if (framing != http1::Framing::none && buffer_.size() == head_size && req.head.version >= 11) {
    if (const auto expect = req.get(http1::FieldId::expect); expect && http1::starts_with_ci(*expect, "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [cec, cn] = co_await net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()), use_tuple);
      if (cec) co_return ReadResult::closed;
    }
  }

  expect_within(Wait::body, cfg.limits.body_timeout);
  std::size_t raw = 0;  // body bytes on the wire
  if (framing == http1::Framing::length) {
    if (!co_await read_length_body(cfg)) co_return ReadResult::closed;
    raw = static_cast<std::size_t>(req.head.content_length);
  } else if (framing == http1::Framing::chunked) {
    if (!co_await read_chunked_body(cfg, raw)) co_return ReadResult::closed;
  }
  end_of_request(raw);
  co_return ReadResult::request;
}

const std::string& Connection::principal_of_request(const Exchange& ex) {
  const auto identity = binding_identity(ex.cfg->sessions, ex.req.head);
  if (!identity) {
    binding_identity_.clear();
    binding_principal_.clear();
  } else if (*identity != binding_identity_ || binding_principal_.empty()) {
    binding_identity_ = std::string(*identity);
    binding_principal_ = principal_of(ex.cfg->sessions.binding_key, *identity);
  }
  return binding_principal_;
}

std::string Connection::client_key(const Exchange& ex) const {
  if (!ex.principal.empty()) return "p:" + ex.principal;
  const IpAddress client = client_address(ex.req.head, peer_, ex.cfg->client_address);
  std::string key = "a:";
  key.append(reinterpret_cast<const char*>(client.bytes.data()), client.bytes.size());
  return key;
}

bool Connection::binding_holds(const Exchange& ex) {
  // A record from before binding was turned on has no principal: it stays usable.
  if (ex.rec->principal.empty() || same_principal(principal_of_request(ex), ex.rec->principal)) return true;
  ctx_.metrics.binding_mismatches.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::warn, "session presented by another identity; answered 404",
            {{"conn", std::to_string(id_)},
             {"session", session_hash(ex.route.session_id)},
             {"method", std::string(ex.req.method())}});
  return false;
}

Connection::Decision Connection::decide(Exchange& ex) {
  const Config& cfg = *ex.cfg;
  if (!cfg.allowed_origins.empty() && !origin_allowed(cfg.allowed_origins, ex.req.get(http1::FieldId::origin))) {
    return Decision::reply(kOriginNotAllowed);
  }
  if (!cfg.allowed_hosts.empty() && !host_allowed(cfg.allowed_hosts, ex.req.get(http1::FieldId::host))) {
    return Decision::reply(kHostNotAllowed);
  }
  classify_request(ex.route, ex.req.head.session_id, ex.req.target(), ex.req.body, ex.req.method() == "POST");
  // Era and method (counted), and a sessionless request's task or handle (task_routing.hpp).
  const bool sessionless = ex.route.cls == RequestClass::sessionless;
  if (sessionless && cfg.sessions.binding != BindingKind::none) ex.principal = principal_of_request(ex);
  using ByKey = TaskRouting::Verdict::Kind;
  switch (ex.tasks.on_request(ex.req.head, ex.req.body, sessionless, cfg, ctx_.tasks, ctx_.metrics, ex.principal)) {
    case ByKey::place:
    case ByKey::forward:
      break;
    case ByKey::reply:
      return Decision::reply(ex.tasks.refusal());
    case ByKey::look_up:
      return Decision::to(Decision::Kind::look_up_key);
    case ByKey::list:
      return Decision::to(Decision::Kind::list_tasks);
  }
  if (ex.route.cls == RequestClass::session) {
    ex.rec = ctx_.sessions.find_cached(ex.route.session_id);
    // Created through another proxy replica, or before this process restarted: the store
    // is asked when the local table does not know the id.
    if (!ex.rec) return Decision::to(Decision::Kind::look_up);
  }
  return decide_known(ex, /*store_failed=*/false);
}

Connection::Decision Connection::decide_known(Exchange& ex, bool store_failed) {
  const Config& cfg = *ex.cfg;
  if (ex.route.cls == RequestClass::session) {
    // Not knowing is not "not found": a 404 would make the client drop a live session.
    if (!ex.rec && store_failed) return Decision::reply(kStoreUnavailable);
    // Another identity's session is answered like an unknown one: ids cannot be probed.
    if (ex.rec && cfg.sessions.binding != BindingKind::none && !binding_holds(ex)) {
      return Decision::reply(kSessionNotFound);
    }
  } else if (cfg.sessions.binding != BindingKind::none) {
    ex.principal = principal_of_request(ex);
  }
  if (ex.route.cls == RequestClass::new_session && cfg.limits.new_sessions_per_client != 0) {
    const unsigned wait =
        ctx_.new_sessions.admit(client_key(ex), std::chrono::steady_clock::now(), cfg.limits.new_sessions_per_client,
                                cfg.limits.new_sessions_window, cfg.limits.new_sessions_max_clients);
    if (wait != 0) {
      ctx_.metrics.new_sessions_refused.fetch_add(1, std::memory_order_relaxed);
      return Decision::reply(Refusal{429, -32000, "Too many new sessions from this client", wait});
    }
  }
  const Route route = route_request(ex.route, ex.rec.get(), cfg.backend.replicas);
  switch (route.kind) {
    case Route::Kind::refuse:
      return Decision::reply(route.refusal);
    case Route::Kind::lost: {
      ex.ordinal = route.ordinal;
      Decision d = Decision::to(Decision::Kind::lost);
      d.cause = route.cause;
      return d;
    }
    case Route::Kind::forward:
      ex.ordinal = route.ordinal;
      break;
    case Route::Kind::place:
      if (ex.tasks.ordinal() >= 0) {  // a task's or a handle's pod
        ex.ordinal = ex.tasks.ordinal();
        break;
      }
      // A new session that would find no room is refused before a pod makes it: the live
      // sessions that fill the table are never dropped for it.
      if (ex.route.cls == RequestClass::new_session && !ctx_.sessions.room_for_new()) {
        ctx_.metrics.table_full_refusals.fetch_add(1, std::memory_order_relaxed);
        return Decision::reply(kSessionTableFull);
      }
      ex.ordinal = place_new(cfg);
      break;
  }
  // A session's GET, or any request while some stream is opening or expected: checked here
  // so that the common request costs one atomic load, no coroutine frame.
  if (ex.route.cls == RequestClass::session && (ex.req.method() == "GET" || ctx_.streams.any())) {
    return Decision::to(Decision::Kind::stream_order);
  }
  return Decision::to(Decision::Kind::proxy);
}

net::awaitable<bool> Connection::handle(Exchange& ex, Decision d) {
  if (d.kind == Decision::Kind::look_up) {
    bool store_failed = false;
    ex.rec = co_await ctx_.sessions.find_missed(ex.route.session_id, store_failed);
    d = decide_known(ex, store_failed);
  } else if (d.kind == Decision::Kind::look_up_key) {
    const TaskRouting::Verdict::Kind v =
        co_await ex.tasks.look_up(ex.cfg->backend.replicas, ctx_.tasks, ctx_.metrics, ex.principal);
    d = v == TaskRouting::Verdict::Kind::reply ? Decision::reply(ex.tasks.refusal()) : decide_known(ex, false);
  }
  switch (d.kind) {
    case Decision::Kind::reply:
      co_return co_await send_local_reply(ex, d.refusal);
    case Decision::Kind::lost:
      co_return co_await session_lost(ex, d.cause, /*may_recover=*/true);
    case Decision::Kind::stream_order:
      co_await keep_stream_order(ex);
      break;
    case Decision::Kind::list_tasks:
      co_return co_await list_tasks(ex);
    case Decision::Kind::look_up:
    case Decision::Kind::look_up_key:
    case Decision::Kind::proxy:
      break;
  }
  co_return co_await proxy(ex, /*may_recover=*/true);
}

void Connection::expect_stream(const Exchange& ex) {
  // The SDK clients open the session's GET stream as soon as they see this 202.
  const auto window = ex.cfg->backend.stream_expect_window;
  if (window.count() == 0 || ex.cfg->backend.stream_open_wait.count() == 0 || response_.status != 202 ||
      ex.route.cls != RequestClass::session)
    return;
  if (ex.req.body.find("\"notifications/initialized\"") == std::string_view::npos) return;
  ctx_.streams.expect(ex.route.session_id, std::chrono::steady_clock::now() + ex.cfg->backend.stream_open_wait);
}

net::awaitable<void> Connection::keep_stream_order(Exchange& ex) {
  const auto limit = ex.cfg->backend.stream_open_wait;
  if (limit.count() == 0) co_return;
  // The session's GET stream: its later requests wait for it (stream_gate.hpp).
  if (ex.req.method() == "GET") {
    ex.stream_opening = StreamOpening(ctx_.streams, ex.route.session_id);
    co_return;
  }
  const bool waited = co_await ctx_.streams.wait(ex.route.session_id, limit, ex.cfg->backend.stream_expect_window);
  if (waited) ctx_.metrics.stream_order_waits.fetch_add(1, std::memory_order_relaxed);
}

// Exempt from the complexity bound: a request's waits at the pod and the client written out
// in one coroutine, each stage's decisions in plain functions beside it (a coroutine frame
// per stage cost about 300 instructions a request: bench/README.md).
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
net::awaitable<bool> Connection::proxy(Exchange& ex, bool may_recover) {
  // The exchange with the pod up to its response head (upstream_exchange.cpp): acquire,
  // send, read the head, and the retry rules' next attempt.
  UpstreamTry t;
  for (;;) {
    // A pooled connection without a coroutine, the rule; the retry after a stale pooled
    // connection takes a new one (the pod that closed one, a restart, has closed the others).
    UpstreamPool::Lease lease;
    if (t.stale_retry_used || !ctx_.pool.take_idle(ex.ordinal, lease)) lease = co_await ctx_.pool.connect(ex.ordinal);
    if (lease.ec) {
      if (connect_failed(ex, lease.ec, t)) continue;
      break;
    }
    ex.upstream = std::move(lease.stream);
    t.sent_at = std::chrono::steady_clock::now();
    error_code ec;
    bool malformed = false;
    std::array<net::const_buffer, 2> request_bytes;
    if (!send_request(ex, request_bytes, ec)) {
      auto [wec, wn] = co_await write_all(ctx_.ring, *ex.upstream, request_bytes);
      ec = wec;
    }
    while (!ec) {
      const auto st = read_response_head(ex, malformed);
      if (st != http1::Status::need_more || malformed) break;
      auto [rec, rn] = co_await read_some(ctx_.ring, *ex.upstream, upstream_buffer_.prepare(8192));
      ec = rec;
      if (!ec) upstream_buffer_.commit(rn);
    }
    if (!attempt_ended(ex, lease.reused, ec, malformed, t)) break;
  }
  ex.stream_opening.release();  // the pod has the GET stream now, or will never have it
  if (t.result != UpstreamResult::head) co_return co_await upstream_failed(ex, t, may_recover);
  expect_stream(ex);
  ex.status = response_.status;
  const ResponseAction action = response_action(response_facts(ex, may_recover));
  bool legacy_stream = action == ResponseAction::tap_legacy_stream;
  if (action != ResponseAction::relay && !legacy_stream) {
    bool again = false;
    const Bookkeeping next = co_await on_response_head(ex, action, again);
    if (next == Bookkeeping::answered) co_return again;
  }
  // A whole answer goes out without the pump's coroutine (relay.cpp).
  RelayOutcome out;
  const AtOnce at_once = relay_at_once(ex, legacy_stream, out);
  if (at_once == AtOnce::no) {
    out = co_await relay(ex, legacy_stream);
  } else if (at_once == AtOnce::rest) {
    expect_within(Wait::write, ex.cfg->limits.write_timeout);
    auto [wec, wn] = co_await write_all(ctx_.ring, socket_, client_out_);
    relay_rest_written(!wec, out);
  }
  const std::optional<Refusal> reply = relayed(ex, out);
  if (reply) co_return co_await send_local_reply(ex, *reply);
  co_return ex.keep_alive && !out.client_gone && !out.pod_failed;
}

net::awaitable<bool> Connection::upstream_failed(Exchange& ex, const UpstreamTry& t, bool may_recover) {
  switch (t.result) {
    case UpstreamResult::head:
      break;
    case UpstreamResult::client_gone:
      ctx_.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
      ex.status = 499;
      co_return false;
    case UpstreamResult::unreachable:
      // The session's pod cannot be reached: lost only when it is gone (route.hpp).
      if (ex.route.cls == RequestClass::session) {
        const BackendConfig& b = ex.cfg->backend;
        const bool name_gone = ex.connect_failure == ConnectFailure::no_such_pod;
        const Unreachable u =
            judge_unreachable(ex.connect_failure, ex.refusing_for, name_gone ? b.name_grace() : b.unreachable_grace);
        if (u.lost) co_return co_await session_lost(ex, u.cause, may_recover);
        // A name's failure answers its own 503 (why it cannot be looked up).
        const bool by_name = name_gone || ex.connect_failure == ConnectFailure::dns;
        co_return co_await send_local_reply(ex, by_name ? t.refusal : u.refusal);
      }
      break;
    case UpstreamResult::refused:
      break;
  }
  co_return co_await send_local_reply(ex, t.refusal);
}

std::optional<Refusal> Connection::relayed(Exchange& ex, const RelayOutcome& out) {
  if (out.pod_reusable) ctx_.pool.release(ex.ordinal, std::move(ex.upstream));
  ex.upstream.reset();  // a client that left cancels the pod's exchange: its connection closes
  if (out.client_gone) {
    ctx_.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  if (!out.pod_failed) return std::nullopt;
  // A pod error either way. A client that has nothing yet gets it as an answer (502, 504
  // for time); one that has the head sees the connection close before the body's end,
  // so it cannot take the body for whole, and the access line says 502 (504).
  const bool timed_out = expired(Wait::upstream);
  ctx_.metrics.count_upstream_error(ex.ordinal, timed_out ? UpstreamError::timeout : UpstreamError::io);
  const Refusal& r = timed_out ? kPodTimedOut : kPodFailed;
  if (!out.head_sent) return r;
  ex.status = r.status;
  return std::nullopt;
}

ResponseFacts Connection::response_facts(const Exchange& ex, bool may_recover) const {
  const Config& cfg = *ex.cfg;
  ResponseFacts facts;
  facts.cls = ex.route.cls;
  facts.method = ex.req.method();
  facts.target = ex.req.target();
  facts.status = ex.status;
  // A new session's id, and a session's (a pod may repeat it; another one is refused).
  if (ex.route.cls == RequestClass::new_session || ex.route.cls == RequestClass::session) {
    facts.session_header = response_.session_id;
  }
  if (ex.route.cls == RequestClass::session && ex.rec) {
    facts.session = ex.rec->backend_session.empty() ? std::string_view(ex.route.session_id)
                                                    : std::string_view(ex.rec->backend_session);
  }
  facts.may_recover = may_recover;
  // With the redis store the cached copy has no initialize: session_lost reads the record.
  facts.recoverable = can_recover(cfg.sessions.on_lost, ex.rec.get(), ex.route.from_query, ex.req.method(),
                                  ctx_.sessions.init_in_store());
  facts.legacy_sse_path = cfg.legacy_sse_path;
  return facts;
}

net::awaitable<Connection::Bookkeeping> Connection::on_response_head(Exchange& ex, ResponseAction action, bool& again) {
  // Session bookkeeping happens before the head goes downstream, so the client's next
  // request finds the record (DESIGN.md step 4).
  switch (action) {
    case ResponseAction::relay:
      break;
    case ResponseAction::tap_legacy_stream:
    case ResponseAction::record_new_session: {
      if (ex.cfg->sessions.binding != BindingKind::none && ex.principal.empty()) {
        // An unbound session is not handed out: the pod accepted an initialize without the
        // identity the binding needs (a pod that wants auth answers 401 itself, and that
        // answer is relayed with its WWW-Authenticate). The pod's session is left to it.
        end_watch();
        ex.upstream.reset();
        again = co_await send_local_reply(ex, kIdentityRequired);
        co_return Bookkeeping::answered;
      }
      if (action == ResponseAction::tap_legacy_stream) break;  // recorded as its endpoint event passes
      co_return co_await record_new_session(ex, again);        // session_ids.cpp
    }
    case ResponseAction::reject_renamed_session:
      co_return co_await refuse_renamed_session(ex, again);
    case ResponseAction::reject_bad_session_id:
      end_watch();
      ex.upstream.reset();
      log_event(spdlog::level::warn, "pod sent an invalid Mcp-Session-Id",
                {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}});
      again = co_await send_local_reply(ex, Refusal{502, -32603, "MCP server sent an invalid session id"});
      co_return Bookkeeping::answered;
    case ResponseAction::recover:
      // The pod no longer knows the session (it restarted, or dropped it): the pod's 404
      // is not relayed; the session moves to a new pod and the request is replayed there.
      end_watch();
      ex.upstream.reset();
      again = co_await session_lost(ex, LostCause::pod_answered_404, /*may_recover=*/true);
      co_return Bookkeeping::answered;
    case ResponseAction::forget_deleted:
    case ResponseAction::forget_lost:
      // DELETE ended it, or the pod no longer knows it: either way the record goes.
      if (action == ResponseAction::forget_lost) {
        ctx_.metrics.count_lost(LostCause::pod_answered_404);
      } else {
        ctx_.metrics.sessions_deleted.fetch_add(1, std::memory_order_relaxed);
      }
      co_await ctx_.sessions.forget(ex.route.session_id, ex.ordinal);
      break;
  }
  co_return Bookkeeping::relay;
}

int Connection::place_new(const Config& cfg, int avoid) {
  const auto now = std::chrono::steady_clock::now();
  return place(
      cfg.placement, cfg.backend.replicas,
      [&](int o) { return (o != avoid || cfg.backend.replicas == 1) && ctx_.health.placeable(o, now); },
      [&](int o) { return ctx_.sessions.sessions_on(o); }, ctx_.rng);
}

void Connection::begin_watch(tcp::socket* upstream) {
  ++watch_.generation;
  watch_.active = true;
  watch_.armed = false;
  watch_.client_gone = false;
  watch_.upstream = upstream;
  watch_.started_tick = ctx_.tick;
}

void Connection::end_watch() {
  if (!watch_.active) return;
  watch_.active = false;
  watch_.upstream = nullptr;
  if (watch_.armed) {
    error_code ignored;
    socket_.cancel(ignored);
  }
}

void Connection::arm_watch() {
  watch_.armed = true;
  socket_.async_wait(tcp::socket::wait_read,
                     [self = shared_from_this(), generation = watch_.generation](error_code ec) {
                       Watch& w = self->watch_;
                       if (ec || !w.active || w.generation != generation) return;
                       char c = 0;
                       const ssize_t n = ::recv(self->socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
                       if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
                         return;  // a pipelined request: keep going
                       w.client_gone = true;
                       if (w.upstream != nullptr) {
                         error_code ignored;
                         // A read in the io_uring ends by shutdown only (io_ring.hpp); the
                         // exchange is abandoned either way, its pod connection not reused.
                         if (self->ctx_.ring != nullptr) {
                           w.upstream->shutdown(tcp::socket::shutdown_both, ignored);
                         } else {
                           w.upstream->cancel(ignored);
                         }
                       }
                     });
}

void Connection::expect_within(Wait what, duration limit, tcp::socket* upstream) {
  waiting_ = what;
  deadline_upstream_ = upstream;
  expired_ = Wait::none;
  // Never early: the tick that fires is at least `limit` after now.
  deadline_tick_ = ctx_.tick + static_cast<std::uint64_t>((limit.count() + kTickMs - 1) / kTickMs) + 1;
}

void Connection::on_tick(std::uint64_t tick) {
  if (waiting_ != Wait::none && tick >= deadline_tick_) {
    // A deadline closes the socket: the pending operation fails, and the coroutine reads
    // `expired_` to tell a timeout from a peer's close.
    expired_ = waiting_;
    waiting_ = Wait::none;
    if (expired_ == Wait::upstream) {
      if (deadline_upstream_ != nullptr) close_socket(*deadline_upstream_);
    } else {
      close_socket(socket_);
    }
  }
  // A client that leaves during a long exchange is watched for from the second tick on.
  if (watch_.active && !watch_.armed && tick >= watch_.started_tick + 2) arm_watch();
}

net::awaitable<bool> Connection::send_local_reply(Exchange& ex, const Refusal& r) {
  // The request's id is echoed so the client can match the error to its call.
  const JsonRpcInfo info = inspect_jsonrpc(ex.req.body);
  ex.status = r.status;
  if (ctx_.draining.load(std::memory_order_relaxed)) ex.keep_alive = false;
  http::response<http::string_body> res{static_cast<http::status>(r.status), ex.req.version() >= 11 ? 11 : 10};
  res.set(http::field::content_type, "application/json");
  if (r.retry_after != 0) res.set(http::field::retry_after, std::to_string(r.retry_after));
  res.body() = jsonrpc_error_body(r.code, r.message, info.id_json);
  res.keep_alive(ex.keep_alive);
  res.prepare_payload();
  expect_within(Wait::write, ex.cfg->limits.write_timeout);
  auto [ec, n] = co_await http::async_write(socket_, res, use_tuple);
  stop_waiting();
  co_return !ec && ex.keep_alive;
}

net::awaitable<void> Connection::refuse_over_budget() {
  ctx_.metrics.body_budget_refused.fetch_add(1, std::memory_order_relaxed);
  co_await reply_and_close(http::status::service_unavailable, "proxy busy: too many request bodies in flight", 1);
}

net::awaitable<void> Connection::reply_and_close(http::status status, std::string_view message, unsigned retry_after) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
  if (retry_after != 0) res.set(http::field::retry_after, std::to_string(retry_after));
  res.body() = jsonrpc_error_body(-32600, message, "null");
  res.keep_alive(false);
  res.prepare_payload();
  // A deadline that fired has closed the socket already (Connection::on_tick): the request
  // is then counted and logged as 408, and the client sees the connection close.
  if (socket_.is_open()) {
    expect_within(Wait::write, std::chrono::seconds(5));
    co_await http::async_write(socket_, res, use_tuple);
    stop_waiting();
    error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
  }
  ctx_.metrics.count_request(MethodClass::other, static_cast<unsigned>(status));
  log_event(spdlog::level::info, "request refused",
            {{"conn", std::to_string(id_)},
             {"status", std::to_string(static_cast<unsigned>(status))},
             {"reason", std::string(message)}});
}

std::string Connection::session_label(const Exchange& ex) {
  // Hashed only when a line is written: most requests are never logged.
  if (!ex.session_for_log.empty()) return ex.session_for_log;
  return ex.route.session_id.empty() ? "-" : session_hash(ex.route.session_id);
}

void Connection::finish(const Exchange& ex) {
  ctx_.metrics.count_request(method_class(ex.req.method()), ex.status);
  if (!ex.cfg->log.access || !spdlog::should_log(spdlog::level::info)) return;
  const auto target = ex.req.target();
  // The path only: a legacy query carries the raw session id, which never reaches a log.
  const auto path = target.substr(0, target.find('?'));
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - ex.start).count();
  log_event(spdlog::level::info, "access",
            {{"conn", std::to_string(id_)},
             {"method", std::string(ex.req.method())},
             {"path", std::string(path)},
             {"status", std::to_string(ex.status)},
             {"pod", ex.ordinal < 0 ? "-" : std::to_string(ex.ordinal)},
             {"client", ex.cfg->client_address.any() ? client_address(ex.req.head, peer_, ex.cfg->client_address).str()
                                                     : peer_ip_},
             {"duration_ms", std::to_string(static_cast<double>(micros) / 1000.0)},
             {"session", session_label(ex)},
             {"request_id", std::string(ex.request_id.view())}});
}

}  // namespace mcpproxy
