#pragma once
// The one place that names the Asio and Beast namespaces.

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <string_view>

namespace mcpproxy {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;

// Every awaited operation on the data plane completes with (error_code, …): no exceptions.
inline constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

// Errors that are part of normal life (a peer that went away, a cancelled wait): not logged.
bool harmless(const error_code& ec);

// Sends what the socket takes now, without waiting (one sendmsg, MSG_DONTWAIT): the bytes
// sent, 0 when it would block; `ec` is set on a failure. A small write nearly always goes
// whole, with no async operation, no completion posted and no coroutine resumed; the
// caller hands what is left, if anything, to net::async_write.
std::size_t send_now(tcp::socket& s, const net::const_buffer* buffers, std::size_t count, error_code& ec);

// Drops the first `n` bytes of a buffer sequence (what send_now sent).
template <std::size_t N>
void consume_front(std::array<net::const_buffer, N>& buffers, std::size_t n) {
  for (auto& b : buffers) {
    const std::size_t k = std::min(n, b.size());
    b += k;
    n -= k;
  }
}

// The readable bytes of a buffer, for the http1 parser.
inline std::string_view view(const beast::flat_buffer& b) {
  return {static_cast<const char*>(b.data().data()), b.size()};
}

}  // namespace mcpproxy
