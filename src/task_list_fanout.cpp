// Stage: a sessionless tasks/list, asked of every pod and answered merged (task_list.hpp
// says why). The pods are asked one after another, each with the proxied path's head edits
// and deadline, its answer read with the same strict parser; a pod that fails adds nothing.
#include <boost/asio/write.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "mcpproxy/downstream.hpp"
#include "mcpproxy/log.hpp"
#include "mcpproxy/proxy_headers.hpp"
#include "mcpproxy/task_list.hpp"
#include "mcpproxy/upstream.hpp"

namespace mcpproxy {
namespace {

inline constexpr Refusal kInvalidCursor{200, -32602, "Invalid cursor"};

struct PodAnswer {
  bool whole = false;     // the body came to its end, within the bound
  bool reusable = false;  // the pod connection may go back to the pool
  std::string payload;
};

net::awaitable<PodAnswer> read_pod_answer(tcp::socket& up, beast::flat_buffer& in, const http1::Head& res,
                                          std::size_t limit) {
  // The body to its end, bounded (affinity.max_answer_scan), chunk framing removed.
  PodAnswer out;
  http1::BodyFraming framing(res);
  const auto take = [&](char* p, std::size_t n) { out.payload.append(p, framing.take(p, n)); };
  if (in.size() > res.size) take(static_cast<char*>(in.data().data()) + res.size, in.size() - res.size);
  in.consume(in.size());
  while (!framing.done && !framing.error && out.payload.size() <= limit) {
    auto [ec, n] = co_await up.async_read_some(in.prepare(16384), use_tuple);
    if (ec == net::error::eof && framing.framing == http1::Framing::close) framing.done = true;
    if (ec) break;
    in.commit(n);
    take(static_cast<char*>(in.data().data()), n);
    in.consume(n);
  }
  out.whole = framing.done && !framing.error;
  out.reusable = out.whole && !framing.extra && res.keep_alive && framing.framing != http1::Framing::close;
  co_return out;
}

}  // namespace

net::awaitable<bool> Connection::list_tasks(Exchange& ex) {
  const Config& cfg = *ex.cfg;
  const auto pods = pods_to_ask(list_cursor_of(ex.req.body), cfg.backend.replicas);
  if (!pods) co_return co_await send_local_reply(ex, kInvalidCursor);
  std::vector<PodListAnswer> answers;
  for (const auto& [ordinal, cursor] : *pods) {
    PodListAnswer a;
    a.ordinal = ordinal;
    if (const auto body = request_for_pod(ex.req.body, cursor)) a.message = co_await ask_pod(ex, ordinal, *body);
    answers.push_back(std::move(a));
    if (client_gone()) co_return false;
  }
  const JsonRpcInfo info = inspect_jsonrpc(ex.req.body);
  co_return co_await send_local_json(ex, merged_task_list(answers, info.id_json));
}

net::awaitable<std::optional<std::string>> Connection::ask_pod(Exchange& ex, int ordinal, const std::string& body) {
  const Config& cfg = *ex.cfg;
  UpstreamHeadEdits edits;
  edits.pod_authority = ctx_.pool.address(ordinal).authority;
  edits.rewrite_host = cfg.backend.rewrite_host;
  edits.trust_forwarded = cfg.trust_forwarded_headers;
  edits.peer_ip = peer_ip_;
  edits.body_size = body.size();
  if (ex.request_id.generated()) edits.added_request_id = ex.request_id.view();
  std::string head;
  const std::size_t head_size = write_upstream_head(head, ex.req.head, edits);  // `head` may be longer
  const std::array<net::const_buffer, 2> bytes = {net::buffer(head.data(), head_size), net::buffer(body)};
  // A pooled connection the pod closed meanwhile is tried once more on a new one.
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto lease = co_await ctx_.pool.acquire(ordinal, /*fresh=*/attempt > 0);
    if (lease.ec) co_return std::nullopt;
    tcp::socket& up = *lease.stream;
    expect_within(Wait::upstream, cfg.backend.response_timeout, &up);
    auto [wec, wn] = co_await net::async_write(up, bytes, use_tuple);
    error_code ec = wec;
    beast::flat_buffer in;
    http1::Head res;
    const bool got_head = !ec && co_await read_pod_head(up, in, res, "POST", cfg, ec);
    if (!got_head) {
      stop_waiting();
      if (lease.reused && !expired(Wait::upstream)) continue;
      co_return std::nullopt;
    }
    PodAnswer answer = co_await read_pod_answer(up, in, res, cfg.affinity.max_answer_scan);
    stop_waiting();
    if (!answer.whole || res.status != 200) co_return std::nullopt;
    if (answer.reusable) ctx_.pool.release(ordinal, std::move(lease.stream));
    const auto type = res.get(http1::FieldId::content_type);
    co_return response_message(std::move(answer.payload), type && http1::starts_with_ci(*type, "text/event-stream"),
                               cfg.affinity.max_answer_scan);
  }
  co_return std::nullopt;
}

net::awaitable<bool> Connection::send_local_json(Exchange& ex, const std::string& body) {
  ex.status = 200;
  if (ctx_.draining.load(std::memory_order_relaxed)) ex.keep_alive = false;
  http::response<http::string_body> res{http::status::ok, ex.req.version() >= 11 ? 11 : 10};
  res.set(http::field::content_type, "application/json");
  res.body() = body;
  res.keep_alive(ex.keep_alive);
  res.prepare_payload();
  expect_within(Wait::write, ex.cfg->limits.write_timeout);
  auto [ec, n] = co_await http::async_write(socket_, res, use_tuple);
  stop_waiting();
  co_return !ec && ex.keep_alive;
}

}  // namespace mcpproxy
