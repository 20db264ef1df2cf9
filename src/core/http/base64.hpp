#pragma once
// Base64 decoding (RFC 4648), one decoder for the proxy's two uses: JWS parts (base64url,
// strict: RFC 7515 2) and SEP-2243 header values (`=?base64?…?=`, standard alphabet,
// padding optional).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mcpproxy {

enum class Base64Alphabet : std::uint8_t {
  standard,  // A-Z a-z 0-9 + /  (RFC 4648 4)
  url,       // A-Z a-z 0-9 - _  (RFC 4648 5)
};

enum class Base64Padding : std::uint8_t {
  // No '=' at all, and the bits past the last byte must be zero: one encoding per value
  // (RFC 7515 2, as JWS and JWK want it).
  forbidden_canonical,
  // Trailing '=' ignored (however many), the bits past the last byte not looked at.
  optional,
};

// The bytes `in` encodes; nullopt for a character outside the alphabet (after the padding
// rule), or a length no encoding has (4n+1 characters).
std::optional<std::string> base64_decode(std::string_view in, Base64Alphabet alphabet, Base64Padding padding);

}  // namespace mcpproxy
