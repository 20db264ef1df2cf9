// Task and handle affinity through the real proxy, in front of sessionless pods that keep
// their tasks in process memory (task_pods.py, three pods on 127.0.1.0-2), with the memory
// store and with two proxy replicas sharing a real redis-server.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <set>

#include "task_support.hpp"

using namespace task_test;

namespace {

class TaskAffinityTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> pod_args = {}, std::vector<std::string> proxy_args = {}) {
    pods_ = std::make_unique<TaskPods>(pod_args);
    std::vector<std::string> args = {
        "--replicas", "3", "--backend-url-template", pods_->url_template(), "--threads", "2", "--placement", "random"};
    args.insert(args.end(), proxy_args.begin(), proxy_args.end());
    proxy_ = std::make_unique<Proxy>(args, "tasks");
  }
  std::uint16_t port() const { return proxy_->port; }
  double m(const std::string& series) const { return metric(proxy_->metrics(), series).value_or(-1); }
  std::unique_ptr<TaskPods> pods_;
  std::unique_ptr<Proxy> proxy_;
};

}  // namespace

TEST_F(TaskAffinityTest, EveryTaskRequestReachesThePodThatHoldsTheTask2026) {
  start();
  std::set<std::string> pods_seen;
  for (int i = 0; i < 20; ++i) {
    const std::string task = create_task_2026(port(), i);
    ASSERT_FALSE(task.empty());
    for (const char* method : {"tasks/get", "tasks/get", "tasks/update", "tasks/cancel"}) {
      const Response r = get_task_2026(port(), task, method);
      ASSERT_EQ(r.status, 200) << r.body;
      const json msg = message(r);
      ASSERT_TRUE(msg.contains("result")) << method << " " << r.body;
      pods_seen.insert(msg.at("result").at("pod").get<std::string>());
    }
  }
  EXPECT_EQ(pods_->misses(), 0);
  EXPECT_GE(pods_seen.size(), 2U) << "tasks were created on several pods";
  EXPECT_EQ(m(R"(mcp_proxy_task_routes_total{result="routed"})"), 80);
  EXPECT_EQ(m("mcp_proxy_tasks_learned_total"), 20);
  EXPECT_EQ(m(R"(mcp_proxy_requests_by_method_total{era="2026",method="tools/call"})"), 20);
  EXPECT_EQ(m(R"(mcp_proxy_requests_by_method_total{era="2026",method="tasks/get"})"), 40);
}

TEST_F(TaskAffinityTest, StatelessTwentyTwentyFiveTasksByParamsTaskId) {
  start();
  const Headers h = {{"MCP-Protocol-Version", "2025-11-25"}, {"Accept", "application/json, text/event-stream"}};
  for (int i = 0; i < 15; ++i) {
    const std::string task = create_task_2025(port(), i);
    ASSERT_FALSE(task.empty());
    for (const char* method : {"tasks/get", "tasks/result", "tasks/cancel"}) {
      const Response r = request(port(), "POST", "/mcp", rpc(3, method, {{"taskId", task}}).dump(), h);
      ASSERT_EQ(r.status, 200) << r.body;
      ASSERT_TRUE(message(r).contains("result")) << method << " " << r.body;
    }
  }
  EXPECT_EQ(pods_->misses(), 0);
  EXPECT_EQ(m(R"(mcp_proxy_requests_by_method_total{era="2025",method="tasks/result"})"), 15);
}

TEST_F(TaskAffinityTest, TasksAnsweredAsSseEventsAreLearnedToo) {
  start({"--sse"});
  for (int i = 0; i < 10; ++i) {
    const std::string task = create_task_2026(port(), i);
    ASSERT_FALSE(task.empty());
    const Response r = get_task_2026(port(), task);
    ASSERT_TRUE(message(r).contains("result")) << r.body;
  }
  EXPECT_EQ(pods_->misses(), 0);
  EXPECT_EQ(m("mcp_proxy_tasks_learned_total"), 10);
}

