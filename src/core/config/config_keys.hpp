#pragma once
// The config's parts that its files share, not part of the public interface (config.hpp):
// the key table (config_keys.cpp), the value parsers it uses (config_values.cpp) and the
// checks across keys (config_validate.cpp). config.cpp reads YAML and flags through them.

#include <array>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/config.hpp"

namespace mcpproxy::config_detail {

using Setter = std::function<void(Config&, const std::string&)>;
using Getter = std::function<std::string(const Config&)>;

// One row per config key: the YAML path, the flag, its help, and how to set and print it.
// This table is the single place where the contract of DESIGN.md's "Configuration" lives.
struct KeySpec {
  std::string key;
  std::string flag;
  std::string help;
  Setter set;
  Getter get;
  bool secret = false;
  // Set for a list key: empties the list. `set` then adds one item (a YAML sequence's
  // element, or one occurrence of the repeatable flag); `get` prints the items with commas.
  std::function<void(Config&)> reset = nullptr;
};

[[noreturn]] inline void bad(const std::string& what) { throw std::invalid_argument(what); }

// The key table, in the order --help and the reference print it.
const std::vector<KeySpec>& key_specs();
const KeySpec* find_key(const std::string& key);

// Checks across keys, and what follows from them (the pod list, the binding key, threads).
void validate(Config& cfg);

long long to_int(const std::string& v);
int int_in(const std::string& v, long long lo, long long hi);
bool to_bool(const std::string& v);
std::string one_of(const std::string& v, std::initializer_list<const char*> allowed);
duration positive_duration(const std::string& v);
std::size_t positive_size(const std::string& v);
std::string b(bool v);
std::vector<int> ordinal_list(const std::string& v);
std::string joined(const std::vector<std::string>& items);
std::string origin_entry(const std::string& v);
std::string node_entry(const std::string& v);
IpNetwork network_entry(const std::string& v);
std::string host_entry(const std::string& v);
void set_binding(Config& c, const std::string& v);
std::string binding_name(const Config& c);
// One affinity.handles item as JSON ({"param":…,"tool":…,"result_pointer":…}), and the list printed so.
HandleRule handle_rule(const std::string& v);
std::string handle_rules_text(const std::vector<HandleRule>& rules);

// An enum's names, in the order of its values.
template <class E, std::size_t N>
E enum_of(const std::string& v, const std::array<std::string_view, N>& names) {
  std::string list;
  for (std::size_t i = 0; i < N; ++i) {
    if (v == names[i]) return static_cast<E>(i);
    list += list.empty() ? "" : ", ";
    list += names[i];
  }
  bad("must be one of " + list + ", got '" + v + "'");
}
constexpr std::array<std::string_view, 2> kStoreNames = {"memory", "redis"};
constexpr std::array<std::string_view, 2> kIoBackendNames = {"epoll", "io_uring"};
constexpr std::array<std::string_view, 3> kRedisModeNames = {"standalone", "sentinel", "cluster"};
constexpr std::array<std::string_view, 2> kOnLostNames = {"reinitialize", "not_found"};
constexpr std::array<std::string_view, 2> kPlacementNames = {"least_sessions", "random"};
constexpr std::array<std::string_view, 2> kNonJwtNames = {"refuse", "exact"};
constexpr std::array<std::string_view, 2> kSlowListenClientNames = {"close", "drop"};

}  // namespace mcpproxy::config_detail
