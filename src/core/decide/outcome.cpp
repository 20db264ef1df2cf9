// What a request's end is counted and logged as (outcome.hpp).
#include "core/decide/outcome.hpp"

namespace mcpproxy {

FinishRecord finish_record(const Outcome& o, std::string_view method, bool closed) {
  FinishRecord r;
  r.status = o.status;
  if (o.kind == Outcome::Kind::refused) {
    // No request was read whole: no method to count it by, and its own log line.
    r.line = FinishRecord::Line::refused;
    return r;
  }
  r.method = method_class(method);
  r.next_request = o.reuse_client && !closed;
  return r;
}

bool client_keep_alive(bool requested, bool draining, bool ends_by_close) {
  return requested && !draining && !ends_by_close;
}

}  // namespace mcpproxy
