#pragma once
// A connection bounded by one deadline from the lookup to the last byte: what the admin
// context's own requests (the pods' health probes, the JWKS fetches) share. The deadline's
// handler may run after its owner has returned, so the state is held by a shared_ptr that the
// handler keeps; when it fires it cancels the lookup and closes the socket, which ends
// whatever the owner awaits with an error.
#include <memory>
#include <string>

#include "core/config/config.hpp"
#include "io/net.hpp"

namespace mcpproxy {

class TimedConnection {
 public:
  // The deadline starts now.
  static std::shared_ptr<TimedConnection> start(const net::any_io_executor& ex, duration timeout);
  explicit TimedConnection(const net::any_io_executor& ex);
  TimedConnection(const TimedConnection&) = delete;
  TimedConnection& operator=(const TimedConnection&) = delete;
  ~TimedConnection() = default;

  // Looks the host up (Asio's resolver) and connects to the first address that answers.
  net::awaitable<error_code> connect(const std::string& host, const std::string& port);
  tcp::socket& socket() { return socket_; }
  // Stops the deadline and closes the socket.
  void finish();

 private:
  tcp::resolver resolver_;
  tcp::socket socket_;
  net::steady_timer deadline_;
};

}  // namespace mcpproxy
