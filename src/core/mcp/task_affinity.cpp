// Task and handle affinity decisions (task_affinity.hpp).
#include "core/mcp/task_affinity.hpp"

#include "core/http/base64.hpp"
#include "core/http/http_rules.hpp"
#include "core/identity/session_binding.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>

namespace mcpproxy {
namespace {

using json = nlohmann::json;

json parse(std::string_view text) { return json::parse(text, nullptr, /*allow_exceptions=*/false); }

// The string member `name` of an object member `parent` of `doc` (nullptr when absent).
const std::string* string_at(const json& doc, const char* parent, const char* name) {
  if (!doc.is_object()) return nullptr;
  const auto p = doc.find(parent);
  if (p == doc.end() || !p->is_object()) return nullptr;
  const auto v = p->find(name);
  return v != p->end() && v->is_string() ? v->get_ptr<const std::string*>() : nullptr;
}

const std::string* method_of(const json& doc) {
  if (!doc.is_object()) return nullptr;
  const auto m = doc.find("method");
  return m != doc.end() && m->is_string() ? m->get_ptr<const std::string*>() : nullptr;
}

// The task methods of 2026-07-28: tasks/result is not one of them (SEP-2663).
bool names_task_2026(McpMethod m) { return names_task(m) && m != McpMethod::tasks_result; }

// Whether a 2026 request's client declared the tasks extension (its per-request capabilities).
bool declares_tasks(const json& doc) {
  const json* at = &doc;
  for (const char* name : {"params", "_meta", "io.modelcontextprotocol/clientCapabilities", "extensions"}) {
    if (!at->is_object()) return false;
    const auto it = at->find(name);
    if (it == at->end()) return false;
    at = &*it;
  }
  return at->is_object() && at->contains("io.modelcontextprotocol/tasks");
}

RequestAffinity mismatch() { return RequestAffinity{AffinityKind::mismatch, {}}; }

RequestAffinity task_by(std::string_view id, const AffinityConfig& cfg) {
  if (!valid_affinity_id(id, cfg.max_key_length)) return RequestAffinity{AffinityKind::unknown, {}};
  return RequestAffinity{AffinityKind::task, task_key(id)};
}

// 2026: Mcp-Method names a task method. The header is what a load balancer routes by; the
// body is what the pod acts on: they must be the same task, or the request is not routed.
RequestAffinity task_request_2026(const http1::Head& head, std::string_view body, std::string_view header_method,
                                  const AffinityConfig& cfg) {
  const json doc = parse(body);
  const std::string* method = method_of(doc);
  if (method == nullptr || *method != header_method) return mismatch();
  const std::string* body_id = string_at(doc, "params", "taskId");
  const auto name = head.get("Mcp-Name");
  if (!name) {
    // The pod answers a missing header itself (400); routed by the body meanwhile.
    return body_id != nullptr ? task_by(*body_id, cfg) : RequestAffinity{};
  }
  const auto id = decode_header_value(*name);
  if (!id || body_id == nullptr || *body_id != *id) return mismatch();
  RequestAffinity out = task_by(*id, cfg);
  out.declares_tasks = declares_tasks(doc);
  return out;
}

// 2026 headers that do not name a task method: a body that does is a forged header.
bool body_names_task(std::string_view body) {
  const json doc = parse(body);
  const std::string* method = method_of(doc);
  return method != nullptr && names_task_2026(mcp_method(*method));
}

RequestAffinity task_request_2025(std::string_view body, const AffinityConfig& cfg) {
  const json doc = parse(body);
  const std::string* method = method_of(doc);
  if (method == nullptr || !names_task(mcp_method(*method))) return {};  // the scan was fooled
  const std::string* id = string_at(doc, "params", "taskId");
  return id != nullptr ? task_by(*id, cfg) : RequestAffinity{};
}

RequestAffinity handle_request(const http1::Head& head, const AffinityConfig& cfg) {
  for (const HandleRule& rule : cfg.handles) {
    const auto value = head.get(rule.header);
    if (!value) continue;
    const auto decoded = decode_header_value(*value);
    // A value no answer could have created: placed, the pod answers for it.
    if (!decoded || !valid_affinity_id(*decoded, cfg.max_key_length)) return {};
    return RequestAffinity{AffinityKind::handle, handle_key(rule.param, *decoded)};
  }
  return {};
}

void learn_task(const json& result, const AffinityConfig& cfg, AnswerKeys& keys) {
  const std::string* id = nullptr;
  const json* ttl = nullptr;
  const auto type = result.find("resultType");
  if (type != result.end() && *type == "task") {
    // 2026-07-28 (SEP-2663): the result is the task.
    if (const auto t = result.find("taskId"); t != result.end() && t->is_string())
      id = t->get_ptr<const std::string*>();
    if (const auto t = result.find("ttlMs"); t != result.end()) ttl = &*t;
  } else if (const auto task = result.find("task"); task != result.end() && task->is_object()) {
    // 2025-11-25: CreateTaskResult { task: { taskId, ttl, ... } }.
    if (const auto t = task->find("taskId"); t != task->end() && t->is_string()) id = t->get_ptr<const std::string*>();
    if (const auto t = task->find("ttl"); t != task->end()) ttl = &*t;
  }
  if (id == nullptr) return;
  if (!valid_affinity_id(*id, cfg.max_key_length)) {
    ++keys.refused;
    return;
  }
  const std::optional<double> ms =
      ttl != nullptr && ttl->is_number() ? std::optional<double>(ttl->get<double>()) : std::nullopt;
  keys.learned.push_back(Learned{task_key(*id), task_ttl(ms, cfg), true});
}

// One reference token of a JSON pointer, with ~1 and ~0 undone.
std::string pointer_token(std::string_view raw) {
  std::string token;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '~' && i + 1 < raw.size() && (raw[i + 1] == '0' || raw[i + 1] == '1')) {
      token += raw[i + 1] == '0' ? '~' : '/';
      ++i;
    } else {
      token += raw[i];
    }
  }
  return token;
}

