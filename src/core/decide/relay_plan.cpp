// How a pod's answer is relayed (relay_plan.hpp).
#include "core/decide/relay_plan.hpp"

#include "core/decide/outcome.hpp"

namespace mcpproxy {

RelayPlan plan_relay(const http1::Head& res, const RelayInputs& in) {
  RelayPlan plan;
  const auto content_type = res.get(http1::FieldId::content_type);
  plan.sse = content_type && http1::starts_with_ci(*content_type, "text/event-stream");
  plan.pod_keep_alive = res.keep_alive;
  const bool client_http11 = in.client_version >= 11;
  // A body whose end the pod marks by chunks or by closing goes to the client in chunks
  // (HTTP/1.1), or ends with the client's connection (HTTP/1.0).
  const bool open_ended = res.framing == http1::Framing::chunked || res.framing == http1::Framing::close;
  plan.chunked = open_ended && client_http11;
  plan.keep_alive = client_keep_alive(in.keep_alive, in.draining, open_ended && !client_http11);
  // GET streams (the standalone stream, the legacy stream) idle for minutes; an SSE answer
  // to a POST is a call in progress whose events come soon: it reads directly, one wakeup
  // less per event.
  plan.long_lived = plan.sse && in.is_get;
  plan.frees_read_buffer = plan.sse;
  plan.leaves_drain = plan.sse && in.is_get;
  plan.head.http11 = client_http11;
  plan.head.keep_alive = plan.keep_alive;
  plan.head.chunked = plan.chunked;
  plan.head.client_session = in.client_session;
  return plan;
}

}  // namespace mcpproxy
