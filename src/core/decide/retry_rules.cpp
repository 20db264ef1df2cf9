// The retry rules of an exchange with a pod (retry_rules.hpp).
#include "core/decide/retry_rules.hpp"

#include <algorithm>

namespace mcpproxy {

int connect_attempts(const Classified& route, int replicas) {
  return route.cls == RequestClass::session ? 1 : std::min(2, replicas);
}

bool pooled_connection_was_stale(bool reused, bool anything_received, bool closed_by_pod) {
  return reused && !anything_received && closed_by_pod;
}

}  // namespace mcpproxy
