#pragma once
// affinity.*: what pins the requests of a protocol without sessions (2026-07-28, and 2025
// clients of a stateless server) to the pod that holds their state: a task (the Tasks
// extension), or a handle a tool returned (config.hpp holds it in Config::affinity).

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace mcpproxy {

// One handle: the answer of tool `tool` holds it at the JSON pointer `result_pointer` (into
// the JSON-RPC `result`), and later requests carry it in the `Mcp-Param-{param}` header.
struct HandleRule {
  std::string param;
  std::string tool;
  std::string result_pointer;
  std::string header;  // derived, not a key: "Mcp-Param-" + param
  bool operator==(const HandleRule&) const = default;
};

struct AffinityConfig {
  bool tasks = true;  // learn task ids from answers; route task requests to their pod
  std::chrono::milliseconds task_ttl_default{3600 * 1000};   // a task whose answer has no ttlMs
  std::chrono::milliseconds task_ttl_max{24 * 3600 * 1000};  // the cap of an answer's ttlMs
  std::vector<HandleRule> handles;
  // Bounds, like the session table's: keys held (tasks and handles), their bytes, the
  // length of one task id or handle value (a longer one is neither learned nor looked up),
  // and the bytes of one answer searched for a task (past them the answer is relayed unread).
  std::size_t max_keys = 1000000;
  std::size_t max_table_bytes = 128U * 1024 * 1024;
  std::size_t max_key_length = 256;
  std::size_t max_answer_scan = 1024U * 1024;
  bool operator==(const AffinityConfig&) const = default;
};

}  // namespace mcpproxy
