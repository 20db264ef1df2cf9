#pragma once
// Session binding (sessions.binding): a session belongs to the identity that created it.
// The identity is a request header (`Authorization`, or one an auth layer in front sets),
// or the verified claims of a JWT access token (jwt_verifier.hpp); the record keeps only an
// HMAC-SHA-256 of it under a key of sessions.binding_secret_file, so neither Redis nor the
// local table holds the credential. A request of a session whose identity does not match
// is answered like an unknown id (404), so ids cannot be probed.
//
// Keys rotate without losing a session: the file holds one key per line, the first signs
// new records and every line verifies. A principal names the key that made it
// ("<key id>.<hex HMAC>", the key id an HMAC of a fixed text, never the key), so a record
// made under a key this proxy does not have is told apart from another identity's.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/config.hpp"
#include "core/http/http1.hpp"

namespace mcpproxy {

// The request's identity under a header binding; nullopt when it has none (or binding is
// off, or it is `jwt`: the token is read by jwt_identity()).
std::optional<std::string_view> binding_identity(const SessionsConfig& s, const http1::Head& head);

// The field the binding reads (Authorization, or the configured header); nullopt with none.
// A request with more than one such field is refused before any pod sees it.
std::optional<std::string_view> binding_field(const SessionsConfig& s);

// The request has more than one field the binding reads (an auth hop that appends instead of
// replacing): refused before any pod sees it, whichever copy the pod would read.
bool binding_field_repeated(const SessionsConfig& s, const http1::Head& head);

// The key of a secret: the secret and its id (8 hex digits of an HMAC of a fixed text).
BindingKey make_binding_key(std::string secret);

// The keys of a binding_secret_file's text: one a line (trailing whitespace and CR cut,
// empty lines skipped). Throws std::invalid_argument naming the line of a key under 16 bytes,
// or when there is none.
std::vector<BindingKey> parse_binding_keys(std::string_view text);

// "<key id>.<hex HMAC-SHA-256 of identity under key>".
std::string principal_of(const BindingKey& key, std::string_view identity);

// Constant-time comparison of two principals.
bool same_principal(std::string_view a, std::string_view b);

enum class PrincipalCheck : std::uint8_t { match, other_identity, unknown_key };

// Whether `recorded` (a record's principal) is `identity`'s under one of `keys`. A principal
// without a key id (made before keys had ids) is tried under every key.
PrincipalCheck check_principal(const std::vector<BindingKey>& keys, std::string_view identity,
                               std::string_view recorded);

// Who a request is, as a record's principal is checked against it: the binding's keys (null
// with sessions.binding none: every record is anyone's), the identity ("" without one the
// binding accepts) and its principal under the first key ("" without one).
struct BoundCaller {
  const std::vector<BindingKey>* keys = nullptr;
  std::string_view identity;
  std::string_view principal;
};

// Whether a record made by `recorded` is this caller's: a record without a principal (made
// before binding was on) is anyone's; the first key's principal is compared first, then every
// key of the file (a rotation under way). A caller without an identity matches none.
PrincipalCheck check_caller(const BoundCaller& caller, std::string_view recorded);

// The key id a principal names ("" for one made before keys had ids).
std::string_view principal_key_id(std::string_view principal);

// 32 random bytes, made once per process: the key of the memory store when no secret file
// is configured (one process, so nothing else has to agree on it).
const std::string& process_binding_key();

}  // namespace mcpproxy
