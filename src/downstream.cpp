#include "mcpproxy/downstream.hpp"

#include <sys/socket.h>

#include <boost/asio/write.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <ctime>

#include "mcpproxy/log.hpp"
#include "mcpproxy/server.hpp"

namespace mcpproxy {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kSessionHeader = "Mcp-Session-Id";

std::optional<std::string_view> header(const http::fields& f, std::string_view name) {
  const auto it = f.find(name);
  if (it == f.end()) return std::nullopt;
  return std::string_view(it->value().data(), it->value().size());
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && http1::iequals(s.substr(0, prefix.size()), prefix);
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out += ": "sv;
  out.append(value);
  out += "\r\n"sv;
}

// A field the proxy never forwards as received: hop-by-hop (RFC 9110 7.6.1), or named by
// the message's Connection header.
bool dropped_hop(const http1::Field& f, const http1::Head& h) {
  return is_hop_by_hop(f.name) || (h.connection_names_fields && connection_lists(*h.connection, f.name));
}

// Writes a head's field lines in runs: consecutive lines forwarded unchanged go out as one
// copy of the bytes received (the lines lie back to back in the head).
class FieldRuns {
 public:
  FieldRuns(std::string& out, const http1::Head& h) : out_(out), end_(h.raw.data() + h.raw.size() - 2) {}
  void keep(const http1::Field& f) {
    if (begin_ == nullptr) begin_ = f.name.data();
  }
  void drop(const http1::Field& f) { flush(f.name.data()); }
  void finish() { flush(end_); }

 private:
  void flush(const char* upto) {
    if (begin_ != nullptr) out_.append(begin_, static_cast<std::size_t>(upto - begin_));
    begin_ = nullptr;
  }
  std::string& out_;
  const char* begin_ = nullptr;
  const char* end_;  // the blank line
};

std::string_view view(const beast::flat_buffer& b) { return {static_cast<const char*>(b.data().data()), b.size()}; }

// How much of a response body has been seen, and where it ends (RFC 9112 6).
struct BodyFraming {
  http1::Framing framing = http1::Framing::none;
  std::uint64_t remaining = 0;  // Content-Length bytes not yet seen
  http1::ChunkedDecoder chunks;
  bool done = false;
  bool error = false;
  bool extra = false;  // the pod sent bytes past the end of its body: its connection is not reused

  explicit BodyFraming(const http1::Head& res)
      : framing(res.framing),
        remaining(res.content_length),
        done(res.framing == http1::Framing::none ||
             (res.framing == http1::Framing::length && res.content_length == 0)) {}

  // The payload of `n` bytes at `p`, moved to the front of `p` (chunk framing removed).
  std::size_t take(char* p, std::size_t n) {
    switch (framing) {
      case http1::Framing::length: {
        const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, n));
        remaining -= k;
        done = remaining == 0;
        extra = extra || k < n;
        return k;
      }
      case http1::Framing::chunked: {
        const auto r = chunks.decode(p, p, n);
        error = r.error;
        done = chunks.done();
        extra = extra || r.consumed < n;
        return r.payload;
      }
      case http1::Framing::close:
        return n;
      case http1::Framing::none:
        extra = extra || n > 0;
        return 0;
    }
    return 0;
  }
};

}  // namespace

Connection::Connection(Worker& worker, tcp::socket socket)
    : worker_(worker), socket_(std::move(socket)), id_(worker.next_connection_id()) {
  error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  if (!ec) peer_ip_ = ep.address().to_string();
  socket_.set_option(tcp::no_delay(true), ec);
  worker_.shared().metrics.downstream_connections.fetch_add(1, std::memory_order_relaxed);
}

void Connection::set_in_flight(bool in_flight) {
  // Shared::busy counts the requests the drain waits for; each connection adds at most one.
  if (in_flight == counted_busy_) return;
  counted_busy_ = in_flight;
  worker_.shared().busy.fetch_add(in_flight ? 1 : -1, std::memory_order_relaxed);
}

void Connection::release_relay_buffer() {
  if (relay_buffer_) worker_.give_relay_buffer(std::move(relay_buffer_), relay_buffer_size_);
}

Connection::~Connection() {
  worker_.shared().metrics.downstream_connections.fetch_sub(1, std::memory_order_relaxed);
  set_in_flight(false);
  if (worker_.shutting_down()) return;  // the worker's pool and registry are gone already
  release_relay_buffer();
  if (registered_) worker_.remove(registry_);
}

