// The JWT verifier of sessions.binding jwt: every algorithm with keys made here by OpenSSL,
// every claim rule, and the forgeries (none, HS256 keyed with the public key, a bad signature,
// another key's signature, a kid no key has).
#include "core/identity/jwt.hpp"

#include <gtest/gtest.h>

#include "core/identity/jwks.hpp"
#include "jwt_mint.hpp"

using namespace mcpproxy;
using json = nlohmann::json;
using jwt_mint::Alg;
using jwt_mint::Key;

namespace {

constexpr std::int64_t kNow = 1'800'000'000;

json claims(const std::string& sub = "alice") {
  return {{"iss", "https://as.example"},
          {"sub", sub},
          {"aud", "https://mcp.example/mcp"},
          {"exp", kNow + 600},
          {"iat", kNow}};
}

JwtRules rules() {
  JwtRules r;
  r.issuers = {"https://as.example"};
  r.audiences = {"https://mcp.example/mcp"};
  r.leeway_seconds = 30;
  return r;
}

JwkSet set_of(std::initializer_list<const Key*> keys) { return *JwkSet::parse(jwt_mint::jwks(keys)); }

JwtResult verify(const std::string& token, const JwkSet& keys, const JwtRules& r = rules(), std::int64_t now = kNow) {
  return verify_jwt(token, keys, r, now).result;
}

}  // namespace

class JwtAlgorithm : public ::testing::TestWithParam<Alg> {};

TEST_P(JwtAlgorithm, VerifiesItsOwnSignatureAndNoOther) {
  const Key key(GetParam(), "k1");
  const Key other(GetParam(), "k1");  // the same kid, another key: a forger's
  const JwkSet keys = set_of({&key});
  const JwtVerdict v = verify_jwt(key.sign(claims()), keys, rules(), kNow);
  ASSERT_EQ(v.result, JwtResult::ok) << to_string(v.result);
  EXPECT_EQ(v.identity, R"(["https://as.example","alice"])");
  EXPECT_EQ(v.exp, kNow + 600 + 30);
  EXPECT_EQ(verify(other.sign(claims()), keys), JwtResult::bad_signature);
  // One byte of the payload changed (the sub), the signature kept.
  const std::string good = key.sign(claims());
  const std::string forged_payload = jwt_mint::b64url(claims("mallory").dump());
  const auto dot1 = good.find('.');
  const auto dot2 = good.find('.', dot1 + 1);
  EXPECT_EQ(verify(good.substr(0, dot1 + 1) + forged_payload + good.substr(dot2), keys), JwtResult::bad_signature);
  // A token without a kid is tried under the keys its alg fits.
  EXPECT_EQ(verify(key.sign(claims(), {{"kid", nullptr}}), keys), JwtResult::ok);
  EXPECT_EQ(verify(other.sign(claims(), {{"kid", nullptr}}), keys), JwtResult::bad_signature);
  EXPECT_EQ(verify(key.sign(claims(), {{"kid", 7}}), keys), JwtResult::malformed) << "a kid that is not a string";
}

INSTANTIATE_TEST_SUITE_P(All, JwtAlgorithm, ::testing::Values(Alg::rs256, Alg::ps256, Alg::es256, Alg::eddsa),
                         [](const auto& p) { return jwt_mint::alg_name(p.param); });

TEST(Jwt, AKeyServesOnlyTheAlgorithmsOfItsType) {
  const Key rsa(Alg::rs256, "rsa");
  const Key ec(Alg::es256, "ec");
  const JwkSet keys = set_of({&rsa, &ec});
  EXPECT_EQ(verify(rsa.sign(claims()), keys), JwtResult::ok);
  // An RS256 signature presented as ES256 under the RSA key's kid: no key of that kid fits.
  EXPECT_EQ(verify(rsa.sign(claims(), {{"alg", "ES256"}}), keys), JwtResult::bad_signature);
  // A JWK that names its alg serves that alg only: RS256 and PS256 share RSA keys otherwise.
  json only_ps = rsa.jwk();
  only_ps["alg"] = "PS256";
  const JwkSet ps_only = *JwkSet::parse(json{{"keys", {only_ps}}}.dump());
  EXPECT_EQ(verify(rsa.sign(claims()), ps_only), JwtResult::bad_signature);
}

TEST(Jwt, NoneAndHmacAreRefusedWhateverTheirSignature) {
  const Key rsa(Alg::rs256, "k1");
  const JwkSet keys = set_of({&rsa});
  EXPECT_EQ(verify(jwt_mint::unsigned_token(claims(), "k1"), keys), JwtResult::alg_refused);
  EXPECT_EQ(verify(jwt_mint::sign_hs256(claims(), rsa.public_pem(), "k1"), keys), JwtResult::alg_refused);
  EXPECT_EQ(verify(jwt_mint::sign_hs256(claims(), rsa.jwk().dump(), "k1"), keys), JwtResult::alg_refused);
  EXPECT_EQ(verify(rsa.sign(claims(), {{"crit", {"exp"}}}), keys), JwtResult::alg_refused) << "crit is not understood";
  EXPECT_EQ(verify(rsa.sign(claims(), {{"alg", "RS384"}}), keys), JwtResult::alg_refused);
}

TEST(Jwt, AKidNoKeyHasIsAnUnknownKeyNamed) {
  const Key known(Alg::es256, "known");
  const Key fresh(Alg::es256, "fresh");
  const JwtVerdict v = verify_jwt(fresh.sign(claims()), set_of({&known}), rules(), kNow);
  EXPECT_EQ(v.result, JwtResult::unknown_key);
  EXPECT_EQ(v.kid, "fresh");
  EXPECT_EQ(verify(fresh.sign(claims()), set_of({&known, &fresh})), JwtResult::ok);
}

TEST(JwtClaims, ExpWithLeewayAndRequired) {
  const Key key(Alg::eddsa, "k");
  const JwkSet keys = set_of({&key});
  json c = claims();
  c["exp"] = kNow - 30;
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::ok) << "within the leeway";
  c["exp"] = kNow - 31;
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::expired);
  c.erase("exp");
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::expired) << "an access token without exp never expires: refused";
  c["exp"] = "soon";
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::expired);
  c["exp"] = 1e300;
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::expired);
}

