// sessions.jwt.*: checked against sessions.binding, the JWKS file read (jwt.hpp).
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <fstream>
#include <sstream>

#include "core/config/config.hpp"
#include "core/identity/jwt.hpp"

namespace mcpproxy {

std::optional<JwksUrl> parse_jwks_url(std::string_view url) {
  const auto u = boost::urls::parse_absolute_uri(url);
  if (!u || !u->has_authority() || u->host().empty() || u->has_userinfo()) return std::nullopt;
  JwksUrl out;
  if (u->scheme() == "https") {
    out.tls = true;
  } else if (u->scheme() != "http") {
    return std::nullopt;
  }
  out.host = u->encoded_host();
  if (out.host.size() > 2 && out.host.front() == '[') out.host = out.host.substr(1, out.host.size() - 2);
  out.port = u->has_port() ? std::string(u->port()) : (out.tls ? "443" : "80");
  out.target = u->encoded_path().empty() ? "/" : std::string(u->encoded_path());
  if (u->has_query()) out.target += "?" + std::string(u->encoded_query());
  return out;
}

namespace {

void refuse_without_jwt(const JwtConfig& j) {
  const JwtConfig defaults;
  if (!j.jwks_file.empty() || !j.jwks_url.empty() || !j.issuers.empty() || !j.audiences.empty() ||
      j.claims != defaults.claims || j.leeway != defaults.leeway || j.non_jwt != defaults.non_jwt) {
    throw ConfigError("sessions.jwt: options set, but sessions.binding is not jwt");
  }
}

void read_jwks_file(JwtConfig& j) {
  std::ifstream in(j.jwks_file, std::ios::binary);
  if (!in) throw ConfigError("sessions.jwt.jwks_file: cannot read " + j.jwks_file);
  std::ostringstream text;
  text << in.rdbuf();
  auto set = JwkSet::parse(text.str());
  if (!set) throw ConfigError("sessions.jwt.jwks_file: not a JWKS ({\"keys\":[...]}): " + j.jwks_file);
  if (set->keys().empty() && j.jwks_url.empty()) {
    throw ConfigError("sessions.jwt.jwks_file: no usable key (RSA of 2048 bits or more, EC P-256, Ed25519) in " +
                      j.jwks_file);
  }
  j.file_keys = std::make_shared<const JwkSet>(std::move(*set));
}

}  // namespace

void validate_jwt_binding(SessionsConfig& s) {
  JwtConfig& j = s.jwt;
  j.file_keys.reset();
  if (s.binding != BindingKind::jwt) {
    refuse_without_jwt(j);
    return;
  }
  if (j.jwks_file.empty() && j.jwks_url.empty()) {
    throw ConfigError("sessions.jwt.jwks_file: sessions.binding jwt needs jwks_file or jwks_url (or both)");
  }
  if (j.issuers.empty()) throw ConfigError("sessions.jwt.issuers: required with sessions.binding jwt");
  if (j.audiences.empty()) {
    throw ConfigError("sessions.jwt.audiences: required with sessions.binding jwt (this server's resource indicator)");
  }
  if (j.claims.empty()) throw ConfigError("sessions.jwt.claims: at least one claim (default iss and sub)");
  if (j.leeway.count() < 0 || j.jwks_fetch_wait.count() < 0) {
    throw ConfigError("sessions.jwt.leeway: must not be negative");
  }
  if (!j.jwks_url.empty() && !parse_jwks_url(j.jwks_url)) {
    throw ConfigError("sessions.jwt.jwks_url: must be an http:// or https:// URL, got '" + j.jwks_url + "'");
  }
  if (j.jwks_min_refresh > j.jwks_refresh) {
    throw ConfigError("sessions.jwt.jwks_min_refresh: must not be longer than sessions.jwt.jwks_refresh");
  }
  if (!j.jwks_file.empty()) read_jwks_file(j);
}

}  // namespace mcpproxy
