// Sessions bound to who made them (sessions.binding), against the real proxy in front of the
// sample backend (pods on 127.0.1.N), with the memory store and with two proxy replicas
// sharing one real redis-server: keys rotate without losing a session, a request with two
// identity fields never reaches a pod, and a refused initialize leaves no session on one.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <ctime>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"
#include "jwt_mint.hpp"

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

const std::string kInit =
    json{{"jsonrpc", "2.0"},
         {"id", 1},
         {"method", "initialize"},
         {"params",
          {{"protocolVersion", "2025-11-25"}, {"capabilities", json::object()}, {"clientInfo", {{"name", "id"}}}}}}
        .dump();

std::string call(int id) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", "whoami"}}}}.dump();
}

const std::string kKeyA = "key-a-0123456789abcdef0123";
const std::string kKeyB = "key-b-fedcba9876543210fedc";

void write_keys(const std::string& path, const std::vector<std::string>& keys) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& k : keys) out << k << "\n";
}

Headers who(const std::string& token, const std::string& sid = "") {
  Headers h = {{"Authorization", "Bearer " + token}};
  if (!sid.empty()) h.emplace_back("Mcp-Session-Id", sid);
  return h;
}

std::string initialize(std::uint16_t port, const std::string& token) {
  const Response r = request(port, "POST", "/mcp", kInit, who(token));
  return r.status == 200 ? r.header("mcp-session-id") : "";
}

int status_of_call(std::uint16_t port, const std::string& token, const std::string& sid) {
  return request(port, "POST", "/mcp", call(2), who(token, sid)).status;
}

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override { backend_ = std::make_unique<SampleBackend>(3); }
  std::vector<std::string> args(const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {"--replicas", "3", "--backend-url-template", backend_->url_template(),
                                  "--threads",  "2"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  // {live sessions, initializes so far} summed over the pods, as the pods count them.
  std::pair<int, int> pod_stats() const {
    std::pair<int, int> sum{0, 0};
    for (int i = 0; i < 3; ++i) {
      const Response r = request(backend_->port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(i));
      const json s = json::parse(r.body);
      sum.first += s["sessions"].get<int>();
      sum.second += s["initializes"].get<int>();
    }
    return sum;
  }
  static void reload(Proxy& p, int generation) {
    p.process->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] {
      return metric(p.metrics(), "mcp_proxy_config_generation").value_or(0) == generation;
    })) << p.log();
  }
  std::unique_ptr<SampleBackend> backend_;
};

// ---- key rotation -------------------------------------------------------------------------

TEST_F(IdentityTest, AKeyRotatedBySighupInTwoStepsLosesNoSession) {
  const std::string keys = std::string(MCPPROXY_TEST_TMP_DIR) + "/rotate-keys";
  write_keys(keys, {kKeyA});
  Proxy p(args({"--session-binding", "authorization", "--session-binding-secret-file", keys}), "rotate");
  const std::string under_a = initialize(p.port, "alice");
  ASSERT_FALSE(under_a.empty());
  // Rollout 1: the new key second. Rollout 2: the new key first.
  write_keys(keys, {kKeyA, kKeyB});
  reload(p, 2);
  EXPECT_EQ(status_of_call(p.port, "alice", under_a), 200);
  write_keys(keys, {kKeyB, kKeyA});
  reload(p, 3);
  EXPECT_EQ(status_of_call(p.port, "alice", under_a), 200) << "the old key still verifies";
  const std::string under_b = initialize(p.port, "alice");
  ASSERT_FALSE(under_b.empty());
  EXPECT_EQ(status_of_call(p.port, "alice", under_b), 200);
  EXPECT_EQ(status_of_call(p.port, "mallory", under_b), 404) << "another identity, under either key";
  EXPECT_EQ(status_of_call(p.port, "mallory", under_a), 404);
  std::string m = p.metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_session_binding_mismatches_total").value_or(0), 2);
  EXPECT_EQ(metric(m, "mcp_proxy_session_binding_unknown_key_total").value_or(0), 0);
  // The old key dropped too early: its sessions answer 404, and the log says why.
  write_keys(keys, {kKeyB});
  reload(p, 4);
  EXPECT_EQ(status_of_call(p.port, "alice", under_b), 200);
  EXPECT_EQ(status_of_call(p.port, "alice", under_a), 404);
  m = p.metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_session_binding_mismatches_total").value_or(0), 3);
  EXPECT_EQ(metric(m, "mcp_proxy_session_binding_unknown_key_total").value_or(0), 1);
  ASSERT_TRUE(eventually([&] { return p.log().find("binding key this proxy does not have") != std::string::npos; }));
  EXPECT_EQ(p.log().find(kKeyA), std::string::npos) << "a key is never logged";
}

