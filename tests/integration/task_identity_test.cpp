// Tasks and handles bound to who made them (sessions.binding, issue 29), through the real
// proxy in front of sessionless pods that keep tasks and handles in process memory
// (task_pods.py, three pods on 127.0.1.0-2), with the memory store and with proxy replicas
// sharing a real redis-server: another identity's task request is answered as an unknown
// task's and reaches no pod (the pods' own counters say so), the owner's reaches its pod
// through any replica, after a token refresh and across a binding key rotation.
#include <gtest/gtest.h>

#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "harness.hpp"
#include "jwt_mint.hpp"
#include "task_support.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

using task_test::message;
using task_test::rpc;
using task_test::TaskPods;

// A 2026 request's headers (Mcp-Method, Mcp-Name) as `token`'s bearer ("" for none).
Headers h2026(const std::string& token, const std::string& method, const std::string& name) {
  Headers h = {{"MCP-Protocol-Version", "2026-07-28"},
               {"Accept", "application/json, text/event-stream"},
               {"Mcp-Method", method},
               {"Mcp-Name", name}};
  if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
  return h;
}

Headers h2025(const std::string& token) {
  Headers h = {{"MCP-Protocol-Version", "2025-11-25"}, {"Accept", "application/json, text/event-stream"}};
  if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
  return h;
}

std::string create_2026(std::uint16_t port, const std::string& token) {
  const Response r = request(port, "POST", "/mcp", rpc(1, "tools/call", {{"name", "slow"}}).dump(),
                             h2026(token, "tools/call", "slow"));
  return r.status == 200 ? message(r).at("result").value("taskId", "") : "";
}

std::string create_2025(std::uint16_t port, const std::string& token) {
  const Response r = request(port, "POST", "/mcp", rpc(1, "tools/call", {{"name", "slow"}}).dump(), h2025(token));
  return r.status == 200 ? message(r).at("result").at("task").value("taskId", "") : "";
}

Response task_2026(std::uint16_t port, const std::string& token, const std::string& method, const std::string& task) {
  const json meta = {{"io.modelcontextprotocol/clientCapabilities",
                      {{"extensions", {{"io.modelcontextprotocol/tasks", json::object()}}}}}};
  return request(port, "POST", "/mcp", rpc(9, method, {{"taskId", task}, {"_meta", meta}}).dump(),
                 h2026(token, method, task));
}

Response task_2025(std::uint16_t port, const std::string& token, const std::string& method, const std::string& task) {
  return request(port, "POST", "/mcp", rpc(9, method, {{"taskId", task}}).dump(), h2025(token));
}

// The pod a task request reached ("" when the answer is not a pod's result).
std::string pod_of(const Response& r) {
  const json m = message(r);
  return m.contains("result") ? m.at("result").value("pod", "") : "";
}

// A task of `token`'s: each task request of both eras, the pod that answered (or "").
std::set<std::string> pods_reached(std::uint16_t port, const std::string& token, const std::string& task, bool v2026) {
  std::set<std::string> pods;
  for (const char* method : v2026 ? std::vector<const char*>{"tasks/get", "tasks/update", "tasks/cancel"}
                                  : std::vector<const char*>{"tasks/get", "tasks/result", "tasks/cancel"}) {
    pods.insert(pod_of(v2026 ? task_2026(port, token, method, task) : task_2025(port, token, method, task)));
  }
  return pods;
}

const std::string kCart = R"({"param":"Cart","tool":"open_cart","result_pointer":"/structuredContent/cart"})";

std::string open_cart(std::uint16_t port, const std::string& token) {
  const Response r = request(port, "POST", "/mcp", rpc(1, "tools/call", {{"name", "open_cart"}}).dump(),
                             h2026(token, "tools/call", "open_cart"));
  return message(r).at("result").at("structuredContent").value("cart", "");
}

Response use_cart(std::uint16_t port, const std::string& token, const std::string& cart) {
  Headers h = h2026(token, "tools/call", "use_cart");
  h.emplace_back("Mcp-Param-Cart", cart);
  return request(port, "POST", "/mcp", rpc(2, "tools/call", {{"name", "use_cart"}}).dump(), h);
}

