// The merge of a fanned-out subscriptions/listen: its legs and its client stream
// (listen_merge.hpp).
#include "path/listen_merge.hpp"

#include <array>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <limits>
#include <map>

#include "core/http/http1.hpp"
#include "core/http/proxy_headers.hpp"
#include "core/mcp/listen_events.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/io_ring.hpp"
#include "io/upstream.hpp"

namespace mcpproxy {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds kFirstBackoff{100};
// How often the merge looks at the drain flag and the config when nothing happens.
constexpr std::chrono::milliseconds kTick{250};
// A pod's answer that is not a stream (an error) is read whole, up to this, to be relayed.
constexpr std::size_t kMaxAnswer = 64U * 1024;

// The worker thread's read buffer for legs: a leg reads only once its socket is readable and
// hands what it read on before it waits again, so one buffer serves every leg of the thread.
std::array<char, 16384>& scratch() {
  thread_local std::array<char, 16384> buffer{};
  return buffer;
}

void chunk(std::string& out, std::string_view payload, bool chunked) {
  if (payload.empty()) return;
  if (chunked) {
    std::array<char, 20> line{};
    const int n = std::snprintf(line.data(), line.size(), "%zx\r\n", payload.size());
    out.append(line.data(), static_cast<std::size_t>(n));
  }
  out.append(payload);
  if (chunked) out.append("\r\n");
}

// One leg: the listen on one pod, opened again while it is wanted.
struct Leg {
  Leg(int o, const net::any_io_executor& ex) : ordinal(o), backoff_timer(ex) {}
  int ordinal;
  bool wanted = true;
  bool held = false;        // counted in legs_held (subscriptions.max_legs)
  bool acked = false;       // this stream's pod acknowledged the listen
  bool ever_acked = false;  // some stream of this leg did: the next is a re-open
  bool tried = false;       // a first attempt was made
  bool final = false;       // the pod honours nothing of the filter: not opened again
  std::unique_ptr<tcp::socket> socket;
  std::size_t queued = 0;   // bytes of its events waiting for the client
  std::string client_head;  // the client's head, from this pod's answer
  net::steady_timer backoff_timer;
  std::chrono::milliseconds backoff = kFirstBackoff;
};

// How one stream of a leg ended.
enum class LegEnd : std::uint8_t { failed, ended, answered, stopped };

class Fanout : public std::enable_shared_from_this<Fanout> {
 public:
  Fanout(ConnectionContext& ctx, ClientLink& client, ListenRequest req, std::optional<std::vector<int>> pods)
      : ctx_(ctx),
        client_(client),
        executor_(client.socket().get_executor()),
        raw_head_(std::move(req.head)),
        body_(std::move(req.body)),
        peer_ip_(client.peer_ip()),
        added_request_id_(std::move(req.added_request_id)),
        id_json_(std::move(req.id_json)),
        chunked_(req.client_http11),
        http11_(req.client_http11),
        pods_(std::move(pods)),
        wake_(executor_) {
    http1::parse_request(raw_head_, raw_head_.size() + 1, head_);
    ctx_.metrics.listen.listens.fetch_add(1, std::memory_order_relaxed);
    ctx_.metrics.sse_streams.fetch_add(1, std::memory_order_relaxed);
    ctx_.metrics.affinity.listen_streams.fetch_add(1, std::memory_order_relaxed);
  }
  ~Fanout() {
    ctx_.metrics.listen.listens.fetch_sub(1, std::memory_order_relaxed);
    ctx_.metrics.sse_streams.fetch_sub(1, std::memory_order_relaxed);
    ctx_.metrics.affinity.listen_streams.fetch_sub(1, std::memory_order_relaxed);
    drop_queue();
  }
  Fanout(const Fanout&) = delete;
  Fanout& operator=(const Fanout&) = delete;

  net::awaitable<ListenEnd> run();

 private:
  struct Queued {
    std::string bytes;
    std::shared_ptr<Leg> leg;  // null: the proxy's own event
  };
  // What the merge does next, decided without waiting.
  enum class Step : std::uint8_t { wait, write, end };
  Step next_step(ListenEnd& result);

