#pragma once
// Who the client is, for limits and logs: the connection's peer, unless the peer is a
// trusted hop (client_address.trusted_hops, client_address.trusted_proxies); then the
// address that hop appended to X-Forwarded-For, and so on leftwards while each address is a
// trusted hop itself. The walk goes from the right end: every entry left of the first
// untrusted address was written by someone the proxy does not trust (the client can write
// any X-Forwarded-For it likes), so it is never read. Envoy's xff_num_trusted_hops and
// nginx's set_real_ip_from with real_ip_recursive walk the same way. No I/O.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpproxy {
namespace http1 {
struct Head;
}

// An IPv4 or IPv6 address, IPv4 kept as its IPv4-mapped IPv6 form (::ffff:a.b.c.d), so one
// comparison serves both families and a dual-stack listener's peer matches an IPv4 network.
struct IpAddress {
  std::array<std::uint8_t, 16> bytes{};
  bool is_v4() const;
  std::string str() const;  // 192.0.2.1 or 2001:db8::1
  bool operator==(const IpAddress&) const = default;
};

// An address as X-Forwarded-For entries and peers name it: 192.0.2.1, 192.0.2.1:443,
// 2001:db8::1, [2001:db8::1], [2001:db8::1]:443 (spaces around it ignored). Anything else,
// "unknown", a zone (%eth0) or a name included, is not an address.
std::optional<IpAddress> parse_ip(std::string_view text);

// An address block: 10.0.0.0/8, 2001:db8::/32, or one address (a /32 or a /128).
struct IpNetwork {
  IpAddress base;     // its bits past `prefix` are zero
  unsigned prefix{};  // of the 128 bits (an IPv4 /8 is 96 + 8)
  bool contains(const IpAddress& a) const;
  // The block of `prefix` bits (of 128) that holds `a`.
  static IpNetwork around(const IpAddress& a, unsigned prefix);
  std::string str() const;
  bool operator==(const IpNetwork&) const = default;
};
std::optional<IpNetwork> parse_network(std::string_view text);

// Which hops in front of the proxy append to X-Forwarded-For and are believed.
struct TrustedHops {
  // The nearest `count` hops are trusted whatever their address: the peer is the first.
  unsigned count = 0;
  // And any hop whose address is in one of these blocks.
  std::vector<IpNetwork> networks;
  bool trusts(const IpAddress& hop, unsigned position) const;  // position 1: the peer
  bool any() const { return count > 0 || !networks.empty(); }
  bool operator==(const TrustedHops&) const = default;
};

// The client's address: `peer` when it is not trusted; else, walking every X-Forwarded-For
// field of `head` (in order, their comma-separated entries as one list) from the right, the
// first address that is not a trusted hop. When every address reached is trusted, the
// left-most of them; when the entry to read next is not an address (garbage, "unknown"),
// the last trusted hop reached, which wrote it. Never an entry left of an untrusted one.
// Linear in the fields' bytes at most, no allocation.
IpAddress client_address(const http1::Head& head, const IpAddress& peer, const TrustedHops& trusted);

}  // namespace mcpproxy
