#include "mcpproxy/session_binding.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace mcpproxy {

std::optional<std::string_view> binding_identity(const SessionsConfig& s, const http1::Head& head) {
  std::optional<std::string_view> v;
  switch (s.binding) {
    case BindingKind::none:
      return std::nullopt;
    case BindingKind::authorization:
      v = head.get(http1::FieldId::authorization);
      break;
    case BindingKind::header:
      v = head.get(s.binding_header);
      break;
  }
  if (v && v->empty()) return std::nullopt;
  return v;
}

std::string principal_of(std::string_view key, std::string_view identity) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(identity.data()),
       identity.size(), mac.data(), &len);
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2U * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4U];
    out += kHex[mac[i] & 0xfU];
  }
  return out;
}

bool same_principal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

const std::string& process_binding_key() {
  static const std::string key = [] {
    std::string k(32, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(k.data()), static_cast<int>(k.size())) != 1) {
      throw std::runtime_error("no randomness for the session binding key");
    }
    return k;
  }();
  return key;
}

}  // namespace mcpproxy
