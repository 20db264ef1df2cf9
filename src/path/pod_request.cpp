// Requests of the proxy's own to a pod (pod_request.hpp).
#include "path/pod_request.hpp"

#include "core/http/proxy_headers.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"
#include "path/upstream_exchange.hpp"

namespace mcpproxy {
namespace {

// The answer's body read to its end (an SSE answer to initialize ends after the result) and
// dropped; bounded like a request body. True when the connection may be reused.
net::awaitable<bool> drain_pod_body(tcp::socket& up, beast::flat_buffer& in, const http1::Head& res,
                                    const Config& cfg) {
  http1::BodyFraming framing(res);
  std::size_t seen = in.size() - res.size;
  if (seen > 0) framing.take(static_cast<char*>(in.data().data()) + res.size, seen);
  in.consume(in.size());
  while (!framing.done && !framing.error && seen <= cfg.limits.max_body_size) {
    auto [ec, n] = co_await up.async_read_some(in.prepare(8192), use_tuple);
    if (ec) co_return false;  // the end of a close-delimited body, or a failure: not reused either way
    in.commit(n);
    framing.take(static_cast<char*>(in.data().data()), n);
    in.consume(n);
    seen += n;
  }
  co_return framing.done && !framing.error && !framing.extra && res.keep_alive;
}

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
  using Need = UpstreamExchange::Need;
  const Config& cfg = *ex.cfg;
  UpstreamExchange exchange(ctx, client);
  write_head(ctx, exchange, call, ex);
  // A DELETE ends a session the proxy will not keep: best effort, not worth a long wait.
  const duration limit = call.method == "DELETE"
                             ? std::min(cfg.backend.session_end_timeout, cfg.backend.response_timeout)
                             : cfg.backend.response_timeout;
  // Plain Asio I/O (no io_uring): the errand is rare, and its reads need no ring.
  Need need = exchange.start_own(call.ordinal, std::move(up), call.method, call.body, cfg, limit);
  while (need != Need::done) {
    if (need == Need::connect) {
      UpstreamPool::Lease lease = co_await ctx.pool.connect(call.ordinal);
      need = exchange.connected(nullptr, std::move(lease));
    } else if (need == Need::write) {
      auto [ec, n] = co_await write_all(nullptr, exchange.pod(), exchange.unsent());
      need = exchange.written(nullptr, ec);
    } else {
      auto [ec, n] = co_await read_some(nullptr, exchange.pod(), exchange.read_space());
      need = exchange.received(nullptr, ec, n);
    }
  }
  PodReply reply;
  if (exchange.result() != UpstreamExchange::Result::head) co_return reply;
  const http1::Head& res = exchange.head();
  reply.status = res.status;
  if (const auto sid = res.get(http1::FieldId::mcp_session_id)) reply.session_id = std::string(*sid);
  const bool reusable = co_await drain_pod_body(exchange.pod(), exchange.buffer(), res, cfg);
  client.stop_waiting();
  up = exchange.take();
  if (!reusable) up.reset();
  co_return reply;
}

}  // namespace mcpproxy
