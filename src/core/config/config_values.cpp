// The value parsers of config keys: integers, sizes, durations, addresses, list entries.
#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "core/config/config_keys.hpp"
#include "core/http/http1.hpp"
#include "core/http/http_rules.hpp"

namespace mcpproxy {
namespace config_detail {

long long to_int(const std::string& v) {
  long long out = 0;
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc{} || p != end || v.empty()) bad("must be an integer, got '" + v + "'");
  return out;
}

int int_in(const std::string& v, long long lo, long long hi) {
  const long long n = to_int(v);
  if (n < lo || n > hi) {
    bad("must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " + v);
  }
  return static_cast<int>(n);
}

bool to_bool(const std::string& v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  bad("must be true or false, got '" + v + "'");
}

std::string one_of(const std::string& v, std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return v;
    list += list.empty() ? "" : ", ";
    list += a;
  }
  bad("must be one of " + list + ", got '" + v + "'");
}

duration positive_duration(const std::string& v) {
  const duration d = parse_duration(v);
  if (d.count() <= 0) bad("must be a positive duration, got '" + v + "'");
  return d;
}

std::size_t positive_size(const std::string& v) {
  const std::size_t s = parse_size(v);
  if (s == 0) bad("must be a positive size, got '" + v + "'");
  return s;
}

std::string b(bool v) { return v ? "true" : "false"; }

std::vector<int> ordinal_list(const std::string& v) {
  std::vector<int> out;
  std::size_t at = 0;
  while (at <= v.size() && !v.empty()) {
    const std::size_t comma = std::min(v.find(',', at), v.size());
    std::string item = v.substr(at, comma - at);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    out.push_back(int_in(item, 0, kMaxReplicas - 1));
    at = comma + 1;
  }
  return out;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

// scheme://host[:port], as browsers send it (or "null").
std::string origin_entry(const std::string& v) {
  if (!valid_origin_entry(v))
    bad("must be an origin like https://app.example.com or http://localhost:3000, got '" + v + "'");
  return v;
}

// host:port, as a Redis node is named.
std::string node_entry(const std::string& v) {
  const auto colon = v.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == v.size() ||
      v.find_first_of("/?# ,@") != std::string::npos) {
    bad("must be host:port like redis-sentinel-0.redis:26379, got '" + v + "'");
  }
  int_in(v.substr(colon + 1), 1, 65535);
  return v;
}

IpNetwork network_entry(const std::string& v) {
  const auto n = parse_network(v);
  if (!n) bad("must be an address or address block like 10.0.0.0/8 or 2001:db8::/32, got '" + v + "'");
  return *n;
}

std::string host_entry(const std::string& v) {
  if (!valid_host_entry(v)) bad("must be a host or host:port like localhost or 127.0.0.1:8080, got '" + v + "'");
  return v;
}

void set_binding(Config& c, const std::string& v) {
  if (v == "none" || v == "authorization" || v == "jwt") {
    c.sessions.binding = v == "none" ? BindingKind::none : v == "jwt" ? BindingKind::jwt : BindingKind::authorization;
    c.sessions.binding_header.clear();
  } else if (v.rfind("header:", 0) == 0 && http1::is_token(std::string_view(v).substr(7))) {
    c.sessions.binding = BindingKind::header;
    c.sessions.binding_header = v.substr(7);
  } else {
    bad("must be none, authorization, jwt or header:<Name>, got '" + v + "'");
  }
}

std::string binding_name(const Config& c) {
  switch (c.sessions.binding) {
    case BindingKind::none:
      return "none";
    case BindingKind::authorization:
      return "authorization";
    case BindingKind::jwt:
      return "jwt";
    case BindingKind::header:
      break;
  }
  return "header:" + c.sessions.binding_header;
}

