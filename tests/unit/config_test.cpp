#include "core/config/config.hpp"

#include <gtest/gtest.h>

#include <fstream>

using namespace mcpproxy;

namespace {

std::string error_of(const std::string& yaml, const std::vector<std::pair<std::string, std::string>>& overrides = {}) {
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

TEST(Config, DefaultsMatchTheContract) {
  const Config c = config_from_yaml("", "empty", {{"backend.statefulset", "myserver"}, {"backend.service", "svc"}});
  EXPECT_EQ(c.listen.str(), "0.0.0.0:8080");
  EXPECT_EQ(c.admin_listen.str(), "0.0.0.0:9090");
  EXPECT_GE(c.threads, 1);
  EXPECT_EQ(c.backend.replicas, 1);
  EXPECT_EQ(c.backend.ns, "default");
  EXPECT_EQ(c.backend.cluster_domain, "cluster.local");
  EXPECT_EQ(c.backend.port, 8080);
  EXPECT_EQ(c.sessions.store, StoreKind::memory);
  EXPECT_EQ(c.sessions.ttl, std::chrono::hours(2));
  EXPECT_EQ(c.sessions.redis.key_prefix, "mcp-session-proxy:");
  EXPECT_EQ(c.sessions.on_lost, OnLost::reinitialize);
  EXPECT_EQ(c.placement, PlacementPolicy::least_sessions);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.format, "text");
  EXPECT_EQ(c.drain_timeout, std::chrono::seconds(20));
}

TEST(Config, YamlKeysAreRead) {
  const Config c = config_from_yaml(
      "listen: 127.0.0.1:18080\nthreads: 3\nbackend:\n  url_template: http://127.0.0.1:1910{ordinal}\n  replicas: 4\n"
      "sessions:\n  ttl: 30m\n  on_lost: not_found\nplacement: random\nlimits:\n  max_body_size: 1MiB\n"
      "log:\n  format: json\ndrain_timeout: 500ms\n",
      "t.yaml");
  EXPECT_EQ(c.listen.port, 18080);
  EXPECT_EQ(c.threads, 3);
  EXPECT_EQ(c.backend.replicas, 4);
  EXPECT_EQ(c.sessions.ttl, std::chrono::minutes(30));
  EXPECT_EQ(c.sessions.on_lost, OnLost::not_found);
  EXPECT_EQ(c.placement, PlacementPolicy::random);
  EXPECT_EQ(c.limits.max_body_size, 1024U * 1024U);
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.drain_timeout, std::chrono::milliseconds(500));
}

TEST(Config, FlagsWinOverTheFile) {
  const std::string path = ::testing::TempDir() + "/flags_win.yaml";
  std::ofstream(path) << "backend:\n  replicas: 2\n  url_template: http://127.0.0.1:1910{ordinal}\n";
  const CommandLine cmd = parse({"--config", path.c_str(), "--replicas", "5", "--log-level", "debug"});
  const Config c = build_config(cmd);
  EXPECT_EQ(c.backend.replicas, 5);
  EXPECT_EQ(c.log.level, "debug");
}

TEST(Config, EveryContractFlagIsAccepted) {
  const CommandLine cmd = parse({"--listen",
                                 "127.0.0.1:1",
                                 "--admin-listen",
                                 "127.0.0.1:2",
                                 "--threads",
                                 "2",
                                 "--backend-url-template",
                                 "{scheme}://{statefulset}-{ordinal}.{service}.{namespace}.svc.{cluster_domain}:{port}",
                                 "--statefulset",
                                 "s",
                                 "--service",
                                 "h",
                                 "--namespace",
                                 "ns",
                                 "--cluster-domain",
                                 "c.local",
                                 "--port",
                                 "81",
                                 "--scheme",
                                 "http",
                                 "--replicas",
                                 "2",
                                 "--session-store",
                                 "memory",
                                 "--session-ttl",
                                 "1h",
                                 "--redis-key-prefix",
                                 "p:",
                                 "--on-lost-session",
                                 "not_found",
                                 "--placement",
                                 "random",
                                 "--log-level",
                                 "warn",
                                 "--log-format",
                                 "json",
                                 "--drain-timeout",
                                 "5s",
                                 "--check-config"});
  const Config c = build_config(cmd);
  EXPECT_TRUE(cmd.check_config);
  EXPECT_EQ(c.backend.ns, "ns");
  EXPECT_EQ(c.sessions.redis.key_prefix, "p:");
  EXPECT_EQ(c.drain_timeout, std::chrono::seconds(5));
}

TEST(Config, UnknownFlagIsAnError) { EXPECT_THROW(parse({"--replica", "2"}), ConfigError); }

