#pragma once
// The two retry rules of a request's exchange with a pod, by name, with no I/O: the
// upstream exchange (upstream_exchange.hpp) asks them after each attempt, for the proxied
// request and for the proxy's own requests to a pod alike. Unit-tested without sockets.

#include "core/http/http_rules.hpp"

namespace mcpproxy {

// Rule 1 (connect_attempts): a placed request (a new session, a sessionless request) whose
// pod cannot be connected to is placed again, once, on another pod; the failed pod is
// ejected first, so placement skips it. A session's request has one pod and is not placed
// again.
int connect_attempts(const Classified& route, int replicas);

// Rule 2 (pooled_connection_was_stale): a request sent on a pooled connection that the pod
// had closed meanwhile (end of stream or reset before any byte of an answer: `closed_by_pod`)
// never reached the pod; it is sent again, once, on a fresh connection.
bool pooled_connection_was_stale(bool reused, bool anything_received, bool closed_by_pod);

// One request's attempts under both rules.
class RetryRules {
 public:
  // A connect that failed: true when rule 1 places the request on another pod.
  bool place_again(const Classified& route, int replicas) {
    return ++connects_failed_ < connect_attempts(route, replicas);
  }
  // An attempt that failed after its connection was had: true when rule 2 sends it again
  // (a malformed answer is an answer: never sent again).
  bool send_again(bool reused, bool anything_received, bool malformed, bool closed_by_pod) {
    if (malformed || stale_retry_used_ || !pooled_connection_was_stale(reused, anything_received, closed_by_pod)) {
      return false;
    }
    stale_retry_used_ = true;
    return true;
  }
  // The retry after a stale pooled connection takes a new one: the pod that closed one (a
  // restart) has closed the others.
  bool fresh_connection() const { return stale_retry_used_; }

 private:
  int connects_failed_ = 0;
  bool stale_retry_used_ = false;
};

}  // namespace mcpproxy