TEST_F(IdentityTest, TwoReplicasWithTheKeyFilesOfARollingUpdateLoseNoSession) {
  RedisServer redis;
  const std::string dir = std::string(MCPPROXY_TEST_TMP_DIR);
  const auto replica = [&](const std::string& name, const std::vector<std::string>& keys) {
    write_keys(dir + "/" + name + "-keys", keys);
    return std::make_unique<Proxy>(args({"--session-store", "redis", "--redis-url", redis.url(1), "--session-binding",
                                         "authorization", "--session-binding-secret-file", dir + "/" + name + "-keys"}),
                                   name);
  };
  std::vector<std::string> sessions;
  // Every session made so far, through every replica running: 200 for its owner, 404 for another.
  const auto all_hold = [&](const std::vector<Proxy*>& replicas) {
    for (Proxy* r : replicas) {
      for (const std::string& sid : sessions) {
        EXPECT_EQ(status_of_call(r->port, "alice", sid), 200) << r->log_path;
        EXPECT_EQ(status_of_call(r->port, "mallory", sid), 404);
      }
    }
  };
  // Before: both replicas on key A. Rollout 1 (B added second) reaches one replica first.
  auto old1 = replica("roll-old1", {kKeyA});
  auto new1 = replica("roll-new1", {kKeyA, kKeyB});
  sessions.push_back(initialize(old1->port, "alice"));
  sessions.push_back(initialize(new1->port, "alice"));
  all_hold({old1.get(), new1.get()});
  // Rollout 1 done; rollout 2 (B moved first) reaches one replica first.
  old1 = replica("roll-old2", {kKeyA, kKeyB});
  auto new2 = replica("roll-new2", {kKeyB, kKeyA});
  new1.reset();
  sessions.push_back(initialize(old1->port, "alice"));
  sessions.push_back(initialize(new2->port, "alice"));
  all_hold({old1.get(), new2.get()});
  // Rollout 2 done.
  old1 = replica("roll-done", {kKeyB, kKeyA});
  sessions.push_back(initialize(old1->port, "alice"));
  all_hold({old1.get(), new2.get()});
  for (const auto& s : sessions) EXPECT_FALSE(s.empty());
  for (Proxy* r : {old1.get(), new2.get()}) {
    EXPECT_EQ(metric(r->metrics(), "mcp_proxy_session_binding_unknown_key_total").value_or(0), 0);
  }
}

// ---- one identity field -------------------------------------------------------------------