struct BadCase {
  const char* yaml;
  const char* must_contain;
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameTheKeyAndLine) {
  const std::string err = error_of(GetParam().yaml);
  ASSERT_FALSE(err.empty()) << GetParam().yaml;
  EXPECT_NE(err.find(GetParam().must_contain), std::string::npos) << err;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        BadCase{"backend:\n  replicas: -1\n", "backend.replicas"}, BadCase{"backend:\n  replicas: -1\n", "test.yaml:2"},
        BadCase{"backend:\n  replicas: many\n", "backend.replicas"},
        BadCase{"backend:\n  replicas: 0\n", "backend.replicas"},
        BadCase{"backend:\n  replica: 2\n", "backend.replica: unknown key (test.yaml:2)"},
        BadCase{"listen: nowhere\n", "listen"}, BadCase{"listen: 1.2.3.4:99999\n", "listen"},
        BadCase{"threads: 0\n", "threads"}, BadCase{"sessions:\n  ttl: forever\n", "sessions.ttl"},
        BadCase{"sessions:\n  ttl: 0s\n", "sessions.ttl"}, BadCase{"sessions:\n  store: etcd\n", "sessions.store"},
        BadCase{"sessions:\n  on_lost: retry\n", "sessions.on_lost"}, BadCase{"placement: round_robin\n", "placement"},
        BadCase{"log:\n  level: loud\n", "log.level"}, BadCase{"log:\n  format: xml\n", "log.format"},
        BadCase{"limits:\n  max_body_size: huge\n", "limits.max_body_size"},
        BadCase{"backend:\n  url_template: http://127.0.0.1:19100\n", "must contain {ordinal}"},
        BadCase{"backend:\n  url_template: http://{pod}-{ordinal}:80\n", "unknown placeholder {pod}"},
        BadCase{"backend:\n  service: svc\n", "backend.statefulset: required by backend.url_template"},
        BadCase{"backend:\n  statefulset: s\n", "backend.service: required by backend.url_template"},
        BadCase{"backend:\n  url_template: https://h-{ordinal}:443\n", "http://"},
        BadCase{"backend:\n  url_template: http://h-{ordinal}:80/mcp\n", "must not have a path"},
        BadCase{"backend:\n  scheme: ftp\n", "backend.scheme"},
        // A pod port that is no number of 1-65535 is the template's error, at start-up: the
        // request path converted it and threw (an empty port) or wrapped (70000).
        BadCase{"backend:\n  url_template: http://h-{ordinal}:/\n", "backend.url_template: 'http://h-0:/' has port ''"},
        BadCase{"backend:\n  url_template: http://h-{ordinal}:70000\n", "has port '70000'"},
        BadCase{"backend:\n  url_template: http://h-{ordinal}:0\n", "has port '0'"},
        BadCase{"backend:\n  replicas: 7\n  url_template: http://127.0.0.1:6553{ordinal}\n",
                "backend.url_template: 'http://127.0.0.1:65536' has port '65536'"},
        BadCase{"backend:\n  url_template: [1, 2]\n", "must be a single value"},
        BadCase{"sessions:\n  redis:\n    url: redis://127.0.0.1:6379\n",
                "sessions.redis.url: set, but sessions.store is memory"},
        BadCase{"- a\n- b\n", "top level must be a map"}, BadCase{"a: [\n", "not valid YAML"},
        BadCase{"listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:8080\n", "admin_listen"},
        BadCase{"backend:\n  health_check:\n    path: healthz\n", "backend.health_check.path: must be a path"},
        BadCase{"backend:\n  health_check:\n    interval: 1s\n    timeout: 1s\n",
                "backend.health_check.timeout: must be shorter than backend.health_check.interval"},
        BadCase{"backend:\n  health_check:\n    failures: 0\n", "backend.health_check.failures"},
        BadCase{"allowed_origins: [localhost]\n", "allowed_origins: must be an origin"},
        BadCase{"allowed_origins: [\"https://a.example/path\"]\n", "allowed_origins: must be an origin"},
        BadCase{"allowed_hosts: [\"http://x\"]\n", "allowed_hosts: must be a host"},
        // Found by fuzz/config: a complex key ended the process (yaml-cpp's exception escaped).
        BadCase{"backend:\n  replicas: 3\n? url_template: http://h-{ordinal}:80\n", "keys must be plain names"},
        BadCase{"? [a, b]\n: 1\n", "keys must be plain names"},
        BadCase{"sessions:\n  binding: cookie\n",
                "sessions.binding: must be none, authorization, jwt or header:<Name>"},
        BadCase{"sessions:\n  binding: jwt\n  jwt:\n    issuers: [a]\n    audiences: [b]\n",
                "sessions.jwt.jwks_file: sessions.binding jwt needs jwks_file or jwks_url"},
        BadCase{"sessions:\n  binding: jwt\n  jwt:\n    jwks_url: https://as/jwks\n    audiences: [b]\n",
                "sessions.jwt.issuers: required with sessions.binding jwt"},
        BadCase{"sessions:\n  binding: jwt\n  jwt:\n    jwks_url: https://as/jwks\n    issuers: [a]\n",
                "sessions.jwt.audiences: required with sessions.binding jwt"},
        BadCase{
            "sessions:\n  binding: jwt\n  jwt:\n    jwks_url: ftp://as/jwks\n    issuers: [a]\n    audiences: [b]\n",
            "sessions.jwt.jwks_url: must be an http:// or https:// URL"},
        BadCase{
            "sessions:\n  binding: jwt\n  jwt:\n    jwks_file: /etc/hostname\n    issuers: [a]\n    audiences: [b]\n",
            "sessions.jwt.jwks_file: not a JWKS"},
        BadCase{"sessions:\n  jwt:\n    jwks_url: https://as/jwks\n",
                "sessions.jwt: options set, but sessions.binding is not jwt"},
        BadCase{"sessions:\n  binding: jwt\n  jwt:\n    non_jwt: maybe\n", "sessions.jwt.non_jwt"},
        BadCase{"sessions:\n  binding: \"header:X User\"\n", "sessions.binding"},
        BadCase{"sessions:\n  binding_secret_file: /etc/hostname\n", "set, but sessions.binding is none"},
        BadCase{"sessions:\n  binding: authorization\n  binding_secret_file: /nonexistent/key\n",
                "sessions.binding_secret_file: cannot read"},
        BadCase{"sessions:\n  binding: authorization\n  store: redis\n  redis:\n    url: redis://127.0.0.1:6379\n",
                "sessions.binding_secret_file: required with sessions.binding and the redis store"}));

