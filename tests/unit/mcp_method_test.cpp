#include "core/mcp/mcp_method.hpp"

#include <gtest/gtest.h>

#include <string>

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

// method_of_body settles the common case inline (the key among the first 32 bytes,
// `"tools/call"` after it): at every key position, spacing, value and body length around
// the quick look's bounds it labels as the scan does.
TEST(McpMethodLabel, QuickLookAgreesWithTheScan) {
  const std::string keys[] = {
      R"("method":)",   R"("method": )", R"("method" : )", "\"method\"\n:",
      R"(\"method\":)", R"("\"method":)"};  // the last: a key that ends in the word, after an escaped quote
  const std::string values[] = {R"("tools/call")",
                                R"("tools/calls")",
                                R"("tools/list")",
                                R"("tools/cal")",
                                R"("tasks/get")",
                                R"("tools/call\"")",
                                "1"};
  int checked = 0;
  for (std::size_t pad = 0; pad < 40; ++pad) {
    // Blanks, or a member, before the key: its 'm' lands at every byte of the probe and past it.
    for (const std::string& before : {"{" + std::string(pad, ' '), "{\"x\":\"" + std::string(pad, 'a') + "\","}) {
      for (const std::string& key : keys) {
        for (const std::string& value : values) {
          for (const std::size_t tail : {0, 1, 8, 20, 60}) {
            const std::string body = before + key + value + std::string(tail, ' ') + "}";
            ASSERT_EQ(method_of_body(body), mcp_method(scan_jsonrpc_method(body))) << body;
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 40 * 2 * 6 * 7 * 5);
  // The key at byte 1 (no member before it), an 'm' before the key, and a value that
  // spells the key inside the probe.
  const std::string first = R"({"method":"tools/call","params":{"name":"whoami","arguments":{}},"id":1})";
  EXPECT_EQ(method_of_body(first), McpMethod::tools_call);
  const std::string ms = R"({"mm":"m","method":"tools/call","params":{"name":"whoami","arguments":{}},"id":1})";
  EXPECT_EQ(method_of_body(ms), McpMethod::tools_call);
  const std::string spelled = R"({"a":"\"method\":\"tools/call\"","method":"ping","params":{},"jsonrpc":"2.0"})";
  EXPECT_EQ(method_of_body(spelled), McpMethod::ping);
}
