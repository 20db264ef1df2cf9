#pragma once
// JWT access tokens verified for the session binding (sessions.binding: jwt). Asio-free.
//
// A token is verified, never just decoded: its signature (RS256, PS256, ES256, EdDSA with
// Ed25519; `none` and HS* refused) against a key of a JWKS (RFC 7517), through OpenSSL's
// EVP (no cryptography here), then `exp` (required) and `nbf` with a leeway, `iss` from an
// allowlist, `aud` against the configured audiences (RFC 8707's resource). The identity a
// session is bound to is the configured claims' values (default iss and sub), canonical JSON.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/base64.hpp"

namespace mcpproxy {

struct SessionsConfig;

// Why a token did or did not verify: the label of mcp_proxy_jwt_verifications_total.
enum class JwtResult : std::uint8_t {
  ok,
  not_jwt,        // not three base64url parts with a JSON header (sessions.jwt.non_jwt decides)
  malformed,      // a JWT whose parts or claims do not decode
  alg_refused,    // none, HS*, anything but RS256, PS256, ES256, EdDSA; or a `crit` header
  unknown_key,    // no key of the set for its kid (and alg)
  bad_signature,  // ...
  expired,        // exp + leeway passed, or no exp
  not_yet_valid,  // nbf - leeway not reached
  bad_issuer,     // iss not in sessions.jwt.issuers
  bad_audience,   // no aud in sessions.jwt.audiences
  missing_claim,  // a claim of sessions.jwt.claims absent (or null)
};
inline constexpr std::size_t kJwtResults = 11;
std::string_view to_string(JwtResult r);

// A public key of a JWKS, usable for one algorithm family.
struct Jwk {
  std::string kid;
  std::string alg;  // the JWK's "alg" when it names one ("" for any its type allows)
  enum class Type : std::uint8_t { rsa, ec_p256, ed25519 } type = Type::rsa;
  std::shared_ptr<void> pkey;  // EVP_PKEY
};

// A set of keys: those of a JWKS document a verifier can use (others are skipped: a set
// with an x5c-only key, an encryption key or a P-384 key still gives its usable keys).
class JwkSet {
 public:
  // nullopt when `json` is not a JWKS ({"keys":[...]}); `skipped` counts keys left out.
  static std::optional<JwkSet> parse(std::string_view json, std::size_t* skipped = nullptr);
  // Both sets' keys (a file's and a URL's).
  static JwkSet merge(const JwkSet& a, const JwkSet& b);
  const std::vector<Jwk>& keys() const { return keys_; }
  bool has_kid(std::string_view kid) const;

 private:
  std::vector<Jwk> keys_;
};

struct JwtRules {
  std::vector<std::string> claims = {"iss", "sub"};
  std::vector<std::string> issuers;
  std::vector<std::string> audiences;
  std::int64_t leeway_seconds = 30;
};

struct JwtVerdict {
  JwtResult result = JwtResult::malformed;
  std::string identity;  // with ok: the claims' values, canonical JSON (["iss","sub"])
  std::int64_t exp = 0;  // with ok: when it stops verifying (exp + leeway), unix seconds
  std::string kid;       // with unknown_key: the kid asked for (a refetch of a JWKS URL may find it)
};

// The token of an `Authorization: Bearer <token>` value ("" when it is not a bearer token).
std::string_view bearer_token(std::string_view authorization);

// `now`: unix seconds.
JwtVerdict verify_jwt(std::string_view token, const JwkSet& keys, const JwtRules& rules, std::int64_t now);

// Checks sessions.jwt.* against sessions.binding (no key set without binding jwt; keys,
// issuers and audiences with it) and reads jwks_file into file_keys. Throws ConfigError.
void validate_jwt_binding(SessionsConfig& s);

// A JWKS URL's parts: https, host, port ("443"/"80" when not given), target.
struct JwksUrl {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
};
std::optional<JwksUrl> parse_jwks_url(std::string_view url);

// Strict base64url without padding (RFC 7515 2); nullopt for anything else.
inline std::optional<std::string> base64url_decode(std::string_view in) {
  return base64_decode(in, Base64Alphabet::url, Base64Padding::forbidden_canonical);
}

}  // namespace mcpproxy
