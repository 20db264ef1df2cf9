#include "core/identity/session_binding.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <cctype>
#include <stdexcept>

namespace mcpproxy {

namespace {

constexpr std::size_t kKeyIdLength = 8;
constexpr std::size_t kMinKeyLength = 16;

std::string hex_hmac(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), mac.data(), &len);
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2U * len);
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4U];
    out += kHex[mac[i] & 0xfU];
  }
  return out;
}

// The HMAC part of a principal (the whole of one without a key id).
std::string_view principal_mac(std::string_view principal) {
  const auto dot = principal.find('.');
  return dot == std::string_view::npos ? principal : principal.substr(dot + 1);
}

}  // namespace

std::optional<std::string_view> binding_field(const SessionsConfig& s) {
  switch (s.binding) {
    case BindingKind::none:
      return std::nullopt;
    case BindingKind::authorization:
    case BindingKind::jwt:
      return std::string_view("authorization");
    case BindingKind::header:
      return std::string_view(s.binding_header);
  }
  return std::nullopt;
}

std::optional<std::string_view> binding_identity(const SessionsConfig& s, const http1::Head& head) {
  std::optional<std::string_view> v;
  switch (s.binding) {
    case BindingKind::none:
    case BindingKind::jwt:
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

bool binding_field_repeated(const SessionsConfig& s, const http1::Head& head) {
  if (s.binding == BindingKind::none) return false;
  const bool by_id = s.binding != BindingKind::header;
  int seen = 0;
  for (const http1::Field& f : head.fields) {
    if (by_id ? f.id == http1::FieldId::authorization : http1::iequals(f.name, s.binding_header)) {
      if (++seen > 1) return true;
    }
  }
  return false;
}

BindingKey make_binding_key(std::string secret) {
  BindingKey k;
  k.id = hex_hmac(secret, "mcp-session-proxy binding key id").substr(0, kKeyIdLength);
  k.secret = std::move(secret);
  return k;
}

std::vector<BindingKey> parse_binding_keys(std::string_view text) {
  std::vector<BindingKey> keys;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back())) != 0) line.remove_suffix(1);
    if (line.empty()) continue;
    if (line.size() < kMinKeyLength) {
      throw std::invalid_argument("line " + std::to_string(line_no) + " holds a key under 16 bytes");
    }
    keys.push_back(make_binding_key(std::string(line)));
  }
  if (keys.empty()) throw std::invalid_argument("holds no key");
  return keys;
}

std::string principal_of(const BindingKey& key, std::string_view identity) {
  return key.id + "." + hex_hmac(key.secret, identity);
}

bool same_principal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view principal_key_id(std::string_view principal) {
  const auto dot = principal.find('.');
  return dot == std::string_view::npos ? std::string_view() : principal.substr(0, dot);
}

PrincipalCheck check_principal(const std::vector<BindingKey>& keys, std::string_view identity,
                               std::string_view recorded) {
  const std::string_view id = principal_key_id(recorded);
  const std::string_view mac = principal_mac(recorded);
  bool known = id.empty();
  for (const BindingKey& k : keys) {
    if (!id.empty() && k.id != id) continue;
    known = true;
    if (same_principal(hex_hmac(k.secret, identity), mac)) return PrincipalCheck::match;
  }
  return known ? PrincipalCheck::other_identity : PrincipalCheck::unknown_key;
}

PrincipalCheck check_caller(const BoundCaller& caller, std::string_view recorded) {
  if (caller.keys == nullptr || recorded.empty()) return PrincipalCheck::match;
  if (!caller.principal.empty() && same_principal(caller.principal, recorded)) return PrincipalCheck::match;
  if (caller.identity.empty()) return PrincipalCheck::other_identity;
  return check_principal(*caller.keys, caller.identity, recorded);
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
