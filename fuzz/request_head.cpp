// The request path's decisions on untrusted bytes: the head parser, then what the proxy
// reads of a request (session id, routing class, JSON-RPC body, header edits).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/http/http1.hpp"
#include "core/http/http_rules.hpp"
#include "core/http/proxy_headers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  mcpproxy::http1::Head head;
  const auto st = mcpproxy::http1::parse_request(bytes, 16 * 1024, head);
  if (st != mcpproxy::http1::Status::complete) return 0;
  const std::string_view body = bytes.substr(head.size);
  const auto route = mcpproxy::classify_request(head.get("Mcp-Session-Id"), head.target, body, head.method == "POST");
  (void)route;
  (void)mcpproxy::inspect_jsonrpc(body);
  (void)mcpproxy::replayable_fields(head);
  (void)mcpproxy::query_param(head.target, "sessionId");
  return 0;
}