const std::string kKeyA = "key-a-0123456789abcdef0123";
const std::string kKeyB = "key-b-fedcba9876543210fedc";

std::string key_file(const std::string& name, const std::vector<std::string>& keys) {
  const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/" + name;
  std::ofstream out(path, std::ios::trunc);
  for (const auto& k : keys) out << k << "\n";
  return path;
}

class TaskIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override { pods_ = std::make_unique<TaskPods>(); }
  std::unique_ptr<Proxy> proxy(const std::string& name, const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {
        "--replicas", "3", "--backend-url-template", pods_->url_template(), "--threads", "2", "--placement", "random"};
    a.insert(a.end(), extra.begin(), extra.end());
    return std::make_unique<Proxy>(a, name);
  }
  static double m(const Proxy& p, const std::string& series) { return metric(p.metrics(), series).value_or(-1); }
  std::unique_ptr<TaskPods> pods_;
};

}  // namespace

TEST_F(TaskIdentityTest, AnotherIdentityCanNeitherPollNorCancelNorReadATask) {
  const auto p = proxy("tasks-bound", {"--session-binding", "authorization"});
  const std::string t26 = create_2026(p->port, "alice");
  const std::string t25 = create_2025(p->port, "alice");
  ASSERT_FALSE(t26.empty());
  ASSERT_FALSE(t25.empty());
  // What a task no pod holds gets: the answer of another identity's task, byte for byte.
  const std::string unknown26 = task_2026(p->port, "alice", "tasks/get", "no-such-task").body;
  const std::string unknown25 = task_2025(p->port, "alice", "tasks/get", "no-such-task").body;
  ASSERT_EQ(message(task_2026(p->port, "alice", "tasks/get", "no-such-task")).at("error").at("code"), -32602);
  const int hits = pods_->sum("hits");
  const int misses = pods_->sum("misses");
  int tried = 0;
  for (const std::string who : {"mallory", ""}) {  // another identity, and none
    for (const char* method : {"tasks/get", "tasks/update", "tasks/cancel"}) {
      const Response r = task_2026(p->port, who, method, t26);
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, unknown26) << method << " as '" << who << "'";
      ++tried;
    }
    for (const char* method : {"tasks/get", "tasks/result", "tasks/cancel"}) {
      const Response r = task_2025(p->port, who, method, t25);
      EXPECT_EQ(r.body, unknown25) << method << " as '" << who << "'";
      ++tried;
    }
  }
  EXPECT_EQ(pods_->sum("hits"), hits) << "no task request of theirs reached a pod";
  EXPECT_EQ(pods_->sum("misses"), misses);
  EXPECT_EQ(m(*p, R"(mcp_proxy_task_routes_total{result="other_identity"})"), tried);
  // Two Authorization fields (an auth hop that appends): 400, before any pod.
  Headers two = h2026("alice", "tasks/get", t26);
  two.emplace_back("Authorization", "Bearer mallory");
  EXPECT_EQ(request(p->port, "POST", "/mcp", rpc(9, "tasks/get", {{"taskId", t26}}).dump(), two).status, 400);
  EXPECT_EQ(pods_->sum("hits"), hits);
  // The owner reaches both, on the pod that holds each.
  for (const auto& [task, v2026] : {std::pair{t26, true}, std::pair{t25, false}}) {
    const std::set<std::string> reached = pods_reached(p->port, "alice", task, v2026);
    EXPECT_EQ(reached.size(), 1U);
    EXPECT_FALSE(reached.contains(""));
  }
  EXPECT_EQ(pods_->sum("hits"), hits + 6);
  EXPECT_EQ(pods_->sum("misses"), misses);
}