void Connection::start() {
  registry_ = worker_.add(weak_from_this());
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
  error_code ec;
  socket_.shutdown(tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  if (watch_ && watch_->upstream != nullptr) watch_->upstream->close(ec);
}

net::awaitable<void> Connection::run() {
  for (;;) {
    if (closed_) co_return;
    auto cfg = worker_.config();
    // Between requests: wait for the first byte with the idle timeout; the head then has
    // its own deadline, so a slow client cannot hold a connection with a trickle.
    if (buffer_.size() == 0) {
      if (worker_.shared().draining.load(std::memory_order_relaxed)) co_return;
      idle_ = true;
      expect_within(Wait::idle, cfg->limits.idle_timeout);
      auto [ec, n] = co_await socket_.async_read_some(buffer_.prepare(8192), use_tuple);
      stop_waiting();
      idle_ = false;
      if (ec) {
        if (!harmless(ec))
          log_event(spdlog::level::debug, "client read failed",
                    {{"conn", std::to_string(id_)}, {"error", ec.message()}});
        co_return;
      }
      buffer_.commit(n);
    }
    if (co_await read_request(*cfg) == ReadResult::closed) co_return;

    Exchange ex(request_);
    ex.cfg = std::move(cfg);
    ex.start = std::chrono::steady_clock::now();
    ex.keep_alive = request_.head.keep_alive;
    set_in_flight(true);
    const bool again = co_await handle(ex);
    set_in_flight(false);
    worker_.shared().metrics.count_request(method_class(request_.method()), ex.status);
    log_access(ex);
    // A large body once does not pin its buffer for the connection's life.
    if (request_.bytes.capacity() > 64 * 1024) {
      request_.head = http1::Head();
      request_.bytes = std::string();
      request_.body = {};
    }
    if (!again || !ex.keep_alive || closed_) {
      error_code ec;
      socket_.shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
  }
}

net::awaitable<Connection::ReadResult> Connection::read_request(const Config& cfg) {
  Request& req = request_;
  auto more = [&](std::size_t want) { return buffer_.prepare(std::clamp<std::size_t>(want, 4096, 65536)); };

  // The head, parsed where it lies; re-parsed from the start when more bytes were needed
  // (a head nearly always arrives in one read).
  expect_within(Wait::head, cfg.limits.header_timeout);
  http1::Status st = http1::Status::need_more;
  for (;;) {
    st = http1::parse_request(view(buffer_), cfg.limits.max_header_size, req.head);
    if (st != http1::Status::need_more) break;
    auto [ec, n] = co_await socket_.async_read_some(more(cfg.limits.max_header_size - buffer_.size() + 1), use_tuple);
    if (ec && expired(Wait::head)) {
      co_await reply_and_close(http::status::request_timeout, "request head not received in time");
      co_return ReadResult::closed;
    }
    if (ec) co_return ReadResult::closed;  // the client left mid-head
    buffer_.commit(n);
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
  const std::size_t head_size = req.head.size;
  // The exchange keeps its own copy of the head: the read buffer may move while the body
  // arrives, and is free for the next request as soon as this one is read.
  const char* const parsed_at = view(buffer_).data();
  req.bytes.assign(parsed_at, head_size);
  req.head.rebase(parsed_at, req.bytes.data());

  const auto framing = req.head.framing;
  if (framing == http1::Framing::length && req.head.content_length > cfg.limits.max_body_size) {
    co_await reply_and_close(http::status::payload_too_large, "request body too large");
    co_return ReadResult::closed;
  }
  // A client that waits for "100 Continue" before sending its body gets it from us: the
  // body is read here, so the pod never sees the Expect header.
  if (framing != http1::Framing::none && buffer_.size() == head_size) {
    if (const auto expect = req.get("Expect"); expect && starts_with_ci(*expect, "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [cec, cn] = co_await net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()), use_tuple);
      if (cec) co_return ReadResult::closed;
    }
  }

  expect_within(Wait::body, cfg.limits.body_timeout);
  auto read_more = [&](std::size_t want) -> net::awaitable<bool> {
    auto [ec, n] = co_await socket_.async_read_some(more(want), use_tuple);
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
  };
  // The body goes after the head in req.bytes; the head's views follow when it grows.
  auto append_body = [&req](std::string_view body) {
    if (req.bytes.capacity() < req.bytes.size() + body.size()) {
      std::string grown;
      grown.reserve(req.bytes.size() + body.size());
      grown.append(req.bytes);
      req.head.rebase(req.bytes.data(), grown.data());
      req.bytes.swap(grown);
    }
    req.bytes.append(body);
  };
  std::size_t raw = 0;  // body bytes on the wire
  if (framing == http1::Framing::length) {
    const auto length = static_cast<std::size_t>(req.head.content_length);
    while (buffer_.size() < head_size + length) {
      if (!co_await read_more(head_size + length - buffer_.size())) co_return ReadResult::closed;
    }
    append_body(view(buffer_).substr(head_size, length));
    raw = length;
  } else if (framing == http1::Framing::chunked) {
    http1::ChunkedDecoder chunks;
    std::size_t payload = 0;
    for (;;) {
      char* const base = static_cast<char*>(buffer_.data().data()) + head_size;
      const auto r = chunks.decode(base + payload, base + raw, buffer_.size() - head_size - raw);
      if (r.error) {
        co_await reply_and_close(http::status::bad_request, "malformed request body");
        co_return ReadResult::closed;
      }
      payload += r.payload;
      raw += r.consumed;
      // The framing may not cost more than the payload it carries, or 64 KiB.
      if (payload > cfg.limits.max_body_size || raw > 2 * cfg.limits.max_body_size + 65536) {
        co_await reply_and_close(http::status::payload_too_large, "request body too large");
        co_return ReadResult::closed;
      }
      if (chunks.done()) break;
      if (!co_await read_more(65536)) co_return ReadResult::closed;
    }
    append_body(view(buffer_).substr(head_size, payload));
  }
  stop_waiting();
  req.body = std::string_view(req.bytes).substr(head_size);
  buffer_.consume(head_size + raw);
  // A large body once does not keep its buffer for the connection's life.
  if (buffer_.size() == 0 && buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
  co_return ReadResult::request;
}

net::awaitable<bool> Connection::handle(Exchange& ex) {
  Shared& shared = worker_.shared();
  const Config& cfg = *ex.cfg;
  const bool is_post = ex.req.method() == "POST";
  ex.route = classify_request(ex.req.get(kSessionHeader), ex.req.target(), ex.req.body, is_post);

  switch (ex.route.cls) {
    case RequestClass::malformed_session_id:
      co_return co_await reply_jsonrpc_error(ex, http::status::bad_request, -32600,
                                             "Invalid Mcp-Session-Id: 1-256 visible ASCII characters expected");
    case RequestClass::session: {
      bool refreshed = false;
      ex.rec = shared.table.find(ex.route.session_id, std::chrono::steady_clock::now(), &refreshed);
      RedisStore* store = worker_.store();
      if (ex.rec) {
        // The hot path: routed from the local table, no network round trip.
        shared.metrics.cache_hits.fetch_add(1, std::memory_order_relaxed);
        if (refreshed && store != nullptr) store->touch(ex.route.session_id);
      } else {
        shared.metrics.cache_misses.fetch_add(1, std::memory_order_relaxed);
        if (store != nullptr) {
          // Created through another proxy replica, or before this process restarted.
          const auto found = co_await store->get(ex.route.session_id);
          if (found.record) {
            cache_session(ex.route.session_id, *found.record);
            ex.rec = found.record;
          }
        } else {
          shared.metrics.count_store(StoreOp::get, StoreResult::miss);
        }
        if (!ex.rec) co_return co_await reply_jsonrpc_error(ex, http::status::not_found, -32001, "Session not found");
      }
      ex.ordinal = ex.rec->ordinal;
      if (ex.rec->ordinal >= cfg.backend.replicas) {
        // The StatefulSet was scaled down below this session's pod: it is gone.
        co_return co_await session_lost(ex, true);
      }
      break;
    }
    case RequestClass::new_session:
    case RequestClass::sessionless: {
      ex.ordinal = place_new(cfg);
      break;
    }
  }
  co_return co_await forward(ex);
}

int Connection::place_new(const Config& cfg, int avoid) {
  Shared& shared = worker_.shared();
  const auto now = std::chrono::steady_clock::now();
  return place(
      placement_policy(cfg.placement), cfg.backend.replicas,
      [&](int o) { return (o != avoid || cfg.backend.replicas == 1) && shared.health.healthy(o, now); },
      [&](int o) { return shared.table.sessions_on(o); }, worker_.rng());
}

void Connection::append_upstream_head(std::string& out, const Exchange& ex) {
  const http1::Head& h = ex.req.head;
  const bool rewrite_host = ex.cfg->backend.rewrite_host;
  // After a re-initialize the pod knows the session by its own id; the client keeps its.
  const std::string* pod_session = nullptr;
  if (ex.rec && !ex.route.from_query && !ex.rec->backend_session.empty()) pod_session = &ex.rec->backend_session;
  std::optional<std::string_view> host;
  std::optional<std::string_view> forwarded_for;
  out.append(h.method);
  out += ' ';
  out.append(h.target);
  out += " HTTP/1.1\r\n"sv;
  FieldRuns runs(out, h);
  for (const http1::Field& f : h.fields) {
    if (dropped_hop(f, h) || http1::iequals(f.name, "Expect") || http1::iequals(f.name, "Content-Length") ||
        http1::iequals(f.name, "X-Forwarded-Host") || http1::iequals(f.name, "X-Forwarded-Proto")) {
      runs.drop(f);
      continue;
    }
    if (http1::iequals(f.name, "Host")) {
      if (!host) host = f.value;
      if (rewrite_host) {
        runs.drop(f);
        continue;
      }
    } else if (http1::iequals(f.name, "X-Forwarded-For")) {
      if (!forwarded_for) forwarded_for = f.value;
      runs.drop(f);
      continue;
    } else if (http1::iequals(f.name, kSessionHeader)) {
      if (ex.route.drop_session_header) {
        runs.drop(f);
        continue;
      }
      if (pod_session != nullptr) {
        runs.drop(f);
        append_field(out, kSessionHeader, *pod_session);
        continue;
      }
    }
    runs.keep(f);
  }
  runs.finish();
  if (rewrite_host || !host) append_field(out, "Host", worker_.pool().address(ex.ordinal).authority);
  if (host) append_field(out, "X-Forwarded-Host", *host);
  out += "X-Forwarded-For: "sv;
  if (forwarded_for) {
    out.append(*forwarded_for);
    out += ", "sv;
  }
  out += peer_ip_;
  out += "\r\nX-Forwarded-Proto: http\r\n"sv;
  const auto method = h.method;
  if (!ex.req.body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    std::array<char, 24> n{};
    const auto [end, ec] = std::to_chars(n.data(), n.data() + n.size(), ex.req.body.size());
    append_field(out, "Content-Length", std::string_view(n.data(), static_cast<std::size_t>(end - n.data())));
  }
  out += "\r\n"sv;
}

void Connection::append_client_head(std::string& out, const Exchange& ex, const http1::Head& res, bool chunked) {
  const bool http11 = ex.req.version() >= 11;
  out += http11 ? "HTTP/1.1 "sv : "HTTP/1.0 "sv;
  std::array<char, 8> code{};
  const auto [end, ec] = std::to_chars(code.data(), code.data() + code.size(), res.status);
  out.append(code.data(), end);
  out += ' ';
  if (res.reason.empty()) {
    const auto reason = http::obsolete_reason(http::int_to_status(res.status));
    out.append(reason.data(), reason.size());
  } else {
    out.append(res.reason);
  }
  out += "\r\n"sv;
  // The client keeps the id it knows when the pod now knows the session by another.
  const bool client_id = ex.route.cls == RequestClass::session && ex.rec && !ex.rec->backend_session.empty();
  FieldRuns runs(out, res);
  for (const http1::Field& f : res.fields) {
    if (dropped_hop(f, res)) {
      runs.drop(f);
    } else if (client_id && http1::iequals(f.name, kSessionHeader)) {
      runs.drop(f);
      append_field(out, kSessionHeader, ex.route.session_id);
    } else {
      runs.keep(f);
    }
  }
  runs.finish();
  if (chunked) out += "Transfer-Encoding: chunked\r\n"sv;
  if (http11 && !ex.keep_alive) out += "Connection: close\r\n"sv;
  if (!http11 && ex.keep_alive) out += "Connection: keep-alive\r\n"sv;
  out += "\r\n"sv;
}

bool Connection::can_reestablish(const Exchange& ex) const {
  return ex.cfg->sessions.on_lost == "reinitialize" && ex.rec && !ex.rec->init.empty() && !ex.route.from_query &&
         ex.req.method() != "DELETE";
}

net::awaitable<bool> Connection::session_lost(Exchange& ex, bool may_recover) {
  Shared& shared = worker_.shared();
  if (RedisStore* store = worker_.store(); store != nullptr && may_recover) {
    // Another proxy replica may have moved the session already: its record wins over
    // this process's cached copy, and no second re-initialize happens.
    const auto current = co_await store->get(ex.route.session_id);
    if (current.record &&
        (current.record->ordinal != ex.rec->ordinal || current.record->backend_session != ex.rec->backend_session) &&
        current.record->ordinal < ex.cfg->backend.replicas) {
      cache_session(ex.route.session_id, *current.record);
      ex.rec = current.record;
      ex.ordinal = current.record->ordinal;
      co_return co_await forward(ex, /*may_recover=*/false);
    }
    // The local copy leaves the initialize body in Redis; the re-initialize needs it.
    if (current.record) ex.rec = current.record;
  }
  shared.metrics.sessions_lost.fetch_add(1, std::memory_order_relaxed);
  if (may_recover && can_reestablish(ex) && co_await reestablish(ex)) {
    co_return co_await forward(ex, /*may_recover=*/false);
  }
  co_await forget_session(ex.route.session_id);
  co_return co_await reply_jsonrpc_error(ex, http::status::not_found, -32001, "Session not found");
}

net::awaitable<void> Connection::record_new_session(const std::string& id, SessionRecord rec) {
  // In the local table first (routing never waits for Redis), then in Redis before the
  // response head goes downstream, so the next request may land on another replica.
  Shared& shared = worker_.shared();
  cache_session(id, rec);
  shared.metrics.sessions_created.fetch_add(1, std::memory_order_relaxed);
  if (RedisStore* store = worker_.store()) {
    if (auto winner = co_await store->create(id, rec)) {
      log_event(spdlog::level::err, "session id already recorded by another writer; the first record wins",
                {{"session", session_hash(id)},
                 {"ours", std::to_string(rec.ordinal)},
                 {"theirs", std::to_string(winner->ordinal)}});
      cache_session(id, std::move(*winner));
    }
  } else {
    shared.metrics.count_store(StoreOp::set, StoreResult::ok);
  }
}

void Connection::cache_session(const std::string& id, SessionRecord rec) {
  // The local table keeps what routing needs. The pod URL follows from the ordinal; with
  // the redis store the initialize body stays in Redis (read back on the rare re-initialize).
  // About 250 bytes a session fewer (bench/bench.py measures the RSS per session).
  rec.url = std::string();
  if (worker_.store() != nullptr) rec.init = std::string();
  worker_.shared().table.insert(id, std::move(rec));
}

net::awaitable<void> Connection::forget_session(const std::string& id) {
  Shared& shared = worker_.shared();
  const bool was_there = shared.table.erase(id);
  if (RedisStore* store = worker_.store()) {
    co_await store->remove(id);
  } else if (was_there) {
    shared.metrics.count_store(StoreOp::del, StoreResult::ok);
  }
}

net::awaitable<bool> Connection::reestablish(Exchange& ex) {
  Shared& shared = worker_.shared();
  const Config& cfg = *ex.cfg;
  UpstreamPool& pool = worker_.pool();
  const int lost_on = ex.rec->ordinal;
  const int ordinal = place_new(cfg, /*avoid=*/lost_on);
  auto fail = [&](std::string_view why) {
    log_event(spdlog::level::warn, "session could not be re-established",
              {{"conn", std::to_string(id_)},
               {"session", session_label(ex)},
               {"pod", std::to_string(ordinal)},
               {"reason", std::string(why)}});
    return false;
  };
  const std::string target(ex.req.target().substr(0, ex.req.target().find('?')));
  const auto protocol_version = ex.req.get("MCP-Protocol-Version");
  std::unique_ptr<tcp::socket> up;
  // One exchange with the new pod, on a pooled or new connection; the answer is read whole
  // (an initialize answer is small, and an SSE answer to it ends after the result).
  auto exchange = [&](std::string body,
                      const std::string& session) -> net::awaitable<http::response<http::string_body>> {
    http::response<http::string_body> res;
    if (!up) {
      auto lease = co_await pool.acquire(ordinal);
      if (lease.ec) {
        shared.health.eject(ordinal, std::chrono::steady_clock::now() + cfg.backend.eject_cooldown);
        co_return res;
      }
      up = std::move(lease.stream);
    }
    http::request<http::string_body> req{http::verb::post, target, 11};
    req.set(http::field::host, pool.address(ordinal).authority);
    req.set(http::field::content_type, "application/json");
    req.set(http::field::accept, "application/json, text/event-stream");
    if (!session.empty()) req.set(kSessionHeader, session);
    if (protocol_version) req.set("MCP-Protocol-Version", std::string(*protocol_version));
    req.body() = std::move(body);
    req.prepare_payload();
    expect_within(Wait::upstream, cfg.backend.response_timeout, up.get());
    auto [wec, wn] = co_await http::async_write(*up, req, use_tuple);
    if (wec) {
      stop_waiting();
      up.reset();
      co_return res;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(cfg.limits.max_body_size);
    beast::flat_buffer buf;
    auto [rec, rn] = co_await http::async_read(*up, buf, parser, use_tuple);
    stop_waiting();
    if (rec) {
      up.reset();
      co_return res;
    }
    res = parser.release();
    if (!res.keep_alive()) up.reset();
    co_return res;
  };
  auto init = co_await exchange(ex.rec->init, "");
  const auto sid = header(init, kSessionHeader);
  if (init.result_int() / 100 != 2 || !sid || !valid_session_id(*sid)) co_return fail("initialize refused");
  const std::string backend_session(*sid);
  auto initialized = co_await exchange(R"({"jsonrpc":"2.0","method":"notifications/initialized"})", backend_session);
  if (initialized.result_int() / 100 != 2) co_return fail("notifications/initialized refused");
  if (up) pool.release(ordinal, std::move(up));

  SessionRecord rec = *ex.rec;
  rec.ordinal = ordinal;
  rec.url = pool.address(ordinal).url;
  rec.backend_session = backend_session == ex.route.session_id ? std::string() : backend_session;
  cache_session(ex.route.session_id, rec);
  if (RedisStore* store = worker_.store()) {
    co_await store->update(ex.route.session_id, rec);
  } else {
    shared.metrics.count_store(StoreOp::set, StoreResult::ok);
  }
  ex.rec = std::make_shared<const SessionRecord>(std::move(rec));
  ex.ordinal = ordinal;
  shared.metrics.sessions_recovered.fetch_add(1, std::memory_order_relaxed);
  log_event(spdlog::level::info, "session re-established",
            {{"conn", std::to_string(id_)},
             {"session", session_label(ex)},
             {"from_pod", std::to_string(lost_on)},
             {"to_pod", std::to_string(ordinal)}});
  co_return true;
}

net::awaitable<bool> Connection::forward(Exchange& ex, bool may_recover) {
  Shared& shared = worker_.shared();
  const Config& cfg = *ex.cfg;
  UpstreamPool& pool = worker_.pool();
  const bool placed = ex.route.cls != RequestClass::session;
  const std::size_t head_limit = cfg.backend.max_response_header_size;
  http1::Head& res = response_;

  // Connect, send, read the response head. A placed request whose pod fails before it
  // answered is placed again once; a request on a reused connection that the pod had
  // closed is sent again on a fresh one (nothing reached the pod).
  std::unique_ptr<tcp::socket> up;
  const int attempts = placed ? std::min(2, cfg.backend.replicas) : 1;
  bool fresh_retry_used = false;
  std::chrono::steady_clock::time_point sent_at;
  for (int attempt = 0;;) {
    auto lease = co_await pool.acquire(ex.ordinal);
    if (lease.ec) {
      shared.metrics.count_upstream_error(
          ex.ordinal, lease.ec == beast::error::timeout ? UpstreamError::timeout : UpstreamError::connect);
      shared.health.eject(ex.ordinal, std::chrono::steady_clock::now() + cfg.backend.eject_cooldown);
      log_event(spdlog::level::warn, "pod unreachable",
                {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}, {"error", lease.ec.message()}});
      if (++attempt < attempts) {
        ex.ordinal = place_new(cfg);  // the failed pod is ejected now, so placement skips it
        continue;
      }
      // The session's pod cannot be reached: the session is lost with it.
      if (!placed) co_return co_await session_lost(ex, may_recover);
      co_return co_await reply_jsonrpc_error(ex, http::status::bad_gateway, -32603, "MCP server unreachable");
    }
    up = std::move(lease.stream);
    sent_at = std::chrono::steady_clock::now();
    upstream_buffer_.clear();

    expect_within(Wait::upstream, cfg.backend.response_timeout, up.get());
    auto watch = std::make_shared<Watch>();
    watch->started_tick = worker_.tick();
    watch->upstream = up.get();
    watch_ = watch;  // armed by the worker's watch tick if the exchange outlasts it
    head_buffer_.clear();
    append_upstream_head(head_buffer_, ex);
    const std::array<net::const_buffer, 2> request_bytes = {net::buffer(head_buffer_),
                                                            net::buffer(ex.req.body.data(), ex.req.body.size())};
    auto [wec, wn] = co_await net::async_write(*up, request_bytes, use_tuple);
    error_code ec = wec;
    bool malformed = false;
    while (!ec) {
      const auto st = http1::parse_response(view(upstream_buffer_), head_limit, ex.req.method(), res);
      if (st == http1::Status::complete && res.status >= 100 && res.status < 200 && res.status != 101) {
        upstream_buffer_.consume(res.size);  // an interim response (103 Early Hints): not relayed
        continue;
      }
      if (st == http1::Status::complete && res.status != 101) break;
      if (st != http1::Status::need_more) {
        malformed = true;
        break;
      }
      auto [rec, rn] = co_await up->async_read_some(upstream_buffer_.prepare(8192), use_tuple);
      ec = rec;
      if (!ec) upstream_buffer_.commit(rn);
    }
    stop_waiting();
    if (!ec && !malformed) break;
    finish_watch(watch);
    if (watch->client_gone || closed_) {
      shared.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
      ex.status = 499;
      co_return false;
    }
    const bool nothing_received = upstream_buffer_.size() == 0;
    if (lease.reused && !fresh_retry_used && nothing_received &&
        (ec == net::error::eof || ec == net::error::connection_reset || ec == net::error::broken_pipe)) {
      fresh_retry_used = true;  // the pod closed a pooled connection: not an attempt
      continue;
    }
    const bool timed_out = expired(Wait::upstream);
    shared.metrics.count_upstream_error(ex.ordinal, timed_out ? UpstreamError::timeout : UpstreamError::io);
    log_event(spdlog::level::warn,
              timed_out ? "pod response timed out"
                        : (malformed ? "pod sent a malformed response head" : "pod exchange failed"),
              {{"conn", std::to_string(id_)},
               {"pod", std::to_string(ex.ordinal)},
               {"error", malformed ? std::string("malformed") : ec.message()}});
    co_return co_await reply_jsonrpc_error(ex, timed_out ? http::status::gateway_timeout : http::status::bad_gateway,
                                           -32603,
                                           timed_out ? "MCP server did not answer in time" : "MCP server failed");
  }
  shared.health.clear(ex.ordinal);
  shared.metrics.upstream_duration(ex.ordinal)
      .observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - sent_at).count());

  ex.status = res.status;
  const bool ok = ex.status >= 200 && ex.status < 300;

  // Session bookkeeping happens before the head goes downstream, so the client's next
  // request finds the record (DESIGN.md step 4).
  bool legacy_stream = false;
  if (const auto sid = res.get(kSessionHeader); sid && ex.route.cls == RequestClass::new_session) {
    if (!valid_session_id(*sid)) {
      finish_watch(watch_);
      log_event(spdlog::level::warn, "pod sent an invalid Mcp-Session-Id",
                {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}});
      co_return co_await reply_jsonrpc_error(ex, http::status::bad_gateway, -32603,
                                             "MCP server sent an invalid session id");
    }
    const std::string id(*sid);
    SessionRecord rec;
    rec.ordinal = ex.ordinal;
    rec.url = pool.address(ex.ordinal).url;
    rec.init = ex.req.body;
    rec.created = static_cast<std::int64_t>(std::time(nullptr));
    co_await record_new_session(id, std::move(rec));
    ex.session_for_log = session_hash(id);
  }
  if (ex.route.cls == RequestClass::session) {
    const bool is_delete = ex.req.method() == "DELETE";
    if (ex.status == 404 && may_recover && can_reestablish(ex)) {
      // The pod no longer knows the session (it restarted, or dropped it): the pod's 404
      // is not relayed; the session moves to a new pod and the request is replayed there.
      finish_watch(watch_);
      watch_.reset();
      up.reset();
      co_return co_await session_lost(ex, true);
    }
    if (ex.status == 404 || (is_delete && ok)) {
      // DELETE ended it, or the pod no longer knows it: either way the record goes.
      (is_delete && ok ? shared.metrics.sessions_deleted : shared.metrics.sessions_lost)
          .fetch_add(1, std::memory_order_relaxed);
      co_await forget_session(ex.route.session_id);
    }
  } else if (ex.route.cls == RequestClass::sessionless && ex.req.method() == "GET" && ok &&
             ex.req.target().starts_with(cfg.legacy_sse_path)) {
    const auto target = ex.req.target();
    const auto path_end = target.find('?');
    legacy_stream = target.substr(0, path_end) == cfg.legacy_sse_path;
  }

  const auto content_type = res.get("Content-Type");
  const bool sse = content_type && starts_with_ci(*content_type, "text/event-stream");
  const bool upstream_keep_alive = res.keep_alive;
  const bool client_http11 = ex.req.version() >= 11;
  if (shared.draining.load(std::memory_order_relaxed)) ex.keep_alive = false;
  // A body whose end the pod marks by chunks or by closing goes to the client in chunks
  // (HTTP/1.1), or ends with the client's connection (HTTP/1.0).
  const bool open_ended = res.framing == http1::Framing::chunked || res.framing == http1::Framing::close;
  const bool chunked = open_ended && client_http11;
  if (open_ended && !client_http11) ex.keep_alive = false;
  const bool is_get = ex.req.method() == "GET";

  if (sse) {
    shared.metrics.sse_streams.fetch_add(1, std::memory_order_relaxed);
    // A stream may stay open for hours: it keeps no request-sized read buffer meanwhile.
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
    // A GET stream (the standalone stream, the legacy transport) never ends by itself: the
    // drain does not wait for it, it closes it at the end. A POST answered with SSE is a
    // call in progress, and the drain waits for its result like any other request.
    if (is_get) set_in_flight(false);
  }
  struct SseGauge {
    Metrics& m;
    bool on;
    ~SseGauge() {
      if (on) m.sse_streams.fetch_sub(1, std::memory_order_relaxed);
    }
  } sse_gauge{shared.metrics, sse};

  // Relay: the head, then every chunk as it arrives (read_some: never wait to fill a buffer).
  // When body bytes came with the head (a small JSON answer, usually) the head goes out
  // with the first chunk in one write; otherwise it goes out at once, so an SSE client
  // sees its stream open before the first event.
  head_buffer_.clear();
  append_client_head(head_buffer_, ex, res, chunked);
  upstream_buffer_.consume(res.size);  // the head's views are not used past this point
  BodyFraming body(res);
  bool head_sent = false;
  bool client_failed = false;
  // One gathered write: [head] [chunk size] [data] [CRLF] [last chunk]; unused parts are empty.
  auto write_out = [&](std::string_view data, bool last) -> net::awaitable<bool> {
    std::array<char, 20> size_line{};
    std::array<net::const_buffer, 5> out{};
    if (!head_sent) out[0] = net::buffer(head_buffer_);
    if (!data.empty()) {
      if (chunked) {
        const int n = std::snprintf(size_line.data(), size_line.size(), "%zx\r\n", data.size());
        out[1] = net::buffer(size_line.data(), static_cast<std::size_t>(n));
        out[3] = net::buffer("\r\n", 2);
      }
      out[2] = net::buffer(data.data(), data.size());
    }
    if (last && chunked) out[4] = net::buffer("0\r\n\r\n", 5);
    head_sent = true;
    expect_within(Wait::write, cfg.limits.write_timeout);
    auto [wec, wn] = co_await net::async_write(socket_, out, use_tuple);
    stop_waiting();
    co_return !wec;
  };
  if (upstream_buffer_.size() == 0 && !body.done) client_failed = !co_await write_out({}, false);
  bool upstream_failed = false;
  std::optional<SseEndpointScanner> scanner;
  std::string legacy_id;
  if (legacy_stream) scanner.emplace();
  const bool rewrite_endpoint = legacy_stream && !cfg.legacy_endpoint_prefix.empty();
  std::string held;  // the stream's first bytes while the endpoint event is rewritten
  // The relay buffer is lent by the worker. A GET stream waiting for its next event holds
  // none: it waits for the pod's socket to turn readable first, so ten thousand idle
  // streams cost ten thousand sockets, not ten thousand buffers.
  const std::size_t relay_size = cfg.limits.relay_buffer_size;
  // GET streams (the standalone stream, the legacy stream) idle for minutes; an SSE answer
  // to a POST is a call in progress whose events come soon: it reads directly, one wakeup
  // less per event.
  const bool long_lived = sse && is_get;
  while (!client_failed) {
    std::string_view data;
    if (!body.done) {
      char* bytes = nullptr;
      std::size_t got = 0;
      if (upstream_buffer_.size() > 0) {
        // Body bytes that came with the head: used where they are.
        bytes = static_cast<char*>(upstream_buffer_.data().data());
        got = upstream_buffer_.size();
        upstream_buffer_.consume(got);
      } else {
        if (long_lived) {
          release_relay_buffer();
          if (upstream_buffer_.capacity() != 0) upstream_buffer_.shrink_to_fit();  // the head's buffer
          auto [rec_ec] = co_await up->async_wait(tcp::socket::wait_read, use_tuple);
          if (rec_ec) {
            upstream_failed = true;
            break;
          }
        }
        if (!relay_buffer_) {
          relay_buffer_ = worker_.take_relay_buffer(relay_size);
          relay_buffer_size_ = relay_size;
        }
        // SSE is never cut by a timeout: only by either side closing.
        if (!sse) expect_within(Wait::upstream, cfg.backend.response_timeout, up.get());
        auto [rec_ec, rn] = co_await up->async_read_some(net::buffer(relay_buffer_.get(), relay_size), use_tuple);
        stop_waiting();
        if (rec_ec == net::error::eof && body.framing == http1::Framing::close) {
          body.done = true;  // the end of a body that ends with the connection
        } else if (rec_ec) {
          upstream_failed = true;
          if (expired(Wait::upstream) || (!watch_->client_gone && !closed_ && !harmless(rec_ec))) {
            log_event(spdlog::level::warn, "pod response cut short",
                      {{"conn", std::to_string(id_)},
                       {"pod", std::to_string(ex.ordinal)},
                       {"error", expired(Wait::upstream) ? std::string("timeout") : rec_ec.message()}});
          }
          break;
        }
        bytes = relay_buffer_.get();
        got = rn;
      }
      const std::size_t payload = body.take(bytes, got);
      if (body.error) {
        upstream_failed = true;
        log_event(spdlog::level::warn, "pod sent a malformed chunked body",
                  {{"conn", std::to_string(id_)}, {"pod", std::to_string(ex.ordinal)}});
        break;
      }
      data = std::string_view(bytes, payload);
      if (scanner && payload > 0) {
        const bool was_scanning = !scanner->done();
        if (rewrite_endpoint && was_scanning) held.append(data);
        if (auto id = scanner->feed(data)) {
          SessionRecord rec2;
          rec2.ordinal = ex.ordinal;
          rec2.url = pool.address(ex.ordinal).url;
          rec2.created = static_cast<std::int64_t>(std::time(nullptr));
          co_await record_new_session(*id, std::move(rec2));
          ex.session_for_log = session_hash(*id);
          legacy_id = *id;
        }
        if (rewrite_endpoint && was_scanning) {
          // Held back until the endpoint event is complete, then sent with the prefix.
          if (!scanner->done() && !body.done) continue;
          held = prefix_legacy_endpoint(std::move(held), cfg.legacy_endpoint_prefix);
          data = held;
        }
      }
      if (data.empty() && !body.done) continue;
    }
    const bool last = body.done;
    if (!co_await write_out(data, last)) client_failed = true;
    if (last) break;
  }
  stop_waiting();
  release_relay_buffer();
  finish_watch(watch_);
  const bool client_gone = client_failed || watch_->client_gone || closed_;
  watch_.reset();
  if (!legacy_id.empty()) {
    // The legacy transport's session lives exactly as long as its GET stream.
    shared.metrics.sessions_deleted.fetch_add(1, std::memory_order_relaxed);
    co_await forget_session(legacy_id);
  }
  if (client_gone) {
    shared.metrics.client_aborts.fetch_add(1, std::memory_order_relaxed);
    co_return false;  // `up` closes here: a client that left cancels the pod's exchange
  }
  if (upstream_failed) co_return false;  // the client saw a cut body: it must not reuse the connection
  // Bytes past the body (after a 204, say) mean the pod and the proxy disagree on framing.
  if (body.done && upstream_keep_alive && !body.extra && upstream_buffer_.size() == 0 &&
      body.framing != http1::Framing::close) {
    pool.release(ex.ordinal, std::move(up));
  }
  co_return ex.keep_alive;
}

void Connection::watch_client(const std::shared_ptr<Watch>& watch) {
  // While the pod works, the only way to learn that the client left is to watch its socket.
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this(), watch](error_code ec) {
    if (ec || watch->done) return;
    char c = 0;
    const ssize_t n = ::recv(self->socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) return;  // a pipelined request: keep going
    watch->client_gone = true;
    if (watch->upstream != nullptr) {
      error_code ignored;
      watch->upstream->cancel(ignored);
    }
  });
}

