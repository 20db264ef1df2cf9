#include "store/redis_client.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <sstream>

#include "core/telemetry/log.hpp"

namespace mcpproxy {

namespace {
class RedisCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "redis"; }
  std::string message(int ev) const override {
    switch (static_cast<RedisError>(ev)) {
      case RedisError::not_connected:
        return "redis not connected";
      case RedisError::timeout:
        return "redis command timed out";
      case RedisError::connection_lost:
        return "redis connection lost";
      case RedisError::too_many_pending:
        return "too many redis commands in flight";
      case RedisError::no_primary:
        return "no sentinel named a primary for the master name";
    }
    return "redis error";
  }
};
}  // namespace

const boost::system::error_category& redis_category() {
  static const RedisCategory category;
  return category;
}

struct RedisClient::Pending {
  explicit Pending(net::io_context& ioc) : timer(ioc) {}
  net::steady_timer timer;
  RedisReply reply;
  error_code ec;
  bool done = false;
};

RedisClient::RedisClient(net::io_context& ioc, RedisOptions options, std::string name)
    : ioc_(ioc),
      options_(std::move(options)),
      name_(std::move(name)),
      retry_(options_.backoff_max),
      watch_retry_(options_.backoff_max),
      backoff_timer_(ioc) {
  target_ = RedisEndpoint{options_.url.host, options_.url.port};
  if (options_.url.tls) {
    tls_ = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
    if (!options_.tls_ca_file.empty()) {
      tls_->load_verify_file(options_.tls_ca_file);
    } else {
      tls_->set_default_verify_paths();
    }
    tls_->set_verify_mode(options_.tls_verify ? net::ssl::verify_peer : net::ssl::verify_none);
  }
}

RedisClient::~RedisClient() = default;

void RedisClient::first_attempt_finished() {
  if (first_attempt_done_) return;
  first_attempt_done_ = true;
  if (options_.on_first_attempt) options_.on_first_attempt();
}

void RedisClient::handshake_succeeded() {
  // Logged once per outage: a connection the server drops right after its setup, again and
  // again, is one outage (its failures are logged), not a line per connection.
  if (const auto report = retry_.connected(std::chrono::steady_clock::now())) {
    log_event(spdlog::level::info, "redis connected",
              {{"client", name_},
               {"host", target_.str()},
               {"tls", options_.url.tls ? "true" : "false"},
               {"role", sentinel_mode() ? "primary (sentinel)" : "standalone"},
               {"failed_attempts", std::to_string(report->attempts)}});
  }
  misconfigured_ = false;
  if (options_.on_primary) options_.on_primary(target_);
  up_ = true;                // commands are taken from now on (before, they fail fast: Redis is not usable yet)
  first_attempt_finished();  // readiness waits for this: a record written right after start is not queued
}

RedisDiagnosis RedisClient::diagnosis() const {
  if (up_) return RedisDiagnosis{"", false, true};
  return RedisDiagnosis{retry_.detail(), misconfigured_, retry_.ever_up()};
}

tcp::socket& RedisClient::socket() { return stream_->next_layer(); }

void RedisClient::start() {
  net::co_spawn(
      ioc_, [self = shared_from_this()] { return self->run(); }, net::detached);
  if (sentinel_mode()) {
    net::co_spawn(
        ioc_, [self = shared_from_this()] { return self->watch_switches(); }, net::detached);
  }
}

void RedisClient::stop() {
  stopped_ = true;
  backoff_timer_.cancel();
  if (watch_socket_) {
    error_code ec;
    watch_socket_->close(ec);
  }
  drop_connection();
  fail_all(RedisError::connection_lost);
}

void RedisClient::drop_connection() {
  up_ = false;
  if (stream_) {
    error_code ec;
    socket().shutdown(tcp::socket::shutdown_both, ec);
    socket().close(ec);
  }
}

void RedisClient::end_connection(RedisRetryReason reason, std::string detail) {
  if (!ending_) ending_ = Failure{reason, std::move(detail), false};
  drop_connection();
}

