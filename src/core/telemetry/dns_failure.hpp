#pragma once
// Why a lookup of a pod name gave no address: what the resolver (dns.hpp) reports, the pods'
// health keeps, /pods shows and mcp_proxy_dns_failures_total{reason} counts, named once here.
// No Asio: the metrics and placement (core) use it as well.

#include <cstdint>
#include <string_view>

namespace mcpproxy {

enum class DnsFailure : std::uint8_t {
  none,
  nxdomain,   // the name does not exist (a headless Service drops a pod that is not ready)
  servfail,   // the server could not answer (SERVFAIL, REFUSED, a malformed answer)
  timeout,    // no answer within backend.dns_timeout
  no_server,  // no server to ask (connection refused, no nameserver configured)
};
inline constexpr int kDnsFailureKinds = 5;

constexpr std::string_view to_string(DnsFailure f) {
  switch (f) {
    case DnsFailure::none:
      return "none";
    case DnsFailure::nxdomain:
      return "nxdomain";
    case DnsFailure::servfail:
      return "servfail";
    case DnsFailure::timeout:
      return "timeout";
    case DnsFailure::no_server:
      return "no_server";
  }
  return "unknown";
}

}  // namespace mcpproxy
