// JWT verification for the session binding (jwt.hpp): the signature through OpenSSL's EVP,
// then the claims. Nothing of the payload is read before the signature holds.
#include "core/identity/jwt.hpp"

#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <nlohmann/json.hpp>

namespace mcpproxy {

namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxToken = 16U * 1024;
constexpr std::size_t kEs256Signature = 64;

struct Parts {
  std::string_view header;
  std::string_view payload;
  std::string_view signature;
  std::string_view signing_input;  // header "." payload
};

std::optional<Parts> split(std::string_view token) {
  const auto a = token.find('.');
  if (a == std::string_view::npos) return std::nullopt;
  const auto b = token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos) return std::nullopt;
  return Parts{token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1), token.substr(0, b)};
}

bool alg_fits(std::string_view alg, const Jwk& k) {
  if (!k.alg.empty() && k.alg != alg) return false;
  if (alg == "RS256" || alg == "PS256") return k.type == Jwk::Type::rsa;
  if (alg == "ES256") return k.type == Jwk::Type::ec_p256;
  if (alg == "EdDSA") return k.type == Jwk::Type::ed25519;
  return false;
}

bool alg_accepted(std::string_view alg) { return alg == "RS256" || alg == "PS256" || alg == "ES256" || alg == "EdDSA"; }

// JWS's R || S (RFC 7518 3.4) as the DER OpenSSL verifies.
std::string es256_der(std::string_view raw) {
  ECDSA_SIG* sig = ECDSA_SIG_new();
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(p, kEs256Signature / 2, nullptr);
  BIGNUM* s = BN_bin2bn(p + kEs256Signature / 2, kEs256Signature / 2, nullptr);
  std::string der;
  if (sig != nullptr && r != nullptr && s != nullptr && ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = nullptr;  // owned by sig now
    unsigned char* out = nullptr;
    const int len = i2d_ECDSA_SIG(sig, &out);
    if (len > 0) der.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(len));
    OPENSSL_free(out);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return der;
}

bool signature_holds(std::string_view alg, const Jwk& k, std::string_view input, std::string_view sig) {
  std::string der;
  if (alg == "ES256") {
    if (sig.size() != kEs256Signature) return false;
    der = es256_der(sig);
    if (der.empty()) return false;
    sig = der;
  }
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  const EVP_MD* md = alg == "EdDSA" ? nullptr : EVP_sha256();
  bool ok = ctx != nullptr && EVP_DigestVerifyInit(ctx, &pctx, md, nullptr, static_cast<EVP_PKEY*>(k.pkey.get())) == 1;
  if (ok && alg == "PS256") {
    ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1;
  }
  ok = ok && EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                              reinterpret_cast<const unsigned char*>(input.data()), input.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// Unix seconds of a NumericDate claim; nullopt when absent or not a sane number.
std::optional<std::int64_t> numeric_date(const json& claims, const char* name) {
  const auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return std::nullopt;
  const double d = it->get<double>();
  if (!(d > -1e15 && d < 1e15)) return std::nullopt;
  return static_cast<std::int64_t>(std::floor(d));
}

bool listed(const std::vector<std::string>& list, const json& v) {
  return v.is_string() && std::find(list.begin(), list.end(), v.get<std::string>()) != list.end();
}

bool audience_holds(const JwtRules& rules, const json& claims) {
  const auto aud = claims.find("aud");
  if (aud == claims.end()) return false;
  if (!aud->is_array()) return listed(rules.audiences, *aud);
  return std::any_of(aud->begin(), aud->end(), [&](const json& a) { return listed(rules.audiences, a); });
}

void check_claims(const json& claims, const JwtRules& rules, std::int64_t now, JwtVerdict& v) {
  const auto exp = numeric_date(claims, "exp");
  if (!exp || now > *exp + rules.leeway_seconds) {
    v.result = JwtResult::expired;
    return;
  }
  if (claims.contains("nbf")) {
    const auto nbf = numeric_date(claims, "nbf");
    if (!nbf || now + rules.leeway_seconds < *nbf) {
      v.result = JwtResult::not_yet_valid;
      return;
    }
  }
  if (!claims.contains("iss") || !listed(rules.issuers, claims["iss"])) {
    v.result = JwtResult::bad_issuer;
    return;
  }
  if (!audience_holds(rules, claims)) {
    v.result = JwtResult::bad_audience;
    return;
  }
  json identity = json::array();
  for (const std::string& name : rules.claims) {
    const auto it = claims.find(name);
    if (it == claims.end() || it->is_null()) {
      v.result = JwtResult::missing_claim;
      return;
    }
    identity.push_back(*it);
  }
  v.identity = identity.dump();
  v.exp = *exp + rules.leeway_seconds;
  v.result = JwtResult::ok;
}

// The key the signature holds under, or the verdict's reason why none.
JwtResult find_signer(const JwkSet& keys, std::string_view alg, const json& header, const Parts& parts, JwtVerdict& v) {
  const auto sig = base64url_decode(parts.signature);
  if (!sig) return JwtResult::malformed;
  const auto kid = header.find("kid");
  if (kid != header.end() && !kid->is_string()) return JwtResult::malformed;
  bool candidate = false;
  for (const Jwk& k : keys.keys()) {
    if (kid != header.end() && k.kid != kid->get<std::string>()) continue;
    candidate = candidate || kid != header.end() || alg_fits(alg, k);
    if (alg_fits(alg, k) && signature_holds(alg, k, parts.signing_input, *sig)) return JwtResult::ok;
  }
  if (candidate) return JwtResult::bad_signature;
  if (kid != header.end()) v.kid = kid->get<std::string>();
  return JwtResult::unknown_key;
}

}  // namespace

