#include "jwt_mint.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>
#include <stdexcept>
#include <vector>

namespace jwt_mint {

namespace {

using json = nlohmann::json;

EVP_PKEY* pk(const std::shared_ptr<void>& p) { return static_cast<EVP_PKEY*>(p.get()); }

std::string bn_param(EVP_PKEY* k, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) throw std::runtime_error("no bn param");
  std::string out(static_cast<std::size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

// DER ECDSA to JWS's R || S.
std::string raw_es256(const std::string& der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
  std::string out(64, '\0');
  BN_bn2binpad(ECDSA_SIG_get0_r(sig), reinterpret_cast<unsigned char*>(out.data()), 32);
  BN_bn2binpad(ECDSA_SIG_get0_s(sig), reinterpret_cast<unsigned char*>(out.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return out;
}

}  // namespace

std::string b64url(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const unsigned char c : bytes) {
    acc = (acc << 8U) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += kAlphabet[(acc >> static_cast<unsigned>(bits)) & 63U];
    }
  }
  if (bits > 0) out += kAlphabet[(acc << static_cast<unsigned>(6 - bits)) & 63U];
  return out;
}

std::string alg_name(Alg a) {
  switch (a) {
    case Alg::rs256:
      return "RS256";
    case Alg::ps256:
      return "PS256";
    case Alg::es256:
      return "ES256";
    case Alg::eddsa:
      return "EdDSA";
  }
  return "";
}

Key::Key(Alg alg, std::string kid) : alg_(alg), kid_(std::move(kid)) {
  EVP_PKEY* k = nullptr;
  if (alg == Alg::rs256 || alg == Alg::ps256) {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  } else if (alg == Alg::es256) {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  } else {
    k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  }
  if (k == nullptr) throw std::runtime_error("keygen");
  pkey_ = std::shared_ptr<void>(k, [](void* p) { EVP_PKEY_free(static_cast<EVP_PKEY*>(p)); });
}

json Key::jwk() const {
  json j = {{"kid", kid_}, {"use", "sig"}};
  if (alg_ == Alg::rs256 || alg_ == Alg::ps256) {
    j["kty"] = "RSA";
    j["n"] = b64url(bn_param(pk(pkey_), OSSL_PKEY_PARAM_RSA_N));
    j["e"] = b64url(bn_param(pk(pkey_), OSSL_PKEY_PARAM_RSA_E));
  } else if (alg_ == Alg::es256) {
    std::array<unsigned char, 65> pub{};
    std::size_t len = 0;
    EVP_PKEY_get_octet_string_param(pk(pkey_), OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size(), &len);
    j["kty"] = "EC";
    j["crv"] = "P-256";
    j["x"] = b64url(std::string(reinterpret_cast<const char*>(pub.data()) + 1, 32));
    j["y"] = b64url(std::string(reinterpret_cast<const char*>(pub.data()) + 33, 32));
  } else {
    std::array<unsigned char, 32> raw{};
    std::size_t len = raw.size();
    EVP_PKEY_get_raw_public_key(pk(pkey_), raw.data(), &len);
    j["kty"] = "OKP";
    j["crv"] = "Ed25519";
    j["x"] = b64url(std::string(reinterpret_cast<const char*>(raw.data()), len));
  }
  return j;
}

std::string Key::sign(const json& claims, const json& header) const {
  json h = {{"alg", alg_name(alg_)}, {"kid", kid_}, {"typ", "JWT"}};
  for (const auto& [k, v] : header.items()) {
    if (v.is_null()) {
      h.erase(k);
    } else {
      h[k] = v;
    }
  }
  const std::string input = b64url(h.dump()) + "." + b64url(claims.dump());
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  EVP_DigestSignInit(ctx, &pctx, alg_ == Alg::eddsa ? nullptr : EVP_sha256(), nullptr, pk(pkey_));
  if (alg_ == Alg::ps256) {
    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
  }
  std::size_t len = 0;
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  EVP_DigestSign(ctx, nullptr, &len, in, input.size());
  std::string sig(len, '\0');
  EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size());
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  if (alg_ == Alg::es256) sig = raw_es256(sig);
  return input + "." + b64url(sig);
}

std::string Key::public_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, pk(pkey_));
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  return out;
}

std::string sign_hs256(const json& claims, const std::string& secret, const std::string& kid) {
  const json h = {{"alg", "HS256"}, {"kid", kid}, {"typ", "JWT"}};
  const std::string input = b64url(h.dump()) + "." + b64url(claims.dump());
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac.data(), &len);
  return input + "." + b64url(std::string(reinterpret_cast<const char*>(mac.data()), len));
}

std::string unsigned_token(const json& claims, const std::string& kid) {
  const json h = {{"alg", "none"}, {"kid", kid}};
  return b64url(h.dump()) + "." + b64url(claims.dump()) + ".";
}

std::string jwks(std::initializer_list<const Key*> keys) {
  json arr = json::array();
  for (const Key* k : keys) arr.push_back(k->jwk());
  return json{{"keys", arr}}.dump();
}

}  // namespace jwt_mint
