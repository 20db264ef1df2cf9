// The client side of a connection: deadlines on the worker's tick, the client watch, and
// the writes to the client (client_link.hpp).
#include "path/client_link.hpp"

#include <sys/socket.h>

#include <boost/asio/write.hpp>
#include <cstdio>

#include "io/io_ring.hpp"

namespace mcpproxy {

ClientLink::ClientLink(ConnectionContext& ctx, tcp::socket socket, std::uint64_t id)
    : ctx_(ctx), socket_(std::move(socket)), id_(id) {
  error_code ec;
  const auto ep = socket_.remote_endpoint(ec);
  if (!ec) {
    peer_ip_ = ep.address().to_string();
    peer_ = parse_ip(peer_ip_).value_or(IpAddress{});
  }
  socket_.set_option(tcp::no_delay(true), ec);
}

void ClientLink::expect_within(Wait what, duration limit, tcp::socket* upstream) {
  waiting_ = what;
  deadline_upstream_ = upstream;
  expired_ = Wait::none;
  // Never early: the tick that fires is at least `limit` after now.
  deadline_tick_ = ctx_.tick + static_cast<std::uint64_t>((limit.count() + kTickMs - 1) / kTickMs) + 1;
}

void ClientLink::begin_watch(tcp::socket* upstream) {
  ++watch_.generation;
  watch_.active = true;
  watch_.armed = false;
  watch_.client_gone = false;
  watch_.upstream = upstream;
  watch_.started_tick = ctx_.tick;
}

void ClientLink::end_watch() {
  if (!watch_.active) return;
  watch_.active = false;
  watch_.upstream = nullptr;
  if (watch_.armed) {
    error_code ignored;
    socket_.cancel(ignored);
  }
}

bool ClientLink::on_tick(std::uint64_t tick) {
  if (waiting_ != Wait::none && tick >= deadline_tick_) {
    // A deadline closes the socket: the pending operation fails, and the coroutine reads
    // `expired_` to tell a timeout from a peer's close.
    expired_ = waiting_;
    waiting_ = Wait::none;
    if (expired_ == Wait::upstream) {
      if (deadline_upstream_ != nullptr) close_socket(*deadline_upstream_);
    } else {
      close_socket(socket_);
    }
  }
  // A client that leaves during a long exchange is watched for from the second tick on.
  return watch_.active && !watch_.armed && tick >= watch_.started_tick + 2;
}

void ClientLink::arm_watch(std::shared_ptr<void> keep) {
  watch_.armed = true;
  // `keep` owns the connection that owns this link: `this` lives as long as the handler.
  socket_.async_wait(tcp::socket::wait_read,
                     [this, keep = std::move(keep), generation = watch_.generation](error_code ec) {
                       Watch& w = watch_;
                       if (ec || !w.active || w.generation != generation) return;
                       char c = 0;
                       const ssize_t n = ::recv(socket_.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
                       if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)))
                         return;  // a pipelined request: keep going
                       w.client_gone = true;
                       if (w.upstream != nullptr) {
                         error_code ignored;
                         // A read in the io_uring ends by shutdown only (io_ring.hpp); the exchange is
                         // abandoned either way, its pod connection not reused.
                         if (ctx_.ring != nullptr) {
                           w.upstream->shutdown(tcp::socket::shutdown_both, ignored);
                         } else {
                           w.upstream->cancel(ignored);
                         }
                       }
                     });
}

void ClientLink::close() {
  if (closed_) return;
  closed_ = true;
  close_socket(socket_);
  if (watch_.active && watch_.upstream != nullptr) close_socket(*watch_.upstream);
}

bool ClientLink::write_now(std::string_view head, std::string_view data, bool last, bool chunked, bool& pending) {
  std::array<net::const_buffer, 5>& out = out_;
  out = {};
  out[0] = net::buffer(head.data(), head.size());
  if (!data.empty()) {
    if (chunked) {
      const int n = std::snprintf(chunk_line_.data(), chunk_line_.size(), "%zx\r\n", data.size());
      out[1] = net::buffer(chunk_line_.data(), static_cast<std::size_t>(n));
      out[3] = net::buffer("\r\n", 2);
    }
    out[2] = net::buffer(data.data(), data.size());
  }
  if (last && chunked) out[4] = net::buffer("0\r\n\r\n", 5);
  if (ctx_.ring != nullptr) {
    pending = true;  // the io_uring sends it with the loop turn's other writes
    return true;
  }
  error_code ec;
  const std::size_t sent = send_now(socket_, out.data(), out.size(), ec);
  if (ec) return false;
  pending = sent != net::buffer_size(out);
  if (pending) consume_front(out, sent);
  return true;
}

net::awaitable<bool> ClientLink::write_rest(duration limit) {
  expect_within(Wait::write, limit);
  auto [ec, n] = co_await write_all(ctx_.ring, socket_, out_);
  stop_waiting();
  co_return !ec;
}

net::awaitable<bool> ClientLink::write(std::string_view bytes, duration limit) {
  expect_within(Wait::write, limit);
  auto [ec, n] = co_await net::async_write(socket_, net::buffer(bytes.data(), bytes.size()), use_tuple);
  stop_waiting();
  co_return !ec;
}

}  // namespace mcpproxy
