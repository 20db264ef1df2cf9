// The listen fan-out's decisions (issue 28), with no sockets: SSE events cut from a pod's
// stream at every split, what each event is to the merge, the event the client gets, the
// task ids a listen is filtered to, the proxy's own events; and the subscriptions.* keys.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/config/config.hpp"
#include "core/mcp/listen_events.hpp"

using namespace mcpproxy;

namespace {

constexpr std::string_view kAck =
    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\","
    "\"params\":{\"notifications\":{\"toolsListChanged\":true},\"_meta\":{\"io.modelcontextprotocol/"
    "subscriptionId\":0}}}";
constexpr std::string_view kChanged =
    "event: message\nid: 41\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}";
constexpr std::string_view kComplete =
    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"resultType\":\"complete\"}}";

}  // namespace

TEST(SseEventSplitter, EveryOneByteSplit) {
  const std::string stream = std::string(kAck) + "\n\n: keepalive\n\n" + std::string(kChanged) + "\r\n\r\n";
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    SseEventSplitter s(1 << 16);
    std::vector<std::string> out;
    ASSERT_TRUE(s.feed(std::string_view(stream).substr(0, cut), out));
    ASSERT_TRUE(s.feed(std::string_view(stream).substr(cut), out));
    ASSERT_EQ(out.size(), 3U) << "cut at " << cut;
    EXPECT_EQ(out[0], kAck);
    EXPECT_EQ(out[1], ": keepalive");
    EXPECT_EQ(s.buffered(), 0U);
  }
}

TEST(SseEventSplitter, AnEventPastTheBoundIsRefused) {
  SseEventSplitter s(16);
  std::vector<std::string> out;
  EXPECT_TRUE(s.feed("data: short\n\n", out));
  EXPECT_FALSE(s.feed("data: far more than sixteen bytes without an end", out));
  EXPECT_EQ(out.size(), 1U);
}

TEST(ListenEvents, Classified) {
  EXPECT_EQ(classify_listen_event(kAck).kind, ListenEventKind::ack);
  EXPECT_EQ(classify_listen_event(kChanged).kind, ListenEventKind::notification);
  EXPECT_EQ(classify_listen_event(kComplete).kind, ListenEventKind::end);
  EXPECT_EQ(classify_listen_event(": keepalive").kind, ListenEventKind::comment);
  EXPECT_EQ(classify_listen_event("id: 3").kind, ListenEventKind::other);
  EXPECT_EQ(classify_listen_event("data: {\"jsonrpc\":\"2.0\",\"id\":0,\"error\":{\"code\":-32603}}").kind,
            ListenEventKind::end);
  // A method the scan cannot read (an escape) is still a notification, by the parse.
  EXPECT_EQ(classify_listen_event(R"(data: {"jsonrpc":"2.0","method":"notifications\/tools\/list_changed"})").kind,
            ListenEventKind::notification);
  const ListenEvent multi = classify_listen_event("data: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"x/y\"}");
  EXPECT_EQ(multi.kind, ListenEventKind::notification);
  EXPECT_EQ(multi.data, "{\"jsonrpc\":\"2.0\",\n\"method\":\"x/y\"}");
}

