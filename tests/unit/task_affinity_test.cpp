#include "core/mcp/task_affinity.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;
using std::chrono::milliseconds;

namespace {

// A parsed request head over its own bytes.
struct Req {
  std::string bytes;
  http1::Head head;
  std::string body;
  explicit Req(const std::string& fields, std::string b = {}) : body(std::move(b)) {
    bytes = "POST /mcp HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n";
    EXPECT_EQ(http1::parse_request(bytes, 65536, head), http1::Status::complete);
  }
  McpMethod method() const { return mcp_method(scan_jsonrpc_method(body)); }
};

AffinityConfig config() { return AffinityConfig{}; }

std::string get_body(std::string_view method, std::string_view id) {
  return R"({"jsonrpc":"2.0","id":3,"method":")" + std::string(method) + R"(","params":{"taskId":")" + std::string(id) +
         R"("}})";
}

RequestAffinity affinity(const Req& r, const AffinityConfig& cfg = config()) {
  return request_affinity(r.head, r.body, r.method(), cfg);
}

}  // namespace

TEST(HeaderValue, PlainAndBase64) {
  EXPECT_EQ(decode_header_value("abc-123"), "abc-123");
  EXPECT_EQ(decode_header_value("=?base64?w6lsw6hWZQ==?="), "\xc3\xa9l\xc3\xa8Ve");
  EXPECT_EQ(decode_header_value("=?BASE64?YWJj?="), "abc");
  EXPECT_EQ(decode_header_value("=?base64?YWJj?="), "abc");
  EXPECT_EQ(decode_header_value("=?base64?"
                                "?="),
            "");
  EXPECT_FALSE(decode_header_value("=?base64?a*bc?="));
  EXPECT_FALSE(decode_header_value("=?base64?Y?="));
  EXPECT_EQ(decode_header_value("=?base64?"), "=?base64?");  // not the form: as is
}

TEST(AffinityId, Bounded) {
  EXPECT_TRUE(valid_affinity_id("6f1c0a2e-1b7d-4c1e-9a55-0d3e8f7a9b10", 256));
  EXPECT_FALSE(valid_affinity_id("", 256));
  EXPECT_FALSE(valid_affinity_id(std::string(257, 'a'), 256));
  EXPECT_FALSE(valid_affinity_id("a\nb", 256));
  EXPECT_FALSE(valid_affinity_id(std::string("a\0b", 3), 256));
  EXPECT_TRUE(valid_affinity_id("with space", 256));
}

TEST(RequestAffinity, TaskByMcpNameWhenTheBodyAgrees) {
  const Req r("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\nMCP-Protocol-Version: 2026-07-28\r\n",
              get_body("tasks/get", "t-1"));
  const auto a = affinity(r);
  EXPECT_EQ(a.kind, AffinityKind::task);
  EXPECT_EQ(a.key, "task:t-1");
  for (const char* m : {"tasks/update", "tasks/cancel"}) {
    const Req q(std::string("Mcp-Method: ") + m + "\r\nMcp-Name: t-1\r\n", get_body(m, "t-1"));
    EXPECT_EQ(affinity(q).key, "task:t-1") << m;
  }
}

TEST(RequestAffinity, Base64McpNameIsDecoded) {
  const Req r("Mcp-Method: tasks/get\r\nMcp-Name: =?base64?w6l0w6k=?=\r\n", get_body("tasks/get", "\xc3\xa9t\xc3\xa9"));
  const auto a = affinity(r);
  EXPECT_EQ(a.kind, AffinityKind::task);
  EXPECT_EQ(a.key, "task:\xc3\xa9t\xc3\xa9");
}

