#pragma once
// The admin listener: /healthz, /readyz, /metrics, /pods (GET: per pod state), and the
// state-changing POST /pods/N/drain and /pods/N/undrain, which need the bearer token of
// admin.token_file (none configured: refused). Runs on the admin io_context, apart from
// the workers, so a scrape never competes with traffic for a worker thread.

#include <array>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include "core/config/config.hpp"
#include "io/net.hpp"

namespace mcpproxy {

struct AdminHandlers {
  std::function<bool()> ready;              // listening, config valid, not draining
  std::function<std::string()> ready_body;  // what /readyz says
  std::function<std::string()> metrics;
  std::function<std::string()> pods;                // GET /pods: JSON, one object per pod
  std::function<std::string()> token;               // the admin token; empty: none configured
  std::function<bool(int ordinal, bool on)> drain;  // false: no such ordinal
  std::function<AdminLimits()> limits;              // the current config's (a reload may change them)
};

class AdminServer {
 public:
  AdminServer(net::io_context& ioc, AdminHandlers handlers);
  void listen(const ListenAddress& addr);  // throws std::system_error
  void start();
  void stop();
  // mcp_proxy_admin_refused_total{reason}: what the admin listener's bounds refused.
  void render_metrics(std::string& out) const;

 private:
  // Why a connection or a request was refused or closed by a bound.
  enum Refusal : std::uint8_t { too_many_connections, idle_evicted, head_too_large, body_too_large, kRefusals };
  // A connection waiting for its next request: the one closed first when a new one needs room.
  struct Idle {
    beast::tcp_stream* stream;
    bool closing = false;
  };
  // The open connections. Shared with each connection's coroutine: a coroutine still
  // waiting when the process stops is destroyed with the io_context, after this object.
  struct Connections {
    std::size_t open = 0;
    std::list<Idle> idle;  // oldest first
  };

  net::awaitable<void> accept_loop();
  net::awaitable<void> serve(tcp::socket socket);
  // Room for one more connection: true when under the bound, or an idle one was closed.
  bool make_room(std::size_t max_connections);
  void route(const beast::http::request<beast::http::string_body>& req,
             beast::http::response<beast::http::string_body>& res);
  void control(const beast::http::request<beast::http::string_body>& req,
               beast::http::response<beast::http::string_body>& res);

  net::io_context& ioc_;
  AdminHandlers handlers_;
  tcp::acceptor acceptor_;
  // The admin context runs on one thread: plain counters and a list are enough.
  std::shared_ptr<Connections> connections_ = std::make_shared<Connections>();
  std::array<std::uint64_t, kRefusals> refused_{};
};

}  // namespace mcpproxy
