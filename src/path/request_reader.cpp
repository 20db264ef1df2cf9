// Stage: reading a request from the client (request_reader.hpp).
#include "path/request_reader.hpp"

#include <boost/asio/write.hpp>

#include "core/telemetry/metrics.hpp"
#include "io/io_ring.hpp"

namespace mcpproxy {
namespace {
// A body not whole with its head is read in pieces that grow with what arrived, from this.
constexpr std::size_t kFirstBodyRead = 4096;
}  // namespace

RequestReader::Buffered RequestReader::take_buffered(const Config& cfg) {
  client_.expect_within(ClientLink::Wait::head, cfg.limits.header_timeout);
  if (http1::parse_request(view(buffer_), cfg.limits.max_header_size, request_.head) != http1::Status::complete) {
    return Buffered::need_head;
  }
  if (take_in_place(cfg)) return Buffered::request;
  keep_head();
  return body_buffered(cfg) ? Buffered::request : Buffered::need_body;
}

bool RequestReader::take_in_place(const Config& cfg) {
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
  client_.stop_waiting();
  req.body = view(buffer_).substr(req.head.size, length);
  in_place_ = req.head.size + length;
  return true;
}

void RequestReader::own_request(Exchange& ex) {
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

void RequestReader::end_request() {
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
}

net::awaitable<RequestReader::Read> RequestReader::read(const Config& cfg, Buffered from) {
  // (Results are named before they are compared: GCC 12 miscompiles a co_await inside the
  // condition of this coroutine.)
  if (from == Buffered::need_head) {
    const Read head = co_await read_head(cfg);
    if (head != Read::request) co_return head;
    keep_head();
    if (body_buffered(cfg)) co_return Read::request;
  }
  const Read body = co_await read_body(cfg);
  co_return body;
}

void RequestReader::keep_head() {
  // The exchange keeps its own copy of the head: the read buffer may move while the body
  // arrives, and is free for the next request as soon as this one is read.
  Request& req = request_;
  const char* const parsed_at = view(buffer_).data();
  req.bytes.clear();  // then an append: assign's general replace costs twice as much
  req.bytes.append(parsed_at, req.head.size);
  req.head.rebase(parsed_at, req.bytes.data());
}

bool RequestReader::body_buffered(const Config& cfg) {
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

void RequestReader::end_of_request(std::size_t raw_body) {
  client_.stop_waiting();
  Request& req = request_;
  req.body = std::string_view(req.bytes).substr(req.head.size);
  buffer_.consume(req.head.size + raw_body);
  // A large body once does not keep its buffer for the connection's life.
  if (buffer_.size() == 0 && buffer_.capacity() > 64 * 1024) buffer_.shrink_to_fit();
}

net::awaitable<RequestReader::Read> RequestReader::read_head(const Config& cfg) {
  // The head is parsed when it is whole: a head that arrives in pieces is scanned for its
  // end only in the bytes each read adds (a head trickled a few bytes at a time costs
  // linear time, not a parse from its start per read), then parsed once.
  http1::Status st = http1::parse_request(view(buffer_), cfg.limits.max_header_size, request_.head);
  std::size_t scanned = buffer_.size();
  while (st == http1::Status::need_more) {
    const std::size_t want = cfg.limits.max_header_size - buffer_.size() + 1;
    auto [ec, n] =
        co_await read_some(ctx_.ring, client_.socket(), buffer_.prepare(std::clamp<std::size_t>(want, 4096, 65536)));
    if (ec && client_.expired(ClientLink::Wait::head)) co_return refuse(408, "request head not received in time");
    if (ec) co_return Read::closed;  // the client left mid-head
    buffer_.commit(n);
    const std::string_view bytes = view(buffer_);
    const std::size_t from = scanned < 3 ? 0 : scanned - 3;  // the end may straddle two reads
    scanned = bytes.size();
    if (bytes.find("\r\n\r\n", from) == std::string_view::npos && bytes.size() <= cfg.limits.max_header_size) {
      continue;
    }
    st = http1::parse_request(bytes, cfg.limits.max_header_size, request_.head);
  }
  if (st == http1::Status::too_large) co_return refuse(431, "request head too large");
  if (st != http1::Status::complete) {
    co_return refuse(400, st == http1::Status::bad_framing ? "malformed request: body framing" : "malformed request");
  }
  co_return Read::request;
}

net::awaitable<RequestReader::Read> RequestReader::read_more(std::size_t want) {
  auto [ec, n] =
      co_await read_some(ctx_.ring, client_.socket(), buffer_.prepare(std::clamp<std::size_t>(want, 4096, 65536)));
  if (ec && client_.expired(ClientLink::Wait::body)) co_return refuse(408, "request body not received in time");
  if (ec) {
    if (!harmless(ec) && ec != net::error::eof) co_return refuse(400, "malformed request body");
    co_return Read::closed;
  }
  buffer_.commit(n);
  co_return Read::request;
}

bool RequestReader::hold_body_bytes(std::size_t total, const Config& cfg) {
  if (total <= body_held_) return true;
  const std::size_t more = total - body_held_;
  if (ctx_.body_bytes + more > cfg.limits.max_worker_body_bytes) return false;
  ctx_.body_bytes += more;
  body_held_ = total;
  ctx_.metrics.request_body_bytes.fetch_add(static_cast<std::int64_t>(more), std::memory_order_relaxed);
  return true;
}

void RequestReader::release_body_bytes() {
  if (body_held_ == 0) return;
  ctx_.body_bytes -= body_held_;
  ctx_.metrics.request_body_bytes.fetch_sub(static_cast<std::int64_t>(body_held_), std::memory_order_relaxed);
  body_held_ = 0;
}

RequestReader::Read RequestReader::refuse_over_budget() {
  ctx_.metrics.body_budget_refused.fetch_add(1, std::memory_order_relaxed);
  return refuse(503, "proxy busy: too many request bodies in flight", 1);
}

void RequestReader::append_body(std::string_view body) {
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

std::optional<RequestReader::Read> RequestReader::decode_chunks(const Config& cfg, http1::ChunkedDecoder& chunks,
                                                                std::size_t& payload, std::size_t& raw) {
  const std::size_t head_size = request_.head.size;
  // The bytes that arrived hold the budget (framing included), never those announced.
  if (!hold_body_bytes(buffer_.size() - head_size, cfg)) return refuse_over_budget();
  char* const base = static_cast<char*>(buffer_.data().data()) + head_size;
  const auto r = chunks.decode(base + payload, base + raw, buffer_.size() - head_size - raw);
  // A chunk declared past the bound is refused at its size line, not after its bytes.
  if (r.too_large || payload + r.payload + chunks.pending() > cfg.limits.max_body_size) {
    return refuse(413, "request body too large");
  }
  if (r.error) return refuse(400, "malformed request body");
  payload += r.payload;
  raw += r.consumed;
  // The framing may not cost more than the payload it carries, or 64 KiB.
  if (payload > cfg.limits.max_body_size || raw > 2 * cfg.limits.max_body_size + 65536) {
    return refuse(413, "request body too large");
  }
  if (chunks.done()) return Read::request;
  return std::nullopt;
}

net::awaitable<RequestReader::Read> RequestReader::read_chunked_body(const Config& cfg, std::size_t& raw) {
  const std::size_t head_size = request_.head.size;
  http1::ChunkedDecoder chunks;
  std::size_t payload = 0;
  for (;;) {
    const std::optional<Read> step = decode_chunks(cfg, chunks, payload, raw);
    if (step == Read::refused) co_return *step;
    if (step) break;
    const Read more = co_await read_more(std::max<std::size_t>(buffer_.size() - head_size, kFirstBodyRead));
    if (more != Read::request) co_return more;
  }
  append_body(view(buffer_).substr(head_size, payload));
  co_return Read::request;
}

net::awaitable<RequestReader::Read> RequestReader::read_length_body(const Config& cfg) {
  const std::size_t head_size = request_.head.size;
  const auto length = static_cast<std::size_t>(request_.head.content_length);
  // The budget is taken as the bytes arrive, never ahead of them: a head that declares a
  // large body and sends none of it holds none (heads alone cannot starve the others), and
  // what is read next grows with what came (the buffer ahead of the bytes is bounded too).
  for (;;) {
    const std::size_t arrived = std::min(buffer_.size() - head_size, length);
    if (!hold_body_bytes(arrived, cfg)) co_return refuse_over_budget();
    if (arrived == length) break;
    const Read more = co_await read_more(std::min(length - arrived, std::max(arrived, kFirstBodyRead)));
    if (more != Read::request) co_return more;
  }
  append_body(view(buffer_).substr(head_size, length));
  co_return Read::request;
}

RequestReader::Read RequestReader::admit_body(const Config& cfg) {
  const http1::Head& head = request_.head;
  if (head.framing == http1::Framing::length && head.content_length > cfg.limits.max_body_size) {
    return refuse(413, "request body too large");
  }
  // A body that cannot fit the worker's budget now is refused before it is read (and before
  // a client that waits for "100 Continue" sends it). Nothing is taken for it yet.
  if (head.framing == http1::Framing::length &&
      ctx_.body_bytes + head.content_length > cfg.limits.max_worker_body_bytes) {
    return refuse_over_budget();
  }
  return Read::request;
}

bool RequestReader::wants_continue() const {
  // A client that waits for "100 Continue" before sending its body gets it from us: the
  // body is read here, so the pod never sees the Expect header. An HTTP/1.0 client's
  // expectation is ignored (RFC 9110 10.1.1): it cannot read a 1xx answer.
  const http1::Head& head = request_.head;
  if (head.framing == http1::Framing::none || buffer_.size() != head.size || head.version < 11) return false;
  const auto expect = request_.get(http1::FieldId::expect);
  return expect && http1::starts_with_ci(*expect, "100-continue");
}

net::awaitable<RequestReader::Read> RequestReader::read_body(const Config& cfg) {
  const Read admitted = admit_body(cfg);
  if (admitted != Read::request) co_return admitted;
  if (wants_continue()) {
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    auto [ec, n] =
        co_await net::async_write(client_.socket(), net::buffer(kContinue.data(), kContinue.size()), use_tuple);
    if (ec) co_return Read::closed;
  }
  client_.expect_within(ClientLink::Wait::body, cfg.limits.body_timeout);
  std::size_t raw = 0;  // body bytes on the wire
  const auto framing = request_.head.framing;
  if (framing == http1::Framing::length) {
    const Read body = co_await read_length_body(cfg);
    if (body != Read::request) co_return body;
    raw = static_cast<std::size_t>(request_.head.content_length);
  } else if (framing == http1::Framing::chunked) {
    const Read body = co_await read_chunked_body(cfg, raw);
    if (body != Read::request) co_return body;
  }
  end_of_request(raw);
  co_return Read::request;
}

}  // namespace mcpproxy