TEST(RequestAffinity, ForgedHeadersAreAMismatch) {
  // Mcp-Name names another task than the body.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: other\r\n", get_body("tasks/get", "t-1"))).kind,
            AffinityKind::mismatch);
  // Mcp-Method names another method than the body.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n", get_body("tasks/cancel", "t-1"))).kind,
            AffinityKind::mismatch);
  // A body naming a task under a header that does not.
  EXPECT_EQ(affinity(Req("Mcp-Method: tools/list\r\n", get_body("tasks/get", "t-1"))).kind, AffinityKind::mismatch);
  // A header with no taskId in the body.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n",
                         R"({"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{}})"))
                .kind,
            AffinityKind::mismatch);
  // Malformed base64.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: =?base64?***?=\r\n", get_body("tasks/get", "t-1"))).kind,
            AffinityKind::mismatch);
  // A body that is not JSON.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n", "nope")).kind, AffinityKind::mismatch);
}

TEST(RequestAffinity, NoMcpNameRoutesByTheBody) {
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\n", get_body("tasks/get", "t-1"))).key, "task:t-1");
}

TEST(RequestAffinity, TwentyTwentyFiveWithoutSessionByParamsTaskId) {
  for (const char* m : {"tasks/get", "tasks/result", "tasks/cancel"}) {
    const auto a = affinity(Req("MCP-Protocol-Version: 2025-11-25\r\n", get_body(m, "abc")));
    EXPECT_EQ(a.kind, AffinityKind::task) << m;
    EXPECT_EQ(a.key, "task:abc");
  }
  // A scan fooled by a nested "method" is checked by the parse.
  const Req fooled("",
                   R"({"jsonrpc":"2.0","id":1,"params":{"method":"tasks/get","taskId":"x"},"method":"tools/call"})");
  EXPECT_EQ(affinity(fooled).kind, AffinityKind::none);
}

TEST(RequestAffinity, TasksResultIsRoutedIn2025Only) {
  // Removed in 2026 (the pod answers -32601): placed, never routed or refused by the proxy.
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/result\r\nMcp-Name: t-1\r\nMCP-Protocol-Version: 2026-07-28\r\n",
                         get_body("tasks/result", "t-1")))
                .kind,
            AffinityKind::none);
  EXPECT_EQ(affinity(Req("MCP-Protocol-Version: 2026-07-28\r\n", get_body("tasks/result", "t-1"))).kind,
            AffinityKind::none);
  EXPECT_EQ(affinity(Req("MCP-Protocol-Version: 2025-11-25\r\n", get_body("tasks/result", "t-1"))).key, "task:t-1");
}

TEST(RequestAffinity, TwentyTwentySixNotesTheTasksExtension) {
  const Req without("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n", get_body("tasks/get", "t-1"));
  EXPECT_EQ(affinity(without).kind, AffinityKind::task);
  EXPECT_FALSE(affinity(without).declares_tasks);
  const Req with(
      "Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n",
      R"({"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":"t-1","_meta":)"
      R"({"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}}})");
  EXPECT_EQ(affinity(with).key, "task:t-1");
  EXPECT_TRUE(affinity(with).declares_tasks);
}

TEST(RequestAffinity, OtherRequestsHaveNoKeyAndCostNoParse) {
  EXPECT_EQ(affinity(Req("Mcp-Method: tools/list\r\n", R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})")).kind,
            AffinityKind::none);
  EXPECT_EQ(affinity(Req("", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}})")).kind,
            AffinityKind::none);
  EXPECT_EQ(affinity(Req("", "")).kind, AffinityKind::none);
}

TEST(RequestAffinity, HugeIdsAreUnknownWithoutALookup) {
  const std::string huge(10000, 'a');
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: " + huge + "\r\n", get_body("tasks/get", huge))).kind,
            AffinityKind::unknown);
  EXPECT_EQ(affinity(Req("", get_body("tasks/get", huge))).kind, AffinityKind::unknown);
}

TEST(RequestAffinity, TasksOffRoutesNothing) {
  AffinityConfig cfg = config();
  cfg.tasks = false;
  EXPECT_EQ(affinity(Req("Mcp-Method: tasks/get\r\nMcp-Name: t-1\r\n", get_body("tasks/get", "t-1")), cfg).kind,
            AffinityKind::none);
}

