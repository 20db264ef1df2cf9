#pragma once
// What the task affinity tests share (task_affinity_test, task_stores_test): the pods of
// task_pods.py, and the 2026 and 2025 requests that create and poll a task.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "harness.hpp"

namespace task_test {

using namespace harness;
using json = nlohmann::json;
using namespace std::chrono_literals;

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
  // A /_stats counter summed over the pods: "hits" (requests that reached a task or handle a
  // pod holds), "misses" (task requests for a task the pod never made).
  int sum(const std::string& counter) const {
    int n = 0;
    for (int i = 0; i < 3; ++i) {
      const Response r = request(port, "GET", "/_stats", "", {}, "127.0.1." + std::to_string(i));
      n += json::parse(r.body).at(counter).get<int>();
    }
    return n;
  }
  // Task requests that reached a pod which never made the task, all pods.
  int misses() const { return sum("misses"); }
  std::uint16_t port = 0;
  std::unique_ptr<Process> process;
};

inline const Headers k2026 = {{"MCP-Protocol-Version", "2026-07-28"},
                              {"Accept", "application/json, text/event-stream"}};

inline json rpc(int id, const std::string& method, const json& params) {
  return json{{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", params}};
}

// The JSON-RPC response of an answer, JSON or the last SSE event (an empty object, and a
// failure naming the answer, when it is neither).
inline json message(const Response& r) {
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

inline Headers with(Headers h, const std::string& name, const std::string& value) {
  h.emplace_back(name, value);
  return h;
}

// A 2026 tools/call of `slow`: the task id it created.
inline std::string create_task_2026(std::uint16_t port, int id, json args = json::object()) {
  Headers h = with(with(k2026, "Mcp-Method", "tools/call"), "Mcp-Name", "slow");
  const Response r =
      request(port, "POST", "/mcp", rpc(id, "tools/call", {{"name", "slow"}, {"arguments", args}}).dump(), h);
  if (r.status != 200) return "";
  const json m = message(r);
  return m.at("result").value("taskId", "");
}

inline Response get_task_2026(std::uint16_t port, const std::string& task, const std::string& method = "tasks/get",
                              const std::string& header_name = "") {
  const Headers h = with(with(k2026, "Mcp-Method", method), "Mcp-Name", header_name.empty() ? task : header_name);
  // A 2026 client that uses tasks declares the extension on its requests (SEP-2663).
  const json meta = {{"io.modelcontextprotocol/clientCapabilities",
                      {{"extensions", {{"io.modelcontextprotocol/tasks", json::object()}}}}}};
  return request(port, "POST", "/mcp", rpc(9, method, {{"taskId", task}, {"_meta", meta}}).dump(), h);
}

inline std::string create_task_2025(std::uint16_t port, int id) {
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

inline Response get_task_2025(std::uint16_t port, const std::string& task) {
  return request(port, "POST", "/mcp", rpc(3, "tasks/get", {{"taskId", task}}).dump(),
                 {{"MCP-Protocol-Version", "2025-11-25"}});
}

// What a tasks/get of `task` got: "routed" (a pod's result), "not_found" (-32602), else
// "status N" or "other".
inline std::string poll_outcome(std::uint16_t port, const std::string& task, bool modern) {
  const Response r = modern ? get_task_2026(port, task) : get_task_2025(port, task);
  if (r.status != 200) return "status " + std::to_string(r.status);
  const json m = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  if (m.is_object() && m.contains("result")) return "routed";
  if (m.is_object() && m.contains("error") && m["error"].value("code", 0) == -32602) return "not_found";
  return "other";
}

}  // namespace task_test