// One affinity.handles item, as JSON ({"param":…,"tool":…,"result_pointer":…}): a YAML
// map item is turned into that text by set_list.
HandleRule handle_rule(const std::string& v) {
  const auto j = nlohmann::json::parse(v, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) bad("must be a map {param, tool, result_pointer}, got '" + v + "'");
  HandleRule r;
  for (const auto& [k, item] : j.items()) {
    if (!item.is_string()) bad("'" + k + "' must be a string");
    if (k == "param") {
      r.param = item.get<std::string>();
    } else if (k == "tool") {
      r.tool = item.get<std::string>();
    } else if (k == "result_pointer") {
      r.result_pointer = item.get<std::string>();
    } else {
      bad("unknown field '" + k + "' (param, tool, result_pointer)");
    }
  }
  if (r.param.empty() || !http1::is_token(r.param)) bad("param must be a header name token, got '" + r.param + "'");
  if (r.tool.empty()) bad("tool must name the tool whose answer holds the handle");
  if (!r.result_pointer.empty() && r.result_pointer.front() != '/') {
    bad("result_pointer must be a JSON pointer ('/structuredContent/id'), got '" + r.result_pointer + "'");
  }
  r.header = "Mcp-Param-" + r.param;
  return r;
}

std::string handle_rules_text(const std::vector<HandleRule>& rules) {
  std::string out;
  for (const HandleRule& r : rules) {
    out += out.empty() ? "" : ",";
    out += nlohmann::json{{"param", r.param}, {"tool", r.tool}, {"result_pointer", r.result_pointer}}.dump();
  }
  return out;
}

}  // namespace config_detail

using namespace config_detail;

std::string_view to_string(StoreKind v) { return kStoreNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(IoBackend v) { return kIoBackendNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(OnLost v) { return kOnLostNames[static_cast<std::size_t>(v)]; }
std::string_view to_string(PlacementPolicy v) { return kPlacementNames[static_cast<std::size_t>(v)]; }

std::string ListenAddress::str() const {
  return host.find(':') != std::string::npos ? "[" + host + "]:" + std::to_string(port)
                                             : host + ":" + std::to_string(port);
}

duration parse_duration(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
  if (i == 0) bad("must be a duration like 500ms, 30s, 5m or 2h, got '" + text + "'");
  const long long n = to_int(text.substr(0, i));
  const std::string unit = text.substr(i);
  long long ms = 0;
  if (unit == "ms") {
    ms = n;
  } else if (unit == "s" || unit.empty()) {
    ms = n * 1000;
  } else if (unit == "m") {
    ms = n * 60 * 1000;
  } else if (unit == "h") {
    ms = n * 3600 * 1000;
  } else {
    bad("must be a duration like 500ms, 30s, 5m or 2h, got '" + text + "'");
  }
  return duration{ms};
}

std::string format_duration(duration d) {
  const long long ms = d.count();
  if (ms % 3600000 == 0 && ms != 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0 && ms != 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::size_t parse_size(const std::string& text) {
  std::size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i])) != 0) ++i;
  if (i == 0 || i > 12) bad("must be a size like 512, 16KiB or 8MiB, got '" + text + "'");
  const auto n = static_cast<std::size_t>(to_int(text.substr(0, i)));
  const std::string unit = text.substr(i);
  if (unit.empty() || unit == "B") return n;
  if (unit == "KiB" || unit == "K" || unit == "k") return n * 1024;
  if (unit == "MiB" || unit == "M") return n * 1024 * 1024;
  if (unit == "GiB" || unit == "G") return n * 1024 * 1024 * 1024;
  bad("must be a size like 512, 16KiB or 8MiB, got '" + text + "'");
}

ListenAddress parse_listen(const std::string& text) {
  ListenAddress out;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      bad("must be host:port or [v6]:port, got '" + text + "'");
    }
    out.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) bad("must be host:port, got '" + text + "'");
    out.host = text.substr(0, colon);
    if (out.host.find(':') != std::string::npos) bad("an IPv6 host needs brackets: [::1]:8080, got '" + text + "'");
    port = text.substr(colon + 1);
  }
  if (out.host.empty()) out.host = "0.0.0.0";
  out.port = static_cast<std::uint16_t>(int_in(port, 0, 65535));
  return out;
}

}  // namespace mcpproxy
