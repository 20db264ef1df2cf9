// The JWT binding's verifier on untrusted bytes: a token (a client's Authorization) against
// keys made at start, a JWKS document (a JWKS URL's answer) and a Cache-Control value.
// The first byte picks which.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/identity/jwks.hpp"
#include "core/identity/jwt.hpp"
#include "jwt_mint.hpp"

namespace {

struct Fixture {
  jwt_mint::Key rsa{jwt_mint::Alg::rs256, "rsa"};
  jwt_mint::Key ec{jwt_mint::Alg::es256, "ec"};
  jwt_mint::Key ed{jwt_mint::Alg::eddsa, "ed"};
  mcpproxy::JwkSet keys = *mcpproxy::JwkSet::parse(jwt_mint::jwks({&rsa, &ec, &ed}));
  std::string token = ec.sign({{"iss", "i"}, {"sub", "s"}, {"aud", "a"}, {"exp", 2000000000}});
  mcpproxy::JwtRules rules = [] {
    mcpproxy::JwtRules r;
    r.issuers = {"i"};
    r.audiences = {"a"};
    return r;
  }();
};

const Fixture& fixture() {
  static const Fixture f;
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Fixture& f = fixture();
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0: {
      const auto v = mcpproxy::verify_jwt(mcpproxy::bearer_token(bytes).empty() ? bytes : mcpproxy::bearer_token(bytes),
                                          f.keys, f.rules, 1700000000);
      (void)mcpproxy::to_string(v.result);
      break;
    }
    case 1:
      if (const auto set = mcpproxy::JwkSet::parse(bytes)) {
        (void)mcpproxy::verify_jwt(f.token, *set, f.rules, 1700000000);
      }
      break;
    default:
      (void)mcpproxy::cache_max_age(bytes);
      (void)mcpproxy::base64url_decode(bytes);
      break;
  }
  return 0;
}