TEST_F(IdentityTest, ARequestWithTwoIdentityFieldsIsRefusedBeforeAnyPodSeesIt) {
  for (const std::string field : {"X-Forwarded-User", "Authorization"}) {
    const std::string binding = field == "Authorization" ? "authorization" : "header:" + field;
    Proxy p(args({"--session-binding", binding}), "two-fields");
    const Response init = request(p.port, "POST", "/mcp", kInit, {{field, "alice"}});
    ASSERT_EQ(init.status, 200) << init.body;
    const std::string sid = init.header("mcp-session-id");
    const auto [live, initializes] = pod_stats();
    // An auth hop that appends: alice's own field first, mallory's after (and the other way).
    for (const Headers& h : {Headers{{field, "alice"}, {field, "mallory"}, {"Mcp-Session-Id", sid}},
                             Headers{{field, "mallory"}, {"mcp-session-id", sid}, {field, "alice"}}}) {
      const Response r = request(p.port, "POST", "/mcp", call(3), h);
      EXPECT_EQ(r.status, 400) << field << " " << r.body;
      EXPECT_EQ(json::parse(r.body)["error"]["code"], -32600);
    }
    const Response two_init = request(p.port, "POST", "/mcp", kInit, {{field, "alice"}, {field, "mallory"}});
    EXPECT_EQ(two_init.status, 400);
    EXPECT_TRUE(two_init.header("mcp-session-id").empty());
    EXPECT_EQ(pod_stats(), std::make_pair(live, initializes)) << "no pod saw any of them";
    const Response mine = request(p.port, "POST", "/mcp", call(4), {{field, "alice"}, {"Mcp-Session-Id", sid}});
    ASSERT_EQ(mine.status, 200);
    EXPECT_EQ(json::parse(mine.body)["result"]["structuredContent"]["counter"], 1) << "no call reached the session";
    EXPECT_EQ(request(p.port, "DELETE", "/mcp", "", {{field, "alice"}, {"Mcp-Session-Id", sid}}).status, 200);
  }
}

// ---- no orphan sessions -------------------------------------------------------------------

TEST_F(IdentityTest, InitializesTheBindingRefusesLeaveNoSessionOnThePods) {
  Proxy p(args({"--session-binding", "authorization"}), "orphans");
  const auto [live_before, initializes_before] = pod_stats();
  constexpr int kAnonymous = 50;
  for (int i = 0; i < kAnonymous; ++i) {
    const Response r = request(p.port, "POST", "/mcp", kInit);
    ASSERT_EQ(r.status, 401) << r.body;
    EXPECT_TRUE(r.header("mcp-session-id").empty());
  }
  EXPECT_EQ(pod_stats().second, initializes_before + kAnonymous)
      << "the pods answered them (a 401 of theirs is relayed)";
  EXPECT_TRUE(eventually([&] { return pod_stats().first == live_before; })) << pod_stats().first;
  EXPECT_EQ(metric(p.metrics(), "mcp_proxy_unbound_sessions_ended_total").value_or(0), kAnonymous);
  // A bound one is made and kept.
  const std::string sid = initialize(p.port, "alice");
  ASSERT_FALSE(sid.empty());
  EXPECT_EQ(pod_stats().first, live_before + 1);
}

// ---- binding jwt ---------------------------------------------------------------------------

const std::string kIssuer = "https://as.test";
const std::string kAudience = "https://mcp.test/mcp";

json claims_of(const std::string& sub, std::int64_t ttl = 600, const std::string& aud = kAudience) {
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  static int serial = 0;
  return {{"iss", kIssuer}, {"sub", sub},       {"aud", aud},
          {"iat", now},     {"exp", now + ttl}, {"jti", "t" + std::to_string(++serial)}};
}