  void reconcile();
  void close_leg(Leg& leg);
  void close_all_legs();
  void poke() {
    dirty_ = true;
    wake_.cancel();
  }
  // Queues an event of `leg` (null: the proxy's own) for the client, within the leg's bound.
  void queue(std::string bytes, const std::shared_ptr<Leg>& leg);
  // Drops the first `count` queued events (written, or given up): every one by default.
  void drop_queue(std::size_t count = std::numeric_limits<std::size_t>::max());
  net::awaitable<bool> write_queued(bool last);
  net::awaitable<void> watch_client();

  net::awaitable<void> leg_loop(std::shared_ptr<Leg> leg);
  net::awaitable<LegEnd> open_leg(const std::shared_ptr<Leg>& leg);
  net::awaitable<LegEnd> read_leg_head(const std::shared_ptr<Leg>& leg, std::string& in, http1::Head& res);
  net::awaitable<LegEnd> take_answer(const std::shared_ptr<Leg>& leg, std::string& in, const http1::Head& res);
  net::awaitable<LegEnd> pump_leg(const std::shared_ptr<Leg>& leg, http1::BodyFraming& body, std::string rest);
  // A piece of a leg's payload: its events handled; false when the leg's stream ends here.
  bool on_payload(const std::shared_ptr<Leg>& leg, SseEventSplitter& events, std::string_view data);
  bool on_event(const std::shared_ptr<Leg>& leg, std::string_view event);
  void on_ack(const std::shared_ptr<Leg>& leg, std::string_view event, const ListenEvent& e);
  void leg_stream_ended(Leg& leg);
  bool stopping(const Leg& leg) const { return ended_ || !leg.wanted; }