TEST(Config, DurationsAndSizes) {
  EXPECT_EQ(parse_duration("500ms"), std::chrono::milliseconds(500));
  EXPECT_EQ(parse_duration("30s"), std::chrono::seconds(30));
  EXPECT_EQ(parse_duration("2h"), std::chrono::hours(2));
  EXPECT_EQ(parse_duration("5m"), std::chrono::minutes(5));
  EXPECT_THROW(parse_duration("5 s"), std::invalid_argument);
  EXPECT_THROW(parse_duration("s"), std::invalid_argument);
  EXPECT_EQ(parse_size("8MiB"), 8U * 1024U * 1024U);
  EXPECT_EQ(parse_size("16KiB"), 16U * 1024U);
  EXPECT_EQ(parse_size("512"), 512U);
  EXPECT_THROW(parse_size("8MB!"), std::invalid_argument);
  EXPECT_EQ(format_duration(std::chrono::hours(2)), "2h");
  EXPECT_EQ(format_duration(std::chrono::milliseconds(1500)), "1500ms");
}

TEST(Config, ListenAddresses) {
  EXPECT_EQ(parse_listen("0.0.0.0:8080").port, 8080);
  EXPECT_EQ(parse_listen(":8080").host, "0.0.0.0");
  EXPECT_EQ(parse_listen("[::1]:80").host, "::1");
  EXPECT_EQ(parse_listen("[::1]:80").str(), "[::1]:80");
  EXPECT_THROW(parse_listen("::1:80"), std::invalid_argument);
  EXPECT_THROW(parse_listen("host"), std::invalid_argument);
}

TEST(Config, EffectiveConfigRoundTripsAndMasksSecrets) {
  const Config c = config_from_yaml("backend:\n  url_template: http://127.0.0.1:1910{ordinal}\n  replicas: 3\n", "t");
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("replicas: 3"), std::string::npos) << yaml;
  const Config again = config_from_yaml(yaml, "printed");
  EXPECT_EQ(again.backend.replicas, 3);
  EXPECT_EQ(again.backend.url_template, c.backend.url_template);
  EXPECT_EQ(again.threads, c.threads);
}

TEST(Config, RedisStoreNeedsAUrlAndRejectsStrayOptions) {
  EXPECT_NE(error_of("sessions:\n  store: redis\n").find("sessions.redis.url: required"), std::string::npos);
  EXPECT_NE(error_of("sessions:\n  store: redis\n  redis:\n    url: http://x\n").find("sessions.redis.url"),
            std::string::npos);
  EXPECT_NE(
      error_of("sessions:\n  store: redis\n  redis:\n    url: redis://h\n    tls_ca_file: /x\n").find("rediss://"),
      std::string::npos);
  EXPECT_NE(error_of("sessions:\n  store: redis\n  redis:\n    url: redis://h\n    password_file: /nonexistent\n")
                .find("sessions.redis.password_file: cannot read"),
            std::string::npos);
  EXPECT_NE(error_of("sessions:\n  redis:\n    password_file: /etc/hostname\n").find("sessions.store is memory"),
            std::string::npos);
  const Config c = config_from_yaml(
      "backend:\n  url_template: http://h-{ordinal}:80\nsessions:\n  store: redis\n  redis:\n    url: "
      "redis://u:pw@127.0.0.1:6379/1\n    command_timeout: 100ms\n",
      "t");
  EXPECT_EQ(c.sessions.redis.command_timeout, std::chrono::milliseconds(100));
  const std::string printed = to_yaml(c);
  EXPECT_EQ(printed.find(":pw@"), std::string::npos) << "the password is masked: " << printed;
}