void Connection::expect_within(Wait what, duration limit, tcp::socket* upstream) {
  waiting_ = what;
  deadline_upstream_ = upstream;
  expired_ = Wait::none;
  // Never early: the tick that fires is at least `limit` after now.
  deadline_tick_ = worker_.tick() + static_cast<std::uint64_t>((limit.count() + kTickMs - 1) / kTickMs) + 1;
}

void Connection::on_tick(std::uint64_t tick) {
  if (waiting_ != Wait::none && tick >= deadline_tick_) {
    // What Beast's stream did on a deadline: the socket closes, the pending operation
    // fails, and the coroutine reads `expired_` to tell a timeout from a peer's close.
    expired_ = waiting_;
    waiting_ = Wait::none;
    error_code ignored;
    if (expired_ == Wait::upstream) {
      if (deadline_upstream_ != nullptr) deadline_upstream_->close(ignored);
    } else {
      socket_.close(ignored);
    }
  }
  // A client that leaves during a long exchange is watched for from the second tick on.
  if (watch_ && !watch_->done && !watch_->armed && tick >= watch_->started_tick + 2) {
    watch_->armed = true;
    watch_client(watch_);
  }
}

void Connection::finish_watch(const std::shared_ptr<Watch>& watch) {
  if (!watch || watch->done) return;
  watch->done = true;
  watch->upstream = nullptr;
  if (watch->armed) {
    error_code ignored;
    socket_.cancel(ignored);
  }
}

