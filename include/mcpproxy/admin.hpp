#pragma once
// The admin listener: /healthz, /readyz, /metrics. Runs on the admin io_context, apart
// from the workers, so a scrape never competes with traffic for a worker thread.

#include <functional>
#include <string>

#include "mcpproxy/config.hpp"
#include "mcpproxy/net.hpp"

namespace mcpproxy {

struct AdminHandlers {
  std::function<bool()> ready;              // listening, config valid, not draining
  std::function<std::string()> ready_body;  // what /readyz says
  std::function<std::string()> metrics;
};

class AdminServer {
 public:
  AdminServer(net::io_context& ioc, AdminHandlers handlers);
  void listen(const ListenAddress& addr);  // throws std::system_error
  void start();
  void stop();

 private:
  net::awaitable<void> accept_loop();
  net::awaitable<void> serve(tcp::socket socket);

  net::io_context& ioc_;
  AdminHandlers handlers_;
  tcp::acceptor acceptor_;
};

}  // namespace mcpproxy