TEST(ListenEvents, ClientEventHasNoIdOrRetry) {
  EXPECT_EQ(client_event(kChanged),
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n");
  EXPECT_EQ(client_event("retry: 100\r\ndata: x"), "data: x\n\n");
}

TEST(ListenEvents, AckHonoringNothing) {
  EXPECT_FALSE(ack_honors_nothing(classify_listen_event(kAck).data));
  EXPECT_TRUE(ack_honors_nothing(
      R"({"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":{}}})"));
  EXPECT_FALSE(ack_honors_nothing("not json"));
}

TEST(ListenEvents, TaskIds) {
  const auto body = [](std::string_view filter) {
    return R"({"jsonrpc":"2.0","id":1,"method":"subscriptions/listen","params":{"notifications":)" +
           std::string(filter) + "}}";
  };
  EXPECT_EQ(listen_task_ids(body(R"({"taskIds":["a","b"]})"), 64), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(listen_task_ids(body(R"({"taskIds":["a"],"toolsListChanged":false,"resourceSubscriptions":[]})"), 64),
            (std::vector<std::string>{"a"}));
  // Anything else asked for can happen on any pod: every pod is listened to.
  EXPECT_FALSE(listen_task_ids(body(R"({"taskIds":["a"],"toolsListChanged":true})"), 64));
  EXPECT_FALSE(listen_task_ids(body(R"({"toolsListChanged":true})"), 64));
  EXPECT_FALSE(listen_task_ids(body(R"({"taskIds":[]})"), 64));
  EXPECT_FALSE(listen_task_ids(body(R"({"taskIds":[1]})"), 64));
  EXPECT_FALSE(listen_task_ids(body(R"({"taskIds":["a","b","c"]})"), 2));
  EXPECT_FALSE(listen_task_ids("{\"taskIds\": not json", 64));
}

TEST(ListenEvents, OwnEventsAreJsonRpc) {
  const auto data_of = [](const std::string& e) {
    EXPECT_TRUE(e.ends_with("\n\n"));
    return nlohmann::json::parse(e.substr(e.find("data: ") + 6));
  };
  const auto complete = data_of(listen_complete_event("\"listen:0\""));
  EXPECT_EQ(complete["id"], "listen:0");
  EXPECT_EQ(complete["result"]["resultType"], "complete");
  EXPECT_EQ(complete["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "listen:0");
  const auto slow = data_of(listen_too_slow_event("7"));
  EXPECT_EQ(slow["id"], 7);
  EXPECT_EQ(slow["error"]["code"], -32000);
  EXPECT_EQ(classify_listen_event(kKeepAliveEvent.substr(0, kKeepAliveEvent.size() - 2)).kind,
            ListenEventKind::comment);
}

namespace {
const std::vector<std::pair<std::string, std::string>> kPods = {
    {"backend.url_template", "http://127.0.0.1:1910{ordinal}"}};
}  // namespace

TEST(SubscriptionsConfig, DefaultsKeysAndBounds) {
  const Config d = config_from_yaml("", "empty", kPods);
  EXPECT_FALSE(d.subscriptions.fanout);
  EXPECT_EQ(d.subscriptions.max_leg_buffer, 64U * 1024);
  EXPECT_EQ(d.subscriptions.slow_client, SlowListenClient::close);
  EXPECT_EQ(d.subscriptions.keepalive, std::chrono::milliseconds(15000));
  const Config c = config_from_yaml(R"(
subscriptions:
  fanout: true
  max_legs_per_listen: 4
  max_legs: 100
  max_leg_buffer: 8KiB
  slow_client: drop
  keepalive: 5s
  reopen_backoff_max: 2s
)",
                                    "test.yaml", kPods);
  EXPECT_TRUE(c.subscriptions.fanout);
  EXPECT_EQ(c.subscriptions.max_legs_per_listen, 4);
  EXPECT_EQ(c.subscriptions.max_legs, 100U);
  EXPECT_EQ(c.subscriptions.max_leg_buffer, 8U * 1024);
  EXPECT_EQ(c.subscriptions.slow_client, SlowListenClient::drop);
  EXPECT_EQ(c.subscriptions.reopen_backoff_max, std::chrono::milliseconds(2000));
  // A fanned-out listen must hear every pod: more replicas than legs per listen is an error.
  auto over = kPods;
  over.emplace_back("backend.replicas", "5");
  try {
    config_from_yaml("subscriptions: {fanout: true, max_legs_per_listen: 4}", "test.yaml", over);
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("subscriptions.max_legs_per_listen"), std::string::npos);
  }
  EXPECT_THROW(config_from_yaml("subscriptions: {slow_client: wait}", "test.yaml", kPods), ConfigError);
  const char* args[] = {"mcp-session-proxy",
                        "--backend-url-template",
                        "http://127.0.0.1:1910{ordinal}",
                        "--listen-fanout",
                        "true",
                        "--listen-slow-client",
                        "drop"};
  const Config f = build_config(parse_command_line(7, args));
  EXPECT_TRUE(f.subscriptions.fanout);
  EXPECT_EQ(f.subscriptions.slow_client, SlowListenClient::drop);
}

namespace {

TEST(MergeAction, TheClientGetsOneAcknowledgementAndNotificationsOnlyAfterIt) {
  MergeState s;
  EXPECT_EQ(merge_action(ListenEventKind::notification, s), MergeAction::ignore);  // no stream yet
  EXPECT_EQ(merge_action(ListenEventKind::ack, s), MergeAction::first_ack);
  s.client_acked = true;
  EXPECT_EQ(merge_action(ListenEventKind::ack, s), MergeAction::leg_ack);  // a second pod's
  EXPECT_EQ(merge_action(ListenEventKind::notification, s), MergeAction::forward);
  EXPECT_EQ(merge_action(ListenEventKind::comment, s), MergeAction::ignore);  // the pods' keep-alives
  EXPECT_EQ(merge_action(ListenEventKind::other, s), MergeAction::ignore);
  s.finishing = true;
  EXPECT_EQ(merge_action(ListenEventKind::notification, s), MergeAction::ignore);  // after the last events
}

TEST(MergeAction, APodsEndEndsItsLegUnlessTheListenHonoursNothing) {
  MergeState s;
  s.client_acked = true;
  EXPECT_EQ(merge_action(ListenEventKind::end, s), MergeAction::end_leg);
  s.honors_nothing = true;
  EXPECT_EQ(merge_action(ListenEventKind::end, s), MergeAction::end_listen);
  s.finishing = true;
  EXPECT_EQ(merge_action(ListenEventKind::end, s), MergeAction::end_leg);
}

TEST(ListenLegsWanted, EveryPodOrTheTasksPodsBelowReplicas) {
  EXPECT_EQ(listen_legs_wanted(3, std::nullopt), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(listen_legs_wanted(0, std::nullopt), std::vector<int>{});
  // A reload scaled below a task's pod: that leg goes; repeats and order do not matter.
  EXPECT_EQ(listen_legs_wanted(2, std::vector<int>{3, 1, 1, 0}), (std::vector<int>{0, 1}));
  EXPECT_EQ(listen_legs_wanted(4, std::vector<int>{3, -1}), std::vector<int>{3});
}

TEST(LegRoom, ALegHoldsAtMostItsBoundThenThePolicy) {
  EXPECT_EQ(leg_room(0, 64, 64, SlowListenClient::close), LegRoom::queue);
  EXPECT_EQ(leg_room(60, 4, 64, SlowListenClient::close), LegRoom::queue);
  EXPECT_EQ(leg_room(61, 4, 64, SlowListenClient::close), LegRoom::close);
  EXPECT_EQ(leg_room(61, 4, 64, SlowListenClient::drop), LegRoom::drop);
  EXPECT_EQ(leg_room(0, 65, 64, SlowListenClient::drop), LegRoom::drop);  // one event past the bound
}

}  // namespace
