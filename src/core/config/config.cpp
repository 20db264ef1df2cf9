// Reading the config: YAML and flags through the key table, printing it back (--check-config,
// the reference). The table is config_keys.cpp, the checks config_validate.cpp.
#include "core/config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config/config_keys.hpp"
#include "core/config/url_template.hpp"

namespace mcpproxy {
namespace {

using namespace config_detail;

void apply(Config& cfg, const KeySpec& spec, const std::string& value, const std::string& where) {
  try {
    spec.set(cfg, value);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(spec.key + ": " + e.what() + " (" + where + ")");
  }
}

// A list key takes a sequence of scalars, one scalar, or nothing (`key: []`, `key:`).
void set_list(Config& cfg, const KeySpec& spec, const YAML::Node& value, const std::string& where) {
  spec.reset(cfg);
  if (value.IsNull()) return;
  if (value.IsScalar()) {
    apply(cfg, spec, value.Scalar(), where);
    return;
  }
  if (!value.IsSequence()) throw ConfigError(spec.key + ": must be a list of values (" + where + ")");
  for (const auto& item : value) {
    if (item.IsMap() && spec.key == "affinity.handles") {
      // A list of maps: each map goes to the key's setter as JSON.
      nlohmann::json j = nlohmann::json::object();
      for (const auto& kv : item) {
        if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
          throw ConfigError(spec.key + ": every field must be a single value (" + where + ")");
        }
        j[kv.first.Scalar()] = kv.second.Scalar();
      }
      apply(cfg, spec, j.dump(), where);
      continue;
    }
    if (!item.IsScalar()) throw ConfigError(spec.key + ": every item must be a single value (" + where + ")");
    apply(cfg, spec, item.Scalar(), where);
  }
}

void walk(Config& cfg, const YAML::Node& node, const std::string& prefix, const std::string& origin) {
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) {
      throw ConfigError((prefix.empty() ? std::string("the top level") : prefix) + ": keys must be plain names (" +
                        origin + ":" + std::to_string(kv.first.Mark().line + 1) + ")");
    }
    const std::string name = kv.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    const YAML::Node& value = kv.second;
    const std::string where = origin + ":" + std::to_string(kv.first.Mark().line + 1);
    if (value.IsMap()) {
      walk(cfg, value, key, origin);
      continue;
    }
    const KeySpec* spec = find_key(key);
    if (spec == nullptr) throw ConfigError(key + ": unknown key (" + where + ")");
    if (spec->reset) {
      set_list(cfg, *spec, value, where);
      continue;
    }
    if (!value.IsScalar()) throw ConfigError(key + ": must be a single value (" + where + ")");
    apply(cfg, *spec, value.Scalar(), where);
  }
}

}  // namespace

CommandLine parse_command_line(int argc, const char* const* argv) {
  CommandLine cmd;
  CLI::App app{"mcp-session-proxy: pins MCP Streamable HTTP sessions to StatefulSet pods", "mcp-session-proxy"};
  app.set_help_flag();  // handled below, so that --help works whatever else is on the line
  std::string config_file;
  app.add_option("--config", config_file, "YAML config file");
  app.add_flag("--check-config", cmd.check_config, "validate the config, print the effective config, exit 0 (or 2)");
  app.add_flag("--version", cmd.version, "print the version and exit");
  app.add_flag("--config-reference", cmd.config_reference,
               "print every config key (flag, default, reloadable, meaning) as Markdown and exit");
  app.add_flag("-h,--help", cmd.help, "print this help and exit");
  std::vector<std::string> values(key_specs().size());
  std::vector<std::vector<std::string>> lists(key_specs().size());
  std::vector<CLI::Option*> options;
  for (std::size_t i = 0; i < key_specs().size(); ++i) {
    const auto& spec = key_specs()[i];
    const std::string help = spec.help + " [" + spec.key + "]";
    if (spec.reset) {
      // Repeatable, one value per occurrence.
      options.push_back(app.add_option(spec.flag, lists[i], help)->allow_extra_args(false));
    } else {
      options.push_back(app.add_option(spec.flag, values[i], help));
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    throw ConfigError(std::string("command line: ") + e.what() + " (see --help)");
  }
  cmd.help_text = app.help();
  if (!config_file.empty()) cmd.config_file = config_file;
  for (std::size_t i = 0; i < options.size(); ++i) {
    if (options[i]->count() == 0) continue;
    if (key_specs()[i].reset) {
      for (const auto& item : lists[i]) cmd.overrides.emplace_back(key_specs()[i].key, item);
    } else {
      cmd.overrides.emplace_back(key_specs()[i].key, values[i]);
    }
  }
  return cmd;
}

Config config_from_yaml(const std::string& yaml_text, const std::string& origin,
                        const std::vector<std::pair<std::string, std::string>>& overrides) {
  Config cfg;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(origin + ": not valid YAML: " + e.what());
  }
  if (root.IsMap()) {
    try {
      walk(cfg, root, "", origin);
    } catch (const YAML::Exception& e) {
      // Whatever shape yaml-cpp refuses is a bad file, never an exception past this point.
      throw ConfigError(origin + ": " + e.what());
    }
  } else if (!root.IsNull()) {
    throw ConfigError(origin + ": the top level must be a map of keys");
  }
  std::vector<const KeySpec*> lists_from_flags;  // a repeated flag replaces the file's list
  for (const auto& [key, value] : overrides) {
    const KeySpec* spec = find_key(key);
    if (spec == nullptr) throw ConfigError(key + ": unknown key");
    if (spec->reset && std::find(lists_from_flags.begin(), lists_from_flags.end(), spec) == lists_from_flags.end()) {
      spec->reset(cfg);
      lists_from_flags.push_back(spec);
    }
    apply(cfg, *spec, value, spec->flag);
  }
  validate(cfg);
  return cfg;
}