// With the listen fan-out, a listen filtered to task ids goes to those tasks' pods, with the
// ids in its body: only the caller's own tasks may be named, alone or beside other filters.
TEST_F(TaskIdentityTest, AFilteredListenNamesOnlyTheCallersOwnTasks) {
  const auto p = proxy("listen-bound", {"--session-binding", "authorization", "--listen-fanout", "true"});
  const std::string task = create_2026(p->port, "alice");
  ASSERT_FALSE(task.empty());
  const auto body = [](const json& filter) {
    return rpc(5, "subscriptions/listen", {{"notifications", filter}}).dump();
  };
  const auto headers = [](const std::string& token) {
    Headers h = {{"MCP-Protocol-Version", "2026-07-28"},
                 {"Accept", "application/json, text/event-stream"},
                 {"Mcp-Method", "subscriptions/listen"}};
    if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
    return h;
  };
  const json alone = {{"taskIds", {task}}};
  const json mixed = {{"taskIds", {task}}, {"toolsListChanged", true}};
  for (const std::string who : {"mallory", ""}) {
    for (const json& filter : {alone, mixed}) {
      const Response r = request(p->port, "POST", "/mcp", body(filter), headers(who));
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(message(r).at("error").at("code"), -32602) << filter.dump() << " as '" << who << "'";
    }
  }
  for (const json& filter : {alone, mixed}) {
    Stream own(p->port, "POST", "/mcp", body(filter), headers("alice"));
    EXPECT_EQ(own.status(), 200) << filter.dump();
    EXPECT_TRUE(own.read_until("acknowledged", 10s)) << filter.dump() << own.body();
    own.close();
  }
}

TEST_F(TaskIdentityTest, AHandleOfAnotherIdentityNeverReachesItsPod) {
  const auto p = proxy("handles-bound", {"--session-binding", "authorization", "--handle", kCart});
  const std::string cart = open_cart(p->port, "alice");
  ASSERT_FALSE(cart.empty());
  const int hits = pods_->sum("hits");
  constexpr int kTries = 15;  // placed at random: the holder would get about 5 of them
  for (int i = 0; i < kTries; ++i) {
    const Response r = use_cart(p->port, i % 3 == 0 ? "" : "mallory", cart);
    ASSERT_EQ(r.status, 200) << r.body;
    // The route of an unknown handle: placed on a pod, which does not hold it.
    EXPECT_TRUE(message(r).at("result").at("isError").get<bool>()) << r.body;
  }
  EXPECT_EQ(pods_->sum("hits"), hits) << "never on the pod that holds the handle";
  EXPECT_EQ(m(*p, R"(mcp_proxy_handle_routes_total{result="other_identity"})"), kTries);
  const Response mine = use_cart(p->port, "alice", cart);
  EXPECT_FALSE(message(mine).at("result").at("isError").get<bool>()) << mine.body;
  EXPECT_EQ(pods_->sum("hits"), hits + 1);
  // One pod, the one holding it: no other to place on, the proxy answers.
  auto single = std::make_unique<Proxy>(
      std::vector<std::string>{"--replicas", "1", "--backend-url-template", pods_->url_template(), "--session-binding",
                               "authorization", "--handle", kCart},
      "handles-single");
  const std::string only = open_cart(single->port, "alice");
  const Response r = use_cart(single->port, "mallory", only);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(message(r).at("error").at("code"), -32602) << r.body;
  EXPECT_EQ(pods_->sum("hits"), hits + 1);
  EXPECT_FALSE(message(use_cart(single->port, "alice", only)).at("result").at("isError").get<bool>());
}

TEST_F(TaskIdentityTest, TasksListShowsTheCallersTasksOnlyAndAnAnonymousTaskIsNobodys) {
  const auto p = proxy("list-bound", {"--session-binding", "authorization"});
  std::set<std::string> alice;
  std::set<std::string> mallory;
  for (int i = 0; i < 4; ++i) alice.insert(create_2025(p->port, "alice"));
  for (int i = 0; i < 3; ++i) mallory.insert(create_2025(p->port, "mallory"));
  const auto listed = [&](const std::string& token) {
    const Response r = request(p->port, "POST", "/mcp", rpc(7, "tasks/list", json::object()).dump(), h2025(token));
    std::set<std::string> ids;
    const json msg = message(r);  // the loop's range must not be a temporary's member
    for (const auto& t : msg.at("result").at("tasks")) ids.insert(t.at("taskId").get<std::string>());
    return ids;
  };
  EXPECT_EQ(listed("alice"), alice);
  EXPECT_EQ(listed("mallory"), mallory);
  EXPECT_TRUE(listed("").empty());
  // A task made by a request without the identity: not recorded, so nobody's.
  const std::string anonymous = create_2026(p->port, "");
  ASSERT_FALSE(anonymous.empty()) << "the pod's answer is relayed";
  EXPECT_EQ(m(*p, R"(mcp_proxy_affinity_keys_refused_total{reason="unbound"})"), 1);
  const int hits = pods_->sum("hits");
  for (const std::string who : {"", "alice"}) {
    EXPECT_EQ(message(task_2026(p->port, who, "tasks/get", anonymous)).at("error").at("code"), -32602);
  }
  EXPECT_EQ(pods_->sum("hits"), hits);
  EXPECT_EQ(listed("alice"), alice);
}

