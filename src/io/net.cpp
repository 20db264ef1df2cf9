// The request path's sends without a wait (net.hpp).
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io/net.hpp"

namespace mcpproxy {

std::size_t send_now(tcp::socket& s, const net::const_buffer* buffers, std::size_t count, error_code& ec) {
  constexpr std::size_t kMax = 8;
  // Only the first n entries are read: no need to clear the rest on every send.
  std::array<iovec, kMax> iov;  // NOLINT(cppcoreguidelines-pro-type-member-init)
  std::size_t n = 0;
  for (std::size_t i = 0; i < count && n < kMax; ++i) {
    if (buffers[i].size() == 0) continue;
    iov[n].iov_base =
        const_cast<void*>(buffers[i].data());  // NOLINT(cppcoreguidelines-pro-type-const-cast): sendmsg's iovec
    iov[n].iov_len = buffers[i].size();
    ++n;
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = n;
  for (;;) {
    // The system call itself: libc's sendmsg is a thread cancellation point, and its
    // enabling and disabling of asynchronous cancellation around every call (the proxy never
    // cancels a thread) cost more than the rest of this function.
    const long sent = ::syscall(SYS_sendmsg, s.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) return static_cast<std::size_t>(sent);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) ec = error_code(errno, boost::system::system_category());
    return 0;
  }
}

}  // namespace mcpproxy
