#include "io/timed_connect.hpp"

#include <boost/asio/connect.hpp>

namespace mcpproxy {

TimedConnection::TimedConnection(const net::any_io_executor& ex) : resolver_(ex), socket_(ex), deadline_(ex) {}

std::shared_ptr<TimedConnection> TimedConnection::start(const net::any_io_executor& ex, duration timeout) {
  auto c = std::make_shared<TimedConnection>(ex);
  c->deadline_.expires_after(timeout);
  c->deadline_.async_wait([c](error_code ec) {
    if (ec) return;
    c->resolver_.cancel();
    error_code ignored;
    c->socket_.close(ignored);
  });
  return c;
}

net::awaitable<error_code> TimedConnection::connect(const std::string& host, const std::string& port) {
  auto [rec, endpoints] = co_await resolver_.async_resolve(host, port, use_tuple);
  if (rec) co_return rec;
  auto [cec, ep] = co_await net::async_connect(socket_, endpoints, use_tuple);
  co_return cec;
}

void TimedConnection::finish() {
  deadline_.cancel();
  error_code ignored;
  socket_.close(ignored);
}

}  // namespace mcpproxy