TEST_F(TaskAffinityTest, UnknownTaskIsAnsweredAsAPodAnswersIt) {
  start();
  const Response r = get_task_2026(port(), "no-such-task");
  EXPECT_EQ(r.status, 200);
  const json msg = message(r);
  EXPECT_EQ(msg.at("error").at("code"), -32602);
  EXPECT_EQ(msg.at("error").at("message"), "Task not found");
  EXPECT_EQ(msg.at("id"), 9);
  EXPECT_EQ(pods_->misses(), 0) << "never sent to a pod that would guess";
  EXPECT_EQ(m(R"(mcp_proxy_task_routes_total{result="unknown"})"), 1);
}

TEST_F(TaskAffinityTest, ForgedOrDisagreeingHeadersNeverRoute) {
  start();
  const std::string task = create_task_2026(port(), 1);
  ASSERT_FALSE(task.empty());
  // Mcp-Name names another task than the body.
  Response r = get_task_2026(port(), task, "tasks/get", "forged");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(message(r).at("error").at("code"), -32020);
  // Mcp-Method says tasks/get, the body tasks/cancel.
  const Headers h = with(with(k2026, "Mcp-Method", "tasks/get"), "Mcp-Name", task);
  r = request(port(), "POST", "/mcp", rpc(4, "tasks/cancel", {{"taskId", task}}).dump(), h);
  EXPECT_EQ(r.status, 400);
  // A body naming a task under a header naming another method.
  const Headers list = with(k2026, "Mcp-Method", "tools/list");
  r = request(port(), "POST", "/mcp", rpc(5, "tasks/get", {{"taskId", task}}).dump(), list);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(m(R"(mcp_proxy_task_routes_total{result="mismatch"})"), 3);
  EXPECT_EQ(pods_->misses(), 0);
}

TEST_F(TaskAffinityTest, McpHeadersReachThePodByteExact) {
  start();
  const std::string odd = "=?base64?w6lsw6hWZQ==?=";
  Headers h = with(with(k2026, "Mcp-Method", "tools/call"), "Mcp-Name", "headers");
  h = with(h, "Mcp-Param-Region", odd);
  h = with(h, "mcp-param-Mixed-Case", "a\tb");
  const Response r = request(port(), "POST", "/mcp", rpc(1, "tools/call", {{"name", "headers"}}).dump(), h);
  ASSERT_EQ(r.status, 200) << r.body;
  std::map<std::string, std::string> got;
  const json msg = message(r);  // the loop's range must not be a temporary's member
  for (const auto& kv : msg.at("result").at("structuredContent").at("headers")) {
    got[kv.at(0).get<std::string>()] = kv.at(1).get<std::string>();
  }
  EXPECT_EQ(got["MCP-Protocol-Version"], "2026-07-28") << r.body;
  EXPECT_EQ(got["Mcp-Method"], "tools/call");
  EXPECT_EQ(got["Mcp-Name"], "headers");
  EXPECT_EQ(got["Mcp-Param-Region"], odd);
  EXPECT_EQ(got["mcp-param-Mixed-Case"], "a\tb");  // the name's case and the value's tab as sent
}

TEST_F(TaskAffinityTest, APodInventingAnotherPodsTaskIdDoesNotTakeIt) {
  // Pods 0 and 1 name every task "same": the first one to answer keeps it.
  start({"--task-id", "0:same", "--task-id", "1:same"});
  std::set<std::string> owners;
  for (int i = 0; i < 30 && owners.size() < 2; ++i) {
    const std::string task = create_task_2026(port(), i);
    ASSERT_FALSE(task.empty());
    if (task != "same") continue;  // pod 2 names its tasks itself
    const Response r = get_task_2026(port(), "same");
    ASSERT_TRUE(message(r).contains("result")) << r.body;
    owners.insert(message(r).at("result").at("pod").get<std::string>());
  }
  EXPECT_EQ(owners.size(), 1U) << "one pod holds the id for the proxy";
  EXPECT_GT(m(R"(mcp_proxy_affinity_keys_refused_total{reason="taken"})"), 0);
}

