// Checks across config keys, and what follows from them: the pod list, the binding key,
// the worker count. A key's own value is checked where it is parsed (config_values.cpp).
#include <algorithm>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/config/config_keys.hpp"
#include "core/config/url_template.hpp"
#include "core/identity/jwt.hpp"
#include "core/identity/session_binding.hpp"
#include "core/tables/redis_codec.hpp"

namespace mcpproxy::config_detail {
namespace {

void validate_memory_bounds(const Config& cfg) {
  if (cfg.limits.max_worker_body_bytes < cfg.limits.max_body_size) {
    throw ConfigError("limits.max_worker_body_bytes: must be at least limits.max_body_size (" +
                      std::to_string(cfg.limits.max_body_size) + " bytes)");
  }
  if (cfg.sessions.max_table_bytes < 4 * cfg.limits.max_body_size) {
    throw ConfigError("sessions.max_table_bytes: must be at least 4 x limits.max_body_size (" +
                      std::to_string(4 * cfg.limits.max_body_size) + " bytes)");
  }
}

void validate_reply_bound(const Config& cfg) {
  // A record holds an initialize body, JSON-escaped (up to twice its size), and Redis must
  // be able to hand it back.
  if (cfg.sessions.redis.max_reply_size < 2 * cfg.limits.max_body_size + 64 * 1024) {
    throw ConfigError("sessions.redis.max_reply_size: must be at least 2 x limits.max_body_size + 64KiB (" +
                      std::to_string(2 * cfg.limits.max_body_size + 64 * 1024) + " bytes)");
  }
}

void validate_binding(Config& cfg) {
  auto& s = cfg.sessions;
  if (s.binding == BindingKind::none) {
    if (!s.binding_secret_file.empty()) {
      throw ConfigError("sessions.binding_secret_file: set, but sessions.binding is none");
    }
    s.binding_keys.clear();
    return;
  }
  if (s.binding_secret_file.empty()) {
    if (s.store == StoreKind::redis) {
      throw ConfigError(
          "sessions.binding_secret_file: required with sessions.binding and the redis store (the replicas must agree "
          "on the key)");
    }
    s.binding_keys = {make_binding_key(process_binding_key())};
    return;
  }
  std::ifstream in(s.binding_secret_file, std::ios::binary);
  if (!in) throw ConfigError("sessions.binding_secret_file: cannot read " + s.binding_secret_file);
  std::ostringstream text;
  text << in.rdbuf();
  try {
    s.binding_keys = parse_binding_keys(text.str());
  } catch (const std::invalid_argument& e) {
    throw ConfigError("sessions.binding_secret_file: " + s.binding_secret_file + " " + e.what() +
                      " (one key of 16 bytes or more a line)");
  }
}

void validate_admin(const Config& cfg) {
  if (cfg.backend.health_check_timeout >= cfg.backend.health_check_interval) {
    throw ConfigError("backend.health_check.timeout: must be shorter than backend.health_check.interval (" +
                      format_duration(cfg.backend.health_check_interval) + ")");
  }
  if (!cfg.admin_token_file.empty() && !std::ifstream(cfg.admin_token_file)) {
    throw ConfigError("admin.token_file: cannot read " + cfg.admin_token_file);
  }
}

void validate_redis_mode(const Config& cfg) {
  const auto& redis = cfg.sessions.redis;
  switch (redis.mode) {
    case RedisMode::standalone:
      if (redis.url.empty()) throw ConfigError("sessions.redis.url: required when sessions.store is redis");
      if (!redis.nodes.empty() || !redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.nodes: set, but sessions.redis.mode is standalone (set mode: sentinel)");
      }
      break;
    case RedisMode::sentinel:
      if (redis.nodes.empty()) throw ConfigError("sessions.redis.nodes: required in sentinel mode (the sentinels)");
      if (redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.sentinel_master: required in sentinel mode (the master name)");
      }
      if (!redis.sentinel_password_file.empty() && !std::ifstream(redis.sentinel_password_file)) {
        throw ConfigError("sessions.redis.sentinel_password_file: cannot read " + redis.sentinel_password_file);
      }
      break;
    case RedisMode::cluster:
      if (redis.nodes.empty()) throw ConfigError("sessions.redis.nodes: required in cluster mode (seed nodes)");
      if (!redis.sentinel_master.empty()) {
        throw ConfigError("sessions.redis.sentinel_master: set, but sessions.redis.mode is cluster");
      }
      break;
  }
}

void validate_redis(const Config& cfg) {
  const auto& redis = cfg.sessions.redis;
  if (cfg.sessions.store == StoreKind::redis) {
    validate_redis_mode(cfg);
    try {
      const RedisUrl url = parse_redis_url(redis.url.empty() ? "redis://from-the-nodes" : redis.url);
      if (redis.mode == RedisMode::cluster && url.db != 0) {
        throw ConfigError("sessions.redis.url: Redis Cluster has only database 0, the URL names " +
                          std::to_string(url.db));
      }
      if (!url.tls && (!redis.tls_ca_file.empty() || !redis.tls_server_name.empty())) {
        throw ConfigError("sessions.redis.tls_ca_file: TLS options need a rediss:// URL");
      }
    } catch (const std::invalid_argument& e) {
      throw ConfigError(std::string("sessions.redis.url: ") + e.what());
    }
    validate_reply_bound(cfg);
    for (const auto& [key, path] : {std::pair{"sessions.redis.password_file", redis.password_file},
                                    std::pair{"sessions.redis.tls_ca_file", redis.tls_ca_file}}) {
      if (!path.empty() && !std::ifstream(path)) throw ConfigError(std::string(key) + ": cannot read " + path);
    }
  } else {
    // Redis options with the memory store would be silent no-ops.
    if (!redis.password_file.empty() || !redis.tls_ca_file.empty() || !redis.tls_server_name.empty() ||
        redis.mode != RedisMode::standalone || !redis.nodes.empty() || !redis.sentinel_master.empty()) {
      throw ConfigError("sessions.redis: options set, but sessions.store is memory");
    }
  }
}

}  // namespace

void validate(Config& cfg) {
  if (cfg.threads == 0) cfg.threads = static_cast<int>(std::max(1U, std::thread::hardware_concurrency()));
  if (cfg.sessions.store == StoreKind::memory && !cfg.sessions.redis.url.empty()) {
    throw ConfigError(
        "sessions.redis.url: set, but sessions.store is memory (set sessions.store: redis, or remove the URL)");
  }
  validate_redis(cfg);
  validate_admin(cfg);
  validate_binding(cfg);
  validate_jwt_binding(cfg.sessions);  // jwt_config.cpp
  validate_memory_bounds(cfg);
  if (cfg.subscriptions.fanout && cfg.backend.replicas > cfg.subscriptions.max_legs_per_listen) {
    throw ConfigError("subscriptions.max_legs_per_listen: backend.replicas (" + std::to_string(cfg.backend.replicas) +
                      ") exceeds it; a fanned-out listen must hear every pod");
  }
  // trust_forwarded_headers says the hop in front is trusted: so is what it appends.
  if (cfg.trust_forwarded_headers && cfg.client_address.count == 0) cfg.client_address.count = 1;

  if (cfg.listen.port == cfg.admin_listen.port && cfg.listen.port != 0 && cfg.listen.host == cfg.admin_listen.host) {
    throw ConfigError("admin_listen: must differ from listen (" + cfg.listen.str() + ")");
  }
  // Every placeholder the template uses must have a value: never a silent empty host.
  validate_url_template(cfg.backend);
  cfg.backend.pods.clear();
  for (int o = 0; o < cfg.backend.replicas; ++o) {
    cfg.backend.pods.push_back(parse_pod_url(expand_pod_url(cfg.backend, o)));
    // The default template's name is fully qualified: looked up as it is (one name, not the
    // resolv.conf search list first under ndots:5); the URL and the authority keep no dot.
    if (cfg.backend.url_template.empty() && !cfg.backend.pods.back().host.ends_with('.')) {
      cfg.backend.pods.back().host += '.';
    }
  }
}

}  // namespace mcpproxy::config_detail
