// tasks/list over several pods (task_list.hpp).
#include "core/mcp/task_list.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <iterator>

#include "core/config/config.hpp"
#include "core/mcp/task_affinity.hpp"

namespace mcpproxy {
namespace {
using json = nlohmann::json;
constexpr std::string_view kCursorPrefix = "mcp-proxy:";
}  // namespace

std::optional<PodCursors> pods_to_ask(std::optional<std::string_view> cursor, int replicas) {
  PodCursors out;
  if (!cursor) {
    for (int o = 0; o < replicas; ++o) out.emplace(o, "");
    return out;
  }
  if (cursor->substr(0, kCursorPrefix.size()) != kCursorPrefix) return std::nullopt;
  const json j = json::parse(cursor->substr(kCursorPrefix.size()), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  for (const auto& [k, v] : j.items()) {
    int ordinal = -1;
    const auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), ordinal);
    if (ec != std::errc() || end != k.data() + k.size()) return std::nullopt;
    if (ordinal < 0 || ordinal >= kMaxReplicas || !v.is_string()) return std::nullopt;
    if (ordinal < replicas) out.emplace(ordinal, v.get<std::string>());  // a pod scaled away: its page is gone
  }
  return out;
}

std::optional<std::string> request_for_pod(std::string_view body, const std::string& pod_cursor) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  json& params = j["params"];
  if (params.is_null()) params = json::object();
  if (!params.is_object()) return std::nullopt;
  if (pod_cursor.empty()) {
    params.erase("cursor");
  } else {
    params["cursor"] = pod_cursor;
  }
  return j.dump();
}

std::optional<std::string> response_message(std::string payload, bool sse, std::size_t limit) {
  if (!sse) return payload;
  AnswerTap tap(/*sse=*/true, limit);
  std::vector<std::string> messages;
  tap.feed(payload, /*body_done=*/true, messages);
  if (messages.empty()) return std::nullopt;
  return std::move(messages.back());
}

std::optional<std::string> list_cursor_of(std::string_view body) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto params = j.find("params");
  if (params == j.end() || !params->is_object()) return std::nullopt;
  const auto c = params->find("cursor");
  if (c == params->end() || !c->is_string()) return std::nullopt;
  return c->get<std::string>();
}

namespace {

// A pod message's `result` object, and that result's `tasks` array (null: none).
const json* result_of(const json& m) {
  const auto r = m.is_object() ? m.find("result") : m.end();
  return r != m.end() && r->is_object() ? &*r : nullptr;
}
const json* tasks_of(const json& result) {
  const auto t = result.find("tasks");
  return t != result.end() && t->is_array() ? &*t : nullptr;
}

bool listed(const json& task, const std::unordered_set<std::string>* only) {
  if (only == nullptr) return true;
  const auto id = task.find("taskId");
  return id != task.end() && id->is_string() && only->contains(id->get_ref<const std::string&>());
}

}  // namespace

std::vector<std::string> listed_task_ids(const std::vector<PodListAnswer>& answers) {
  std::vector<std::string> ids;
  std::unordered_set<std::string> seen;
  for (const PodListAnswer& a : answers) {
    if (!a.message) continue;
    const json m = json::parse(*a.message, nullptr, /*allow_exceptions=*/false);
    const json* result = result_of(m);
    const json* tasks = result != nullptr ? tasks_of(*result) : nullptr;
    if (tasks == nullptr) continue;
    for (const json& t : *tasks) {
      const auto id = t.find("taskId");  // end() of a task that is not an object
      if (id == t.end() || !id->is_string()) continue;
      if (seen.insert(id->get<std::string>()).second) ids.push_back(id->get<std::string>());
    }
  }
  return ids;
}

std::string merged_task_list(const std::vector<PodListAnswer>& answers, std::string_view id_json,
                             const std::unordered_set<std::string>* only) {
  json tasks = json::array();
  json next = json::object();
  bool any_result = false;
  json first_error;
  for (const PodListAnswer& a : answers) {
    if (!a.message) continue;
    const json m = json::parse(*a.message, nullptr, /*allow_exceptions=*/false);
    const json* result = result_of(m);
    if (result == nullptr) {
      const auto e = m.is_object() ? m.find("error") : m.end();
      if (e != m.end() && first_error.is_null()) first_error = *e;
      continue;
    }
    any_result = true;
    if (const json* t = tasks_of(*result)) {
      std::copy_if(t->begin(), t->end(), std::back_inserter(tasks),
                   [&](const json& task) { return listed(task, only); });
    }
    if (const auto c = result->find("nextCursor"); c != result->end() && c->is_string()) {
      next[std::to_string(a.ordinal)] = c->get<std::string>();
    }
  }
  std::string out = R"({"jsonrpc":"2.0","id":)";
  out += id_json.empty() ? std::string_view("null") : id_json;
  if (!any_result && !first_error.is_null()) {
    // No pod lists tasks (a server without tasks/list): its error, as one pod would answer.
    out += R"(,"error":)" + first_error.dump() + "}";
    return out;
  }
  json result = {{"tasks", std::move(tasks)}};
  if (!next.empty()) result["nextCursor"] = std::string(kCursorPrefix) + next.dump();
  out += R"(,"result":)" + result.dump() + "}";
  return out;
}

}  // namespace mcpproxy
