#include "mcpproxy/redis_client.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "mcpproxy/log.hpp"

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
    : ioc_(ioc), options_(std::move(options)), name_(std::move(name)), backoff_timer_(ioc) {
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
  log_event(spdlog::level::info, "redis connected",
            {{"client", name_},
             {"host", options_.url.host + ":" + options_.url.port},
             {"tls", options_.url.tls ? "true" : "false"}});
  up_ = true;                // commands are taken from now on (before, they fail fast: Redis is not usable yet)
  first_attempt_finished();  // readiness waits for this: a record written right after start is not queued
  backoff_ = duration{100};
  last_error_.clear();
  suppressed_ = 0;
}

tcp::socket& RedisClient::socket() { return stream_->next_layer(); }

void RedisClient::start() {
  net::co_spawn(
      ioc_, [self = shared_from_this()] { return self->run(); }, net::detached);
}

void RedisClient::stop() {
  stopped_ = true;
  backoff_timer_.cancel();
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
  Result result;
  if (!up_) {
    result.ec = RedisError::not_connected;
    co_return result;
  }
  if (pending_.size() >= options_.max_pending) {
    result.ec = RedisError::too_many_pending;
    co_return result;
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
      log_event(spdlog::level::warn, "redis command timed out; reconnecting", {{"client", name_}});
      drop_connection();
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
      drop_connection();
      break;
    }
  }
  write_active_ = false;
}

net::awaitable<error_code> RedisClient::connect_once() {
  tcp::resolver resolver(ioc_);
  auto [rec, endpoints] = co_await resolver.async_resolve(options_.url.host, options_.url.port, use_tuple);
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
    const std::string sni = options_.tls_server_name.empty() ? options_.url.host : options_.tls_server_name;
    SSL_set_tlsext_host_name(stream_->native_handle(), sni.c_str());
    if (options_.tls_verify) stream_->set_verify_callback(net::ssl::host_name_verification(sni));
    std::tie(cec) = co_await stream_->async_handshake(net::ssl::stream_base::client, use_tuple);
  }
  deadline.cancel();
  co_await net::post(ioc_, use_tuple);  // let the cancelled deadline handler run before `timed_out` dies
  if (timed_out) co_return make_error_code(RedisError::timeout);
  co_return cec;
}

// Exempt from the complexity bound until [redis-ha] reshapes the connection (discovery and
// redirects land here): connect, handshake, pipeline and backoff as one loop.
void RedisClient::log_failure(spdlog::level::level_enum level, std::string_view what, const std::string& error) {
  const auto now = std::chrono::steady_clock::now();
  if (error == last_error_ && now - last_error_logged_ < std::chrono::minutes(1)) {
    ++suppressed_;
    return;
  }
  // `repeated`: how often it happened since it was last logged, unlogged.
  log_event(level, what,
            {{"client", name_},
             {"error", error},
             {"repeated", std::to_string(suppressed_)},
             {"retry_in", format_duration(backoff_)}});
  last_error_ = error;
  last_error_logged_ = now;
  suppressed_ = 0;
}

// NOLINTNEXTLINE(readability-function-cognitive-complexity)
net::awaitable<void> RedisClient::run() {
  auto self = shared_from_this();
  while (!stopped_) {
    ++generation_;
    error_code ec = co_await connect_once();
    if (!ec) {
      // AUTH and SELECT go first on the new connection, before any queued command.
      std::string hello;
      if (!options_.password.empty()) {
        if (!options_.url.username.empty()) {
          redis_encode(hello, {"AUTH", options_.url.username, options_.password});
        } else {
          redis_encode(hello, {"AUTH", options_.password});
        }
      }
      if (options_.url.db != 0) redis_encode(hello, {"SELECT", std::to_string(options_.url.db)});
      redis_encode(hello, {"PING"});
      // The handshake replies are read with the same parser, then the loop takes over.
      ec = co_await [&]() -> net::awaitable<error_code> {
        error_code wec;
        if (tls_) {
          std::tie(wec, std::ignore) = co_await net::async_write(*stream_, net::buffer(hello), use_tuple);
        } else {
          std::tie(wec, std::ignore) = co_await net::async_write(socket(), net::buffer(hello), use_tuple);
        }
        co_return wec;
      }();
      if (!ec) {
        handshake_left_ = (!options_.password.empty() ? 1U : 0U) + (options_.url.db != 0 ? 1U : 0U) + 1U;
        for (std::size_t i = 0; i < handshake_left_; ++i) pending_.push_front(std::make_shared<Pending>(ioc_));
        ec = co_await read_loop();
      }
    }
    const bool was_up = up_;
    drop_connection();
    fail_all(RedisError::connection_lost);
    if (stopped_) break;
    const bool first = !first_attempt_done_;
    first_attempt_finished();
    log_failure(was_up || first ? spdlog::level::warn : spdlog::level::debug, "redis unavailable; retrying",
                ec.message());
    // Exponential backoff with jitter, capped.
    std::uniform_int_distribution<std::int64_t> jitter(backoff_.count() / 2, backoff_.count());
    backoff_timer_.expires_after(duration{jitter(rng_)});
    co_await backoff_timer_.async_wait(use_tuple);
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
  }
}

bool RedisClient::take_reply(RedisReply reply) {
  if (pending_.empty()) return false;  // a reply nobody asked for
  auto p = pending_.front();
  pending_.pop_front();
  // The first replies answer AUTH/SELECT/PING: an error there ends the connection.
  if (handshake_left_ > 0) {
    --handshake_left_;
    if (reply.is_error()) {
      log_failure(spdlog::level::err, "redis refused the connection setup (AUTH/SELECT)", reply.str);
      return false;
    }
    if (handshake_left_ == 0) handshake_succeeded();
    return true;
  }
  if (p->done) return true;  // timed out earlier: its reply is dropped
  p->done = true;
  p->reply = std::move(reply);
  p->timer.cancel();
  return true;
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
      log_failure(spdlog::level::err, "redis protocol error", parser.error());
      co_return make_error_code(RedisError::connection_lost);
    }
  }
}

}  // namespace mcpproxy
