// io_backend: every worker on its io_uring loop or on Asio's epoll, as configured, and the
// fallback to epoll where a seccomp profile refuses io_uring. (The rest of this binary's
// tests run once per backend: tests/integration/CMakeLists.txt.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

using namespace harness;
using json = nlohmann::json;

namespace {

const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";
const std::string kWhoami =
    R"({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"whoami","arguments":{}}})";

// Two workers on io backend `name`, in front of the sample backend's two pods.
std::vector<std::string> two_workers_on(const std::string& name, const SampleBackend& backend) {
  return {"--io-backend", name, "--threads", "2", "--replicas", "2", "--backend-url-template", backend.url_template()};
}

double workers(const Proxy& proxy, const std::string& backend) {
  return metric(proxy.metrics(), "mcp_proxy_workers{io_backend=\"" + backend + "\"}").value_or(-1);
}

// Sessions made through the proxy each answer from one pod, every time, with their own
// per-session counter counting up: the request path works whatever the backend.
void expect_sessions_pinned(const Proxy& proxy) {
  std::set<std::string> pods;
  for (int s = 0; s < 6; ++s) {
    const Response init = request(proxy.port, "POST", "/mcp", kInit);
    ASSERT_EQ(init.status, 200) << init.body;
    const std::string sid = init.header("mcp-session-id");
    ASSERT_FALSE(sid.empty());
    std::string pod;
    for (int i = 1; i <= 3; ++i) {
      const Response r = request(proxy.port, "POST", "/mcp", kWhoami, {{"Mcp-Session-Id", sid}});
      ASSERT_EQ(r.status, 200) << r.body;
      const json text = json::parse(json::parse(r.body)["result"]["content"][0]["text"].get<std::string>());
      if (i == 1) pod = text["pod"];
      EXPECT_EQ(text["pod"], pod) << "the session moved";
      EXPECT_EQ(text["counter"], i) << "the session's state is not its own";
    }
    pods.insert(pod);
  }
  EXPECT_EQ(pods.size(), 2U) << "new sessions spread over both pods";
}

// User plus system CPU seconds a process has used (/proc/PID/stat fields 14 and 15).
double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));  // after "pid (comm) "
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

}  // namespace

// A worker with nothing to do waits in the kernel: it wakes for its 100 ms tick, not in a
// loop (the io_uring loop once woke itself with every post of its own).
TEST(IoBackend, AnIdleWorkerWaits) {
  SampleBackend backend(2);
  for (const std::string name : {"epoll", "io_uring"}) {
    SCOPED_TRACE(name);
    Proxy proxy(two_workers_on(name, backend), "idle-" + name);
    ASSERT_TRUE(eventually([&] { return workers(proxy, name) == 2; }));
    ASSERT_EQ(request(proxy.port, "POST", "/mcp", kInit).status, 200);  // every stage has run once
    const double before = cpu_seconds(proxy.process->pid());
    // An observation window, not a synchronisation: nothing happens in it.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const double used = cpu_seconds(proxy.process->pid()) - before;
    EXPECT_LT(used, 0.1) << "CPU seconds in one idle second";
  }
}

TEST(IoBackend, EveryWorkerRunsOnTheBackendConfigured) {
  SampleBackend backend(2);
  for (const std::string name : {"epoll", "io_uring"}) {
    SCOPED_TRACE(name);
    Proxy proxy(two_workers_on(name, backend), "io-" + name);
    EXPECT_TRUE(eventually([&] { return workers(proxy, name) == 2; })) << proxy.metrics();
    EXPECT_EQ(workers(proxy, name == "epoll" ? "io_uring" : "epoll"), 0);
    // The start-up line is written after the workers start: waited for.
    EXPECT_TRUE(eventually([&] { return proxy.log().find("io_backend=" + name) != std::string::npos; })) << proxy.log();
    expect_sessions_pinned(proxy);
  }
}

// Where the kernel refuses io_uring (here a seccomp filter, as a container runtime's default
// profile does), the proxy says so once and every worker runs on epoll: it still serves.
TEST(IoBackend, ARefusedIoUringFallsBackToEpoll) {
  SampleBackend backend(2);
  std::vector<std::string> args = two_workers_on("io_uring", backend);
  args.insert(args.end(), {"--log-level", "info"});
  Proxy proxy(args, "io-refused", {MCPPROXY_WITHOUT_IO_URING});
  EXPECT_TRUE(eventually([&] { return workers(proxy, "epoll") == 2; })) << proxy.metrics();
  EXPECT_EQ(workers(proxy, "io_uring"), 0);
  EXPECT_TRUE(eventually([&] { return proxy.log().find("io_backend=epoll") != std::string::npos; })) << proxy.log();
  const std::string log = proxy.log();
  EXPECT_NE(log.find("io_backend io_uring is refused here: the workers run on epoll"), std::string::npos) << log;
  EXPECT_NE(log.find("Operation not permitted"), std::string::npos) << log;
  expect_sessions_pinned(proxy);
}
