// The decisions of a fanned-out subscriptions/listen, with no I/O (listen_events.hpp).
#include "core/mcp/listen_events.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/mcp/mcp_method.hpp"

namespace mcpproxy {
namespace {

constexpr std::string_view kAckMethod = "notifications/subscriptions/acknowledged";

// The next line of `text` from `pos`: its content without CR/LF, and where the next begins;
// nullopt when the line has no end yet.
struct Line {
  std::string_view content;
  std::size_t next = 0;
};
std::optional<Line> line_at(std::string_view text, std::size_t pos) {
  const std::size_t nl = text.find('\n', pos);
  if (nl == std::string_view::npos) return std::nullopt;
  std::size_t end = nl;
  if (end > pos && text[end - 1] == '\r') --end;
  return Line{text.substr(pos, end - pos), nl + 1};
}

// A field line's name and value (one space after the colon is not part of the value).
std::pair<std::string_view, std::string_view> field_of(std::string_view line) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return {line, {}};
  std::string_view value = line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  return {line.substr(0, colon), value};
}

}  // namespace

bool SseEventSplitter::feed(std::string_view data, std::vector<std::string>& out) {
  partial_.append(data);
  std::size_t start = 0;
  std::size_t pos = scanned_;
  for (;;) {
    const auto line = line_at(partial_, pos);
    if (!line) break;
    if (line->content.empty()) {
      // The event without its last line's end.
      std::size_t end = pos;
      if (end > start && partial_[end - 1] == '\n') --end;
      if (end > start && partial_[end - 1] == '\r') --end;
      if (end > start) out.emplace_back(partial_.substr(start, end - start));
      start = line->next;
    }
    pos = line->next;
  }
  partial_.erase(0, start);
  scanned_ = pos - start;
  return partial_.size() <= max_event_;
}

ListenEvent classify_listen_event(std::string_view event) {
  ListenEvent e;
  bool has_data = false;
  bool comments_only = true;
  std::size_t pos = 0;
  const std::string text = std::string(event) + "\n";
  while (const auto line = line_at(text, pos)) {
    pos = line->next;
    if (line->content.empty()) continue;
    if (line->content.front() == ':') continue;
    comments_only = false;
    const auto [name, value] = field_of(line->content);
    if (name != "data") continue;
    if (has_data) e.data.push_back('\n');
    e.data.append(value);
    has_data = true;
  }
  if (comments_only) {
    e.kind = ListenEventKind::comment;
    return e;
  }
  if (!has_data) return e;
  const std::string_view method = scan_jsonrpc_method(e.data);
  if (method == kAckMethod) {
    e.kind = ListenEventKind::ack;
  } else if (!method.empty()) {
    e.kind = ListenEventKind::notification;
  } else {
    // No method: a response (the scan finds no "method" member in it), or a method the
    // scan cannot read (an escape in it): parsed to tell.
    const auto j = nlohmann::json::parse(e.data, nullptr, /*allow_exceptions=*/false);
    const bool response = j.is_object() && !j.contains("method") && (j.contains("result") || j.contains("error"));
    e.kind = response ? ListenEventKind::end : ListenEventKind::notification;
  }
  return e;
}

MergeAction merge_action(ListenEventKind kind, const MergeState& s) {
  switch (kind) {
    case ListenEventKind::comment:
    case ListenEventKind::other:
      return MergeAction::ignore;
    case ListenEventKind::ack:
      return s.client_acked ? MergeAction::leg_ack : MergeAction::first_ack;
    case ListenEventKind::notification:
      // Before the client's acknowledgement there is no stream to merge into; after its
      // last events nothing more goes in.
      return s.client_acked && !s.finishing ? MergeAction::forward : MergeAction::ignore;
    case ListenEventKind::end:
      // A pod ends its listen (it shuts down): the leg is opened again. When the listen
      // honours nothing, every pod ends it at once, and so does the client's stream.
      return s.honors_nothing && !s.finishing ? MergeAction::end_listen : MergeAction::end_leg;
  }
  return MergeAction::ignore;
}

std::vector<int> listen_legs_wanted(int replicas, const std::optional<std::vector<int>>& pods) {
  std::vector<int> want;
  if (pods) {
    for (const int o : *pods) {
      if (o >= 0 && o < replicas) want.push_back(o);
    }
    std::sort(want.begin(), want.end());
    want.erase(std::unique(want.begin(), want.end()), want.end());
  } else {
    for (int o = 0; o < replicas; ++o) want.push_back(o);
  }
  return want;
}

LegRoom leg_room(std::size_t queued, std::size_t bytes, std::size_t bound, SlowListenClient policy) {
  if (queued + bytes <= bound) return LegRoom::queue;
  return policy == SlowListenClient::drop ? LegRoom::drop : LegRoom::close;
}

std::string client_event(std::string_view event) {
  std::string out;
  out.reserve(event.size() + 2);
  std::size_t pos = 0;
  const std::string text = std::string(event) + "\n";
  while (const auto line = line_at(text, pos)) {
    pos = line->next;
    const auto [name, value] = field_of(line->content);
    if (!line->content.empty() && line->content.front() != ':' && (name == "id" || name == "retry")) continue;
    out.append(line->content).push_back('\n');
  }
  out.push_back('\n');
  return out;
}

bool ack_honors_nothing(std::string_view ack_data) {
  const auto j = nlohmann::json::parse(ack_data, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  const auto params = j.find("params");
  if (params == j.end() || !params->is_object()) return false;
  const auto n = params->find("notifications");
  return n != params->end() && n->is_object() && n->empty();
}

std::optional<std::vector<std::string>> listen_task_ids(std::string_view body, std::size_t max_ids, bool tasks_only) {
  // Only a body that names taskIds is parsed.
  if (body.find("\"taskIds\"") == std::string_view::npos) return std::nullopt;
  const auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto params = j.find("params");
  if (params == j.end() || !params->is_object()) return std::nullopt;
  const auto filter = params->find("notifications");
  if (filter == params->end() || !filter->is_object()) return std::nullopt;
  const auto ids = filter->find("taskIds");
  if (ids == filter->end() || !ids->is_array() || ids->empty() || ids->size() > max_ids) return std::nullopt;
  // Anything else asked for (a list change, a resource) can happen on any pod.
  for (const auto& [key, value] : filter->items()) {
    if (key == "taskIds" || !tasks_only) continue;
    if (value.is_boolean() && !value.get<bool>()) continue;
    if (value.is_array() && value.empty()) continue;
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const auto& id : *ids) {
    if (!id.is_string()) return std::nullopt;
    out.push_back(id.get<std::string>());
  }
  return out;
}

std::string listen_complete_event(std::string_view id_json) {
  std::string data = R"({"jsonrpc":"2.0","id":)";
  data.append(id_json);
  data.append(R"(,"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/subscriptionId":)");
  data.append(id_json);
  data.append("}}}");
  return "event: message\ndata: " + data + "\n\n";
}

std::string listen_too_slow_event(std::string_view id_json) {
  std::string data = R"({"jsonrpc":"2.0","id":)";
  data.append(id_json);
  data.append(R"(,"error":{"code":-32000,"message":"Subscription closed by the proxy: the client reads notifications )"
              R"x(too slowly (subscriptions.max_leg_buffer)"}})x");
  return "event: message\ndata: " + data + "\n\n";
}

}  // namespace mcpproxy
