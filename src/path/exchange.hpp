#pragma once
// One request of a client connection and what became of it, as the request path's stages
// share it: the request as read (Request), and the exchange's decisions (Exchange: its
// route, session record, pod, config). Each stage keeps its own state in its own type;
// what is here is what more than one stage reads.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/config/config.hpp"
#include "core/http/http1.hpp"
#include "core/http/http_rules.hpp"
#include "core/http/proxy_headers.hpp"
#include "core/tables/session.hpp"
#include "path/stream_gate.hpp"
#include "path/task_routing.hpp"

namespace mcpproxy {

// The request of the exchange in progress: its own copy, or views of the read buffer when
// it came whole (request_reader.hpp).
struct Request {
  http1::Head head;
  std::string bytes;  // the head as received, then the body (decoded when it came chunked)
  std::string_view body;
  std::string_view method() const { return head.method; }
  std::string_view target() const { return head.target; }
  int version() const { return head.version; }
  std::optional<std::string_view> get(std::string_view name) const { return head.get(name); }
  std::optional<std::string_view> get(http1::FieldId id) const { return head.get(id); }
};

// One request and the decisions made for it; `Connection::finish` reads it with the
// request's Outcome once the request is over.
struct Exchange {
  explicit Exchange(Request& r) : req(r) {}
  Request& req;
  Classified route;
  std::shared_ptr<const SessionRecord> rec;
  std::shared_ptr<const Config> cfg;
  int ordinal = -1;
  unsigned status = 0;  // the pod's response status, once its head came
  bool keep_alive = true;
  std::chrono::steady_clock::time_point start;
  std::string session_for_log;   // a session this exchange created; else route.session_id
  StreamOpening stream_opening;  // a session's GET stream until the pod answers its head
  std::string principal;         // with sessions.binding, of a request that may create a session: its identity's HMAC
  RequestId request_id;          // X-Request-Id: the client's, or made here
  TaskRouting tasks;             // era, method, and a sessionless request's task or handle (task_routing.hpp)

  // The session as log lines name it: a hash, never the id; "-" without one.
  std::string session_label() const {
    // Hashed only when a line is written: most requests are never logged.
    if (!session_for_log.empty()) return session_for_log;
    return route.session_id.empty() ? "-" : session_hash(route.session_id);
  }
  // The request's path without its query (a legacy query carries the raw session id).
  std::string_view path() const { return req.target().substr(0, req.target().find('?')); }
};

}  // namespace mcpproxy