TEST_F(TaskIdentityTest, ARefreshedTokenOfTheSameUserReachesItsTaskNoOtherDoes) {
  const std::string issuer = "https://as.test";
  const std::string audience = "https://mcp.test/mcp";
  const jwt_mint::Key as_key(jwt_mint::Alg::es256, "as-1");
  const jwt_mint::Key forger(jwt_mint::Alg::es256, "as-1");
  const std::string jwks = std::string(MCPPROXY_TEST_TMP_DIR) + "/tasks-jwks.json";
  std::ofstream(jwks, std::ios::trunc) << jwt_mint::jwks({&as_key});
  const auto p = proxy("tasks-jwt", {"--session-binding", "jwt", "--jwt-issuer", issuer, "--jwt-audience", audience,
                                     "--jwks-file", jwks});
  int serial = 0;
  const auto token = [&](const jwt_mint::Key& key, const std::string& sub, std::int64_t ttl = 600) {
    const auto now = static_cast<std::int64_t>(std::time(nullptr));
    return key.sign({{"iss", issuer},
                     {"sub", sub},
                     {"aud", audience},
                     {"iat", now},
                     {"exp", now + ttl},
                     {"jti", "t" + std::to_string(++serial)}});
  };
  const std::string task = create_2026(p->port, token(as_key, "alice"));
  ASSERT_FALSE(task.empty());
  const int hits = pods_->sum("hits");
  for (const std::string& other : {token(as_key, "bob"), token(forger, "alice"), token(as_key, "alice", -120),
                                   std::string("opaque-alice"), std::string()}) {
    EXPECT_EQ(message(task_2026(p->port, other, "tasks/get", task)).at("error").at("code"), -32602);
  }
  EXPECT_EQ(pods_->sum("hits"), hits) << "no forged, expired or other user's token reached the task";
  for (int refresh = 0; refresh < 3; ++refresh) {  // a new token of the same iss and sub each time
    EXPECT_FALSE(pod_of(task_2026(p->port, token(as_key, "alice"), "tasks/get", task)).empty()) << refresh;
  }
  EXPECT_EQ(pods_->sum("hits"), hits + 3);
  EXPECT_EQ(m(*p, R"(mcp_proxy_task_routes_total{result="other_identity"})"), 5);
}

// ---- replicas sharing one redis-server ----------------------------------------------------

