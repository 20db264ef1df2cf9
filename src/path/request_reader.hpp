#pragma once
// Stage: reading a request from the client (bounded; deadlines on the worker's tick). A
// request whose every byte is in the read buffer is read there, no copy (the rule); the
// rest is read by a coroutine: a head in pieces is scanned for its end only in the bytes
// each read adds and parsed once whole, a body is read as it arrives under the worker's
// budget of request bodies (limits.max_worker_body_bytes). A request that cannot be read
// is refused: the refusal is a value (refused()), the driver answers it.

#include <cstdint>
#include <optional>
#include <string_view>

#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

class RequestReader {
 public:
  RequestReader(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}
  RequestReader(const RequestReader&) = delete;
  RequestReader& operator=(const RequestReader&) = delete;
  ~RequestReader() { release_body_bytes(); }  // the worker's counter outlives its io_context

  Request& request() { return request_; }
  // Bytes from the client not yet used (the idle wait reads into it).
  beast::flat_buffer& buffer() { return buffer_; }

  // What of a request the read buffer holds: all of it (read, no coroutine needed), or
  // not yet its whole head, or its head but not its whole body.
  enum class Buffered : std::uint8_t { request, need_head, need_body };
  Buffered take_buffered(const Config& cfg);
  // Reads the rest of a request (head and body): `refused` leaves the answer in refused().
  enum class Read : std::uint8_t { request, closed, refused };
  net::awaitable<Read> read(const Config& cfg, Buffered from);
  struct Refused {
    unsigned status = 0;
    std::string_view reason;
    unsigned retry_after = 0;
  };
  const Refused& refused() const { return refused_; }

  // A request read in place moves to its own copy (request().bytes), and the read buffer is
  // free: before anything frees or moves the buffer while the request lives.
  void own_request(Exchange& ex);
  // A stream may stay open for hours: it keeps no request-sized read buffer meanwhile.
  void free_buffer_if_empty() {
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
  }
  // After a request: its bytes in the read buffer given back, its budget released, large
  // buffers freed.
  void end_request();

 private:
  // A request whose every byte is in the read buffer is read in place; false when it is not
  // whole, then keep_head copies its head out.
  bool take_in_place(const Config& cfg);
  void keep_head();
  // True when the whole body is here already (or there is none): then the request is read.
  bool body_buffered(const Config& cfg);
  void end_of_request(std::size_t raw_body);
  net::awaitable<Read> read_head(const Config& cfg);
  net::awaitable<Read> read_body(const Config& cfg);
  // A body no bigger than its bounds and the worker's budget, else refused (nothing read).
  Read admit_body(const Config& cfg);
  // The client waits for "100 Continue" before it sends the body.
  bool wants_continue() const;
  // A Content-Length body, read to its end.
  net::awaitable<Read> read_length_body(const Config& cfg);
  // A chunked body decoded in place; `raw` is set to its bytes on the wire.
  net::awaitable<Read> read_chunked_body(const Config& cfg, std::size_t& raw);
  // Decodes what arrived of a chunked body: `request` when it is whole, `refused`, or
  // nothing when more must be read.
  std::optional<Read> decode_chunks(const Config& cfg, http1::ChunkedDecoder& chunks, std::size_t& payload,
                                    std::size_t& raw);
  net::awaitable<Read> read_more(std::size_t want);
  void append_body(std::string_view body);
  // The worker's budget of request bodies (limits.max_worker_body_bytes): this request holds
  // `total` bytes of it, or false when the worker has not that much left (nothing changes).
  // A body takes it as its bytes arrive, never ahead of them: heads alone take none.
  bool hold_body_bytes(std::size_t total, const Config& cfg);
  void release_body_bytes();
  Read refuse(unsigned status, std::string_view reason, unsigned retry_after = 0) {
    refused_ = {status, reason, retry_after};
    return Read::refused;
  }
  Read refuse_over_budget();  // 503 Retry-After, counted

  ConnectionContext& ctx_;
  ClientLink& client_;
  beast::flat_buffer buffer_;  // bytes from the client not yet used
  Request request_;
  std::size_t in_place_ = 0;   // bytes at the read buffer's start the request in progress is read from
  std::size_t body_held_ = 0;  // of ctx_.body_bytes
  Refused refused_;
};

}  // namespace mcpproxy
