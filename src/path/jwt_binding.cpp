// Stage: the session binding's identity under sessions.binding jwt (jwt.hpp): the bearer
// token verified once per connection and token (again when it expires or the keys change),
// its configured claims bound through the binding's HMAC like any identity. A token naming
// a kid no key has waits for one refetch of the JWKS URL, sessions.jwt.jwks_fetch_wait at most.
#include <ctime>

#include "core/identity/jwt.hpp"
#include "core/identity/session_binding.hpp"
#include "core/telemetry/log.hpp"
#include "path/downstream.hpp"

namespace mcpproxy {

namespace {

// The file's keys, then the URL's (a token's kid is looked for in both).
JwtVerdict verify_with(std::string_view token, const JwtConfig& j, const JwkSet* url_keys, std::int64_t now) {
  JwtRules rules;
  rules.claims = j.claims;
  rules.issuers = j.issuers;
  rules.audiences = j.audiences;
  rules.leeway_seconds = std::chrono::duration_cast<std::chrono::seconds>(j.leeway).count();
  static const JwkSet kNone;
  JwtVerdict v = verify_jwt(token, j.file_keys ? *j.file_keys : kNone, rules, now);
  if (v.result == JwtResult::unknown_key && url_keys != nullptr) v = verify_jwt(token, *url_keys, rules, now);
  return v;
}

}  // namespace

bool Connection::resolve_jwt(const Exchange& ex, bool may_wait) {
  const JwtConfig& j = ex.cfg->sessions.jwt;
  const auto auth = ex.req.head.get(http1::FieldId::authorization);
  const std::string_view token = auth ? bearer_token(*auth) : std::string_view();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const std::uint64_t version = ctx_.jwks.version();
  if (!token.empty() && token == jwt_token_ && now <= jwt_until_ && jwt_file_keys_ == j.file_keys &&
      jwt_keys_version_ == version) {
    return true;  // verified on this connection already, under the same keys
  }
  const std::shared_ptr<const JwkSet> url_keys = ctx_.jwks.keys();
  jwt_token_.clear();
  binding_identity_.clear();
  binding_principal_.clear();
  if (token.empty()) return true;
  const JwtVerdict v = verify_with(token, j, url_keys.get(), now);
  if (v.result == JwtResult::unknown_key && may_wait && !j.jwks_url.empty() && j.jwks_fetch_wait.count() > 0) {
    return false;  // counted when resolved again after the refetch
  }
  ctx_.metrics.jwt_verifications[static_cast<std::size_t>(v.result)].fetch_add(1, std::memory_order_relaxed);
  if (v.result == JwtResult::ok) {
    binding_identity_ = v.identity;
    jwt_until_ = v.exp;
  } else if (v.result == JwtResult::not_jwt && j.non_jwt == NonJwt::exact) {
    binding_identity_ = "token:" + std::string(token);
    jwt_until_ = INT64_MAX;
  } else {
    log_event(spdlog::level::debug, "bearer token did not verify; no identity",
              {{"conn", client_.conn()}, {"result", std::string(to_string(v.result))}});
    return true;
  }
  binding_principal_ = principal_of(ex.cfg->sessions.binding_keys.front(), binding_identity_);
  jwt_token_ = std::string(token);
  jwt_file_keys_ = j.file_keys;
  jwt_keys_version_ = version;
  return true;
}

net::awaitable<void> Connection::await_jwt_keys(const Exchange& ex) {
  const JwtConfig& j = ex.cfg->sessions.jwt;
  auto timer = std::make_shared<net::steady_timer>(client_.socket().get_executor());
  timer->expires_after(j.jwks_fetch_wait);
  std::weak_ptr<net::steady_timer> weak = timer;
  // Woken by the fetch's end (the waiter first, so the wake-up cannot be missed).
  ctx_.jwks.wait_next([executor = client_.socket().get_executor(), weak] {
    net::post(executor, [weak] {
      if (auto t = weak.lock()) t->cancel();
    });
  });
  if (ctx_.jwks.ask_refetch(std::chrono::steady_clock::now(), j.jwks_min_refresh)) {
    co_await timer->async_wait(use_tuple);
  }
  resolve_jwt(ex, /*may_wait=*/false);
}

}  // namespace mcpproxy