TEST(RequestAffinity, ConfiguredHandleHeader) {
  AffinityConfig cfg = config();
  cfg.handles.push_back(HandleRule{"Cart", "open_cart", "/structuredContent/cart", "Mcp-Param-Cart"});
  const auto a = affinity(Req("Mcp-Method: tools/call\r\nMcp-Name: add_item\r\nMcp-Param-Cart: c-9\r\n",
                              R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_item"}})"),
                          cfg);
  EXPECT_EQ(a.kind, AffinityKind::handle);
  EXPECT_EQ(a.key, "handle:Cart:c-9");
  EXPECT_EQ(affinity(Req("mcp-param-cart: =?base64?Yy05?=\r\n", "{}"), cfg).key, "handle:Cart:c-9");
}

TEST(RouteByKey, RoutedUnknownOrGone) {
  const BoundCaller unbound;  // sessions.binding none
  EXPECT_EQ(route_by_key(nullptr, 3, unbound).result, KeyRoute::unknown);
  EXPECT_EQ(route_by_key(nullptr, 3, unbound).ordinal, -1);
  TaskRecord rec;
  rec.ordinal = 2;
  rec.ttl = milliseconds(1000);
  auto d = route_by_key(&rec, 3, unbound);
  EXPECT_EQ(d.result, KeyRoute::routed);
  EXPECT_EQ(d.ordinal, 2);
  EXPECT_EQ(route_by_key(&rec, 2, unbound).result, KeyRoute::pod_gone);
  EXPECT_EQ(kTaskNotFound.status, 200U);
  EXPECT_EQ(kTaskNotFound.code, -32602);
  EXPECT_EQ(kHeaderMismatch.code, -32020);
  EXPECT_EQ(kHandleNotFound.code, -32602);
}

TEST(RouteByKey, ABoundKeyIsItsCreatorsUnderEveryKeyOfTheFile) {
  const std::vector<BindingKey> old_keys = parse_binding_keys("key-a-0123456789abcdef\n");
  const std::vector<BindingKey> rotated = parse_binding_keys("key-b-0123456789abcdef\nkey-a-0123456789abcdef\n");
  const std::vector<BindingKey> new_only = parse_binding_keys("key-b-0123456789abcdef\n");
  TaskRecord rec;
  rec.ordinal = 1;
  rec.ttl = milliseconds(1000);
  rec.principal = principal_of(old_keys.front(), "alice");
  const auto as = [&](const std::vector<BindingKey>& keys, std::string_view identity) {
    const std::string p = identity.empty() ? "" : principal_of(keys.front(), identity);
    return route_by_key(&rec, 3, BoundCaller{&keys, identity, p});
  };
  EXPECT_EQ(as(old_keys, "alice").result, KeyRoute::routed);
  EXPECT_EQ(as(rotated, "alice").result, KeyRoute::routed) << "made under the second key of the file";
  const KeyDecision other = as(rotated, "mallory");
  EXPECT_EQ(other.result, KeyRoute::other_identity);
  EXPECT_EQ(other.ordinal, 1) << "the pod such a request is never placed on";
  EXPECT_EQ(as(old_keys, "").result, KeyRoute::other_identity) << "no identity: nobody's key";
  EXPECT_EQ(as(new_only, "alice").result, KeyRoute::unknown_binding_key);
  EXPECT_EQ(route_by_key(&rec, 3, BoundCaller{}).result, KeyRoute::routed) << "binding off: anyone's";
  rec.principal.clear();  // made before the binding was on
  EXPECT_EQ(as(old_keys, "mallory").result, KeyRoute::routed);
  EXPECT_EQ(as(old_keys, "").result, KeyRoute::routed);
}

