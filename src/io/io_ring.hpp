#pragma once
// A worker's io_uring (config `io_backend: io_uring`): the loop the worker thread runs, and
// the reads and writes of the request path, in place of Asio's epoll reactor for those.
//
// Why: on the request path the proxy makes four socket calls per request (a read and a write
// on each side); epoll adds a wait per loop turn. Each is a kernel entry, and a kernel entry
// is most of what a request costs here (bench/README.md). With the ring, a loop turn queues
// every read and write its handlers started and hands them to the kernel in one
// io_uring_enter, which also waits for the next completions: a few kernel entries per turn
// instead of four per request.
//
// Shape: Asio still owns everything else (timers, the listener, Redis, name lookups, the
// admin port's posts) and runs the thread (io_context::run); the ring's turn is a handler
// it always has queued (IoRing::pump). Asio's epoll descriptor is watched by the ring (a
// multishot poll), so the one blocking wait of the thread is io_uring_enter, and Asio's
// reactor turn (epoll_wait(0)) comes between two ring turns. The operations below complete
// like Asio's own (`(error_code, bytes)`, end of stream as net::error::eof), so the
// coroutines that use them are the same for both backends (read_some / write_all below).
//
// A read or write in the ring holds its socket open in the kernel until it completes:
// closing the descriptor does not end it. Every close of a socket that may have one goes
// through close_socket (below), whose shutdown() completes it.

#include <liburing.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include <boost/asio/write.hpp>

#include "io/net.hpp"

namespace mcpproxy {

struct SchedulerParts;  // of Asio's scheduler, that the loop reaches (io_ring.cpp)

class IoRing {
 public:
  // The ring of the calling thread's worker, or null and why not: the kernel has no
  // io_uring (before 5.19 for the features used here), or refuses it (a seccomp profile
  // such as the container runtimes' default, or kernel.io_uring_disabled).
  static std::unique_ptr<IoRing> open(net::io_context& ioc, std::string& why);
  // Whether this kernel and this process's seccomp profile give an io_uring (start-up, to
  // say so once before the workers start).
  static bool available(std::string& why);
  ~IoRing();
  IoRing(const IoRing&) = delete;
  IoRing& operator=(const IoRing&) = delete;

  // The worker's loop: io_context::run with the ring's turn always queued, until stopped.
  void run();

  // An operation in the ring; `complete` runs its handler (or only frees it when
  // `invoke` is false: the ring is destroyed with it in flight).
  struct Op {
    virtual ~Op() = default;
    virtual void complete(int result, bool invoke) = 0;
    Op* prev = nullptr;  // the ring's list of operations in flight
    Op* next = nullptr;
  };
  void start_recv(Op* op, int fd, void* data, std::size_t size);
  void start_sendmsg(Op* op, int fd, const msghdr* msg);
  // Hands the queued entries to the kernel now (close_socket).
  void submit_queued();

 private:
  IoRing(net::io_context& ioc, io_uring& ring);
  io_uring_sqe* next_sqe();
  void track(Op* op);
  void untrack(Op* op);  // its completion came
  void watch_epoll();
  void complete_ready();
  void pump();

