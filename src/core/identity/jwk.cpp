// JWKS documents to OpenSSL public keys (jwt.hpp). The key material is handed to OpenSSL as
// it stands (modulus and exponent, curve point, raw Ed25519 key): OpenSSL checks it.
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <array>
#include <nlohmann/json.hpp>

#include "core/identity/jwt.hpp"

namespace mcpproxy {

namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxKeys = 64;
constexpr int kMinRsaBits = 2048;

std::shared_ptr<void> own(EVP_PKEY* k) {
  if (k == nullptr) return nullptr;
  return {k, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); }};
}

std::optional<std::string> field(const json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || !it->is_string()) return std::nullopt;
  return base64url_decode(it->get<std::string>());
}

EVP_PKEY* from_params(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  if (params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1) {
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = nullptr;
  }
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return key;
}

std::shared_ptr<void> rsa_key(const json& j) {
  const auto n = field(j, "n");
  const auto e = field(j, "e");
  if (!n || !e || n->empty() || e->empty() || e->size() > 8) return nullptr;
  BIGNUM* bn = BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()), static_cast<int>(n->size()), nullptr);
  BIGNUM* be = BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()), static_cast<int>(e->size()), nullptr);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  EVP_PKEY* key = nullptr;
  if (bn != nullptr && be != nullptr && bld != nullptr && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1) {
    key = from_params("RSA", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  BN_free(bn);
  BN_free(be);
  // Shorter RSA keys are refused (RFC 7518 3.3: 2048 bits or larger).
  if (key != nullptr && EVP_PKEY_get_bits(key) < kMinRsaBits) {
    EVP_PKEY_free(key);
    key = nullptr;
  }
  return own(key);
}

std::shared_ptr<void> p256_key(const json& j) {
  const auto x = field(j, "x");
  const auto y = field(j, "y");
  if (!x || !y || x->size() != 32 || y->size() != 32) return nullptr;
  std::array<unsigned char, 65> point{};
  point[0] = 0x04;  // uncompressed: x then y
  std::copy(x->begin(), x->end(), point.begin() + 1);
  std::copy(y->begin(), y->end(), point.begin() + 33);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  EVP_PKEY* key = nullptr;
  if (bld != nullptr && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) == 1) {
    key = from_params("EC", bld);  // the point is decoded, so one off the curve is refused
  }
  OSSL_PARAM_BLD_free(bld);
  return own(key);
}

std::shared_ptr<void> ed25519_key(const json& j) {
  const auto x = field(j, "x");
  if (!x || x->size() != 32) return nullptr;
  return own(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x->data()),
                                         x->size()));
}

std::optional<Jwk> to_key(const json& j) {
  if (!j.is_object()) return std::nullopt;
  const std::string kty = j.value("kty", "");
  if (const auto use = j.find("use"); use != j.end() && *use != "sig") return std::nullopt;
  Jwk k;
  k.kid = j.contains("kid") && j["kid"].is_string() ? j["kid"].get<std::string>() : "";
  k.alg = j.contains("alg") && j["alg"].is_string() ? j["alg"].get<std::string>() : "";
  if (kty == "RSA") {
    k.type = Jwk::Type::rsa;
    k.pkey = rsa_key(j);
  } else if (kty == "EC" && j.value("crv", "") == "P-256") {
    k.type = Jwk::Type::ec_p256;
    k.pkey = p256_key(j);
  } else if (kty == "OKP" && j.value("crv", "") == "Ed25519") {
    k.type = Jwk::Type::ed25519;
    k.pkey = ed25519_key(j);
  }
  if (!k.pkey) return std::nullopt;
  return k;
}

}  // namespace

std::optional<JwkSet> JwkSet::parse(std::string_view text, std::size_t* skipped) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array()) return std::nullopt;
  JwkSet set;
  std::size_t left_out = 0;
  for (const json& entry : j["keys"]) {
    auto k = set.keys_.size() < kMaxKeys ? to_key(entry) : std::nullopt;
    if (k) {
      set.keys_.push_back(std::move(*k));
    } else {
      ++left_out;
    }
  }
  if (skipped != nullptr) *skipped = left_out;
  return set;
}

JwkSet JwkSet::merge(const JwkSet& a, const JwkSet& b) {
  JwkSet out = a;
  out.keys_.insert(out.keys_.end(), b.keys_.begin(), b.keys_.end());
  return out;
}

bool JwkSet::has_kid(std::string_view kid) const {
  for (const Jwk& k : keys_) {
    if (k.kid == kid) return true;
  }
  return false;
}

}  // namespace mcpproxy