  ConnectionContext& ctx_;
  ClientLink& client_;  // used by the merge loop only: legs may outlive the connection
  net::any_io_executor executor_;
  std::string raw_head_;
  std::string body_;
  std::string peer_ip_;
  std::string added_request_id_;
  std::string id_json_;
  http1::Head head_;
  bool chunked_;
  bool http11_;
  std::optional<std::vector<int>> pods_;
  std::shared_ptr<const Config> cfg_seen_;
  std::map<int, std::shared_ptr<Leg>> legs_;
  std::deque<Queued> queue_;
  std::string out_;
  net::steady_timer wake_;
  Clock::time_point last_write_ = Clock::now();
  std::string client_head_;
  std::optional<std::string> answer_;  // a pod's answer that is not a stream, for the client
  unsigned answer_status_ = 0;
  std::size_t first_failures_ = 0;  // legs whose first attempt failed before any acknowledgement
  bool acked_ = false;              // the client has its acknowledgement (queued or written)
  bool head_sent_ = false;
  bool honors_nothing_ = false;
  bool dirty_ = false;
  bool client_gone_ = false;
  bool too_slow_ = false;
  bool over_budget_ = false;  // a leg was refused by subscriptions.max_legs before any acknowledgement
  bool finishing_ = false;    // the last events are queued: written, then the stream ends
  bool ended_ = false;
};

void Fanout::reconcile() {
  cfg_seen_ = ctx_.config;
  const std::vector<int> want = listen_legs_wanted(cfg_seen_->backend.replicas, pods_);
  for (auto it = legs_.begin(); it != legs_.end();) {
    if (std::find(want.begin(), want.end(), it->first) == want.end()) {
      close_leg(*it->second);
      it = legs_.erase(it);
    } else {
      ++it;
    }
  }
  for (int o : want) {
    if (legs_.contains(o)) continue;
    auto leg = std::make_shared<Leg>(o, executor_);
    legs_.emplace(o, leg);
    net::co_spawn(executor_, leg_loop(leg), net::detached);
  }
}

void Fanout::close_leg(Leg& leg) {
  leg.wanted = false;
  leg.backoff_timer.cancel();
  if (leg.socket) close_socket(*leg.socket);
}

void Fanout::close_all_legs() {
  // In ordinal order: the map's.
  for (auto& [o, leg] : legs_) close_leg(*leg);
  legs_.clear();
}

void Fanout::queue(std::string bytes, const std::shared_ptr<Leg>& leg) {
  const SubscriptionsConfig& s = cfg_seen_->subscriptions;
  const LegRoom room = leg ? leg_room(leg->queued, bytes.size(), s.max_leg_buffer, s.slow_client) : LegRoom::queue;
  if (room == LegRoom::drop) {
    ctx_.metrics.listen.count_drop(ListenDrop::slow_client_dropped);
    return;
  }
  if (room == LegRoom::close) {
    if (!too_slow_) ctx_.metrics.listen.count_drop(ListenDrop::slow_client_closed);
    too_slow_ = true;
    poke();
    return;
  }
  if (leg) leg->queued += bytes.size();
  ctx_.metrics.listen.buffered_bytes.fetch_add(static_cast<std::int64_t>(bytes.size()), std::memory_order_relaxed);
  queue_.push_back(Queued{std::move(bytes), leg});
  poke();
}

void Fanout::drop_queue(std::size_t count) {
  count = std::min(count, queue_.size());
  for (std::size_t i = 0; i < count; ++i) {
    const Queued& q = queue_.front();
    if (q.leg) q.leg->queued -= q.bytes.size();
    ctx_.metrics.listen.buffered_bytes.fetch_sub(static_cast<std::int64_t>(q.bytes.size()), std::memory_order_relaxed);
    queue_.pop_front();
  }
}

net::awaitable<bool> Fanout::write_queued(bool last) {
  // One write for everything queued: the head first, then the events as one chunk.
  out_.clear();
  if (!head_sent_) out_.append(client_head_);
  // The legs go on queueing while the write waits: only what is written here leaves the queue.
  const std::size_t written = queue_.size();
  std::string payload;
  for (const Queued& q : queue_) payload.append(q.bytes);
  chunk(out_, payload, chunked_);
  if (last && chunked_) out_.append("0\r\n\r\n");
  // A client that does not take the bytes within limits.write_timeout is closed (the
  // connection's one deadline, on the worker's tick).
  client_.expect_within(ClientLink::Wait::write, cfg_seen_->limits.write_timeout);
  const std::array<net::const_buffer, 1> bytes = {net::buffer(out_)};
  auto [ec, n] = co_await write_all(ctx_.ring, client_.socket(), bytes);
  client_.stop_waiting();
  drop_queue(written);
  head_sent_ = true;
  last_write_ = Clock::now();
  if (out_.capacity() > 64U * 1024) out_ = std::string();
  co_return !ec;
}

net::awaitable<void> Fanout::watch_client() {
  // The client sends nothing more on this connection while its listen lasts: a read that
  // ends says it went (or cancelled: closing the stream is how a client cancels a listen).
  auto self = shared_from_this();
  std::array<char, 64> sink{};
  for (;;) {
    auto [ec, n] = co_await read_some(ctx_.ring, client_.socket(), net::buffer(sink));
    if (ec || ended_) break;
  }
  client_gone_ = true;
  poke();
}

Fanout::Step Fanout::next_step(ListenEnd& result) {
  if (client_gone_) return Step::end;
  if (answer_ && !acked_) {
    result.kind = ListenEnd::Kind::answered;
    result.status = answer_status_;
    return Step::end;
  }
  if (!acked_ && (legs_.empty() || first_failures_ >= legs_.size())) {
    // No pod could be asked: the client gets the answer a proxied request would.
    // (Every leg refused by subscriptions.max_legs: the proxy's own limit, retry.)
    result.kind = ListenEnd::Kind::refused;
    if (legs_.empty()) {
      result.reply = kPodUnavailable;
    } else {
      result.reply = over_budget_ ? kProxyOverloaded : Refusal{502, -32603, "MCP server unreachable"};
    }
    return Step::end;
  }
  if (too_slow_ && !finishing_) {
    // Its queue is dropped; the client learns why, if it reads on.
    drop_queue();
    close_all_legs();
    queue(listen_too_slow_event(id_json_), nullptr);
    finishing_ = true;
  }
  if (ctx_.draining.load(std::memory_order_relaxed) && acked_ && !finishing_) {
    // The legs first, then the client's stream ends with the listen's graceful result.
    close_all_legs();
    queue(listen_complete_event(id_json_), nullptr);
    finishing_ = true;
  }
  if (finishing_ || (acked_ && !queue_.empty())) return Step::write;
  if (ctx_.config.get() != cfg_seen_.get()) reconcile();
  if (acked_ && Clock::now() - last_write_ >= cfg_seen_->subscriptions.keepalive) {
    queue(std::string(kKeepAliveEvent), nullptr);
    return Step::write;
  }
  return Step::wait;
}

net::awaitable<ListenEnd> Fanout::run() {
  ListenEnd result;
  reconcile();
  net::co_spawn(executor_, watch_client(), net::detached);
  for (;;) {
    const Step step = next_step(result);
    if (step == Step::end) break;
    if (step == Step::write) {
      const bool last = finishing_;
      if (!co_await write_queued(last)) client_gone_ = true;
      if (last) break;
      continue;
    }
    if (dirty_) {
      dirty_ = false;
      continue;
    }
    const auto tick = Clock::now() + kTick;
    wake_.expires_at(acked_ ? std::min(tick, last_write_ + cfg_seen_->subscriptions.keepalive) : tick);
    co_await wake_.async_wait(use_tuple);
    dirty_ = false;
  }
  ended_ = true;
  close_all_legs();
  if (answer_ && !acked_ && !client_gone_) {
    client_.expect_within(ClientLink::Wait::write, cfg_seen_->limits.write_timeout);
    const std::array<net::const_buffer, 1> bytes = {net::buffer(*answer_)};
    co_await write_all(ctx_.ring, client_.socket(), bytes);
    client_.stop_waiting();
  }
  if (!acked_ && !answer_ && result.kind != ListenEnd::Kind::refused) {
    result.kind = ListenEnd::Kind::client_gone;  // the client left first
    result.status = 499;
  }
  // The watch's read ends here (the connection ends with the listen; a reply still owed
  // goes out on its write side).
  error_code ignored;
  client_.socket().shutdown(tcp::socket::shutdown_receive, ignored);
  co_return result;
}

// --- legs

net::awaitable<void> Fanout::leg_loop(std::shared_ptr<Leg> leg) {
  auto self = shared_from_this();
  while (!stopping(*leg) && !leg->final) {
    const LegEnd end = co_await open_leg(leg);
    const bool first = !leg->tried;
    leg->tried = true;
    leg_stream_ended(*leg);
    if (end == LegEnd::answered || stopping(*leg)) break;
    if (end == LegEnd::failed && first && !acked_) {
      ++first_failures_;
      poke();
    }
    // Opened again after a pause, longer each time it fails in a row.
    leg->backoff_timer.expires_after(leg->backoff);
    co_await leg->backoff_timer.async_wait(use_tuple);
    leg->backoff = std::min(leg->backoff * 2, cfg_seen_->subscriptions.reopen_backoff_max);
  }
}

void Fanout::leg_stream_ended(Leg& leg) {
  if (leg.acked) ctx_.metrics.listen.legs_open.fetch_sub(1, std::memory_order_relaxed);
  leg.acked = false;
  if (leg.held) ctx_.metrics.listen.legs_held.fetch_sub(1, std::memory_order_relaxed);
  leg.held = false;
  if (leg.socket) close_socket(*leg.socket);
  leg.socket.reset();
}

net::awaitable<LegEnd> Fanout::open_leg(const std::shared_ptr<Leg>& leg) {
  const auto cfg = cfg_seen_;
  if (ctx_.metrics.listen.legs_held.fetch_add(1, std::memory_order_relaxed) >=
      static_cast<std::int64_t>(cfg->subscriptions.max_legs)) {
    ctx_.metrics.listen.legs_held.fetch_sub(1, std::memory_order_relaxed);
    ctx_.metrics.listen.count_drop(acked_ ? ListenDrop::leg_limit : ListenDrop::listen_refused);
    if (!acked_) over_budget_ = true;
    co_return LegEnd::failed;
  }
  leg->held = true;
  auto lease = co_await ctx_.pool.connect(leg->ordinal);
  if (stopping(*leg)) co_return LegEnd::stopped;
  if (lease.ec) co_return LegEnd::failed;
  leg->socket = std::move(lease.stream);
  UpstreamHeadEdits edits;
  edits.pod_authority = ctx_.pool.address(leg->ordinal).authority;
  edits.rewrite_host = cfg->backend.rewrite_host;
  edits.trust_forwarded = cfg->trust_forwarded_headers;
  edits.peer_ip = peer_ip_;
  edits.body_size = body_.size();
  edits.added_request_id = added_request_id_;
  std::string head;
  head.resize(write_upstream_head(head, head_, edits));
  const std::array<net::const_buffer, 2> request = {net::buffer(head), net::buffer(body_)};
  auto [wec, wn] = co_await write_all(ctx_.ring, *leg->socket, request);
  if (stopping(*leg)) co_return LegEnd::stopped;
  if (wec) co_return LegEnd::failed;
  error_code ignored;
  leg->socket->non_blocking(true, ignored);
  std::string in;
  http1::Head res;
  const LegEnd head_end = co_await read_leg_head(leg, in, res);
  if (head_end != LegEnd::ended) co_return head_end;
  const auto type = res.get(http1::FieldId::content_type);
  if (res.status != 200 || !type || !http1::starts_with_ci(*type, "text/event-stream")) {
    co_return co_await take_answer(leg, in, res);
  }
  ClientHeadEdits client;
  client.http11 = http11_;
  client.keep_alive = false;  // the connection ends with the listen
  client.chunked = chunked_;
  leg->client_head.resize(write_client_head(leg->client_head, res, client));
  http1::BodyFraming body(res);
  co_return co_await pump_leg(leg, body, in.substr(res.size));
}

net::awaitable<LegEnd> Fanout::read_leg_head(const std::shared_ptr<Leg>& leg, std::string& in, http1::Head& res) {
  // `ended` here: the head is in `res` (its views into `in`).
  const std::size_t limit = cfg_seen_->backend.max_response_header_size;
  for (;;) {
    const auto st = http1::parse_response(in, limit, "POST", res);
    if (st == http1::Status::complete && res.status >= 100 && res.status < 200 && res.status != 101) {
      in.erase(0, res.size);  // an interim answer: not relayed
      continue;
    }
    if (st == http1::Status::complete && res.status != 101) co_return LegEnd::ended;
    if (st != http1::Status::need_more) co_return LegEnd::failed;
    auto [ec] = co_await leg->socket->async_wait(tcp::socket::wait_read, use_tuple);
    if (stopping(*leg)) co_return LegEnd::stopped;
    if (ec) co_return LegEnd::failed;
    error_code rec;
    const std::size_t n = leg->socket->read_some(net::buffer(scratch()), rec);
    if (rec == net::error::would_block) continue;
    if (rec) co_return LegEnd::failed;
    in.append(scratch().data(), n);
  }
}

net::awaitable<LegEnd> Fanout::take_answer(const std::shared_ptr<Leg>& leg, std::string& in, const http1::Head& res) {
  // A pod that answers the listen with something else than a stream (an error, a refusal):
  // the first such answer is the client's when no pod has acknowledged the listen; a later
  // one is a leg that failed.
  if (acked_ || answer_) co_return LegEnd::failed;
  http1::BodyFraming body(res);
  std::string payload;
  std::string rest = in.substr(res.size);
  for (;;) {
    if (!rest.empty()) payload.append(rest.data(), body.take(rest.data(), rest.size()));
    rest.clear();
    if (body.done || body.error || payload.size() > kMaxAnswer) break;
    auto [ec] = co_await leg->socket->async_wait(tcp::socket::wait_read, use_tuple);
    if (stopping(*leg) || ec) co_return LegEnd::stopped;
    error_code rec;
    const std::size_t n = leg->socket->read_some(net::buffer(scratch()), rec);
    if (rec == net::error::would_block) continue;
    if (rec == net::error::eof && body.framing == http1::Framing::close) {
      body.done = true;
      break;
    }
    if (rec) co_return LegEnd::failed;
    rest.assign(scratch().data(), n);
  }
  if (!body.done || acked_ || answer_) co_return LegEnd::failed;
  ClientHeadEdits client;
  client.http11 = http11_;
  client.keep_alive = false;
  client.chunked = body.framing != http1::Framing::length && body.framing != http1::Framing::none && http11_;
  std::string answer;
  answer.resize(write_client_head(answer, res, client));
  chunk(answer, payload, client.chunked);
  if (client.chunked) answer.append("0\r\n\r\n");
  answer_ = std::move(answer);
  answer_status_ = res.status;
  poke();
  co_return LegEnd::answered;
}

net::awaitable<LegEnd> Fanout::pump_leg(const std::shared_ptr<Leg>& leg, http1::BodyFraming& body, std::string rest) {
  SseEventSplitter events(cfg_seen_->subscriptions.max_leg_buffer);
  if (!rest.empty()) {
    const std::size_t n = body.take(rest.data(), rest.size());
    if (body.error || !on_payload(leg, events, std::string_view(rest.data(), n))) co_return LegEnd::ended;
  }
  while (!body.done) {
    auto [ec] = co_await leg->socket->async_wait(tcp::socket::wait_read, use_tuple);
    if (stopping(*leg)) co_return LegEnd::stopped;
    if (ec) co_return LegEnd::failed;
    error_code rec;
    char* const bytes = scratch().data();
    const std::size_t n = leg->socket->read_some(net::buffer(scratch()), rec);
    if (rec == net::error::would_block) continue;
    if (rec) co_return LegEnd::ended;  // the pod's stream ended: a restart, a drain
    const std::size_t payload = body.take(bytes, n);
    if (body.error) co_return LegEnd::failed;
    if (!on_payload(leg, events, std::string_view(bytes, payload))) co_return LegEnd::ended;
  }
  co_return LegEnd::ended;
}

bool Fanout::on_payload(const std::shared_ptr<Leg>& leg, SseEventSplitter& events, std::string_view data) {
  std::vector<std::string> complete;
  if (!events.feed(data, complete)) {
    ctx_.metrics.listen.count_drop(ListenDrop::unreadable);
    return false;
  }
  for (const std::string& e : complete) {
    if (!on_event(leg, e)) return false;
  }
  return true;
}

bool Fanout::on_event(const std::shared_ptr<Leg>& leg, std::string_view event) {
  const ListenEvent e = classify_listen_event(event);
  switch (merge_action(e.kind, MergeState{acked_, finishing_, honors_nothing_})) {
    case MergeAction::ignore:
      return true;
    case MergeAction::first_ack:
    case MergeAction::leg_ack:
      on_ack(leg, event, e);
      return true;
    case MergeAction::forward:
      ctx_.metrics.listen.merged.fetch_add(1, std::memory_order_relaxed);
      queue(client_event(event), leg);
      return true;
    case MergeAction::end_listen:
      queue(client_event(event), nullptr);
      finishing_ = true;
      return false;
    case MergeAction::end_leg:
      return false;
  }
  return true;
}

void Fanout::on_ack(const std::shared_ptr<Leg>& leg, std::string_view event, const ListenEvent& e) {
  if (!leg->acked) ctx_.metrics.listen.legs_open.fetch_add(1, std::memory_order_relaxed);
  leg->acked = true;
  if (leg->ever_acked) ctx_.metrics.listen.reopened.fetch_add(1, std::memory_order_relaxed);
  leg->ever_acked = true;
  leg->backoff = kFirstBackoff;
  const bool nothing = ack_honors_nothing(e.data);
  if (nothing) leg->final = true;
  if (acked_) return;
  acked_ = true;
  honors_nothing_ = nothing;
  client_head_ = std::move(leg->client_head);
  queue(client_event(event), nullptr);
}

}  // namespace

net::awaitable<ListenEnd> merge_listen(ConnectionContext& ctx, ClientLink& client, ListenRequest req,
                                       std::optional<std::vector<int>> pods) {
  auto fanout = std::make_shared<Fanout>(ctx, client, std::move(req), std::move(pods));
  co_return co_await fanout->run();
}

}  // namespace mcpproxy
