// Who owns a session id, and what a flood of sessions may cost the live ones: the real proxy
// in front of the sample backend (pods on 127.0.1.N), with the memory store and with two
// proxy replicas sharing one real redis-server.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

std::string init_body(int id, const std::string& pad = "") {
  json params = {{"protocolVersion", "2025-11-25"},
                 {"capabilities", json::object()},
                 {"clientInfo", {{"name", "guard"}, {"version", "1"}}}};
  if (!pad.empty()) params["_pad"] = pad;
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", "initialize"}, {"params", params}}.dump();
}

std::string call(int id, const std::string& tool) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", tool}}}}.dump();
}

// {pod, counter} of one whoami call, or {"", -status}.
std::pair<std::string, int> whoami(std::uint16_t port, const std::string& sid, const Headers& extra = {}) {
  Headers h = extra;
  h.emplace_back("Mcp-Session-Id", sid);
  const Response r = request(port, "POST", "/mcp", call(2, "whoami"), h);
  if (r.status != 200) return {"", -r.status};
  const json sc = json::parse(r.body)["result"]["structuredContent"];
  return {sc["pod"], sc["counter"]};
}

// The proxy's own answer: a JSON-RPC error that echoes the request's id.
void expect_jsonrpc_error(const Response& r, int id) {
  const json body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(body.is_object()) << r.body;
  EXPECT_EQ(body["id"], id) << r.body;
  EXPECT_TRUE(body.contains("error")) << r.body;
  EXPECT_EQ(r.header("mcp-session-id"), "") << "no session id is handed out with the refusal";
}

// An id the pods mint again and again: each pod answers every initialize with it.
const std::string kDup = "dup-5c0ffee0a1b2c3d4e5f6";
const std::vector<std::string> kEveryPodMintsDup = {"--fixed-session-id", "0:" + kDup,          "--fixed-session-id",
                                                    "1:" + kDup,          "--fixed-session-id", "2:" + kDup};

class SessionGuardTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> proxy_args = {}, const std::vector<std::string>& backend_args = {}) {
    backend_ = std::make_unique<SampleBackend>(3, backend_args);
    std::vector<std::string> args = {"--replicas", "3", "--backend-url-template", backend_->url_template(),
                                     "--threads",  "2"};
    args.insert(args.end(), proxy_args.begin(), proxy_args.end());
    proxy_ = std::make_unique<Proxy>(args);
  }
  std::uint16_t port() const { return proxy_->port; }
  // Live sessions on pod `ordinal`, as the pod itself counts them.
  int sessions_on_pod(int ordinal) const {
    const Response r = request(backend_->port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(ordinal));
    return r.status == 200 ? json::parse(r.body)["sessions"].get<int>() : -1;
  }
  int sessions_on_pods() const { return sessions_on_pod(0) + sessions_on_pod(1) + sessions_on_pod(2); }
  std::string initialize(const Headers& h = {}) const {
    const Response r = request(port(), "POST", "/mcp", init_body(1), h);
    return r.status == 200 ? r.header("mcp-session-id") : "";
  }
  std::unique_ptr<SampleBackend> backend_;
  std::unique_ptr<Proxy> proxy_;
};

// ---- a session id is owned by the pod that minted it first ------------------------------

TEST_F(SessionGuardTest, APodMintingAnIdLiveOnAnotherPodCannotTakeTheSessionOver) {
  start({}, kEveryPodMintsDup);
  ASSERT_EQ(initialize(), kDup);
  const auto [victim_pod, first] = whoami(port(), kDup);
  ASSERT_EQ(first, 1);
  // least_sessions: the next initialize goes to another pod, which mints the same id.
  const Response intruder = request(port(), "POST", "/mcp", init_body(7));
  EXPECT_EQ(intruder.status, 502);
  expect_jsonrpc_error(intruder, 7);
  EXPECT_EQ(whoami(port(), kDup), std::make_pair(victim_pod, 2)) << "the victim's calls stay on its own pod";
  // The duplicate is ended on the pod that minted it: only the victim's session is left.
  EXPECT_TRUE(eventually([&] { return sessions_on_pods() == 1; }, 5s)) << sessions_on_pods();
  const std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, R"(mcp_proxy_session_id_conflicts_total{cause="duplicate"})").value_or(0), 1);
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_created_total").value_or(0), 1);
  const std::string log = proxy_->log();
  EXPECT_NE(log.find("session id"), std::string::npos) << "the conflict is logged";
  EXPECT_EQ(log.find(kDup), std::string::npos) << "with the session's hash, never its id";
}

TEST_F(SessionGuardTest, WithBindingTheOwnerKeepsItsSessionAndTheDuplicateIsRefused) {
  start({"--session-binding", "authorization"}, kEveryPodMintsDup);
  const Headers alice = {{"Authorization", "Bearer alice-token"}};
  ASSERT_EQ(initialize(alice), kDup);
  const auto [victim_pod, first] = whoami(port(), kDup, alice);
  ASSERT_EQ(first, 1);
  const Response intruder = request(port(), "POST", "/mcp", init_body(8), {{"Authorization", "Bearer mallory-token"}});
  EXPECT_EQ(intruder.status, 502);
  expect_jsonrpc_error(intruder, 8);
  EXPECT_EQ(whoami(port(), kDup, alice), std::make_pair(victim_pod, 2));
  EXPECT_EQ(whoami(port(), kDup, {{"Authorization", "Bearer mallory-token"}}).second, -404);
}

