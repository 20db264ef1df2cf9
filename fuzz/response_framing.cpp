// A pod's answer: the response head parser and the body framing (length, chunked, close),
// fed in pieces whose sizes the input chooses.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/http1.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 64;  // the first byte: how the body arrives
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  mcpproxy::http1::Head head;
  const auto st = mcpproxy::http1::parse_response(bytes, 64 * 1024, (data[0] & 0x80U) != 0 ? "HEAD" : "POST", head);
  if (st != mcpproxy::http1::Status::complete) return 0;
  mcpproxy::http1::BodyFraming body(head);
  std::string rest(bytes.substr(head.size));
  for (std::size_t at = 0; at < rest.size() && !body.done && !body.error; at += step) {
    const std::size_t n = std::min(step, rest.size() - at);
    const std::size_t payload = body.take(rest.data() + at, n);
    if (payload > n) __builtin_trap();  // decoding in place never grows
  }
  return 0;
}
