#pragma once
// How a request ended, as one value (the idea of Pingora's (reuse, error)): every way a
// request ends (the pod's answer relayed, a local reply, the client gone, a request refused
// before it could be read whole) is an Outcome, and `Connection::finish` takes it once: the
// request counter, the log line, and whether the connection takes its next request.
// No I/O; unit-tested.

#include <cstdint>
#include <string_view>

#include "core/telemetry/metrics.hpp"

namespace mcpproxy {

struct Outcome {
  enum class Kind : std::uint8_t {
    relayed,      // the pod's answer went to the client (a cut body: the pod's error, 502/504)
    local_reply,  // the proxy answered with a Refusal
    client_gone,  // the client left before its answer (499)
    refused,      // refused before the request was read whole: answered, then closed
  };
  Kind kind = Kind::relayed;
  unsigned status = 0;
  bool reuse_client = false;  // the exchange leaves the client connection fit for another request
  std::string_view reason;    // `refused`: why, for its log line

  static Outcome relayed(unsigned status, bool reuse) { return {Kind::relayed, status, reuse, {}}; }
  static Outcome local_reply(unsigned status, bool reuse) { return {Kind::local_reply, status, reuse, {}}; }
  static Outcome client_gone() { return {Kind::client_gone, 499, false, {}}; }
  static Outcome refused(unsigned status, std::string_view reason) { return {Kind::refused, status, false, reason}; }
};

// What `finish` makes of an outcome.
struct FinishRecord {
  MethodClass method = MethodClass::other;  // the request counter's labels
  unsigned status = 0;
  enum class Line : std::uint8_t { access, refused } line = Line::access;  // which log line
  bool next_request = false;  // the connection reads another request (else its write side shuts)
};
// `method`: the request's; `closed`: the connection was closed meanwhile (the drain's end,
// the worker's).
FinishRecord finish_record(const Outcome& o, std::string_view method, bool closed);

// Whether the client connection stays open after an answer (the one rule, for relayed
// answers and local replies alike): the client asked for it, the worker is not draining, and
// the answer's end is not the connection's close (a body the pod ends by chunks or by
// closing goes to an HTTP/1.0 client until the connection closes).
bool client_keep_alive(bool requested, bool draining, bool ends_by_close);

}  // namespace mcpproxy