TEST(Config, SentinelModeNamesItsSentinelsAndMaster) {
  const std::string base = "backend:\n  url_template: http://h-{ordinal}:80\nsessions:\n  store: redis\n  redis:\n";
  EXPECT_NE(error_of(base + "    mode: sentinel\n    sentinel_master: m\n").find("sessions.redis.nodes: required"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    mode: sentinel\n    nodes: [s:26379]\n").find("sessions.redis.sentinel_master"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    mode: sentinel\n    nodes: [s]\n    sentinel_master: m\n").find("host:port"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    url: redis://h\n    nodes: [s:26379]\n").find("mode is standalone"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    mode: cluster\n").find("sessions.redis.nodes: required in cluster mode"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    mode: cluster\n    nodes: [a:7000]\n    url: redis://h/2\n").find("only database 0"),
            std::string::npos);
  EXPECT_NE(error_of(base + "    mode: primary\n").find("sessions.redis.mode"), std::string::npos);
  EXPECT_NE(error_of("sessions:\n  redis:\n    mode: sentinel\n").find("sessions.store is memory"), std::string::npos);
  // The URL is optional there: credentials and db only.
  const Config c =
      config_from_yaml(base +
                           "    mode: sentinel\n    nodes: [a:26379, b:26379]\n    sentinel_master: mymaster\n    url: "
                           "redis://:pw@ignored/2\n",
                       "t");
  EXPECT_EQ(c.sessions.redis.mode, RedisMode::sentinel);
  EXPECT_EQ(c.sessions.redis.nodes, (std::vector<std::string>{"a:26379", "b:26379"}));
  const Config bare =
      config_from_yaml(base + "    mode: sentinel\n    nodes: [a:26379]\n    sentinel_master: m\n", "t");
  EXPECT_TRUE(bare.sessions.redis.url.empty());
}

TEST(Config, TheShippedExampleIsValid) {
  CommandLine cmd;
  cmd.config_file = std::string(MCPPROXY_SOURCE_DIR) + "/config/mcp-session-proxy.yaml";
  const Config c = build_config(cmd);
  EXPECT_EQ(c.backend.replicas, 3);
  EXPECT_EQ(c.log.format, "json");
}

TEST(Config, ListKeysTakeASequenceAndTheRepeatableFlagReplacesIt) {
  const std::string yaml = "backend:\n  url_template: http://h-{ordinal}:80\n  replicas: 4\n  draining: [1, 3]\n";
  EXPECT_EQ(config_from_yaml(yaml, "t").backend.draining, (std::vector<int>{1, 3}));
  EXPECT_EQ(config_from_yaml("backend:\n  url_template: http://h-{ordinal}:80\n  draining: 2\n", "t").backend.draining,
            std::vector<int>{2});
  EXPECT_TRUE(config_from_yaml("backend:\n  url_template: http://h-{ordinal}:80\n  draining: []\n", "t")
                  .backend.draining.empty());
  // Flags win: two occurrences replace the file's list, they do not add to it.
  const Config c = config_from_yaml(yaml, "t", {{"backend.draining", "0"}, {"backend.draining", "2"}});
  EXPECT_EQ(c.backend.draining, (std::vector<int>{0, 2}));
  const CommandLine cmd = parse({"--drain-ordinal", "1", "--drain-ordinal", "3", "--replicas", "4",
                                 "--backend-url-template", "http://h-{ordinal}:80"});
  EXPECT_EQ(build_config(cmd).backend.draining, (std::vector<int>{1, 3}));
  // Printed as a sequence, read back the same.
  const std::string printed = to_yaml(c);
  EXPECT_NE(printed.find("draining:"), std::string::npos) << printed;
  EXPECT_EQ(config_from_yaml(printed, "printed").backend.draining, (std::vector<int>{0, 2}));
  EXPECT_NE(error_of("backend:\n  draining:\n    - [1]\n").find("backend.draining: every item"), std::string::npos);
  EXPECT_NE(error_of("backend:\n  draining: [x]\n").find("backend.draining: must be an integer"), std::string::npos);
  EXPECT_NE(error_of("admin:\n  token_file: /nonexistent/token\n").find("admin.token_file: cannot read"),
            std::string::npos);
}
