#pragma once
// Test keys and tokens: keys generated with OpenSSL, their JWKs, tokens signed with them.
// Only for tests (the proxy verifies; it never signs).

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace jwt_mint {

enum class Alg { rs256, ps256, es256, eddsa };

class Key {
 public:
  explicit Key(Alg alg, std::string kid);
  // The public JWK ({"kty":...,"kid":...}).
  nlohmann::json jwk() const;
  // A token of these claims, signed ("alg" and "kid" in the header; `header` adds or replaces; null removes).
  std::string sign(const nlohmann::json& claims, const nlohmann::json& header = nlohmann::json::object()) const;
  // The public key as PEM (what an HS256 forgery uses as its secret).
  std::string public_pem() const;
  Alg alg() const { return alg_; }
  const std::string& kid() const { return kid_; }

 private:
  Alg alg_;
  std::string kid_;
  std::shared_ptr<void> pkey_;
};

std::string b64url(const std::string& bytes);
std::string alg_name(Alg a);
// An HS256 token whose secret is `secret` (the "public key as HMAC secret" attack).
std::string sign_hs256(const nlohmann::json& claims, const std::string& secret, const std::string& kid);
// An unsigned token (alg none).
std::string unsigned_token(const nlohmann::json& claims, const std::string& kid);
// {"keys":[...]} of the given keys.
std::string jwks(std::initializer_list<const Key*> keys);

}  // namespace jwt_mint