TEST_F(SessionGuardTest, ALegacyStreamAnnouncingAnIdLiveElsewhereIsCutAndTheOwnerGoesOn) {
  start({}, kEveryPodMintsDup);
  Stream owner(port(), "GET", "/sse", "", {{"Accept", "text/event-stream"}});
  ASSERT_EQ(owner.status(), 200);
  ASSERT_TRUE(owner.read_until("sessionId=" + kDup, 5s)) << owner.body();
  // Placed on another pod, which announces the same id: the event never reaches the client.
  Stream intruder(port(), "GET", "/sse", "", {{"Accept", "text/event-stream"}});
  intruder.read_to_end(5s);
  EXPECT_NE(intruder.ended_at(), std::chrono::steady_clock::time_point{}) << "the stream is cut";
  EXPECT_EQ(intruder.body().find(kDup), std::string::npos) << intruder.body();
  // The owner's session is still routed to its pod (the cut stream did not end its record).
  ASSERT_EQ(request(port(), "POST", "/messages?sessionId=" + kDup, call(3, "whoami")).status, 202);
  EXPECT_TRUE(owner.read_until("\"counter\": 1", 5s)) << owner.body();
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_session_id_conflicts_total{cause="duplicate"})").value_or(0), 1);
}

TEST_F(SessionGuardTest, APodRenamingALiveSessionIsRefusedAndTheRecordKept) {
  start();
  const std::string sid = initialize();
  ASSERT_FALSE(sid.empty());
  const auto [pod, first] = whoami(port(), sid);
  ASSERT_EQ(first, 1);
  const Response renamed = request(port(), "POST", "/mcp", call(5, "rename"), {{"Mcp-Session-Id", sid}});
  EXPECT_EQ(renamed.status, 502);
  expect_jsonrpc_error(renamed, 5);
  EXPECT_EQ(whoami(port(), sid), std::make_pair(pod, 3)) << "the session goes on under its id, on its pod";
  EXPECT_EQ(metric(proxy_->metrics(), R"(mcp_proxy_session_id_conflicts_total{cause="renamed"})").value_or(0), 1);
  // A pod that repeats the session's own id on its answers is not renaming it.
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", {{"Mcp-Session-Id", sid}}).status, 200);
}

// ---- a flood of sessions never costs a live one -----------------------------------------

std::unique_ptr<Stream> open_stream(std::uint16_t port, const std::string& sid) {
  return std::make_unique<Stream>(port, "GET", "/mcp", "",
                                  Headers{{"Mcp-Session-Id", sid}, {"Accept", "text/event-stream"}});
}

TEST_F(SessionGuardTest, AFloodIntoATableFullOfLiveSessionsIsRefusedAndNoLiveSessionAnswers404) {
  start({"--max-sessions", "16"});
  // 4 sessions that only call now and then, 12 with an open GET stream: the table is full.
  std::vector<std::string> idle;
  std::vector<std::string> streamed;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 4; ++i) idle.push_back(initialize());
  for (int i = 0; i < 12; ++i) {
    streamed.push_back(initialize());
    streams.push_back(open_stream(port(), streamed.back()));
    ASSERT_EQ(streams.back()->status(), 200);
  }
  int refused = 0;
  std::vector<std::string> admitted;
  for (int i = 0; i < 20; ++i) {
    const Response r = request(port(), "POST", "/mcp", init_body(100 + i));
    if (r.status == 200) admitted.push_back(r.header("mcp-session-id"));
    if (r.status == 503) {
      ++refused;
      EXPECT_FALSE(r.header("retry-after").empty());
      expect_jsonrpc_error(r, 100 + i);
    }
  }
  EXPECT_EQ(refused, 20) << "the table holds 16 live sessions";
  // Not one live session answers 404: neither those before the flood nor any the flood got.
  for (const auto* group : {&idle, &streamed, &admitted}) {
    for (const auto& sid : *group) EXPECT_GT(whoami(port(), sid).second, 0) << sid;
  }
  std::string m = proxy_->metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_session_table_full_refusals_total").value_or(0), 20);
  EXPECT_EQ(metric(m, "mcp_proxy_sessions_evicted_total").value_or(-1), 0);
  EXPECT_EQ(sessions_on_pods(), 16) << "no refused session was left on a pod";
  // Sessions that end make room again.
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", {{"Mcp-Session-Id", idle[0]}}).status, 200);
  streams[0]->close();
  EXPECT_EQ(request(port(), "DELETE", "/mcp", "", {{"Mcp-Session-Id", streamed[0]}}).status, 200);
  for (int i = 0; i < 2; ++i) {
    const std::string sid = initialize();
    ASSERT_FALSE(sid.empty());
    EXPECT_EQ(whoami(port(), sid).second, 1);
  }
}