TEST(JwtClaims, NbfWithLeeway) {
  const Key key(Alg::eddsa, "k");
  const JwkSet keys = set_of({&key});
  json c = claims();
  c["nbf"] = kNow + 30;
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::ok);
  c["nbf"] = kNow + 31;
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::not_yet_valid);
  c["nbf"] = "now";
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::not_yet_valid);
}

TEST(JwtClaims, IssuerFromTheAllowlist) {
  const Key key(Alg::es256, "k");
  const JwkSet keys = set_of({&key});
  json c = claims();
  c["iss"] = "https://evil.example";
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_issuer);
  c.erase("iss");
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_issuer);
  c["iss"] = json::array({"https://as.example"});
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_issuer);
}

TEST(JwtClaims, AudienceOneOfTheConfigured) {
  const Key key(Alg::es256, "k");
  const JwkSet keys = set_of({&key});
  json c = claims();
  c["aud"] = json::array({"https://other.example", "https://mcp.example/mcp"});
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::ok);
  c["aud"] = "https://other.example";
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_audience);
  c["aud"] = json::array();
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_audience);
  c.erase("aud");
  EXPECT_EQ(verify(key.sign(c), keys), JwtResult::bad_audience);
}

TEST(JwtClaims, TheIdentityIsTheConfiguredClaims) {
  const Key key(Alg::rs256, "k");
  const JwkSet keys = set_of({&key});
  JwtRules r = rules();
  r.claims = {"sub", "tenant"};
  json c = claims();
  EXPECT_EQ(verify(key.sign(c), keys, r), JwtResult::missing_claim);
  c["tenant"] = {{"id", 7}};
  const JwtVerdict v = verify_jwt(key.sign(c), keys, r, kNow);
  ASSERT_EQ(v.result, JwtResult::ok);
  EXPECT_EQ(v.identity, R"(["alice",{"id":7}])");
  // A refreshed token of the same user: another token, the same identity.
  json later = c;
  later["iat"] = kNow + 100;
  later["exp"] = kNow + 3600;
  later["jti"] = "refresh-2";
  EXPECT_EQ(verify_jwt(key.sign(later), keys, r, kNow).identity, v.identity);
}

