// Stage: a sessionless tasks/list, asked of every pod and answered merged (task_list_fanout.hpp).
#include "path/task_list_fanout.hpp"

#include <boost/beast/http/status.hpp>

#include "core/http/http_rules.hpp"
#include "core/http/proxy_headers.hpp"
#include "core/mcp/task_list.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"
#include "path/connection_context.hpp"
#include "path/task_routing.hpp"
#include "path/upstream_exchange.hpp"

namespace mcpproxy {

net::awaitable<Outcome> TaskListFanout::run(Exchange& ex, const BoundCaller& caller) {
  const Config& cfg = *ex.cfg;
  const JsonRpcInfo info = inspect_jsonrpc(ex.req.body);
  const auto pods = pods_to_ask(list_cursor_of(ex.req.body), cfg.backend.replicas);
  if (!pods) co_return co_await send_json(ex, jsonrpc_error_body(-32602, "Invalid cursor", info.id_json));
  std::vector<PodListAnswer> answers;
  for (const auto& [ordinal, cursor] : *pods) {
    PodListAnswer a;
    a.ordinal = ordinal;
    if (const auto body = request_for_pod(ex.req.body, cursor)) a.message = co_await ask_pod(ex, ordinal, *body);
    answers.push_back(std::move(a));
    if (client_.client_gone()) co_return Outcome::client_gone();
  }
  if (caller.keys == nullptr) co_return co_await send_json(ex, merged_task_list(answers, info.id_json));
  const std::vector<std::string> ids = listed_task_ids(answers);
  const auto own = co_await callers_tasks(ids, caller, cfg, ctx_.tasks);
  co_return co_await send_json(ex, merged_task_list(answers, info.id_json, &own));
}

net::awaitable<std::optional<std::string>> TaskListFanout::ask_pod(const Exchange& ex, int ordinal,
                                                                   const std::string& body) {
  const Config& cfg = *ex.cfg;
  UpstreamExchange exchange(ctx_, client_);
  UpstreamHeadEdits edits;
  edits.pod_authority = ctx_.pool.address(ordinal).authority;
  edits.rewrite_host = cfg.backend.rewrite_host;
  edits.trust_forwarded = cfg.trust_forwarded_headers;
  edits.peer_ip = client_.peer_ip();
  edits.body_size = body.size();
  if (ex.request_id.generated()) edits.added_request_id = ex.request_id.view();
  std::string& head = exchange.request_head();
  head.resize(write_upstream_head(head, ex.req.head, edits));  // `head` may have been longer
  // Its body read to its end within affinity.max_answer_scan.
  UpstreamExchange::OwnAnswer answer = co_await exchange.run_own(
      ordinal, nullptr, "POST", body, cfg, cfg.backend.response_timeout, cfg.affinity.max_answer_scan, true);
  if (answer.result != UpstreamExchange::Result::head || !answer.whole || answer.status != 200) co_return std::nullopt;
  if (answer.reusable) exchange.release();
  co_return response_message(std::move(answer.body), answer.sse, cfg.affinity.max_answer_scan);
}

net::awaitable<Outcome> TaskListFanout::send_json(Exchange& ex, const std::string& body) {
  const bool keep = client_keep_alive(ex.keep_alive, ctx_.draining.load(std::memory_order_relaxed), false);
  std::string bytes;
  LocalReplyHead head;
  head.status = 200;
  head.reason = beast::http::obsolete_reason(beast::http::status::ok);
  head.http11 = ex.req.version() >= 11;
  head.keep_alive = keep;
  head.body_size = body.size();
  write_local_reply_head(bytes, head);
  bytes += body;
  const bool written = co_await client_.write(bytes, ex.cfg->limits.write_timeout);
  co_return Outcome::local_reply(200, written && keep);
}

}  // namespace mcpproxy
