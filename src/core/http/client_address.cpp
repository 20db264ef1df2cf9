#include "core/http/client_address.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "core/http/http1.hpp"

namespace mcpproxy {
namespace {

constexpr std::string_view kSpace = " \t";

std::string_view trimmed(std::string_view s) {
  const auto b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// ":443": a colon and 1-5 digits.
bool is_port(std::string_view s) {
  return s.size() >= 2 && s.size() <= 6 && s.front() == ':' &&
         std::all_of(s.begin() + 1, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The address of "192.0.2.1:443", "[2001:db8::1]:443", "[2001:db8::1]", or the text itself.
std::optional<std::string_view> host_part(std::string_view s) {
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    const auto rest = s.substr(close + 1);
    if (!rest.empty() && !is_port(rest)) return std::nullopt;
    return s.substr(1, close - 1);
  }
  const auto colon = s.find(':');
  if (colon != std::string_view::npos && s.find(':', colon + 1) == std::string_view::npos) {
    if (!is_port(s.substr(colon))) return std::nullopt;  // one colon: IPv4 and a port
    return s.substr(0, colon);
  }
  return s;
}

std::optional<IpAddress> parse_bare(std::string_view host) {
  std::array<char, INET6_ADDRSTRLEN> text{};  // inet_pton wants it terminated
  if (host.empty() || host.size() >= text.size()) return std::nullopt;
  std::copy(host.begin(), host.end(), text.begin());
  IpAddress a;
  if (host.find(':') != std::string_view::npos) {
    if (::inet_pton(AF_INET6, text.data(), a.bytes.data()) != 1) return std::nullopt;
    return a;
  }
  if (::inet_pton(AF_INET, text.data(), a.bytes.data() + 12) != 1) return std::nullopt;
  a.bytes[10] = 0xff;
  a.bytes[11] = 0xff;
  return a;
}

}  // namespace

bool IpAddress::is_v4() const {
  return std::all_of(bytes.begin(), bytes.begin() + 10, [](std::uint8_t b) { return b == 0; }) && bytes[10] == 0xff &&
         bytes[11] == 0xff;
}

std::string IpAddress::str() const {
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (is_v4()) {
    ::inet_ntop(AF_INET, bytes.data() + 12, text.data(), text.size());
  } else {
    ::inet_ntop(AF_INET6, bytes.data(), text.data(), text.size());
  }
  return text.data();
}

std::optional<IpAddress> parse_ip(std::string_view text) {
  const auto host = host_part(trimmed(text));
  if (!host) return std::nullopt;
  return parse_bare(*host);
}

bool IpNetwork::contains(const IpAddress& a) const {
  const unsigned whole = prefix / 8;
  if (!std::equal(base.bytes.begin(), base.bytes.begin() + whole, a.bytes.begin())) return false;
  if (prefix % 8 == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xffU << (8 - prefix % 8));
  return (a.bytes[whole] & mask) == base.bytes[whole];
}

std::string IpNetwork::str() const {
  const bool v4 = base.is_v4() && prefix >= 96;
  return base.str() + "/" + std::to_string(v4 ? prefix - 96 : prefix);
}

std::optional<IpNetwork> parse_network(std::string_view text) {
  const auto slash = text.find('/');
  const auto a = parse_bare(text.substr(0, slash));
  if (!a) return std::nullopt;
  // Written as IPv6 (::ffff:10.0.0.0/104 included), the prefix counts 128 bits.
  const unsigned family_bits = text.substr(0, slash).find(':') == std::string_view::npos ? 32 : 128;
  unsigned bits = family_bits;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (ec != std::errc{} || end != digits.data() + digits.size() || digits.empty() || bits > family_bits) {
      return std::nullopt;
    }
  }
  return IpNetwork::around(*a, bits + (128 - family_bits));
}

IpNetwork IpNetwork::around(const IpAddress& a, unsigned prefix) {
  IpNetwork n{a, std::min(prefix, 128U)};
  // The bits past the prefix say nothing: cleared, so that the block prints as it matches.
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned kept = std::clamp<unsigned>(n.prefix, 8 * i, 8 * i + 8) - 8 * i;
    n.base.bytes[i] &= static_cast<std::uint8_t>(kept == 0 ? 0U : 0xffU << (8 - kept));
  }
  return n;
}

bool TrustedHops::trusts(const IpAddress& hop, unsigned position) const {
  return position <= count ||
         std::any_of(networks.begin(), networks.end(), [&](const IpNetwork& n) { return n.contains(hop); });
}

IpAddress client_address(const http1::Head& head, const IpAddress& peer, const TrustedHops& trusted) {
  if (!trusted.trusts(peer, 1)) return peer;
  IpAddress last = peer;  // the left-most trusted hop reached
  unsigned position = 1;
  for (auto f = head.fields.rbegin(); f != head.fields.rend(); ++f) {
    if (f->id != http1::FieldId::x_forwarded_for) continue;
    std::string_view list = f->value;
    while (!list.empty()) {
      const auto comma = list.rfind(',');
      const std::string_view entry = trimmed(comma == std::string_view::npos ? list : list.substr(comma + 1));
      list = list.substr(0, comma == std::string_view::npos ? 0 : comma);
      if (entry.empty()) continue;  // "a, , b": an empty element names no hop
      const auto hop = parse_ip(entry);
      if (!hop) return last;  // what a trusted hop wrote is an address: this is not one
      last = *hop;
      if (!trusted.trusts(last, ++position)) return last;
    }
  }
  return last;
}

}  // namespace mcpproxy