void RedisClient::fail_all(error_code ec) {
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& p : pending) {
    if (p->done) continue;
    p->done = true;
    p->ec = ec;
    p->timer.cancel();
  }
  out_.clear();
}

net::awaitable<RedisClient::Result> RedisClient::command(std::vector<std::string> args) {
  return command_after({}, std::move(args));
}

net::awaitable<RedisClient::Result> RedisClient::command_after(std::vector<std::string> first,
                                                               std::vector<std::string> args) {
  Result result;
  if (!up_) {
    result.ec = RedisError::not_connected;
    co_return result;
  }
  if (pending_.size() + 1 >= options_.max_pending) {
    result.ec = RedisError::too_many_pending;
    co_return result;
  }
  if (!first.empty()) {
    auto dropped = std::make_shared<Pending>(ioc_);
    dropped->done = true;  // its reply is dropped when it arrives
    pending_.push_back(dropped);
    redis_encode(out_, first);
  }
  auto p = std::make_shared<Pending>(ioc_);
  pending_.push_back(p);
  redis_encode(out_, args);
  if (!write_active_) {
    write_active_ = true;
    net::co_spawn(
        ioc_, [self = shared_from_this()] { return self->write_loop(); }, net::detached);
  }
  p->timer.expires_after(options_.command_timeout);
  co_await p->timer.async_wait(use_tuple);
  if (!p->done) {
    // The reply keeps its place in the pipeline; it is dropped when it arrives. A command
    // still first in line past its deadline means the server stalled: reconnect.
    p->done = true;
    p->ec = RedisError::timeout;
    if (!pending_.empty() && pending_.front() == p) {
      end_connection(RedisRetryReason::command_timeout,
                     target_.str() + " answered no command within sessions.redis.command_timeout");
    }
  }
  result.ec = p->ec;
  result.reply = std::move(p->reply);
  co_return result;
}

net::awaitable<void> RedisClient::write_loop() {
  auto self = shared_from_this();
  const auto gen = generation_;
  while (!out_.empty() && up_ && gen == generation_) {
    writing_.clear();
    writing_.swap(out_);
    error_code ec;
    if (tls_) {
      std::tie(ec, std::ignore) = co_await net::async_write(*stream_, net::buffer(writing_), use_tuple);
    } else {
      std::tie(ec, std::ignore) = co_await net::async_write(socket(), net::buffer(writing_), use_tuple);
    }
    if (ec) {
      // (A write of a connection already replaced must not end its successor.)
      if (gen == generation_) end_connection(RedisRetryReason::connection_lost, target_.str() + ": " + ec.message());
      break;
    }
  }
  write_active_ = false;
}

net::awaitable<error_code> RedisClient::connect_once() {
  tcp::resolver resolver(ioc_);
  auto [rec, endpoints] = co_await resolver.async_resolve(target_.host, target_.port, use_tuple);
  if (rec) co_return rec;
  if (tls_) {
    stream_ = std::make_unique<ssl_stream>(ioc_, *tls_);
  } else {
    // The plain connection uses the TLS stream's lower layer only.
    static net::ssl::context unused(net::ssl::context::tls_client);
    stream_ = std::make_unique<ssl_stream>(ioc_, unused);
  }
  // The connect (and TLS handshake) deadline: the timer closes the socket.
  net::steady_timer deadline(ioc_);
  deadline.expires_after(options_.connect_timeout);
  bool timed_out = false;
  deadline.async_wait([this, &timed_out, gen = generation_](error_code ec) {
    if (!ec && gen == generation_) {
      timed_out = true;
      error_code ignored;
      socket().close(ignored);
    }
  });
  auto [cec, ep] = co_await net::async_connect(socket(), endpoints, use_tuple);
  if (!cec) socket().set_option(tcp::no_delay(true));
  if (!cec && tls_) {
    const std::string sni = options_.tls_server_name.empty() ? target_.host : options_.tls_server_name;
    SSL_set_tlsext_host_name(stream_->native_handle(), sni.c_str());
    if (options_.tls_verify) stream_->set_verify_callback(net::ssl::host_name_verification(sni));
    std::tie(cec) = co_await stream_->async_handshake(net::ssl::stream_base::client, use_tuple);
  }
  deadline.cancel();
  co_await net::post(ioc_, use_tuple);  // let the cancelled deadline handler run before `timed_out` dies
  if (timed_out) co_return make_error_code(RedisError::timeout);
  co_return cec;
}