// The member or element `token` names in `at`; nullptr when there is none.
const json* child(const json& at, const std::string& token) {
  if (at.is_object()) {
    const auto it = at.find(token);
    return it == at.end() ? nullptr : &*it;
  }
  if (!at.is_array()) return nullptr;
  std::size_t index = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), index);
  if (ec != std::errc() || end != token.data() + token.size() || token.empty() || index >= at.size()) return nullptr;
  return &at[index];
}

// The value at an RFC 6901 pointer, walked without exceptions (the request path throws none).
const json* at_pointer(const json& doc, std::string_view pointer) {
  const json* at = &doc;
  while (!pointer.empty() && at != nullptr) {
    if (pointer.front() != '/') return nullptr;
    pointer.remove_prefix(1);
    const auto slash = pointer.find('/');
    const std::string token = pointer_token(pointer.substr(0, slash));
    pointer = slash == std::string_view::npos ? std::string_view{} : pointer.substr(slash);
    at = child(*at, token);
  }
  return at;
}

void learn_handle(const json& result, const HandleRule& rule, const AffinityConfig& cfg, AnswerKeys& keys) {
  const json* v = at_pointer(result, rule.result_pointer);
  if (v == nullptr) return;
  std::string value;
  if (v->is_string()) {
    value = v->get<std::string>();
  } else if (v->is_number_integer()) {
    value = v->dump();
  } else {
    return;
  }
  if (!valid_affinity_id(value, cfg.max_key_length)) {
    ++keys.refused;
    return;
  }
  keys.learned.push_back(Learned{handle_key(rule.param, value), cfg.task_ttl_default, false});
}

}  // namespace

std::string task_key(std::string_view id) {
  std::string key = "task:";
  key.append(id);
  return key;
}

std::string handle_key(std::string_view param, std::string_view value) {
  std::string key = "handle:";
  key.append(param);
  key += ':';
  key.append(value);
  return key;
}

std::optional<std::string> decode_header_value(std::string_view value) {
  static constexpr std::string_view kOpen = "=?base64?";
  static constexpr std::string_view kClose = "?=";
  if (value.size() < kOpen.size() + kClose.size() || !http1::starts_with_ci(value, kOpen) ||
      value.substr(value.size() - kClose.size()) != kClose) {
    return std::string(value);
  }
  return base64_decode(value.substr(kOpen.size(), value.size() - kOpen.size() - kClose.size()),
                       Base64Alphabet::standard, Base64Padding::optional);
}

bool valid_affinity_id(std::string_view id, std::size_t max) {
  if (id.empty() || id.size() > max) return false;
  return std::none_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7F;
  });
}

RequestAffinity request_affinity(const http1::Head& head, std::string_view body, McpMethod method,
                                 const AffinityConfig& cfg) {
  if (cfg.tasks) {
    if (const auto header_method = head.get("Mcp-Method")) {
      if (names_task_2026(mcp_method(*header_method))) return task_request_2026(head, body, *header_method, cfg);
      // A body that names a task under a header that does not: never routed as either.
      if (names_task_2026(method) && body_names_task(body)) return mismatch();
    } else if (names_task(method) && (method != McpMethod::tasks_result ||
                                      classify_era(head.get("MCP-Protocol-Version"), false, false) == Era::v2025)) {
      return task_request_2025(body, cfg);
    }
  }
  return cfg.handles.empty() ? RequestAffinity{} : handle_request(head, cfg);
}

