#pragma once
// The admin listener: /healthz, /readyz, /metrics, /pods (GET: per pod state), and the
// state-changing POST /pods/N/drain and /pods/N/undrain, which need the bearer token of
// admin.token_file (none configured: refused). Runs on the admin io_context, apart from
// the workers, so a scrape never competes with traffic for a worker thread.

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <string>

#include "mcpproxy/config.hpp"
#include "mcpproxy/net.hpp"

namespace mcpproxy {

struct AdminHandlers {
  std::function<bool()> ready;              // listening, config valid, not draining
  std::function<std::string()> ready_body;  // what /readyz says
  std::function<std::string()> metrics;
  std::function<std::string()> pods;                // GET /pods: JSON, one object per pod
  std::function<std::string()> token;               // the admin token; empty: none configured
  std::function<bool(int ordinal, bool on)> drain;  // false: no such ordinal
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
  void control(const beast::http::request<beast::http::string_body>& req,
               beast::http::response<beast::http::string_body>& res);

  net::io_context& ioc_;
  AdminHandlers handlers_;
  tcp::acceptor acceptor_;
};

}  // namespace mcpproxy
