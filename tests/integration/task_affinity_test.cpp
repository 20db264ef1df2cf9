// Task and handle affinity through the real proxy, in front of sessionless pods that keep
// their tasks in process memory (task_pods.py, three pods on 127.0.1.0-2), with the memory
// store and with two proxy replicas sharing a real redis-server.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

// task_pods.py: pods with their own task tables, on one port.
struct TaskPods {
  explicit TaskPods(std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {"python3", source_dir() + "/tests/integration/task_pods.py", "--pods", "3"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process = std::make_unique<Process>(argv);
    const auto line = process->read_line(15s);
    if (!line || line->rfind("ports ", 0) != 0) throw std::runtime_error("task pods did not start");
    port = static_cast<std::uint16_t>(std::stoi(line->substr(6)));
  }
  std::string url_template() const { return "http://127.0.1.{ordinal}:" + std::to_string(port); }
  // Task requests that reached a pod which never made the task, all pods.
  int misses() const {
    int n = 0;
    for (int i = 0; i < 3; ++i) {
      const Response r = request(port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(i));
      n += json::parse(r.body).at("misses").get<int>();
    }
    return n;
  }
  std::uint16_t port = 0;
  std::unique_ptr<Process> process;
};

const Headers k2026 = {{"MCP-Protocol-Version", "2026-07-28"}, {"Accept", "application/json, text/event-stream"}};

json rpc(int id, const std::string& method, const json& params) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
}

// The JSON-RPC response of an answer, JSON or the last SSE event (an empty object, and a
// failure naming the answer, when it is neither).
json message(const Response& r) {
  std::string text = r.body;
  if (r.header("content-type").rfind("text/event-stream", 0) == 0) {
    const auto at = r.body.rfind("data: ");
    text = at == std::string::npos ? "" : r.body.substr(at + 6, r.body.find('\n', at) - at - 6);
  }
  json m = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!m.is_object()) {
    ADD_FAILURE() << "not a JSON-RPC message: status " << r.status << ", body '" << r.body << "'";
    return json::object();
  }
  return m;
}

Headers with(Headers h, const std::string& name, const std::string& value) {
  h.emplace_back(name, value);
  return h;
}

// A 2026 tools/call of `slow`: the task id it created.
std::string create_task_2026(std::uint16_t port, int id, json args = json::object()) {
  Headers h = with(with(k2026, "Mcp-Method", "tools/call"), "Mcp-Name", "slow");
  const Response r =
      request(port, "POST", "/mcp", rpc(id, "tools/call", {{"name", "slow"}, {"arguments", args}}).dump(), h);
  if (r.status != 200) return "";
  const json m = message(r);
  return m.at("result").value("taskId", "");
}

Response get_task_2026(std::uint16_t port, const std::string& task, const std::string& method = "tasks/get",
                       const std::string& header_name = "") {
  const Headers h = with(with(k2026, "Mcp-Method", method), "Mcp-Name", header_name.empty() ? task : header_name);
  // A 2026 client that uses tasks declares the extension on its requests (SEP-2663).
  const json meta = {{"io.modelcontextprotocol/clientCapabilities",
                      {{"extensions", {{"io.modelcontextprotocol/tasks", json::object()}}}}}};
  return request(port, "POST", "/mcp", rpc(9, method, {{"taskId", task}, {"_meta", meta}}).dump(), h);
}

std::string create_task_2025(std::uint16_t port, int id) {
  const Headers h = {{"MCP-Protocol-Version", "2025-11-25"}, {"Accept", "application/json, text/event-stream"}};
  const Response r =
      request(port, "POST", "/mcp", rpc(id, "tools/call", {{"name", "slow"}, {"arguments", json::object()}}).dump(), h);
  if (r.status != 200) return "";
  const json msg = message(r);
  if (!msg.contains("result") || !msg.at("result").contains("task")) {
    ADD_FAILURE() << "not a task: " << r.body;
    return "";
  }
  return msg.at("result").at("task").value("taskId", "");
}

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

TEST_F(TaskAffinityTest, HugeTtlIsCappedAndAFloodIsBounded) {
  start({}, {"--task-ttl-max", "1h"});
  ASSERT_FALSE(create_task_2026(port(), 1, {{"ttlMs", 1e15}}).empty());
  EXPECT_EQ(m("mcp_proxy_affinity_keys"), 1);
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
