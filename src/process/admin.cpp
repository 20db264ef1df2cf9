#include "process/admin.hpp"

#include <algorithm>
#include <cstdint>

#include <boost/beast/http/parser.hpp>
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

namespace {

http::response<http::string_body> text_reply(http::status status, unsigned version, std::string body) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(body);
  return res;
}

// /pods/N/drain or /pods/N/undrain (N digits or not: the control call judges it).
bool is_control_path(std::string_view path) {
  if (!path.starts_with("/pods/")) return false;
  return path.ends_with("/drain") || path.ends_with("/undrain");
}

}  // namespace

bool AdminServer::make_room(std::size_t max_connections) {
  if (connections_->open < max_connections) return true;
  for (Idle& idle : connections_->idle) {
    if (idle.closing) continue;
    // Its pending read ends with an error and its coroutine leaves; the count drops then.
    idle.closing = true;
    error_code ec;
    idle.stream->socket().close(ec);
    ++refused_[idle_evicted];
    return true;
  }
  return false;
}

net::awaitable<void> AdminServer::serve(tcp::socket socket) {
  AdminLimits limits = handlers_.limits();
  beast::tcp_stream stream(std::move(socket));
  if (!make_room(limits.max_connections)) {
    ++refused_[too_many_connections];
    auto res = text_reply(http::status::service_unavailable, 11, "too many admin connections\n");
    res.set(http::field::retry_after, "1");
    res.keep_alive(false);
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(1));
    co_await http::async_write(stream, res, use_tuple);
    co_return;
  }
  // Held by this frame, which may outlive the server (see Connections).
  const std::shared_ptr<Connections> connections = connections_;
  ++connections->open;
  struct Count {
    std::size_t& n;
    ~Count() { --n; }
  } count{connections->open};
  // The read buffer holds at most a head (the body goes to the parser); its bound is the
  // head bound when the connection came, and a reload applies from the next connection.
  beast::flat_buffer buffer(limits.max_header_size + 4096);
  for (;;) {
    limits = handlers_.limits();
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min(limits.max_header_size, buffer.max_size() - 4096)));
    parser.body_limit(limits.max_body_size);
    stream.expires_after(limits.idle_timeout);
    const auto idle = connections->idle.insert(connections->idle.end(), Idle{&stream});
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
    const bool evicted = idle->closing;
    connections->idle.erase(idle);
    if (evicted) co_return;
    if (ec == http::error::body_limit || ec == http::error::header_limit) {
      // Answered, then closed: the rest of what the client sends is not read.
      const bool body = ec == http::error::body_limit;
      ++refused_[body ? body_too_large : head_too_large];
      auto res = text_reply(body ? http::status::payload_too_large : http::status::request_header_fields_too_large, 11,
                            body ? "admin request body too large\n" : "admin request head too large\n");
      res.keep_alive(false);
      res.prepare_payload();
      co_await http::async_write(stream, res, use_tuple);
      co_return;
    }
    if (ec) co_return;
    const auto& req = parser.get();
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    route(req, res);
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
    if (wec || !req.keep_alive()) co_return;
  }
}

void AdminServer::route(const http::request<http::string_body>& req, http::response<http::string_body>& res) {
  const auto target = req.target();
  const auto path = target.substr(0, target.find('?'));
  const bool read = req.method() == http::verb::get || req.method() == http::verb::head;
  if (is_control_path(path)) {
    // A state change: POST only, so a link or a probe cannot drain a pod.
    if (req.method() == http::verb::post) {
      control(req, res);
    } else {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "POST");
      res.body() = "method not allowed: POST " + std::string(path) + "\n";
    }
  } else if (!read) {
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
}

void AdminServer::render_metrics(std::string& out) const {
  out +=
      "# HELP mcp_proxy_admin_refused_total Admin connections and requests refused or closed by the admin "
      "listener's bounds (admin.max_connections, admin.idle_timeout, admin.max_body_size)\n"
      "# TYPE mcp_proxy_admin_refused_total counter\n";
  static constexpr std::array<std::string_view, kRefusals> kReason = {"too_many_connections", "idle_evicted",
                                                                      "head_too_large", "body_too_large"};
  for (std::size_t i = 0; i < kRefusals; ++i) {
    out += "mcp_proxy_admin_refused_total{reason=\"";
    out += kReason[i];
    out += "\"} " + std::to_string(refused_[i]) + "\n";
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
