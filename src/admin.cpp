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
  net::steady_timer backoff(ioc_);
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(use_tuple);
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) co_return;
    if (ec) {
      // Out of descriptors (or the like): the pending connection stays queued; try again
      // shortly instead of spinning on the error.
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(use_tuple);
      continue;
    }
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
    if (req.method() == http::verb::post && path.starts_with("/pods/")) {
      control(req, res);
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
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
    } else if (path == "/pods") {
      res.set(http::field::content_type, "application/json");
      res.body() = handlers_.pods();
    } else {
      res.result(http::status::not_found);
      res.body() = "not found: /healthz /readyz /metrics /pods\n";
    }
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec || !req.keep_alive()) co_return;
  }
}

namespace {

// Compares without an early exit, so the time taken says nothing about the token.
bool same_secret(std::string_view given, std::string_view secret) {
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const char g = i < given.size() ? given[i] : '\0';
    diff |= static_cast<unsigned char>(g ^ secret[i]);
  }
  return diff == 0;
}

}  // namespace

void AdminServer::control(const http::request<http::string_body>& req, http::response<http::string_body>& res) {
  const std::string token = handlers_.token();
  if (token.empty()) {
    res.result(http::status::forbidden);
    res.body() = "state-changing admin calls need admin.token_file\n";
    return;
  }
  const auto auth = req[http::field::authorization];
  constexpr std::string_view kBearer = "Bearer ";
  if (!auth.starts_with(kBearer) || !same_secret(auth.substr(kBearer.size()), token)) {
    res.result(http::status::unauthorized);
    res.set(http::field::www_authenticate, R"(Bearer realm="mcp-session-proxy admin")");
    res.body() = "unauthorized\n";
    return;
  }
  // /pods/N/drain or /pods/N/undrain
  const std::string_view path = req.target().substr(0, req.target().find('?'));
  const std::string_view rest = path.substr(std::string_view("/pods/").size());
  const auto slash = rest.find('/');
  const std::string_view number = rest.substr(0, slash);
  const std::string_view action = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
  int ordinal = -1;
  const bool digits =
      !number.empty() && number.size() <= 4 && number.find_first_not_of("0123456789") == std::string_view::npos;
  if (digits) ordinal = std::stoi(std::string(number));
  if (!digits || (action != "drain" && action != "undrain") || !handlers_.drain(ordinal, action == "drain")) {
    res.result(http::status::not_found);
    res.body() = "not found: POST /pods/<ordinal below replicas>/drain or /undrain\n";
    return;
  }
  res.set(http::field::content_type, "application/json");
  res.body() = handlers_.pods();
}

}  // namespace mcpproxy