TEST_F(TaskAffinityTest, HugeTaskIdsAreNeitherLearnedNorLookedUp) {
  start({"--task-id-bytes", "5000"});
  const std::string task = create_task_2026(port(), 1);
  ASSERT_EQ(task.size(), 5000U);
  EXPECT_EQ(m(R"(mcp_proxy_affinity_keys_refused_total{reason="invalid"})"), 1);
  EXPECT_EQ(m("mcp_proxy_tasks_learned_total"), 0);
  EXPECT_EQ(m("mcp_proxy_affinity_keys"), 0);
  const Response r = get_task_2026(port(), task);
  EXPECT_EQ(message(r).at("error").at("code"), -32602);
}

// A task's TTL in Redis as the store set it (PTTL, ms; -2 when there is no such key).
long long pttl(const RedisServer& redis, int db, const std::string& task) {
  return std::stoll(redis_cmd(redis.port, {"EVAL", "redis.call('SELECT', ARGV[1]); return redis.call('PTTL', KEYS[1])",
                                           "1", "mcp-session-proxy:task:" + task, std::to_string(db)}));
}

TEST_F(TaskAffinityTest, HugeTtlIsCappedAndAFloodIsBounded) {
  // The memory store, 10 keys at most: a flood of 40 more tasks leaves the first 10 routed.
  start({}, {"--task-ttl-max", "1h", "--affinity-max-keys", "10"});
  std::vector<std::string> first;
  for (int i = 0; i < 10; ++i) first.push_back(create_task_2026(port(), i, {{"ttlMs", 1e15}}));
  for (int i = 10; i < 50; ++i) ASSERT_FALSE(create_task_2026(port(), i).empty());
  EXPECT_EQ(m("mcp_proxy_affinity_keys"), 10);
  EXPECT_EQ(m(R"(mcp_proxy_affinity_keys_refused_total{reason="full"})"), 40);
  EXPECT_EQ(m("mcp_proxy_tasks_learned_total"), 10);
  for (const std::string& task : first) {
    ASSERT_FALSE(task.empty());
    EXPECT_TRUE(message(get_task_2026(port(), task)).contains("result")) << "an earlier task is still routed";
  }
  EXPECT_EQ(pods_->misses(), 0);

  // The byte bound: 5 keys of 169 bytes (128 + "task:" + a 36-byte id) in 1000 bytes.
  Proxy bytes({"--replicas", "3", "--backend-url-template", pods_->url_template(), "--placement", "random",
               "--affinity-max-table-bytes", "1000"},
              "tasks-bytes");
  for (int i = 0; i < 20; ++i) ASSERT_FALSE(create_task_2026(bytes.port, i).empty());
  EXPECT_EQ(metric(bytes.metrics(), "mcp_proxy_affinity_keys").value_or(-1), 5);
  EXPECT_EQ(metric(bytes.metrics(), R"(mcp_proxy_affinity_keys_refused_total{reason="full"})").value_or(-1), 15);

  // The cap, as Redis keeps the record: ttlMs 1e15 is kept for task_ttl_max (1 h), and a
  // null one for task_ttl_default (the default's default, 1 h, capped by a 30 min max).
  RedisServer redis;
  const auto redis_proxy = [&](const std::string& ttl_max, const std::string& name) {
    return std::make_unique<Proxy>(
        std::vector<std::string>{"--replicas", "3", "--backend-url-template", pods_->url_template(), "--session-store",
                                 "redis", "--redis-url", redis.url(1), "--task-ttl-max", ttl_max},
        name);
  };
  const auto hour = redis_proxy("1h", "tasks-cap");
  const long long capped = pttl(redis, 1, create_task_2026(hour->port, 1, {{"ttlMs", 1e15}}));
  EXPECT_GT(capped, 3600000 - 60000) << "the record is kept for task_ttl_max";
  EXPECT_LE(capped, 3600000);
  const auto half = redis_proxy("30m", "tasks-cap-default");
  const long long defaulted = pttl(redis, 1, create_task_2026(half->port, 2, {{"ttlMs", nullptr}}));
  EXPECT_GT(defaulted, 1800000 - 60000);
  EXPECT_LE(defaulted, 1800000);
}