net::awaitable<bool> Connection::reply(Exchange& ex, http::status status, std::string body,
                                       std::string_view content_type) {
  ex.status = static_cast<unsigned>(status);
  if (worker_.shared().draining.load(std::memory_order_relaxed)) ex.keep_alive = false;
  http::response<http::string_body> res{status, ex.req.version() >= 11 ? 11 : 10};
  res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.keep_alive(ex.keep_alive);
  res.prepare_payload();
  expect_within(Wait::write, ex.cfg->limits.write_timeout);
  auto [ec, n] = co_await http::async_write(socket_, res, use_tuple);
  stop_waiting();
  co_return !ec && ex.keep_alive;
}

net::awaitable<bool> Connection::reply_jsonrpc_error(Exchange& ex, http::status status, int code,
                                                     std::string_view message) {
  // The request's id is echoed so the client can match the error to its call.
  const JsonRpcInfo info = inspect_jsonrpc(ex.req.body);
  co_return co_await reply(ex, status, jsonrpc_error_body(code, message, info.id_json));
}

net::awaitable<void> Connection::reply_and_close(http::status status, std::string_view message) {
  http::response<http::string_body> res{status, 11};
  res.set(http::field::content_type, "application/json");
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
  worker_.shared().metrics.count_request(MethodClass::other, static_cast<unsigned>(status));
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

void Connection::log_access(const Exchange& ex) {
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
             {"duration_ms", std::to_string(static_cast<double>(micros) / 1000.0)},
             {"session", session_label(ex)}});
}

}  // namespace mcpproxy
