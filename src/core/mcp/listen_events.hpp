#pragma once
// The decisions of a fanned-out `subscriptions/listen` (path/listen_fanout.hpp), with no I/O:
// the pods' SSE streams cut into events, what each event is to the merge (the
// acknowledgement, a notification, the listen's own end, a keep-alive comment) and what the
// merge does with it, the event as the client gets it, the legs a listen wants, whether a
// leg's notification fits its bound, the task ids a listen is filtered to, and the proxy's
// own events (its keep-alive, the graceful end of a drain, the end of a client too slow to
// read).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config/subscriptions_config.hpp"

namespace mcpproxy {

// Cuts an SSE payload into events (an event ends at an empty line; LF or CRLF lines). Kept
// small on purpose: the relay's AnswerTap and http_rules have their own SSE line walks, to
// be one iterator (http_rules) once that lands.
class SseEventSplitter {
 public:
  explicit SseEventSplitter(std::size_t max_event) : max_event_(max_event) {}
  // Appends `data`; `out` gets every event it completes (its text up to, not including,
  // the empty line). False when an event grows past `max_event`: the stream is unreadable.
  bool feed(std::string_view data, std::vector<std::string>& out);
  std::size_t buffered() const { return partial_.size(); }

 private:
  std::size_t max_event_;
  std::string partial_;
  std::size_t scanned_ = 0;  // bytes of partial_ known to hold no event end
};

enum class ListenEventKind : std::uint8_t {
  comment,       // comments only (a pod's keep-alive): the proxy keeps the client's own
  ack,           // notifications/subscriptions/acknowledged: the client gets one, the first
  notification,  // any other message with a method: merged into the client's stream
  end,           // a response (the listen's graceful `complete`, or an error): this leg's end
  other,         // no data (an event name alone, an id alone): dropped
};

struct ListenEvent {
  ListenEventKind kind = ListenEventKind::other;
  std::string data;  // the data lines' values joined by LF
};
ListenEvent classify_listen_event(std::string_view event);

// What the merge does with one event of a leg, given where the client's stream stands.
struct MergeState {
  bool client_acked = false;    // the client has its acknowledgement (queued or written)
  bool finishing = false;       // the client's last events are queued: nothing more goes in
  bool honors_nothing = false;  // the client's acknowledgement honours nothing of its filter
};
enum class MergeAction : std::uint8_t {
  ignore,      // not for the client (a comment, a pod's keep-alive, an event without data)
  first_ack,   // the client's one acknowledgement (and this leg's)
  leg_ack,     // this leg's acknowledgement only: the client has its own
  forward,     // a notification, to the client as it is (client_event)
  end_leg,     // this leg's stream ends here (a pod's `complete`): opened again with backoff
  end_listen,  // the pod's end goes to the client, whose stream ends with it (honours nothing)
};
MergeAction merge_action(ListenEventKind kind, const MergeState& s);

// The event as the client gets it: the pod's lines without `id:` and `retry:` (ids of
// several pods' streams mean nothing together, and the merged stream cannot be resumed
// from one), ended by an empty line.
std::string client_event(std::string_view event);

// Whether an acknowledgement honours nothing (`params.notifications` empty): a pod then
// ends the listen at once, and so does the merged stream.
bool ack_honors_nothing(std::string_view ack_data);

// The ordinals a listen has legs on: `pods` (a task-filtered listen's) below `replicas`, or
// every pod below `replicas`; ascending, no repeats.
std::vector<int> listen_legs_wanted(int replicas, const std::optional<std::vector<int>>& pods);

// Whether `bytes` more of a leg's notifications may wait for the client when `queued` wait
// already (subscriptions.max_leg_buffer): queued, or past the bound the policy's answer.
enum class LegRoom : std::uint8_t { queue, drop, close };
LegRoom leg_room(std::size_t queued, std::size_t bytes, std::size_t bound, SlowListenClient policy);

// The task ids of a listen filtered only to tasks (`params.notifications.taskIds`, no other
// notification asked for): its legs go to those tasks' pods only. nullopt: not such a
// listen (every pod is listened to). At most `max_ids` ids are read; longer lists, and ids
// that are not strings, make it not such a listen.
std::optional<std::vector<std::string>> listen_task_ids(std::string_view body, std::size_t max_ids,
                                                        bool tasks_only = true);

// The proxy's own events: a keep-alive comment; the listen's graceful end (what a pod sends
// when it shuts down: a `complete` result for the listen's id); the end of a stream whose
// client reads too slowly (a JSON-RPC error for the listen's id).
inline constexpr std::string_view kKeepAliveEvent = ": keepalive\n\n";
std::string listen_complete_event(std::string_view id_json);
std::string listen_too_slow_event(std::string_view id_json);

}  // namespace mcpproxy
