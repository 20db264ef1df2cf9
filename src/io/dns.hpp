#pragma once
// Asynchronous lookups of pod names (c-ares), one channel per worker on its io_context.
// A lookup never waits on another: c-ares sends each query on its own and the worker's
// loop watches its sockets, so a slow or silent name delays only the requests that need
// that name; every lookup is bounded by its own time limit. An IP literal never gets here
// (UpstreamPool takes it as it is).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/telemetry/dns_failure.hpp"
#include "io/net.hpp"

namespace mcpproxy {

// DNS failures as error codes (their own category), so that a failed connect carries why.
const boost::system::error_category& dns_category();
error_code make_error_code(DnsFailure f);
// The failure an error code of dns_category() stands for; none for any other code.
DnsFailure dns_failure_of(const error_code& ec);

struct DnsAnswer {
  DnsFailure failure = DnsFailure::none;
  std::vector<tcp::endpoint> endpoints;
  std::chrono::seconds ttl{0};  // the smallest TTL of the records
};

class DnsResolver {
 public:
  explicit DnsResolver(net::io_context& ioc);
  ~DnsResolver();
  DnsResolver(const DnsResolver&) = delete;
  DnsResolver& operator=(const DnsResolver&) = delete;

  // The addresses of `host` (A and AAAA, the resolv.conf search list applied unless the
  // name ends with a dot), `port` set on each; a timeout failure once `limit` has passed.
  net::awaitable<DnsAnswer> lookup(std::string host, std::uint16_t port, std::chrono::milliseconds limit);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mcpproxy

namespace boost::system {
template <>
struct is_error_code_enum<mcpproxy::DnsFailure> : std::true_type {};
}  // namespace boost::system
