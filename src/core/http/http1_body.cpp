#include "core/http/http1_body.hpp"

#include <algorithm>
#include <cstring>

namespace mcpproxy::http1 {

// Exempt from the complexity bound: a byte-driven state machine, one case per state. Inlined
// into decode, as it was written in it: it runs for every byte of the framing.
// NOLINTNEXTLINE(readability-function-cognitive-complexity)
[[gnu::always_inline]] inline bool ChunkedDecoder::step(char c, Result& r) {
  switch (state_) {
    case State::size: {
      const int v = hex_value(c);
      if (v >= 0) {
        // Leading zeros are allowed; 16 significant digits are 2^60 bytes or more.
        digits_seen_ = true;
        if (remaining_ != 0 || v != 0) ++size_digits_;
        if (size_digits_ > 15) {
          r.too_large = true;
          return false;
        }
        remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(v);
      } else if (digits_seen_ && (c == ';' || c == ' ' || c == '\t')) {
        state_ = State::extension;
      } else if (digits_seen_ && c == '\r') {
        state_ = State::size_lf;
      } else {
        return false;
      }
      return true;
    }
    case State::extension:
      if (c == '\r') state_ = State::size_lf;
      return c != '\n';
    case State::size_lf:
      if (c != '\n') return false;
      size_digits_ = 0;
      digits_seen_ = false;
      state_ = remaining_ == 0 ? State::trailer_start : State::data;
      return true;
    case State::data_cr:
      if (c != '\r') return false;
      state_ = State::data_lf;
      return true;
    case State::data_lf:
      if (c != '\n') return false;
      state_ = State::size;
      return true;
    case State::trailer_start:
      state_ = c == '\r' ? State::last_lf : State::trailer;
      return c != '\n';
    case State::trailer:
      if (c == '\r') state_ = State::trailer_lf;
      return c != '\n';
    case State::trailer_lf:
      if (c != '\n') return false;
      state_ = State::trailer_start;
      return true;
    case State::last_lf:
      if (c != '\n') return false;
      state_ = State::done;
      return true;
    case State::data:  // decode copies the data
    case State::done:
      break;
  }
  return true;
}

ChunkedDecoder::Result ChunkedDecoder::decode(char* out, const char* in, std::size_t n) {
  Result r;
  std::size_t i = 0;
  while (i < n && state_ != State::done) {
    if (state_ == State::data) {
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, n - i));
      std::memmove(out + r.payload, in + i, k);
      r.payload += k;
      i += k;
      remaining_ -= k;
      if (remaining_ == 0) state_ = State::data_cr;
      continue;
    }
    if (!step(in[i], r)) {
      r.error = true;
      break;
    }
    ++i;
  }
  r.consumed = i;
  return r;
}

std::size_t BodyFraming::take(char* p, std::size_t n) {
  switch (framing) {
    case Framing::length: {
      const auto k = static_cast<std::size_t>(std::min<std::uint64_t>(remaining, n));
      remaining -= k;
      done = remaining == 0;
      extra = extra || k < n;
      return k;
    }
    case Framing::chunked: {
      const auto r = chunks.decode(p, p, n);
      error = r.error;
      done = chunks.done();
      extra = extra || r.consumed < n;
      return r.payload;
    }
    case Framing::close:
      return n;
    case Framing::none:
      extra = extra || n > 0;
      return 0;
  }
  return 0;
}

}  // namespace mcpproxy::http1