TEST_F(TaskAffinityTest, ATaskWhosePodIsGoneIsAnsweredAsUnknown) {
  pods_ = std::make_unique<TaskPods>();
  const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/tasks-reload.yaml";
  const auto write = [&](int replicas) {
    std::ofstream(path) << "backend:\n  replicas: " << replicas << "\n  url_template: " << pods_->url_template()
                        << "\nplacement: random\nthreads: 2\n";
  };
  write(3);
  proxy_ = std::make_unique<Proxy>(std::vector<std::string>{"--config", path}, "tasks-gone");
  std::string on_pod2;
  for (int i = 0; i < 60 && on_pod2.empty(); ++i) {
    const std::string task = create_task_2026(port(), i);
    if (message(get_task_2026(port(), task)).at("result").at("pod") == "pod-2") on_pod2 = task;
  }
  ASSERT_FALSE(on_pod2.empty());
  write(2);
  proxy_->process->signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return m("mcp_proxy_config_generation") == 2; }));
  const Response r = get_task_2026(port(), on_pod2);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(message(r).at("error").at("code"), -32602);
  EXPECT_EQ(m(R"(mcp_proxy_task_routes_total{result="pod_gone"})"), 1);
}

TEST_F(TaskAffinityTest, SubscriptionsListenIsCountedAndTheDrainWaitsForIt) {
  start({}, {"--drain-timeout", "30s"});
  Headers h = with(k2026, "Mcp-Method", "subscriptions/listen");
  Stream listen(port(), "POST", "/mcp", rpc(1, "subscriptions/listen", json::object()).dump(), h);
  ASSERT_EQ(listen.status(), 200);
  ASSERT_TRUE(listen.read_until("acknowledged", 5s));
  ASSERT_TRUE(eventually([&] { return m("mcp_proxy_listen_streams") == 1; }));
  proxy_->process->signal(SIGTERM);
  ASSERT_TRUE(eventually([&] { return request(proxy_->admin, "GET", "/readyz").status == 503; }));
  // The stream goes on while the proxy drains: more keep-alives arrive after the SIGTERM.
  const std::size_t before = listen.body().size();
  ASSERT_TRUE(listen.read_until(": keepalive\n\n: keepalive\n\n: keepalive", 10s));
  EXPECT_GT(listen.body().size(), before);
  EXPECT_TRUE(proxy_->process->running());
  listen.close();
  EXPECT_EQ(proxy_->process->wait(15s).value_or(-1), 0) << "the drain ends when the stream does";
}

TEST_F(TaskAffinityTest, ACallCarryingAHandleFollowsThePodThatMadeIt) {
  start({}, {"--handle", R"({"param":"Cart","tool":"open_cart","result_pointer":"/structuredContent/cart"})"});
  for (int i = 0; i < 8; ++i) {
    const Headers open = with(with(k2026, "Mcp-Method", "tools/call"), "Mcp-Name", "open_cart");
    const Response made = request(port(), "POST", "/mcp", rpc(i, "tools/call", {{"name", "open_cart"}}).dump(), open);
    const std::string cart = message(made).at("result").at("structuredContent").at("cart");
    for (int j = 0; j < 4; ++j) {
      const Headers use =
          with(with(with(k2026, "Mcp-Method", "tools/call"), "Mcp-Name", "use_cart"), "Mcp-Param-Cart", cart);
      const Response r = request(port(), "POST", "/mcp", rpc(j, "tools/call", {{"name", "use_cart"}}).dump(), use);
      ASSERT_FALSE(message(r).at("result").at("isError").get<bool>()) << r.body;
    }
  }
  EXPECT_EQ(m("mcp_proxy_handles_learned_total"), 8);
  EXPECT_EQ(m(R"(mcp_proxy_handle_routes_total{result="routed"})"), 32);
}