namespace {

// Replies of a short exchange with a sentinel, up to `want` of them, into `out`.
net::awaitable<error_code> read_replies(tcp::socket& s, RedisParser& parser, std::size_t want,
                                        std::vector<RedisReply>& out) {
  std::array<char, 4096> buf{};
  while (out.size() < want) {
    auto [ec, n] = co_await s.async_read_some(net::buffer(buf), use_tuple);
    if (ec) co_return ec;
    parser.feed(std::string_view(buf.data(), n));
    while (out.size() < want) {
      auto reply = parser.next();
      if (!reply) break;
      out.push_back(std::move(*reply));
    }
    if (parser.failed()) co_return make_error_code(RedisError::connection_lost);
  }
  co_return error_code{};
}

}  // namespace

net::awaitable<SentinelAnswer> RedisClient::ask_sentinel(const RedisEndpoint& sentinel) {
  SentinelAnswer unreachable;
  unreachable.kind = SentinelAnswer::Kind::unreachable;
  tcp::resolver resolver(ioc_);
  auto [rec, endpoints] = co_await resolver.async_resolve(sentinel.host, sentinel.port, use_tuple);
  if (rec) {
    unreachable.detail = rec.message();
    co_return unreachable;
  }
  tcp::socket s(ioc_);
  // One deadline for the whole exchange: the timer closes the socket.
  net::steady_timer deadline(ioc_);
  deadline.expires_after(options_.connect_timeout + options_.command_timeout);
  bool timed_out = false;
  deadline.async_wait([&s, &timed_out](error_code ec) {
    if (!ec) {
      timed_out = true;
      error_code ignored;
      s.close(ignored);
    }
  });
  auto [ec, ep] = co_await net::async_connect(s, endpoints, use_tuple);
  std::vector<RedisReply> replies;
  std::size_t want = 0;
  if (!ec) {
    std::string out;
    if (!options_.sentinel_password.empty()) {
      redis_encode(out, {"AUTH", options_.sentinel_password});
      ++want;
    }
    redis_encode(out, {"SENTINEL", "get-master-addr-by-name", options_.sentinel_master});
    ++want;
    std::tie(ec, std::ignore) = co_await net::async_write(s, net::buffer(out), use_tuple);
  }
  RedisParser parser(options_.reply_limits);
  if (!ec) ec = co_await read_replies(s, parser, want, replies);
  deadline.cancel();
  co_await net::post(ioc_, use_tuple);  // the cancelled handler runs before its captures die
  if (parser.failed()) {
    SentinelAnswer garbled;
    garbled.kind = SentinelAnswer::Kind::not_a_sentinel;
    garbled.detail = "its answer is not RESP: " + parser.error();
    co_return garbled;
  }
  if (timed_out || ec) {
    unreachable.detail = timed_out ? "no answer within sessions.redis.connect_timeout + command_timeout" : ec.message();
    co_return unreachable;
  }
  co_return read_sentinel_answer(replies, !options_.sentinel_password.empty());
}

net::awaitable<SentinelVerdict> RedisClient::discover() {
  std::vector<std::pair<std::string, SentinelAnswer>> answers;
  for (const RedisEndpoint& sentinel : options_.sentinels) {
    SentinelAnswer answer = co_await ask_sentinel(sentinel);
    if (answer.kind != SentinelAnswer::Kind::primary) {
      answers.emplace_back(sentinel.str(), std::move(answer));
      continue;
    }
    RedisEndpoint primary{std::move(answer.host), std::move(answer.port)};
    if (primary != target_ && !target_.host.empty() && target_.host != options_.url.host) {
      log_event(spdlog::level::warn, "sentinel names a new redis primary",
                {{"client", name_}, {"was", target_.str()}, {"now", primary.str()}});
    }
    target_ = std::move(primary);
    co_return SentinelVerdict{};
  }
  co_return judge_sentinels(answers, options_.sentinel_master);
}

