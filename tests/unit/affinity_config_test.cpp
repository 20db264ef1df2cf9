// affinity.* keys (issue 27): names and flags as DESIGN.md has them.
#include <gtest/gtest.h>

#include "core/config/config.hpp"

using namespace mcpproxy;
using std::chrono::milliseconds;

namespace {

const std::vector<std::pair<std::string, std::string>> kPods = {
    {"backend.url_template", "http://127.0.0.1:1910{ordinal}"}};

std::string error_of(const std::string& yaml, std::vector<std::pair<std::string, std::string>> overrides = {}) {
  overrides.insert(overrides.begin(), kPods.begin(), kPods.end());
  try {
    config_from_yaml(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

CommandLine parse(std::vector<const char*> args) {
  args.insert(args.begin(), "mcp-session-proxy");
  return parse_command_line(static_cast<int>(args.size()), args.data());
}

}  // namespace

TEST(AffinityConfig, Defaults) {
  const Config c = config_from_yaml("", "empty", kPods);
  EXPECT_TRUE(c.affinity.tasks);
  EXPECT_EQ(c.affinity.task_ttl_default, milliseconds(3600 * 1000));
  EXPECT_EQ(c.affinity.task_ttl_max, milliseconds(24 * 3600 * 1000));
  EXPECT_TRUE(c.affinity.handles.empty());
}

TEST(AffinityConfig, YamlKeys) {
  const Config c = config_from_yaml(R"(
affinity:
  tasks: false
  task_ttl_default: 10m
  task_ttl_max: 2h
  max_keys: 5000
  max_key_length: 64
  handles:
    - param: Cart
      tool: open_cart
      result_pointer: /structuredContent/cart
)",
                                    "test.yaml", kPods);
  EXPECT_FALSE(c.affinity.tasks);
  EXPECT_EQ(c.affinity.task_ttl_default, milliseconds(600 * 1000));
  EXPECT_EQ(c.affinity.task_ttl_max, milliseconds(7200 * 1000));
  EXPECT_EQ(c.affinity.max_keys, 5000U);
  EXPECT_EQ(c.affinity.max_key_length, 64U);
  ASSERT_EQ(c.affinity.handles.size(), 1U);
  EXPECT_EQ(c.affinity.handles[0].param, "Cart");
  EXPECT_EQ(c.affinity.handles[0].tool, "open_cart");
  EXPECT_EQ(c.affinity.handles[0].result_pointer, "/structuredContent/cart");
  EXPECT_EQ(c.affinity.handles[0].header, "Mcp-Param-Cart");
}

TEST(AffinityConfig, Flags) {
  const CommandLine cmd = parse({"--backend-url-template", "http://127.0.0.1:1910{ordinal}", "--task-affinity", "false",
                                 "--task-ttl-default", "5m", "--task-ttl-max", "1h", "--handle",
                                 R"({"param":"Cart","tool":"open_cart","result_pointer":"/cart"})"});
  const Config c = build_config(cmd);
  EXPECT_FALSE(c.affinity.tasks);
  EXPECT_EQ(c.affinity.task_ttl_default, milliseconds(300 * 1000));
  EXPECT_EQ(c.affinity.task_ttl_max, milliseconds(3600 * 1000));
  ASSERT_EQ(c.affinity.handles.size(), 1U);
  EXPECT_EQ(c.affinity.handles[0].result_pointer, "/cart");
}

TEST(AffinityConfig, BadHandlesNameTheKey) {
  EXPECT_NE(error_of("affinity:\n  handles:\n    - param: Cart\n      tool: t\n      result_pointer: nope\n")
                .find("affinity.handles"),
            std::string::npos);
  EXPECT_NE(error_of("affinity:\n  handles:\n    - param: 'a b'\n      tool: t\n").find("affinity.handles"),
            std::string::npos);
  EXPECT_NE(error_of("affinity:\n  handles:\n    - param: Cart\n").find("tool"), std::string::npos);
  EXPECT_NE(error_of("affinity:\n  handles:\n    - param: Cart\n      tool: t\n      extra: 1\n").find("extra"),
            std::string::npos);
  EXPECT_NE(error_of("", {{"affinity.handles", "not json"}}).find("affinity.handles"), std::string::npos);
  EXPECT_NE(error_of("affinity:\n  task_ttl_max: 0s\n").find("affinity.task_ttl_max"), std::string::npos);
  EXPECT_NE(error_of("affinity:\n  bogus: 1\n").find("unknown key"), std::string::npos);
}

TEST(AffinityConfig, ListedInTheReference) {
  const std::string ref = config_reference();
  for (const char* key : {"affinity.tasks", "affinity.task_ttl_default", "affinity.task_ttl_max", "affinity.handles",
                          "--task-affinity", "--task-ttl-default", "--task-ttl-max"}) {
    EXPECT_NE(ref.find(key), std::string::npos) << key;
  }
}
