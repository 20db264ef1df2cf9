#pragma once
// What the redis_test files share: the includes, and the requests the proxy tests make of
// the sample backend through the proxy.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/use_future.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <thread>

#include "harness.hpp"
#include "store/redis_client.hpp"

namespace redis_test {

using namespace harness;
using json = nlohmann::json;

inline const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

inline std::string call(int id) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", "whoami"}}}}.dump();
}

inline std::string initialize(std::uint16_t port) {
  const Response r = request(port, "POST", "/mcp", kInit);
  return r.status == 200 ? r.header("mcp-session-id") : "";
}

// {pod, counter} of one whoami call, or {"", -status}.
inline std::pair<std::string, int> whoami(std::uint16_t port, const std::string& sid, int id = 2) {
  const Response r = request(port, "POST", "/mcp", call(id), {{"Mcp-Session-Id", sid}});
  if (r.status != 200) return {"", -r.status};
  const json sc = json::parse(r.body)["result"]["structuredContent"];
  return {sc["pod"], sc["counter"]};
}

// A session the failover tests keep calling through a failover: the pod it is on, the calls
// it has answered (its counter), and the proxy replica it is called through when the test
// pins one.
struct Live {
  std::string sid;
  std::string pod;
  int calls = 0;
  const Proxy* via = nullptr;
};

}  // namespace redis_test
