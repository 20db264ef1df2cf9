#include "core/config/url_template.hpp"

#include <charconv>

#include <boost/url/parse.hpp>
#include <boost/url/url.hpp>

namespace mcpproxy {
namespace {

// Substitutes placeholders; `missing` receives the first placeholder with no value.
std::string expand(const BackendConfig& b, const std::string& ordinal, std::string* missing, std::string* unknown) {
  const std::string& tpl = b.url_template.empty() ? std::string(kDefaultUrlTemplate) : b.url_template;
  std::string out;
  out.reserve(tpl.size() + 32);
  for (std::size_t i = 0; i < tpl.size();) {
    if (tpl[i] != '{') {
      out += tpl[i++];
      continue;
    }
    const auto close = tpl.find('}', i);
    if (close == std::string::npos) {
      if (unknown != nullptr && unknown->empty()) *unknown = tpl.substr(i);
      out += tpl.substr(i);
      break;
    }
    const std::string name = tpl.substr(i + 1, close - i - 1);
    std::string value;
    if (name == "ordinal") {
      value = ordinal;
    } else if (name == "statefulset") {
      value = b.statefulset;
    } else if (name == "service") {
      value = b.service;
    } else if (name == "namespace") {
      value = b.ns;
    } else if (name == "cluster_domain") {
      value = b.cluster_domain;
    } else if (name == "port") {
      value = std::to_string(b.port);
    } else if (name == "scheme") {
      value = b.scheme;
    } else if (unknown != nullptr && unknown->empty()) {
      *unknown = "{" + name + "}";
    }
    if (value.empty() && missing != nullptr && missing->empty()) *missing = name;
    out += value;
    i = close + 1;
  }
  return out;
}

const char* key_of(const std::string& placeholder) {
  if (placeholder == "statefulset") return "backend.statefulset";
  if (placeholder == "service") return "backend.service";
  if (placeholder == "namespace") return "backend.namespace";
  if (placeholder == "cluster_domain") return "backend.cluster_domain";
  return "backend.url_template";
}

}  // namespace

void validate_url_template(const BackendConfig& backend) {
  const std::string& tpl = backend.url_template.empty() ? std::string(kDefaultUrlTemplate) : backend.url_template;
  if (tpl.find("{ordinal}") == std::string::npos) {
    throw ConfigError("backend.url_template: must contain {ordinal}, got '" + tpl + "'");
  }
  std::string missing;
  std::string unknown;
  const std::string url = expand(backend, "0", &missing, &unknown);
  if (!unknown.empty()) {
    throw ConfigError("backend.url_template: unknown placeholder " + unknown +
                      " (known: {ordinal} {statefulset} {service} {namespace} {cluster_domain} {port} {scheme})");
  }
  if (!missing.empty()) {
    throw ConfigError(std::string(key_of(missing)) + ": required by backend.url_template ('" + tpl + "' uses {" +
                      missing + "}) but not set");
  }
  parse_pod_url(url);
}

std::string expand_pod_url(const BackendConfig& backend, int ordinal) {
  return expand(backend, std::to_string(ordinal), nullptr, nullptr);
}

std::uint16_t port_number(std::string_view port) {
  if (port.empty()) return 0;
  unsigned value = 0;
  const char* end = port.data() + port.size();
  const auto [at, ec] = std::from_chars(port.data(), end, value);
  if (ec != std::errc() || at != end || value > 65535) return 0;
  return static_cast<std::uint16_t>(value);
}

PodAddress parse_pod_url(const std::string& url) {
  auto r = boost::urls::parse_absolute_uri(url);
  if (!r) throw ConfigError("backend.url_template: '" + url + "' is not a URL: " + r.error().message());
  const auto& u = *r;
  if (u.scheme() != "http") {
    throw ConfigError("backend.url_template: '" + url + "' must be an http:// URL (TLS to pods is not supported)");
  }
  if (u.host().empty()) throw ConfigError("backend.url_template: '" + url + "' has no host");
  if (!u.encoded_path().empty() && u.encoded_path() != "/") {
    throw ConfigError("backend.url_template: '" + url + "' must not have a path (requests keep their own path)");
  }
  if (u.has_query() || u.has_fragment() || u.has_userinfo()) {
    throw ConfigError("backend.url_template: '" + url + "' must not have a query, fragment or user info");
  }
  if (u.has_port() && port_number(u.port()) == 0) {
    throw ConfigError("backend.url_template: '" + url + "' has port '" + std::string(u.port()) +
                      "': a pod's port is a number from 1 to 65535");
  }
  PodAddress pod;
  pod.url = url;
  // host_name() decodes; for an IPv6 literal use the address without brackets.
  pod.host = u.host_type() == boost::urls::host_type::ipv6 ? std::string(u.host_ipv6_address().to_string())
                                                           : std::string(u.encoded_host());
  pod.port = u.has_port() ? std::string(u.port()) : "80";
  pod.authority = std::string(u.encoded_host_and_port());
  // A fully qualified name (a trailing dot, so that DNS skips the search list) is the same
  // host for the pod: its authority (Host with backend.rewrite_host) goes without the dot.
  if (pod.host.size() > 1 && pod.host.ends_with('.') && u.host_type() == boost::urls::host_type::name) {
    pod.authority = pod.host.substr(0, pod.host.size() - 1) + (u.has_port() ? ":" + std::string(u.port()) : "");
  }
  return pod;
}

std::string mask_url_password(const std::string& url) {
  auto r = boost::urls::parse_uri(url);
  if (!r || !r->has_password()) return url;
  boost::urls::url u = *r;
  u.set_password("***");
  return std::string(u.buffer());
}

}  // namespace mcpproxy
