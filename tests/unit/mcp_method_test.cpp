#include "core/mcp/mcp_method.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

TEST(Era, SessionsAre2025) {
  EXPECT_EQ(classify_era("2026-07-28", true, /*has_session=*/true), Era::v2025);
  EXPECT_EQ(classify_era(std::nullopt, false, false), Era::v2025);  // a 2025 initialize
  EXPECT_EQ(classify_era("2025-11-25", false, false), Era::v2025);
  EXPECT_EQ(classify_era("2024-11-05", false, false), Era::v2025);
}

TEST(Era, McpMethodOrA2026VersionIs2026) {
  EXPECT_EQ(classify_era(std::nullopt, true, false), Era::v2026);
  EXPECT_EQ(classify_era("2026-07-28", false, false), Era::v2026);
  EXPECT_EQ(classify_era("2027-01-01", false, false), Era::v2026);
  // Not a revision: not 2026.
  EXPECT_EQ(classify_era("2026-07-28-x", false, false), Era::v2025);
  EXPECT_EQ(classify_era("zzzz", false, false), Era::v2025);
}

TEST(McpMethodLabel, SpecMethodsAndOther) {
  EXPECT_EQ(mcp_method("tools/call"), McpMethod::tools_call);
  EXPECT_EQ(mcp_method("tasks/get"), McpMethod::tasks_get);
  EXPECT_EQ(mcp_method("subscriptions/listen"), McpMethod::subscriptions_listen);
  EXPECT_EQ(mcp_method("server/discover"), McpMethod::server_discover);
  EXPECT_EQ(mcp_method("tools/calls"), McpMethod::other);
  EXPECT_EQ(mcp_method(""), McpMethod::other);
  EXPECT_EQ(mcp_method("Tools/Call"), McpMethod::other);
  // Every label round-trips, and the set is bounded by the enum.
  for (std::size_t i = 1; i < kMcpMethods; ++i) {
    const auto m = static_cast<McpMethod>(i);
    EXPECT_EQ(mcp_method(to_string(m)), m) << to_string(m);
  }
  EXPECT_EQ(to_string(McpMethod::other), "other");
}

TEST(McpMethodLabel, ScanFindsTheMember) {
  EXPECT_EQ(scan_jsonrpc_method(R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}})"), "tools/call");
  EXPECT_EQ(scan_jsonrpc_method(R"({ "method" : "ping" })"), "ping");
  EXPECT_EQ(scan_jsonrpc_method("{\"method\"\n:\t\"a/b\"}"), "a/b");
  EXPECT_EQ(scan_jsonrpc_method(R"({"jsonrpc":"2.0","id":1,"result":{}})"), "");
  EXPECT_EQ(scan_jsonrpc_method(R"({"method":"a\"b"})"), "");  // an escape: not a spec method
  EXPECT_EQ(scan_jsonrpc_method(R"({"method":1})"), "");
  EXPECT_EQ(scan_jsonrpc_method(R"({"method":"unterminated)"), "");
  // A value that spells the key is not the key.
  EXPECT_EQ(scan_jsonrpc_method(R"({"x":"\"method\"","method":"ping"})"), "ping");
  EXPECT_EQ(scan_jsonrpc_method(""), "");
}

TEST(McpMethodLabel, OfBody) {
  EXPECT_EQ(method_of_body(R"({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}})"), McpMethod::tools_call);
  EXPECT_EQ(method_of_body(R"({"method" : "tools/call"})"), McpMethod::tools_call);
  EXPECT_EQ(method_of_body(R"({"method":"tools/calls"})"), McpMethod::other);
  // One space after the colon (Python's json, the bench's bodies) settles in the compare too.
  EXPECT_EQ(method_of_body(R"({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {}})"),
            McpMethod::tools_call);
  EXPECT_EQ(method_of_body(R"({"method": "tools/calls"})"), McpMethod::other);
  EXPECT_EQ(method_of_body(R"({"method": "tools/list"})"), McpMethod::tools_list);
  EXPECT_EQ(method_of_body(R"({"method": "tools/call)"), McpMethod::other);
  EXPECT_EQ(method_of_body(R"({"method":)"), McpMethod::other);
  EXPECT_EQ(method_of_body(R"({"method":"tasks/get","params":{"taskId":"x"}})"), McpMethod::tasks_get);
  EXPECT_EQ(method_of_body(R"({"jsonrpc":"2.0","id":1,"result":{}})"), McpMethod::other);
  EXPECT_EQ(method_of_body(R"({"x":"\"method\":\"tools/call\"","method":"ping"})"), McpMethod::ping);
  EXPECT_EQ(method_of_body(""), McpMethod::other);
}