TEST(AnswerWatch, DecidedFromTheRequest) {
  const AffinityConfig cfg = config();
  const Req call("", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}})");
  EXPECT_TRUE(answer_watch(call.head, call.body, call.method(), cfg).tasks);
  const Req list("", R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})");
  EXPECT_FALSE(answer_watch(list.head, list.body, list.method(), cfg).any());
  const Req augmented("", R"({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","task":{"ttl":5}}})");
  EXPECT_TRUE(answer_watch(augmented.head, augmented.body, augmented.method(), cfg).tasks);
  const Req mention("", R"({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"\"task\""}})");
  EXPECT_FALSE(answer_watch(mention.head, mention.body, mention.method(), cfg).tasks);
  AffinityConfig off = cfg;
  off.tasks = false;
  EXPECT_FALSE(answer_watch(call.head, call.body, call.method(), off).any());
}

TEST(AnswerWatch, HandleRuleByToolName) {
  AffinityConfig cfg = config();
  cfg.handles.push_back(HandleRule{"Cart", "open_cart", "/cart", "Mcp-Param-Cart"});
  const Req by_header("Mcp-Method: tools/call\r\nMcp-Name: open_cart\r\n",
                      R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"open_cart"}})");
  EXPECT_EQ(answer_watch(by_header.head, by_header.body, by_header.method(), cfg).handle, &cfg.handles[0]);
  const Req by_body("", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"open_cart"}})");
  EXPECT_EQ(answer_watch(by_body.head, by_body.body, by_body.method(), cfg).handle, &cfg.handles[0]);
  const Req other("", R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}})");
  EXPECT_EQ(answer_watch(other.head, other.body, other.method(), cfg).handle, nullptr);
}

TEST(AnswerKeys, TwentyTwentySixTask) {
  const AffinityConfig cfg = config();
  AnswerWatch w;
  w.tasks = true;
  const auto k = keys_of_message(
      R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t-7","status":"working","ttlMs":60000,"pollIntervalMs":500,"content":[]}})",
      w, cfg);
  ASSERT_EQ(k.learned.size(), 1U);
  EXPECT_EQ(k.learned[0].key, "task:t-7");
  EXPECT_EQ(k.learned[0].ttl, milliseconds(60000));
  EXPECT_TRUE(k.learned[0].task);
  EXPECT_TRUE(k.response);
}

TEST(AnswerKeys, TwentyTwentyFiveTask) {
  AnswerWatch w;
  w.tasks = true;
  const auto k = keys_of_message(
      R"({"jsonrpc":"2.0","id":1,"result":{"task":{"taskId":"t-8","status":"working","ttl":null}}})", w, config());
  ASSERT_EQ(k.learned.size(), 1U);
  EXPECT_EQ(k.learned[0].key, "task:t-8");
  EXPECT_EQ(k.learned[0].ttl, config().task_ttl_default);
}

TEST(AnswerKeys, NothingFromOtherMessages) {
  AnswerWatch w;
  w.tasks = true;
  const AffinityConfig cfg = config();
  // A plain result, a notification that mentions a taskId, an error, a request.
  EXPECT_TRUE(keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"content":[]}})", w, cfg).learned.empty());
  const auto note = keys_of_message(
      R"({"jsonrpc":"2.0","method":"notifications/tasks/status","params":{"taskId":"t","status":"working"}})", w, cfg);
  EXPECT_TRUE(note.learned.empty());
  EXPECT_FALSE(note.response);
  EXPECT_TRUE(keys_of_message(R"({"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"taskId"}})", w, cfg).response);
  EXPECT_TRUE(keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","taskId":"x"}})", w, cfg)
                  .learned.empty());
  EXPECT_TRUE(keys_of_message("garbage \"taskId\"", w, cfg).learned.empty());
  // Not watched: not read.
  EXPECT_TRUE(
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t"}})", AnswerWatch{}, cfg)
          .learned.empty());
}