std::string_view to_string(JwtResult r) {
  static constexpr std::array<std::string_view, kJwtResults> kNames = {
      "ok",      "not_jwt",       "malformed",  "alg_refused",  "unknown_key",  "bad_signature",
      "expired", "not_yet_valid", "bad_issuer", "bad_audience", "missing_claim"};
  return kNames[static_cast<std::size_t>(r)];
}

std::string_view bearer_token(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ') return {};
  // ASCII case folding (RFC 9110 11.1: the scheme is case-insensitive).
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if ((static_cast<unsigned char>(authorization[i]) | 0x20U) != static_cast<unsigned char>(kScheme[i])) return {};
  }
  std::string_view t = authorization.substr(kScheme.size());
  while (!t.empty() && t.front() == ' ') t.remove_prefix(1);
  while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
  return t;
}

JwtVerdict verify_jwt(std::string_view token, const JwkSet& keys, const JwtRules& rules, std::int64_t now) {
  JwtVerdict v;
  const auto parts = token.size() <= kMaxToken ? split(token) : std::nullopt;
  const auto header_text = parts ? base64url_decode(parts->header) : std::nullopt;
  const json header = header_text ? json::parse(*header_text, nullptr, false) : json();
  if (!header.is_object() || !header.contains("alg") || !header["alg"].is_string()) {
    v.result = JwtResult::not_jwt;
    return v;
  }
  const std::string alg = header["alg"].get<std::string>();
  // `crit` names extensions that must be understood: this verifier understands none.
  if (!alg_accepted(alg) || header.contains("crit")) {
    v.result = JwtResult::alg_refused;
    return v;
  }
  v.result = find_signer(keys, alg, header, *parts, v);
  if (v.result != JwtResult::ok) return v;
  const auto payload = base64url_decode(parts->payload);
  const json claims = payload ? json::parse(*payload, nullptr, false) : json();
  if (!claims.is_object()) {
    v.result = JwtResult::malformed;
    return v;
  }
  check_claims(claims, rules, now, v);
  return v;
}

}  // namespace mcpproxy