class RedisTaskIdentityTest : public TaskIdentityTest {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>();
    TaskIdentityTest::SetUp();
  }
  // A replica whose binding key file holds `keys` (none: binding off).
  std::unique_ptr<Proxy> replica(const std::string& name, const std::vector<std::string>& keys) const {
    std::vector<std::string> a = {"--session-store", "redis", "--redis-url", redis_->url(1)};
    if (!keys.empty()) {
      for (const std::string& arg : {std::string("--session-binding"), std::string("authorization"),
                                     std::string("--session-binding-secret-file"), key_file(name + "-keys", keys)}) {
        a.push_back(arg);
      }
    }
    return proxy(name, a);
  }
  std::string record(const std::string& task) const {
    return redis_cmd(redis_->port, {"EVAL", "redis.call('SELECT', 1); return redis.call('GET', KEYS[1])", "1",
                                    "mcp-session-proxy:task:" + task});
  }
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisTaskIdentityTest, TheOwnerThroughAnyReplicaAcrossAKeyRotationAnotherIdentityThroughNone) {
  auto a = replica("idt-a", {kKeyA});
  const std::string t1 = create_2026(a->port, "alice");
  const std::string t2 = create_2025(a->port, "alice");
  ASSERT_FALSE(t1.empty());
  ASSERT_FALSE(t2.empty());
  const json rec = json::parse(record(t1));
  ASSERT_TRUE(rec.contains("principal")) << rec;
  EXPECT_EQ(rec.at("principal").get<std::string>().find("alice"), std::string::npos) << "an HMAC, never the token";
  // Rollout 1 (the new key second) on replica b; rollout 2 (the new key first) on c.
  auto b = replica("idt-b", {kKeyA, kKeyB});
  const std::string t3 = create_2026(b->port, "alice");
  auto c = replica("idt-c", {kKeyB, kKeyA});
  const std::string t4 = create_2026(c->port, "alice");  // signed with key B
  const int hits = pods_->sum("hits");
  int owner = 0;
  for (Proxy* r : {a.get(), b.get(), c.get()}) {
    for (const std::string& t : {t1, t3, t4}) {
      if (r == a.get() && t == t4) continue;  // a has no key B yet
      EXPECT_FALSE(pod_of(task_2026(r->port, "alice", "tasks/get", t)).empty()) << r->log_path << " " << t;
      EXPECT_EQ(message(task_2026(r->port, "mallory", "tasks/get", t)).at("error").at("code"), -32602);
      ++owner;
    }
    EXPECT_FALSE(pod_of(task_2025(r->port, "alice", "tasks/result", t2)).empty());
    EXPECT_TRUE(pod_of(task_2025(r->port, "mallory", "tasks/result", t2)).empty());
    ++owner;
  }
  EXPECT_EQ(pods_->sum("hits"), hits + owner) << "the owner's requests only";
  for (Proxy* r : {a.get(), b.get(), c.get()}) {
    EXPECT_EQ(m(*r, R"(mcp_proxy_task_routes_total{result="unknown_binding_key"})"), 0) << r->log_path;
  }
  // A replica without the key that made a task (key A dropped too early): told apart.
  auto d = replica("idt-d", {kKeyB});
  EXPECT_FALSE(pod_of(task_2026(d->port, "alice", "tasks/get", t4)).empty());
  EXPECT_EQ(message(task_2026(d->port, "alice", "tasks/get", t1)).at("error").at("code"), -32602);
  EXPECT_EQ(m(*d, R"(mcp_proxy_task_routes_total{result="unknown_binding_key"})"), 1);
  EXPECT_TRUE(eventually([&] { return d->log().find("binding key this proxy does not have") != std::string::npos; }));
  // tasks/list (2025, sessionless) through a replica that learned none of them.
  const auto e = replica("idt-e", {kKeyB, kKeyA});
  const auto listed = [&](const std::string& token) {
    const Response r = request(e->port, "POST", "/mcp", rpc(7, "tasks/list", json::object()).dump(), h2025(token));
    std::set<std::string> ids;
    const json msg = message(r);  // the loop's range must not be a temporary's member
    for (const auto& t : msg.at("result").at("tasks")) ids.insert(t.at("taskId").get<std::string>());
    return ids;
  };
  EXPECT_EQ(listed("alice"), (std::set<std::string>{t1, t2, t3, t4}));
  EXPECT_TRUE(listed("mallory").empty());
}

TEST_F(RedisTaskIdentityTest, TasksRecordedBeforeTheBindingStayAnyonesUntilTheyExpire) {
  const auto unbound = replica("idt-unbound", {});
  const std::string task = create_2026(unbound->port, "alice");
  ASSERT_FALSE(task.empty());
  EXPECT_FALSE(json::parse(record(task)).contains("principal")) << "no binding: nothing stored extra";
  const auto bound = replica("idt-bound", {kKeyA});
  for (const std::string who : {"alice", "mallory", ""}) {
    EXPECT_FALSE(pod_of(task_2026(bound->port, who, "tasks/get", task)).empty()) << who;
  }
  const std::string mine = create_2026(bound->port, "alice");
  EXPECT_TRUE(json::parse(record(mine)).contains("principal"));
  EXPECT_FALSE(pod_of(task_2026(unbound->port, "mallory", "tasks/get", mine)).empty())
      << "a replica without the binding binds nothing (as for sessions)";
}
