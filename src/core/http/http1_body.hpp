#pragma once
// HTTP/1.x body framing for the data plane (RFC 9112 6, 7): where a body ends, by its
// Content-Length, its chunks or the connection's end; chunks decoded in place as they
// arrive, with no I/O and no allocation.

#include <cstddef>
#include <cstdint>

#include "core/http/http1_head.hpp"

namespace mcpproxy::http1 {

// Decodes a chunked body as it arrives, in place: the payload of `n` input bytes is moved to
// `out` (which may equal `in`; it never runs ahead of the input). Chunk extensions and
// trailers are read and dropped.
class ChunkedDecoder {
 public:
  struct Result {
    std::size_t payload = 0;   // bytes written to out
    std::size_t consumed = 0;  // input bytes used; less than n only when the body ended
    bool error = false;
    bool too_large = false;  // with error: a chunk size of 2^60 bytes or more
  };
  Result decode(char* out, const char* in, std::size_t n);
  bool done() const { return state_ == State::done; }
  // What the chunk being read still declares (0 between chunks): a bound is checked on a
  // chunk's declared size, before its bytes arrive.
  std::uint64_t pending() const { return state_ == State::data ? remaining_ : 0; }

 private:
  enum class State {
    size,
    extension,
    size_lf,
    data,
    data_cr,
    data_lf,
    trailer,
    trailer_lf,
    trailer_start,
    last_lf,
    done
  };
  // One byte of the framing around the data (every state but data and done); false when
  // the state does not allow it.
  bool step(char c, Result& r);

  State state_ = State::size;
  std::uint64_t remaining_ = 0;
  int size_digits_ = 0;  // significant digits of the size being read
  bool digits_seen_ = false;
};

// How much of a response body has been seen, and where it ends (RFC 9112 6). Fed the bytes
// that follow the head as they arrive; chunk framing is removed in place.
struct BodyFraming {
  Framing framing = Framing::none;
  std::uint64_t remaining = 0;  // Content-Length bytes not yet seen
  ChunkedDecoder chunks;
  bool done = false;
  bool error = false;
  bool extra = false;  // bytes past the end of the body: the connection is not reused

  explicit BodyFraming(const Head& res)
      : framing(res.framing),
        remaining(res.content_length),
        done(res.framing == Framing::none || (res.framing == Framing::length && res.content_length == 0)) {}

  // The payload of `n` bytes at `p`, moved to the front of `p`; returns its size.
  std::size_t take(char* p, std::size_t n);
};

// The value of one hex digit (either case), -1 for anything else: chunk sizes, and
// percent-decoding (http_rules).
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace mcpproxy::http1
