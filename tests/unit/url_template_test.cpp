#include "core/config/url_template.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

TEST(UrlTemplate, DefaultIsTheHeadlessServiceName) {
  BackendConfig b;
  b.statefulset = "myserver";
  b.service = "mcp-myserver-headless";
  validate_url_template(b);
  EXPECT_EQ(expand_pod_url(b, 0), "http://myserver-0.mcp-myserver-headless.default.svc.cluster.local:8080");
  EXPECT_EQ(expand_pod_url(b, 12), "http://myserver-12.mcp-myserver-headless.default.svc.cluster.local:8080");
  const PodAddress pod = parse_pod_url(expand_pod_url(b, 0));
  EXPECT_EQ(pod.host, "myserver-0.mcp-myserver-headless.default.svc.cluster.local");
  EXPECT_EQ(pod.port, "8080");
  EXPECT_EQ(pod.authority, "myserver-0.mcp-myserver-headless.default.svc.cluster.local:8080");
}

TEST(UrlTemplate, EveryPlaceholder) {
  BackendConfig b;
  b.url_template = "{scheme}://{statefulset}-{ordinal}.{service}.{namespace}.svc.{cluster_domain}:{port}";
  b.statefulset = "s";
  b.service = "h";
  b.ns = "prod";
  b.cluster_domain = "example.internal";
  b.port = 9000;
  EXPECT_EQ(expand_pod_url(b, 3), "http://s-3.h.prod.svc.example.internal:9000");
}

TEST(UrlTemplate, LoopbackTemplatesForTests) {
  BackendConfig b;
  b.url_template = "http://127.0.0.1:1910{ordinal}";
  validate_url_template(b);
  EXPECT_EQ(expand_pod_url(b, 2), "http://127.0.0.1:19102");
  const PodAddress v6 = parse_pod_url("http://[::1]:8080");
  EXPECT_EQ(v6.host, "::1");
  EXPECT_EQ(v6.authority, "[::1]:8080");
  EXPECT_EQ(parse_pod_url("http://pod-0.svc").port, "80");
}

TEST(UrlTemplate, Rejects) {
  EXPECT_THROW(parse_pod_url("not a url"), ConfigError);
  EXPECT_THROW(parse_pod_url("http://h:1/x"), ConfigError);
  EXPECT_THROW(parse_pod_url("http://u:p@h:1"), ConfigError);
  EXPECT_THROW(parse_pod_url("https://h:1"), ConfigError);
  BackendConfig b;  // statefulset and service unset
  EXPECT_THROW(validate_url_template(b), ConfigError);
}

TEST(UrlTemplate, MasksPasswords) {
  EXPECT_EQ(mask_url_password("redis://user:secret@host:6379/0"), "redis://user:***@host:6379/0");
  EXPECT_EQ(mask_url_password("redis://host:6379"), "redis://host:6379");
}

TEST(UrlTemplate, AFullyQualifiedNameKeepsItsDotForDnsOnly) {
  const PodAddress pod = parse_pod_url("http://myserver-0.mcp-myserver-headless.default.svc.cluster.local.:8080");
  EXPECT_EQ(pod.host, "myserver-0.mcp-myserver-headless.default.svc.cluster.local.");
  EXPECT_EQ(pod.authority, "myserver-0.mcp-myserver-headless.default.svc.cluster.local:8080");
}

TEST(UrlTemplate, APortIsANumberFromOneTo65535) {
  EXPECT_EQ(parse_pod_url("http://pod:65535").port, "65535");
  EXPECT_EQ(parse_pod_url("http://pod:1/").port, "1");
  for (const char* url : {"http://pod:/", "http://pod:", "http://pod:0", "http://pod:65536", "http://pod:70000",
                          "http://pod:99999999999999999999"}) {
    EXPECT_THROW(parse_pod_url(url), ConfigError) << url;
  }
  EXPECT_EQ(port_number("8080"), 8080);
  EXPECT_EQ(port_number("65535"), 65535);
  for (const char* bad : {"", "0", "65536", "70000", "-1", "+80", " 80", "80 ", "8o", "99999999999999999999"}) {
    EXPECT_EQ(port_number(bad), 0) << bad;
  }
}