TEST_F(TaskAffinityTest, TasksListIsEveryPodsListMerged) {
  start();
  std::set<std::string> made;
  for (int i = 0; i < 12; ++i) made.insert(create_task_2025(port(), i));
  const Headers h = {{"MCP-Protocol-Version", "2025-11-25"}};
  const Response r = request(port(), "POST", "/mcp", rpc(77, "tasks/list", json::object()).dump(), h);
  ASSERT_EQ(r.status, 200);
  const json msg = message(r);
  EXPECT_EQ(msg.at("id"), 77);
  std::set<std::string> listed;
  for (const auto& t : msg.at("result").at("tasks")) listed.insert(t.at("taskId").get<std::string>());
  EXPECT_EQ(listed, made);
  // A cursor the proxy did not make is refused as a pod refuses one.
  const Response bad = request(port(), "POST", "/mcp", rpc(78, "tasks/list", {{"cursor", "forged"}}).dump(), h);
  EXPECT_EQ(message(bad).at("error").at("code"), -32602);
}

// ---- two proxy replicas sharing one redis-server -----------------------------------------

class RedisTaskTest : public TaskAffinityTest {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>();
    pods_ = std::make_unique<TaskPods>();
  }
  std::unique_ptr<Proxy> replica(const std::string& name) const {
    return std::make_unique<Proxy>(
        std::vector<std::string>{"--replicas", "3", "--backend-url-template", pods_->url_template(), "--session-store",
                                 "redis", "--redis-url", redis_->url(1), "--threads", "2", "--placement", "random"},
        name);
  }
  std::string record(const std::string& task) const {
    return redis_cmd(redis_->port, {"EVAL", "redis.call('SELECT', 1); return redis.call('GET', KEYS[1])", "1",
                                    "mcp-session-proxy:task:" + task});
  }
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisTaskTest, RecordedBeforeTheAnswerAndPolledThroughTheOtherReplica) {
  const auto a = replica("tasks-a");
  const auto b = replica("tasks-b");
  for (int i = 0; i < 20; ++i) {
    const std::string task = i % 2 == 0 ? create_task_2026(a->port, i) : create_task_2025(a->port, i);
    ASSERT_FALSE(task.empty());
    // The record is in Redis by the time the client has the answer.
    const json rec = json::parse(record(task));
    EXPECT_EQ(rec.at("v"), 1);
    // At once through the other replica, which never saw the task.
    const Response r = i % 2 == 0 ? get_task_2026(b->port, task)
                                  : request(b->port, "POST", "/mcp", rpc(3, "tasks/get", {{"taskId", task}}).dump(),
                                            {{"MCP-Protocol-Version", "2025-11-25"}});
    ASSERT_TRUE(message(r).contains("result")) << r.body;
    EXPECT_EQ(message(r).at("result").at("pod"), "pod-" + std::to_string(rec.at("ordinal").get<int>()));
  }
  EXPECT_EQ(pods_->misses(), 0);
  EXPECT_EQ(metric(b->metrics(), R"(mcp_proxy_task_routes_total{result="routed"})").value_or(0), 20);
  const std::string ttl =
      redis_cmd(redis_->port, {"EVAL", "redis.call('SELECT', 1); return redis.call('PTTL', KEYS[1])", "1",
                               "mcp-session-proxy:task:" + create_task_2026(a->port, 99)});
  EXPECT_GT(std::stoll(ttl), 50000) << "the answer's ttlMs (60 s)";
  EXPECT_LE(std::stoll(ttl), 60000);
}

TEST_F(RedisTaskTest, AnUnknownTaskIsUnknownToBothReplicas) {
  const auto a = replica("tasks-a");
  const Response r = get_task_2026(a->port, "never-made");
  EXPECT_EQ(message(r).at("error").at("code"), -32602);
  EXPECT_EQ(pods_->misses(), 0);
}