net::awaitable<void> RedisClient::watch_switches() {
  auto self = shared_from_this();
  net::steady_timer pause(ioc_);
  for (std::size_t i = 0; !stopped_; ++i) {
    co_await watch_one(options_.sentinels[i % options_.sentinels.size()]);
    if (stopped_) break;
    // Then the next sentinel, after a wait that grows while none keeps a subscription.
    pause.expires_after(watch_retry_.paced(std::chrono::steady_clock::now(), jitter()));
    co_await pause.async_wait(use_tuple);
  }
}

net::awaitable<void> RedisClient::watch_one(const RedisEndpoint& sentinel) {
  tcp::resolver resolver(ioc_);
  auto [rec, endpoints] = co_await resolver.async_resolve(sentinel.host, sentinel.port, use_tuple);
  if (rec) co_return;
  watch_socket_ = std::make_unique<tcp::socket>(ioc_);
  tcp::socket& s = *watch_socket_;
  auto [ec, ep] = co_await net::async_connect(s, endpoints, use_tuple);
  if (ec) co_return;
  std::string out;
  if (!options_.sentinel_password.empty()) redis_encode(out, {"AUTH", options_.sentinel_password});
  redis_encode(out, {"SUBSCRIBE", "+switch-master"});
  std::tie(ec, std::ignore) = co_await net::async_write(s, net::buffer(out), use_tuple);
  if (!ec) watch_retry_.connected(std::chrono::steady_clock::now());
  RedisParser parser(options_.reply_limits);
  while (!ec && !stopped_) {
    std::vector<RedisReply> replies;
    ec = co_await read_replies(s, parser, 1, replies);
    if (ec) break;
    // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
    const RedisReply& m = replies.front();
    if (m.type != RedisReply::Type::array || m.elements.size() != 3 || m.elements[0].str != "message") continue;
    std::istringstream words(m.elements[2].str);
    std::string name;
    std::string old_host;
    std::string old_port;
    RedisEndpoint now;
    words >> name >> old_host >> old_port >> now.host >> now.port;
    if (name != options_.sentinel_master || now == target_) continue;
    log_event(spdlog::level::warn, "sentinel switched the redis primary",
              {{"client", name_}, {"was", target_.str()}, {"now", now.str()}});
    // run() asks the sentinels and connects to the new primary now, not after the backoff
    // the outage before the switch has grown.
    end_connection(RedisRetryReason::not_primary, "sentinel switched the primary to " + now.str());
    retry_.retry_now();
    backoff_timer_.cancel();
  }
}

net::awaitable<error_code> RedisClient::handshake() {
  // AUTH and SELECT go first on the new connection, before any queued command; in sentinel
  // mode ROLE last: a server that is not the primary (any more) is not used.
  std::string hello;
  handshake_left_ = 0;
  const auto add = [&](const std::vector<std::string>& args) {
    redis_encode(hello, args);
    ++handshake_left_;
  };
  if (!options_.password.empty()) {
    if (!options_.url.username.empty()) {
      add({"AUTH", options_.url.username, options_.password});
    } else {
      add({"AUTH", options_.password});
    }
  }
  if (options_.url.db != 0) add({"SELECT", std::to_string(options_.url.db)});
  add({"PING"});
  if (sentinel_mode()) add({"ROLE"});
  error_code ec;
  if (tls_) {
    std::tie(ec, std::ignore) = co_await net::async_write(*stream_, net::buffer(hello), use_tuple);
  } else {
    std::tie(ec, std::ignore) = co_await net::async_write(socket(), net::buffer(hello), use_tuple);
  }
  if (ec) co_return ec;
  // The handshake replies are read with the same parser, then the loop takes over.
  for (std::size_t i = 0; i < handshake_left_; ++i) pending_.push_front(std::make_shared<Pending>(ioc_));
  co_return co_await read_loop();
}

