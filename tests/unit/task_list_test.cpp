#include "core/mcp/task_list.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace mcpproxy;
using json = nlohmann::json;

TEST(TaskList, FirstPageAsksEveryPod) {
  const auto pods = pods_to_ask(std::nullopt, 3);
  ASSERT_TRUE(pods);
  EXPECT_EQ(pods->size(), 3U);
  EXPECT_EQ(pods->at(2), "");
}

TEST(TaskList, MergedInOrdinalOrderWithACompositeCursor) {
  std::vector<PodListAnswer> answers = {
      {0, R"({"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"a"}],"nextCursor":"p0"}})"},
      {1, std::nullopt},  // failed
      {2, R"({"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"b"},{"taskId":"c"}]}})"},
      {3, R"({"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"no"}})"},
  };
  const json out = json::parse(merged_task_list(answers, "4"));
  EXPECT_EQ(out.at("id"), 4);
  ASSERT_EQ(out.at("result").at("tasks").size(), 3U);
  EXPECT_EQ(out.at("result").at("tasks")[2].at("taskId"), "c");
  const std::string cursor = out.at("result").at("nextCursor");
  // The next page asks only the pods with more, each with its own cursor.
  const auto next = pods_to_ask(cursor, 4);
  ASSERT_TRUE(next);
  ASSERT_EQ(next->size(), 1U);
  EXPECT_EQ(next->at(0), "p0");
  // The last page has no cursor.
  const json last = json::parse(merged_task_list({{0, R"({"jsonrpc":"2.0","id":5,"result":{"tasks":[]}})"}}, "5"));
  EXPECT_FALSE(last.at("result").contains("nextCursor"));
}

TEST(TaskList, NoPodListsTasksTheErrorIsTheAnswer) {
  const json out = json::parse(merged_task_list(
      {{0, R"({"jsonrpc":"2.0","id":4,"error":{"code":-32601,"message":"Method not found"}})"}, {1, std::nullopt}},
      "4"));
  EXPECT_EQ(out.at("error").at("code"), -32601);
  EXPECT_FALSE(out.contains("result"));
}

TEST(TaskList, ForeignOrMalformedCursorsAreRefused) {
  EXPECT_FALSE(pods_to_ask("someone-elses", 3));
  EXPECT_FALSE(pods_to_ask("mcp-proxy:nope", 3));
  EXPECT_FALSE(pods_to_ask(R"(mcp-proxy:{"x":"1"})", 3));
  EXPECT_FALSE(pods_to_ask(R"(mcp-proxy:{"1":2})", 3));
  EXPECT_FALSE(pods_to_ask(R"(mcp-proxy:{"-1":"a"})", 3));
  // A pod scaled away since: its page is gone.
  EXPECT_EQ(pods_to_ask(R"(mcp-proxy:{"5":"a","1":"b"})", 3)->size(), 1U);
}

TEST(TaskList, EachPodGetsItsOwnCursor) {
  const std::string body = R"({"jsonrpc":"2.0","id":4,"method":"tasks/list","params":{"cursor":"mcp-proxy:{}"}})";
  EXPECT_EQ(list_cursor_of(body), "mcp-proxy:{}");
  EXPECT_FALSE(list_cursor_of(R"({"jsonrpc":"2.0","id":4,"method":"tasks/list"})"));
  const json first = json::parse(*request_for_pod(body, ""));
  EXPECT_FALSE(first.at("params").contains("cursor"));
  const json later = json::parse(*request_for_pod(R"({"jsonrpc":"2.0","id":4,"method":"tasks/list"})", "p0"));
  EXPECT_EQ(later.at("params").at("cursor"), "p0");
  EXPECT_EQ(later.at("id"), 4);
  EXPECT_FALSE(request_for_pod("[]", ""));
}

TEST(TaskList, AnSseAnswersLastEventIsItsMessage) {
  EXPECT_EQ(response_message("{\"a\":1}", false, 1024), "{\"a\":1}");
  EXPECT_EQ(response_message("data: {\"n\":1}\n\ndata: {\"r\":2}\n\n", true, 1024), "{\"r\":2}");
  EXPECT_FALSE(response_message(": comment\n\n", true, 1024));
}

TEST(TaskList, WithABindingOnlyTheCallersTasksAreListed) {
  const std::vector<PodListAnswer> answers = {
      {0, R"({"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"a"},{"taskId":"b"},7],"nextCursor":"p0"}})"},
      {1, std::nullopt},
      {2, R"({"jsonrpc":"2.0","id":4,"result":{"tasks":[{"taskId":"c"},{"taskId":"a"},{"status":"x"}]}})"},
  };
  EXPECT_EQ(listed_task_ids(answers), (std::vector<std::string>{"a", "b", "c"}));
  const std::unordered_set<std::string> own = {"b", "c"};
  const json out = json::parse(merged_task_list(answers, "4", &own));
  ASSERT_EQ(out.at("result").at("tasks").size(), 2U);
  EXPECT_EQ(out.at("result").at("tasks")[0].at("taskId"), "b");
  EXPECT_EQ(out.at("result").at("tasks")[1].at("taskId"), "c");
  EXPECT_TRUE(out.at("result").contains("nextCursor")) << "pages go on as the pods' do";
  const std::unordered_set<std::string> none;
  EXPECT_TRUE(json::parse(merged_task_list(answers, "4", &none)).at("result").at("tasks").empty());
}
