#pragma once
// What the proxy_test files share: the real proxy binary in front of the sample MCP backend
// (three pods on 127.0.1.0-2), the requests they make, and the fixture that starts both.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "harness.hpp"

namespace proxy_test {

using namespace harness;
using json = nlohmann::json;

inline const std::string kInit =
    R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"it","version":"1"}}})";

inline std::string call(int id, const std::string& tool, const json& args = json::object()) {
  return json{
      {"jsonrpc", "2.0"}, {"id", id}, {"method", "tools/call"}, {"params", {{"name", tool}, {"arguments", args}}}}
      .dump();
}

// The JSON-RPC message of a response, whether it came as JSON or as one SSE event.
inline json message(const Response& r) {
  if (r.header("content-type").rfind("text/event-stream", 0) == 0) {
    const auto at = r.body.find("data: ");
    return json::parse(r.body.substr(at + 6, r.body.find('\n', at) - at - 6));
  }
  return json::parse(r.body);
}

inline std::string initialize(std::uint16_t port) {
  const Response r = request(port, "POST", "/mcp", kInit);
  if (r.status != 200) return "";
  const std::string sid = r.header("mcp-session-id");
  request(port, "POST", "/mcp", R"({"jsonrpc":"2.0","method":"notifications/initialized"})", {{"Mcp-Session-Id", sid}});
  return sid;
}

// A whoami call of `sid` as raw bytes, for a keep-alive RawConnection.
inline std::string whoami_request(const std::string& sid, int id) {
  const std::string body = call(id, "whoami");
  return "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Accept: application/json, text/event-stream\r\nMcp-Session-Id: " +
         sid + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

class ProxyTest : public ::testing::Test {
 protected:
  void start(std::vector<std::string> proxy_args = {}, std::vector<std::string> backend_args = {}, int pods = 3,
             int replicas = 3) {
    backend_ = std::make_unique<SampleBackend>(pods, backend_args);
    std::vector<std::string> args = {
        "--replicas", std::to_string(replicas), "--backend-url-template", backend_->url_template(), "--threads", "2"};
    args.insert(args.end(), proxy_args.begin(), proxy_args.end());
    proxy_ = std::make_unique<Proxy>(args);
  }
  std::uint16_t port() const { return proxy_->port; }
  // The config file a reload test rewrites: the backend's pods, `replicas` of them used, two workers.
  void write_config(const std::string& path, int replicas) const {
    std::ofstream(path) << "backend:\n  replicas: " << replicas << "\n  url_template: " << backend_->url_template()
                        << "\nthreads: 2\n";
  }
  std::unique_ptr<SampleBackend> backend_;
  std::unique_ptr<Proxy> proxy_;
};

// A POST head for the wire tests, with `extra` fields before the blank line.
inline std::string head_for(const std::string& sid, const std::string& extra, const std::string& version = "HTTP/1.1") {
  return "POST /mcp " + version +
         "\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n" +
         (sid.empty() ? "" : "Mcp-Session-Id: " + sid + "\r\n") + extra + "\r\n";
}

}  // namespace proxy_test