TEST_F(SessionGuardTest, PinnedSessionsWithLargeInitializeBodiesLeaveTheTableWithinItsBytes) {
  // Scaled down from 74 sessions with 8 MiB initializes and open streams over 512 MiB.
  start({"--max-table-bytes", "1MiB", "--max-body-size", "256KiB"});
  std::vector<std::string> older;
  for (int i = 0; i < 5; ++i) older.push_back(initialize());
  const std::string pad(200 * 1024, 'x');  // over sessions.max_init_body (64KiB): not kept
  std::vector<std::string> big;
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < 20; ++i) {
    const Response r = request(port(), "POST", "/mcp", init_body(1, pad + std::to_string(i)));
    ASSERT_EQ(r.status, 200);
    big.push_back(r.header("mcp-session-id"));
    streams.push_back(open_stream(port(), big.back()));
    ASSERT_EQ(streams.back()->status(), 200);
  }
  const std::string m = proxy_->metrics();
  EXPECT_LE(metric(m, "mcp_proxy_session_table_bytes").value_or(-1), 1024.0 * 1024);
  EXPECT_EQ(metric(m, R"(mcp_proxy_session_init_not_kept_total{reason="too_large"})").value_or(0), 20);
  for (const auto* group : {&older, &big}) {
    for (const auto& sid : *group) EXPECT_EQ(whoami(port(), sid).second, 1) << sid;
  }
}

// ---- two proxy replicas sharing one redis-server -----------------------------------------

class RedisGuardTest : public SessionGuardTest {
 protected:
  void SetUp() override {
    redis_ = std::make_unique<RedisServer>();
    backend_ = std::make_unique<SampleBackend>(3, kEveryPodMintsDup);
  }
  std::unique_ptr<Proxy> replica(const std::string& name, std::vector<std::string> extra) const {
    std::vector<std::string> args{"--replicas",
                                  "3",
                                  "--backend-url-template",
                                  backend_->url_template(),
                                  "--session-store",
                                  "redis",
                                  "--redis-url",
                                  redis_->url(1),
                                  "--threads",
                                  "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    return std::make_unique<Proxy>(args, name);
  }
  std::string record(const std::string& sid) const {
    return redis_cmd(redis_->port, {"EVAL", "redis.call('SELECT', 1); return redis.call('GET', KEYS[1])", "1",
                                    "mcp-session-proxy:session:" + sid});
  }
  std::unique_ptr<RedisServer> redis_;
};

TEST_F(RedisGuardTest, AnIdLiveThroughOneReplicaIsNotHandedOutByAnother) {
  // Replica A places new sessions on pod 0 only, replica B on pods 1 and 2 only.
  auto a = replica("guard-a", {"--drain-ordinal", "1", "--drain-ordinal", "2"});
  auto b = replica("guard-b", {"--drain-ordinal", "0"});
  const Response owner = request(a->port, "POST", "/mcp", init_body(1));
  ASSERT_EQ(owner.status, 200);
  ASSERT_EQ(owner.header("mcp-session-id"), kDup);
  const std::string before = record(kDup);
  ASSERT_EQ(json::parse(before)["ordinal"], 0);

  const Response intruder = request(b->port, "POST", "/mcp", init_body(9));
  EXPECT_EQ(intruder.status, 502);
  expect_jsonrpc_error(intruder, 9);
  EXPECT_EQ(record(kDup), before) << "the record is never changed";
  EXPECT_EQ(whoami(b->port, kDup), std::make_pair(std::string("pod-0"), 1));
  EXPECT_EQ(whoami(a->port, kDup), std::make_pair(std::string("pod-0"), 2));
  // The duplicate is ended on the pod that minted it.
  EXPECT_TRUE(eventually([&] { return sessions_on_pod(1) + sessions_on_pod(2) == 0; }, 5s));
  EXPECT_EQ(sessions_on_pod(0), 1);
  EXPECT_EQ(metric(b->metrics(), R"(mcp_proxy_session_id_conflicts_total{cause="duplicate"})").value_or(0), 1);
  EXPECT_EQ(b->log().find(kDup), std::string::npos);
}

TEST_F(RedisGuardTest, AnInitializeOverTheKeptSizeIsRecordedWithoutItAndSaysSo) {
  auto a = replica("guard-init", {"--drain-ordinal", "1", "--drain-ordinal", "2"});
  const Response r = request(a->port, "POST", "/mcp", init_body(1, std::string(100 * 1024, 'y')));
  ASSERT_EQ(r.status, 200);
  const json rec = json::parse(record(kDup));
  EXPECT_FALSE(rec.contains("init")) << "not kept over sessions.max_init_body (64KiB)";
  EXPECT_EQ(rec["init_not_kept"], true);
  EXPECT_EQ(whoami(a->port, kDup).second, 1);
}

}  // namespace