Config build_config(const CommandLine& cmd) {
  std::string text;
  std::string origin = "command line";
  if (cmd.config_file) {
    std::ifstream in(*cmd.config_file);
    if (!in) throw ConfigError("--config: cannot read " + *cmd.config_file);
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
    origin = *cmd.config_file;
  }
  return config_from_yaml(text, origin, cmd.overrides);
}

std::string to_yaml(const Config& cfg) {
  YAML::Node root;
  for (const auto& spec : key_specs()) {
    std::string value = spec.get(cfg);
    if (spec.secret && !value.empty()) value = mask_url_password(value);
    YAML::Node node(value);
    if (spec.reset) {
      node = YAML::Node(YAML::NodeType::Sequence);
      std::stringstream items(value);
      for (std::string item; std::getline(items, item, ',');) node.push_back(item);
    }
    std::vector<std::string> parts;
    std::stringstream ss(spec.key);
    for (std::string p; std::getline(ss, p, '.');) parts.push_back(p);
    // Keys are at most three levels deep (sessions.redis.url).
    switch (parts.size()) {
      case 1:
        root[parts[0]] = node;
        break;
      case 2:
        root[parts[0]][parts[1]] = node;
        break;
      default:
        root[parts[0]][parts[1]][parts[2]] = node;
        break;
    }
  }
  YAML::Emitter out;
  out << root;
  return std::string(out.c_str()) + "\n";
}

namespace {

// "text (default X)" -> "text": the reference has a column of its own for the default.
std::string without_default(std::string help) {
  const auto at = help.find(" (default");
  if (at == std::string::npos) return help;
  const auto close = help.find(')', at);
  if (close == std::string::npos) return help;
  help.erase(at, close + 1 - at);
  return help;
}

std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

bool reloadable(std::string_view key) {
  for (std::string_view k : restart_only_keys()) {
    if (key == k || (k.back() == '.' && key.substr(0, k.size()) == k)) return false;
  }
  return true;
}

const std::vector<std::string_view>& restart_only_keys() {
  // Server::reload keeps these as they were (it compares the same fields).
  static const std::vector<std::string_view> keys = {
      "listen", "admin_listen", "threads", "io_backend", "sessions.store", "sessions.max_sessions", "sessions.redis."};
  return keys;
}

std::string config_reference() {
  const Config defaults;
  std::string out =
      "| Key | Flag | Default | On SIGHUP | Meaning |\n"
      "|---|---|---|---|---|\n";
  for (const auto& spec : key_specs()) {
    std::string value = spec.get(defaults);
    // The default of `threads` is the machine's core count, decided at start.
    if (spec.key == "threads") value = "number of cores";
    std::string shown = value.empty() ? "(none)" : "`" + value + "`";
    if (spec.reset) shown += " (list: repeat the flag)";
    out += "| `" + spec.key + "` | `" + spec.flag + "` | " + cell(shown) + " | " +
           (reloadable(spec.key) ? "applied" : "restart") + " | " + cell(without_default(spec.help)) + " |\n";
  }
  return out;
}

}  // namespace mcpproxy
