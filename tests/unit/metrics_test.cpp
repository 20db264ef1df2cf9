#include "core/telemetry/metrics.hpp"

#include <gtest/gtest.h>

#include "core/tables/session.hpp"

using namespace mcpproxy;

TEST(Metrics, EveryFamilyHasHelpAndType) {
  Metrics m;
  SessionTable t(10, std::chrono::hours(1));
  SessionRecord r;
  r.ordinal = 1;
  t.insert("secret-session-id", r);
  m.count_request(MethodClass::post, 200);
  m.count_request(MethodClass::del, 404);
  m.upstream_duration(1).observe(0.003);
  const std::string text = m.render(
      t, [&t](int o) { return t.sessions_on(o); }, 2,
      Metrics::StoreStatus{true, true, 0, 0, true, "127.0.0.1:6379", 1});
  for (const char* family :
       {"mcp_proxy_requests_total", "mcp_proxy_upstream_duration_seconds", "mcp_proxy_sessions",
        "mcp_proxy_sessions_created_total", "mcp_proxy_sessions_deleted_total", "mcp_proxy_sessions_lost_total",
        "mcp_proxy_sessions_recovered_total", "mcp_proxy_session_cache_hits_total",
        "mcp_proxy_session_cache_misses_total", "mcp_proxy_store_operations_total", "mcp_proxy_store_duration_seconds",
        "mcp_proxy_redis_up", "mcp_proxy_downstream_connections", "mcp_proxy_sse_streams"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family + " "), std::string::npos) << family;
    EXPECT_NE(text.find(std::string("# HELP ") + family + " "), std::string::npos) << family;
  }
  EXPECT_NE(text.find("mcp_proxy_requests_total{method=\"POST\",code=\"200\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mcp_proxy_requests_total{method=\"DELETE\",code=\"404\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("mcp_proxy_sessions{pod=\"1\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("mcp_proxy_upstream_duration_seconds_bucket{pod=\"1\",le=\"0.005\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("mcp_proxy_upstream_duration_seconds_count{pod=\"1\"} 1\n"), std::string::npos);
  EXPECT_EQ(text.find("secret-session-id"), std::string::npos);
}

TEST(Metrics, HistogramIsCumulative) {
  Histogram h;
  h.observe(0.0001);
  h.observe(0.02);
  h.observe(100);
  std::string out;
  h.render(out, "x", "");
  EXPECT_NE(out.find("x_bucket{le=\"0.0005\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{le=\"0.025\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{le=\"60\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_count 3\n"), std::string::npos) << out;
}

TEST(Metrics, RedisFamilyOnlyWithRedisStore) {
  Metrics m;
  SessionTable t(10, std::chrono::hours(1));
  EXPECT_EQ(m.render(
                 t, [&t](int o) { return t.sessions_on(o); }, 1, Metrics::StoreStatus{})
                .find("mcp_proxy_redis_up"),
            std::string::npos);
}