  net::io_context& ioc_;
  io_uring ring_{};
  int epoll_fd_ = -1;
  std::unique_ptr<SchedulerParts> scheduler_;
  Op* ops_ = nullptr;  // in flight
};

namespace io_ring_detail {

inline error_code result_error(int result) {
  if (result < 0) return {-result, boost::system::system_category()};
  return {};
}

template <class Handler>
struct RecvOp final : IoRing::Op {
  explicit RecvOp(Handler&& h) : handler(std::move(h)) {}
  Handler handler;
  void complete(int result, bool invoke) override {
    Handler h = std::move(handler);
    delete this;
    if (!invoke) return;
    if (result == 0) {
      std::move(h)(error_code(net::error::eof), std::size_t{0});
    } else {
      std::move(h)(result_error(result), result > 0 ? static_cast<std::size_t>(result) : 0);
    }
  }
};

// Writes the whole sequence: a short send (the socket buffer was full) is sent on from
// where it stopped.
template <class Handler, std::size_t N>
struct SendOp final : IoRing::Op {
  SendOp(Handler&& h, IoRing& r, tcp::socket& s) : handler(std::move(h)), ring(r), socket(s), fd(s.native_handle()) {}
  Handler handler;
  IoRing& ring;
  tcp::socket& socket;  // lives while its coroutine waits for this operation
  int fd;
  std::array<iovec, N> iov{};
  msghdr msg{};
  std::size_t sent = 0;
  std::size_t total = 0;
  void complete(int result, bool invoke) override {
    // Sent on only while the socket is the one it was (closed, its number may be another's).
    if (invoke && result > 0 && sent + static_cast<std::size_t>(result) < total && socket.native_handle() == fd) {
      sent += static_cast<std::size_t>(result);
      advance(static_cast<std::size_t>(result));
      ring.start_sendmsg(this, fd, &msg);
      return;
    }
    Handler h = std::move(handler);
    const std::size_t done = sent + (result > 0 ? static_cast<std::size_t>(result) : 0);
    const bool cut = result > 0 && done < total;  // the socket was closed in between
    delete this;
    if (!invoke) return;
    std::move(h)(cut ? error_code(net::error::operation_aborted) : result_error(result), done);
  }
  void advance(std::size_t n) {
    while (n > 0 && msg.msg_iovlen > 0) {
      iovec& v = *msg.msg_iov;
      if (n < v.iov_len) {
        v.iov_base = static_cast<char*>(v.iov_base) + n;
        v.iov_len -= n;
        return;
      }
      n -= v.iov_len;
      ++msg.msg_iov;
      --msg.msg_iovlen;
    }
  }
};

}  // namespace io_ring_detail

// Ends a socket whatever waits on it, on either backend. With the io_uring: the turn's
// queued entries go to the kernel first (one naming this descriptor must not meet another
// socket that reuses its number once it is closed), then shutdown() completes what the
// ring has on it (a close alone would leave that pending, the kernel holding the socket
// open for it); then close().
void close_socket(tcp::socket& s);

// Reads what the socket has, like socket.async_read_some: through the ring when the worker
// has one.
inline auto read_some(IoRing* ring, tcp::socket& s, net::mutable_buffer b) {
  return net::async_initiate<decltype(use_tuple), void(error_code, std::size_t)>(
      [ring, &s, b](auto handler) {
        if (ring == nullptr) {
          s.async_read_some(b, std::move(handler));
          return;
        }
        using Op = io_ring_detail::RecvOp<std::decay_t<decltype(handler)>>;
        ring->start_recv(new Op(std::move(handler)), s.native_handle(), b.data(), b.size());
      },
      use_tuple);
}

// Writes all of the buffers, like net::async_write: through the ring when the worker has one.
template <std::size_t N>
auto write_all(IoRing* ring, tcp::socket& s, const std::array<net::const_buffer, N>& buffers) {
  return net::async_initiate<decltype(use_tuple), void(error_code, std::size_t)>(
      [ring, &s, &buffers](auto handler) {
        if (ring == nullptr) {
          net::async_write(s, buffers, std::move(handler));
          return;
        }
        using Op = io_ring_detail::SendOp<std::decay_t<decltype(handler)>, N>;
        auto* op = new Op(std::move(handler), *ring, s);
        std::size_t n = 0;
        for (const auto& b : buffers) {
          if (b.size() == 0) continue;
          // sendmsg's iovec is not const; the kernel only reads it.
          op->iov[n].iov_base = const_cast<void*>(b.data());  // NOLINT(cppcoreguidelines-pro-type-const-cast)
          op->iov[n].iov_len = b.size();
          op->total += b.size();
          ++n;
        }
        op->msg.msg_iov = op->iov.data();
        op->msg.msg_iovlen = n;
        ring->start_sendmsg(op, s.native_handle(), &op->msg);
      },
      use_tuple);
}

}  // namespace mcpproxy
