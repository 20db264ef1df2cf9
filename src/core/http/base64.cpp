// Base64 decoding (base64.hpp).
#include "core/http/base64.hpp"

#include <array>

namespace mcpproxy {
namespace {

// The 6-bit value of each byte in an alphabet, kNone for a byte outside it.
constexpr std::uint8_t kNone = 0xFF;
constexpr std::array<std::uint8_t, 256> values(char c62, char c63) {
  std::array<std::uint8_t, 256> t{};
  for (auto& v : t) v = kNone;
  for (std::uint8_t i = 0; i < 26; ++i) {
    t[std::size_t{'A'} + i] = i;
    t[std::size_t{'a'} + i] = static_cast<std::uint8_t>(26 + i);
  }
  for (std::uint8_t i = 0; i < 10; ++i) t[std::size_t{'0'} + i] = static_cast<std::uint8_t>(52 + i);
  t[static_cast<unsigned char>(c62)] = 62;
  t[static_cast<unsigned char>(c63)] = 63;
  return t;
}

constexpr auto kStandard = values('+', '/');
constexpr auto kUrl = values('-', '_');

}  // namespace

std::optional<std::string> base64_decode(std::string_view in, Base64Alphabet alphabet, Base64Padding padding) {
  if (padding == Base64Padding::optional) {
    while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  }
  if (in.size() % 4 == 1) return std::nullopt;
  const auto& table = alphabet == Base64Alphabet::url ? kUrl : kStandard;
  std::string out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  unsigned bits = 0;
  for (const char c : in) {
    const std::uint8_t v = table[static_cast<unsigned char>(c)];
    if (v == kNone) return std::nullopt;
    acc = (acc << 6U) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xFFU);
    }
  }
  if (padding == Base64Padding::forbidden_canonical && (acc & ((1U << bits) - 1U)) != 0) return std::nullopt;
  return out;
}

}  // namespace mcpproxy
