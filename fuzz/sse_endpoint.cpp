// A legacy SSE stream as it passes: the endpoint-event scanner, fed in pieces, and the
// prefixing of the endpoint URL.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/http_rules.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 16;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  mcpproxy::SseEndpointScanner scanner(4096);
  for (std::size_t at = 0; at < bytes.size() && !scanner.done(); at += step) {
    if (auto id = scanner.feed(bytes.substr(at, step))) {
      if (!mcpproxy::valid_session_id(*id)) __builtin_trap();  // only valid ids come out
    }
  }
  (void)mcpproxy::prefix_legacy_endpoint(std::string(bytes), "/team-a");
  return 0;
}
