#pragma once
// Pod URLs: `backend.url_template` with its placeholders substituted.

#include <cstdint>
#include <string>
#include <string_view>

#include "core/config/config.hpp"

namespace mcpproxy {

inline constexpr const char* kDefaultUrlTemplate =
    "{scheme}://{statefulset}-{ordinal}.{service}.{namespace}.svc.{cluster_domain}:{port}";

// Throws ConfigError naming the key: unknown placeholder, a placeholder with no value,
// no {ordinal}, or a result that is not an http URL with a host.
void validate_url_template(const BackendConfig& backend);

// The template with every placeholder substituted (the config must be valid).
std::string expand_pod_url(const BackendConfig& backend, int ordinal);

// Splits an http URL; throws ConfigError when it is not one (a port must be 1-65535).
PodAddress parse_pod_url(const std::string& url);

// A port's number: decimal digits only, 1-65535; 0 for anything else. Never throws.
std::uint16_t port_number(std::string_view port);

// redis://user:secret@host -> redis://user:***@host
std::string mask_url_password(const std::string& url);

}  // namespace mcpproxy