// A JWKS endpoint on 127.0.0.1: answers every GET with the current document, counts them.
class JwksServer {
 public:
  JwksServer() {
    fd_ = listen_loopback(16, port);
    thread_ = std::thread([this] { serve(); });
  }
  ~JwksServer() { stop(); }
  void set(const std::string& doc) {
    const std::lock_guard lock(mu_);
    doc_ = doc;
  }
  void stop() {
    if (stopping_.exchange(true)) return;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/jwks"; }
  std::uint16_t port = 0;
  std::atomic<int> fetches{0};

 private:
  void serve() {
    while (!stopping_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      (void)read_http_request(c, std::chrono::seconds(2));
      std::string doc;
      {
        const std::lock_guard lock(mu_);
        doc = doc_;
      }
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=3600\r\n"
          "Content-Length: " +
          std::to_string(doc.size()) + "\r\nConnection: close\r\n\r\n" + doc;
      (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ++fetches;
      ::close(c);
    }
  }
  int fd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::string doc_;
  std::atomic<bool> stopping_{false};
};

class JwtBindingTest : public IdentityTest {
 protected:
  std::vector<std::string> jwt_args(const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {"--session-binding", "jwt", "--jwt-issuer", kIssuer, "--jwt-audience", kAudience};
    a.insert(a.end(), extra.begin(), extra.end());
    return args(a);
  }
  static std::string file_of(const std::string& name, const std::string& text) {
    const std::string path = std::string(MCPPROXY_TEST_TMP_DIR) + "/" + name;
    std::ofstream(path, std::ios::trunc) << text;
    return path;
  }
};

TEST_F(JwtBindingTest, ASessionFollowsItsUserAcrossRefreshesAndNoForgeryReachesIt) {
  const jwt_mint::Key as_key(jwt_mint::Alg::rs256, "as-1");
  const jwt_mint::Key forger(jwt_mint::Alg::rs256, "as-1");
  Proxy p(jwt_args({"--jwks-file", file_of("jwks-forgery.json", jwt_mint::jwks({&as_key}))}), "jwt-file");
  const std::string first = as_key.sign(claims_of("alice"));
  const std::string sid = initialize(p.port, first);
  ASSERT_FALSE(sid.empty());
  int counter = 0;
  for (int refresh = 0; refresh < 3; ++refresh) {  // each call with a new token of the same user
    const Response r = request(p.port, "POST", "/mcp", call(10 + refresh), who(as_key.sign(claims_of("alice")), sid));
    ASSERT_EQ(r.status, 200) << r.body;
    const int now = json::parse(r.body)["result"]["structuredContent"]["counter"];
    EXPECT_EQ(now, counter + 1);
    counter = now;
  }
  json none_claims = claims_of("alice");
  const std::vector<std::pair<std::string, std::string>> attacks = {
      {"another user", as_key.sign(claims_of("bob"))},
      {"bad signature", forger.sign(claims_of("alice"))},
      {"expired", as_key.sign(claims_of("alice", -120))},
      {"wrong aud", as_key.sign(claims_of("alice", 600, "https://other.test/mcp"))},
      {"alg none", jwt_mint::unsigned_token(claims_of("alice"), "as-1")},
      {"HS256 keyed with the public key", jwt_mint::sign_hs256(claims_of("alice"), as_key.public_pem(), "as-1")},
      {"not a JWT", "opaque-alice"},
  };
  for (const auto& [what, token] : attacks) {
    const Response r = request(p.port, "POST", "/mcp", call(20), who(token, sid));
    EXPECT_EQ(r.status, 404) << what;
    EXPECT_EQ(request(p.port, "DELETE", "/mcp", "", who(token, sid)).status, 404) << what;
  }
  const Response mine = request(p.port, "POST", "/mcp", call(30), who(first, sid));
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(json::parse(mine.body)["result"]["structuredContent"]["counter"], counter + 1) << "no attack reached it";
  const std::string m = p.metrics();
  EXPECT_EQ(metric(m, "mcp_proxy_session_binding_mismatches_total").value_or(0), 2 * attacks.size());
  for (const char* result : {"ok", "bad_signature", "expired", "bad_audience", "alg_refused", "not_jwt"}) {
    EXPECT_GE(metric(m, std::string("mcp_proxy_jwt_verifications_total{result=\"") + result + "\"}").value_or(0), 1)
        << result;
  }
  const std::string log = p.log();
  for (const auto& [what, token] : attacks) EXPECT_EQ(log.find(token.substr(0, 40)), std::string::npos) << what;
  EXPECT_EQ(log.find(first.substr(0, 40)), std::string::npos);
}

TEST_F(JwtBindingTest, AnInitializeWhoseTokenDoesNotVerifyLeavesNoSession) {
  const jwt_mint::Key as_key(jwt_mint::Alg::es256, "as-1");
  Proxy p(jwt_args({"--jwks-file", file_of("jwks-init.json", jwt_mint::jwks({&as_key}))}), "jwt-init");
  const auto [live, initializes] = pod_stats();
  for (const std::string& bad : {as_key.sign(claims_of("alice", -120)), std::string("opaque")}) {
    const Response r = request(p.port, "POST", "/mcp", kInit, who(bad));
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_TRUE(r.header("mcp-session-id").empty());
  }
  EXPECT_EQ(pod_stats().second, initializes + 2) << "passed to the pod, which would answer 401 itself";
  EXPECT_TRUE(eventually([&] { return pod_stats().first == live; }));
}

TEST_F(JwtBindingTest, TheKeysFileIsReadAgainOnSighup) {
  const jwt_mint::Key old_key(jwt_mint::Alg::eddsa, "old");
  const jwt_mint::Key new_key(jwt_mint::Alg::eddsa, "new");
  const std::string path = file_of("jwks-reload.json", jwt_mint::jwks({&old_key}));
  Proxy p(jwt_args({"--jwks-file", path}), "jwt-reload");
  const std::string sid = initialize(p.port, old_key.sign(claims_of("alice")));
  ASSERT_FALSE(sid.empty());
  EXPECT_EQ(status_of_call(p.port, new_key.sign(claims_of("alice")), sid), 404) << "not a key yet";
  file_of("jwks-reload.json", jwt_mint::jwks({&new_key, &old_key}));
  reload(p, 2);
  EXPECT_EQ(status_of_call(p.port, new_key.sign(claims_of("alice")), sid), 200);
  EXPECT_EQ(status_of_call(p.port, old_key.sign(claims_of("alice")), sid), 200);
}

TEST_F(JwtBindingTest, TheUrlsKeysAreCachedAnUnknownKidRefetchedOnceAndAStoppedEndpointCostsNothing) {
  const jwt_mint::Key k1(jwt_mint::Alg::ps256, "k1");
  const jwt_mint::Key k2(jwt_mint::Alg::es256, "k2");
  JwksServer jwks;
  jwks.set(jwt_mint::jwks({&k1}));
  Proxy p(jwt_args({"--jwks-url", jwks.url(), "--jwks-min-refresh", "1s"}), "jwt-url");
  ASSERT_TRUE(eventually([&] { return metric(p.metrics(), "mcp_proxy_jwks_keys").value_or(0) == 1; }));
  EXPECT_EQ(jwks.fetches.load(), 1);
  const std::string sid = initialize(p.port, k1.sign(claims_of("alice")));
  ASSERT_FALSE(sid.empty());
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of_call(p.port, k1.sign(claims_of("alice")), sid), 200);
  EXPECT_EQ(jwks.fetches.load(), 1) << "max-age=3600: no fetch per request";
  // The authorization server rotates: k2 signs now. The first token naming k2 waits for one fetch.
  jwks.set(jwt_mint::jwks({&k2, &k1}));
  EXPECT_EQ(status_of_call(p.port, k2.sign(claims_of("alice")), sid), 200);
  EXPECT_EQ(jwks.fetches.load(), 2);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of_call(p.port, k2.sign(claims_of("alice")), sid), 200);
  // A kid nobody has: one refetch at most per jwks_min_refresh, however many ask.
  const jwt_mint::Key stray(jwt_mint::Alg::es256, "stray");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of_call(p.port, stray.sign(claims_of("alice")), sid), 404);
  EXPECT_LE(jwks.fetches.load(), 3);
  // The endpoint stopped: the cached keys keep the session working.
  jwks.stop();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(status_of_call(p.port, k2.sign(claims_of("alice")), sid), 200);
  const Response r = request(p.port, "POST", "/mcp", call(9), who(k1.sign(claims_of("alice")), sid));
  EXPECT_EQ(r.status, 200);
}

}  // namespace