TEST(AnswerKeys, HugeIdsAndTtlsAreBounded) {
  AnswerWatch w;
  w.tasks = true;
  const AffinityConfig cfg = config();
  const auto huge = keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":")" +
                                        std::string(100000, 'x') + R"(","ttlMs":1}})",
                                    w, cfg);
  EXPECT_TRUE(huge.learned.empty());
  EXPECT_EQ(huge.refused, 1U);
  const auto long_ttl =
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t","ttlMs":1e300}})", w, cfg);
  ASSERT_EQ(long_ttl.learned.size(), 1U);
  EXPECT_EQ(long_ttl.learned[0].ttl, cfg.task_ttl_max);
  const auto negative =
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t","ttlMs":-5}})", w, cfg);
  EXPECT_EQ(negative.learned.at(0).ttl, cfg.task_ttl_default);
  const auto text_ttl =
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":"t","ttlMs":"9"}})", w, cfg);
  EXPECT_EQ(text_ttl.learned.at(0).ttl, cfg.task_ttl_default);
  const auto not_string =
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"resultType":"task","taskId":12}})", w, cfg);
  EXPECT_TRUE(not_string.learned.empty());
}

TEST(AnswerKeys, TtlDefaultCappedByMax) {
  AffinityConfig cfg = config();
  cfg.task_ttl_default = milliseconds(100000);
  cfg.task_ttl_max = milliseconds(5000);
  EXPECT_EQ(task_ttl(std::nullopt, cfg), milliseconds(5000));
  EXPECT_EQ(task_ttl(2000.0, cfg), milliseconds(2000));
}

TEST(AnswerKeys, HandleAtThePointer) {
  AffinityConfig cfg = config();
  cfg.handles.push_back(HandleRule{"Cart", "open_cart", "/structuredContent/carts/0/id", "Mcp-Param-Cart"});
  AnswerWatch w;
  w.handle = &cfg.handles[0];
  const auto k = keys_of_message(
      R"({"jsonrpc":"2.0","id":1,"result":{"content":[],"structuredContent":{"carts":[{"id":"c-9"}]}}})", w, cfg);
  ASSERT_EQ(k.learned.size(), 1U);
  EXPECT_EQ(k.learned[0].key, "handle:Cart:c-9");
  EXPECT_FALSE(k.learned[0].task);
  EXPECT_TRUE(keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"carts":[]}}})", w, cfg)
                  .learned.empty());
  EXPECT_TRUE(
      keys_of_message(R"({"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"carts":[{"id":{}}]}}})", w, cfg)
          .learned.empty());
}

TEST(AnswerTap, JsonBodyWholeAtItsEnd) {
  AnswerTap tap(/*sse=*/false, 1024);
  std::vector<std::string> out;
  tap.feed(R"({"jsonrpc":"2.0",)", false, out);
  EXPECT_TRUE(out.empty());
  tap.feed(R"("id":1,"result":{}})", true, out);
  ASSERT_EQ(out.size(), 1U);
  EXPECT_EQ(out[0], R"({"jsonrpc":"2.0","id":1,"result":{}})");
  EXPECT_TRUE(tap.done());
}

TEST(AnswerTap, SseEventsAtEverySplit) {
  const std::string stream =
      ": keepalive\n\nevent: message\ndata: {\"a\":1}\n\nid: 5\r\ndata: {\"b\":\r\ndata: 2}\r\n\r\ndata: {\"c\":3}\r\r";
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    AnswerTap tap(/*sse=*/true, 1024);
    std::vector<std::string> out;
    tap.feed(std::string_view(stream).substr(0, cut), false, out);
    tap.feed(std::string_view(stream).substr(cut), true, out);
    ASSERT_EQ(out.size(), 3U) << cut;
    EXPECT_EQ(out[0], "{\"a\":1}");
    EXPECT_EQ(out[1], "{\"b\":\n2}");
    EXPECT_EQ(out[2], "{\"c\":3}");
  }
}

TEST(AnswerTap, BoundedByTheLimit) {
  AnswerTap tap(/*sse=*/true, 64);
  std::vector<std::string> out;
  tap.feed("data: " + std::string(100, 'x'), false, out);
  EXPECT_TRUE(tap.done());
  EXPECT_TRUE(tap.overflowed());
  tap.feed("\n\ndata: {}\n\n", true, out);
  EXPECT_TRUE(out.empty());
}