TEST(Jwt, WhatIsNotAJwtIsToldApart) {
  const Key key(Alg::es256, "k");
  const JwkSet keys = set_of({&key});
  for (const std::string t : {"", "opaque-token", "a.b.c", "a.b", "e30.e30.e30.e30", "!!!.e30.", "e30.e30."}) {
    EXPECT_EQ(verify(t, keys), JwtResult::not_jwt) << t;
  }
  // A JWT header, a payload or signature that does not decode.
  const std::string good = key.sign(claims());
  EXPECT_EQ(verify(good + "!", keys), JwtResult::malformed);
  EXPECT_EQ(verify(good.substr(0, good.find('.') + 1) + "!!." + good.substr(good.rfind('.') + 1), keys),
            JwtResult::bad_signature)
      << "the signature is checked first, over the bytes as sent";
}

TEST(Jwt, BearerToken) {
  EXPECT_EQ(bearer_token("Bearer abc"), "abc");
  EXPECT_EQ(bearer_token("bearer   abc "), "abc");
  EXPECT_EQ(bearer_token("Basic abc"), "");
  EXPECT_EQ(bearer_token("Bearer"), "");
  EXPECT_EQ(bearer_token("Bearerabc"), "");
}

TEST(Jwk, UnusableKeysAreSkippedUsableOnesKept) {
  const Key ec(Alg::es256, "ec");
  json bad_curve = ec.jwk();
  bad_curve["crv"] = "P-384";
  json off_curve = ec.jwk();
  off_curve["y"] = jwt_mint::b64url(std::string(32, '\x01'));
  json enc = ec.jwk();
  enc["use"] = "enc";
  const json small_rsa = {
      {"kty", "RSA"}, {"kid", "small"}, {"n", jwt_mint::b64url(std::string(64, '\xff'))}, {"e", "AQAB"}};
  std::size_t skipped = 0;
  const auto set =
      JwkSet::parse(json{{"keys", {bad_curve, off_curve, enc, small_rsa, ec.jwk(), "junk"}}}.dump(), &skipped);
  ASSERT_TRUE(set);
  EXPECT_EQ(set->keys().size(), 1U);
  EXPECT_EQ(skipped, 5U);
  EXPECT_FALSE(JwkSet::parse("[]"));
  EXPECT_FALSE(JwkSet::parse("{\"keys\":{}}"));
}

TEST(Jwk, Base64UrlIsStrict) {
  EXPECT_EQ(base64url_decode("aGk"), "hi");
  EXPECT_FALSE(base64url_decode("aGk="));
  EXPECT_FALSE(base64url_decode("aGl"));  // non-zero bits past the end
  EXPECT_FALSE(base64url_decode("a"));
  EXPECT_FALSE(base64url_decode("a+b/"));
}

TEST(Jwks, MaxAgeOfCacheControl) {
  EXPECT_EQ(cache_max_age("public, max-age=300"), 300);
  EXPECT_EQ(cache_max_age("max-age=60, must-revalidate"), 60);
  EXPECT_EQ(cache_max_age("no-store, max-age=60"), std::nullopt);
  EXPECT_EQ(cache_max_age("max-age=-1"), std::nullopt);
  EXPECT_EQ(cache_max_age("private"), std::nullopt);
}
