// Requests of the proxy's own to a pod (pod_request.hpp).
#include "path/pod_request.hpp"

#include "core/http/proxy_headers.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"
#include "path/upstream_exchange.hpp"

namespace mcpproxy {
namespace {

// The head of the call: the client's initialize as it came, with the request's credentials.
void write_head(ConnectionContext& ctx, UpstreamExchange& exchange, const PodCall& call, const Exchange& ex) {
  const Config& cfg = *ex.cfg;
  // A new session has no record yet (the DELETE of one the proxy refused): the request's own.
  const SessionRecord none;
  const SessionRecord& rec = ex.rec ? *ex.rec : none;
  const auto host = ex.req.get(http1::FieldId::host);
  ReplayHeadEdits edits;
  edits.method = call.method;
  edits.target = rec.init_target.empty() ? call.target : std::string_view(rec.init_target);
  edits.host = cfg.backend.rewrite_host || !host ? ctx.pool.address(call.ordinal).authority : *host;
  edits.init_fields = rec.init_fields;
  edits.session = call.session;
  edits.body_size = call.body.size();
  write_replay_head(exchange.request_head(), edits, ex.req.head, ex.request_id);
}

}  // namespace

net::awaitable<PodReply> send_to_pod(ConnectionContext& ctx, ClientLink& client, const PodCall& call,
                                     std::unique_ptr<tcp::socket>& up, const Exchange& ex) {
  const Config& cfg = *ex.cfg;
  UpstreamExchange exchange(ctx, client);
  write_head(ctx, exchange, call, ex);
  // A DELETE ends a session the proxy will not keep: best effort, not worth a long wait.
  const duration limit = call.method == "DELETE"
                             ? std::min(cfg.backend.session_end_timeout, cfg.backend.response_timeout)
                             : cfg.backend.response_timeout;
  // The answer's body (an SSE answer to initialize ends after the result) read to its end
  // and dropped, bounded like a request body.
  UpstreamExchange::OwnAnswer answer = co_await exchange.run_own(
      call.ordinal, std::move(up), call.method, call.body, cfg, limit, cfg.limits.max_body_size, /*keep_body=*/false);
  PodReply reply;
  if (answer.result != UpstreamExchange::Result::head) co_return reply;
  reply.status = answer.status;
  reply.session_id = std::move(answer.session_id);
  up = exchange.take();
  if (!answer.reusable) up.reset();
  co_return reply;
}

}  // namespace mcpproxy