KeyDecision route_by_key(const TaskRecord* rec, int replicas, const BoundCaller& caller) {
  KeyDecision d;
  if (rec == nullptr) return d;
  d.ordinal = rec->ordinal;
  // Another identity's task is answered like an unknown one: ids cannot be probed.
  switch (check_caller(caller, rec->principal)) {
    case PrincipalCheck::match:
      d.result = rec->ordinal < replicas ? KeyRoute::routed : KeyRoute::pod_gone;
      break;
    case PrincipalCheck::other_identity:
      d.result = KeyRoute::other_identity;
      break;
    case PrincipalCheck::unknown_key:
      d.result = KeyRoute::unknown_binding_key;
      break;
  }
  return d;
}

AnswerWatch answer_watch(const http1::Head& head, std::string_view body, McpMethod method, const AffinityConfig& cfg) {
  AnswerWatch w;
  if (method == McpMethod::tools_call) {
    w.tasks = cfg.tasks;
    if (!cfg.handles.empty()) {
      // The tool's name: Mcp-Name (2026), else params.name.
      std::string tool;
      if (const auto name = head.get("Mcp-Name"); name && head.get("Mcp-Method")) {
        tool = decode_header_value(*name).value_or(std::string());
      } else {
        const json doc = parse(body);  // string_at points into it
        if (const std::string* n = string_at(doc, "params", "name")) tool = *n;
      }
      const auto rule =
          std::find_if(cfg.handles.begin(), cfg.handles.end(), [&](const HandleRule& r) { return r.tool == tool; });
      if (rule != cfg.handles.end()) w.handle = &*rule;
    }
    return w;
  }
  // A task-augmented request of another method (2025-11-25 `params.task`).
  if (cfg.tasks && method != McpMethod::other && body.find("\"task\"") != std::string_view::npos) {
    const json doc = parse(body);
    if (doc.is_object()) {
      const auto params = doc.find("params");
      w.tasks = params != doc.end() && params->is_object() && params->contains("task");
    }
  }
  return w;
}

std::chrono::milliseconds task_ttl(std::optional<double> ttl_ms, const AffinityConfig& cfg) {
  if (!ttl_ms || !(*ttl_ms > 0)) return std::min(cfg.task_ttl_default, cfg.task_ttl_max);
  const double cap = static_cast<double>(cfg.task_ttl_max.count());
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::min(*ttl_ms, cap)));
}

AnswerKeys keys_of_message(std::string_view text, const AnswerWatch& w, const AffinityConfig& cfg) {
  AnswerKeys keys;
  // Most messages of a watched answer (progress, logging, a plain tool result) name no
  // task: found by a search, not a parse.
  const bool may_task = w.tasks && text.find("\"taskId\"") != std::string_view::npos;
  if (!may_task && w.handle == nullptr) {
    keys.response =
        text.find("\"result\"") != std::string_view::npos || text.find("\"error\"") != std::string_view::npos;
    return keys;
  }
  const json doc = parse(text);
  if (!doc.is_object()) return keys;
  keys.response = doc.contains("id") && (doc.contains("result") || doc.contains("error")) && !doc.contains("method");
  const auto result = doc.find("result");
  if (!keys.response || result == doc.end() || !result->is_object()) return keys;
  if (may_task) learn_task(*result, cfg, keys);
  if (w.handle != nullptr) learn_handle(*result, *w.handle, cfg, keys);
  return keys;
}

void AnswerTap::feed(std::string_view data, bool body_done, std::vector<std::string>& out) {
  if (done_) return;
  if (pending_.size() + data.size() > limit_) {
    // An event (or a JSON body) this large is not read: nothing more of the answer is.
    overflowed_ = true;
    done_ = true;
    pending_ = std::string();
    return;
  }
  pending_.append(data);
  if (!sse_) {
    if (!body_done) return;
    out.push_back(std::move(pending_));
    pending_ = std::string();
    done_ = true;
    return;
  }
  const std::size_t used = take_sse_events(pending_, [&](std::string_view event) {
    SseEvent e = parse_sse_event(event);
    if (e.has_data) out.push_back(std::move(e.data));
    return true;
  });
  pending_.erase(0, used);
  if (body_done) done_ = true;
}

}  // namespace mcpproxy
