#pragma once
// Session binding (sessions.binding): a session belongs to the identity that created it.
// The identity is a request header (`Authorization`, or one an auth layer in front sets);
// the record keeps only an HMAC-SHA-256 of it under sessions.binding_secret_file's key, so
// neither Redis nor the local table holds the credential. A request of a session whose
// identity does not match is answered like an unknown id (404), so ids cannot be probed.

#include <optional>
#include <string>
#include <string_view>

#include "mcpproxy/config.hpp"
#include "mcpproxy/http1.hpp"

namespace mcpproxy {

// The request's identity under the binding; nullopt when it has none (or binding is off).
std::optional<std::string_view> binding_identity(const SessionsConfig& s, const http1::Head& head);

// Hex HMAC-SHA-256 of `identity` under `key`.
std::string principal_of(std::string_view key, std::string_view identity);

// Constant-time comparison of two principals.
bool same_principal(std::string_view a, std::string_view b);

// 32 random bytes, made once per process: the key of the memory store when no secret file
// is configured (one process, so nothing else has to agree on it).
const std::string& process_binding_key();

}  // namespace mcpproxy
