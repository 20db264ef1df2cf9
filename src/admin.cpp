#include "mcpproxy/admin.hpp"

#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

namespace mcpproxy {

namespace http = beast::http;

AdminServer::AdminServer(net::io_context& ioc, AdminHandlers handlers)
    : ioc_(ioc), handlers_(std::move(handlers)), acceptor_(ioc) {}

void AdminServer::listen(const ListenAddress& addr) {
  const tcp::endpoint ep{net::ip::make_address(addr.host), addr.port};
  acceptor_.open(ep.protocol());
  acceptor_.set_option(net::socket_base::reuse_address(true));
  acceptor_.bind(ep);
  acceptor_.listen();
}

void AdminServer::start() { net::co_spawn(ioc_, accept_loop(), net::detached); }

void AdminServer::stop() {
  error_code ec;
  acceptor_.close(ec);
}

net::awaitable<void> AdminServer::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) continue;
    net::co_spawn(ioc_, serve(std::move(socket)), net::detached);
  }
}

net::awaitable<void> AdminServer::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(16384);
  for (;;) {
    http::request<http::string_body> req;
    stream.expires_after(std::chrono::seconds(30));
    auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
    if (ec) co_return;
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    const auto target = req.target();
    const auto path = target.substr(0, target.find('?'));
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET, HEAD");
      res.body() = "method not allowed\n";
    } else if (path == "/healthz") {
      res.body() = "ok\n";
    } else if (path == "/readyz") {
      const bool ready = handlers_.ready();
      res.result(ready ? http::status::ok : http::status::service_unavailable);
      res.body() = handlers_.ready_body();
    } else if (path == "/metrics") {
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      res.body() = handlers_.metrics();
    } else {
      res.result(http::status::not_found);
      res.body() = "not found: /healthz /readyz /metrics\n";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec || !req.keep_alive()) co_return;
  }
}

}  // namespace mcpproxy