net::awaitable<RedisClient::Failure> RedisClient::attempt() {
  ending_.reset();
  if (sentinel_mode()) {
    SentinelVerdict verdict = co_await discover();
    if (!verdict.reason.empty()) co_return Failure{RedisRetryReason::sentinel, verdict.reason, verdict.misconfigured};
  }
  if (const error_code ec = co_await connect_once()) {
    co_return Failure{RedisRetryReason::connect_failed, target_.str() + ": " + ec.message(), false};
  }
  const error_code ec = co_await handshake();
  if (ending_) co_return *ending_;  // a reason given where the connection was ended
  co_return Failure{RedisRetryReason::connection_lost, target_.str() + ": " + ec.message(), false};
}

duration RedisClient::note_failure(const Failure& f) {
  misconfigured_ = f.misconfigured;
  if (options_.on_retry) options_.on_retry(f.reason);
  const auto next = retry_.failed(f.detail, std::chrono::steady_clock::now(), jitter());
  if (next.report) log_retry(*next.report, "redis", name_, f.reason, f.detail, f.misconfigured, next.wait);
  return next.wait;
}

net::awaitable<void> RedisClient::run() {
  auto self = shared_from_this();
  while (!stopped_) {
    ++generation_;
    const Failure failure = co_await attempt();
    drop_connection();
    fail_all(RedisError::connection_lost);
    if (stopped_) break;
    const duration wait = note_failure(failure);
    first_attempt_finished();  // after note_failure: readiness sees the diagnosis of this attempt
    backoff_timer_.expires_after(wait);
    co_await backoff_timer_.async_wait(use_tuple);
  }
}

bool RedisClient::take_reply(RedisReply reply) {
  if (pending_.empty()) return false;  // a reply nobody asked for
  auto p = pending_.front();
  pending_.pop_front();
  // The first replies answer AUTH/SELECT/PING(/ROLE): an error there ends the connection.
  if (handshake_left_ > 0) {
    --handshake_left_;
    if (reply.is_error()) {
      end_connection(RedisRetryReason::setup_refused,
                     target_.str() + " refused the connection setup (AUTH/SELECT/PING): " + reply.str);
      return false;
    }
    if (handshake_left_ == 0 && sentinel_mode() &&
        (reply.type != RedisReply::Type::array || reply.elements.empty() || reply.elements[0].str != "master")) {
      end_connection(RedisRetryReason::not_primary,
                     "the address sentinel named, " + target_.str() + ", is not the primary (yet)");
      return false;
    }
    if (handshake_left_ == 0) handshake_succeeded();
    return true;
  }
  // A primary that was demoted answers writes with READONLY: the client asks the
  // sentinels again (the command gets the error; its caller queues the record).
  const bool demoted = sentinel_mode() && reply.is_error() && reply.str.starts_with("READONLY");
  if (!p->done) {
    p->done = true;
    p->reply = std::move(reply);
    p->timer.cancel();
  }  // else it timed out earlier: its reply is dropped
  if (demoted) end_connection(RedisRetryReason::not_primary, target_.str() + " was demoted (READONLY)");
  return !demoted;
}

net::awaitable<error_code> RedisClient::read_loop() {
  RedisParser parser(options_.reply_limits);
  std::array<char, 16384> buf{};
  for (;;) {
    error_code ec;
    std::size_t n = 0;
    if (tls_) {
      std::tie(ec, n) = co_await stream_->async_read_some(net::buffer(buf), use_tuple);
    } else {
      std::tie(ec, n) = co_await socket().async_read_some(net::buffer(buf), use_tuple);
    }
    if (ec) co_return ec;
    parser.feed(std::string_view(buf.data(), n));
    while (auto reply = parser.next()) {
      if (!take_reply(std::move(*reply))) co_return make_error_code(RedisError::connection_lost);
    }
    if (parser.failed()) {
      if (options_.on_protocol_error) options_.on_protocol_error();
      end_connection(RedisRetryReason::protocol_error, "protocol error from " + target_.str() + ": " + parser.error());
      co_return make_error_code(RedisError::connection_lost);
    }
  }
}

}  // namespace mcpproxy
