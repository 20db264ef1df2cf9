// The worker's io_uring loop (io_ring.hpp).
#include "io/io_ring.hpp"

#include <poll.h>

#include <boost/asio/detail/epoll_reactor.hpp>
#include <boost/asio/detail/scheduler.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <cstring>

namespace mcpproxy {

struct SchedulerParts {
  boost::asio::detail::conditionally_enabled_mutex* mutex;
  bool* task_interrupted;
  boost::asio::detail::op_queue<boost::asio::detail::scheduler_operation>* queue;
  boost::asio::detail::scheduler_operation* task_operation;  // the reactor's place in the queue
};

namespace {

// Asio gives no access to what the loop needs: the epoll descriptor (the ring watches it),
// and in the scheduler its queue and its "the reactor is not blocked" flag (IoRing::pump).
// An explicit instantiation may name private members; these friends reach them. Checked
// against Boost 1.81, the version the build requires.
template <auto Member>
struct EpollFd {
  friend int epoll_fd_of(boost::asio::detail::epoll_reactor& r) { return r.*Member; }
};
int epoll_fd_of(boost::asio::detail::epoll_reactor& r);
template struct EpollFd<&boost::asio::detail::epoll_reactor::epoll_fd_>;

using boost::asio::detail::op_queue_access;
using boost::asio::detail::scheduler;
using boost::asio::detail::scheduler_operation;

template <auto Mutex, auto Flag, auto Queue, auto TaskOp>
struct SchedulerState {
  friend SchedulerParts parts_of(scheduler& s) { return {&(s.*Mutex), &(s.*Flag), &(s.*Queue), &(s.*TaskOp)}; }
};
SchedulerParts parts_of(scheduler& s);
template struct SchedulerState<&scheduler::mutex_, &scheduler::task_interrupted_, &scheduler::op_queue_,
                               &scheduler::task_operation_>;

// True when nothing but the reactor's turn is queued: the caller may block. The flag is
// then cleared under the scheduler's lock, so a post from another thread from here on
// interrupts the reactor (as when io_context::run blocks in epoll_wait).
bool only_reactor_queued(const SchedulerParts& s) {
  boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(*s.mutex);
  scheduler_operation* front = op_queue_access::front(*s.queue);
  const bool idle = front == nullptr || (front == s.task_operation && op_queue_access::next(front) == nullptr);
  if (idle) *s.task_interrupted = false;
  return idle;
}

void reactor_not_blocked(const SchedulerParts& s) {
  boost::asio::detail::conditionally_enabled_mutex::scoped_lock lock(*s.mutex);
  *s.task_interrupted = true;
}

// user_data of the ring's own entries; operations are pointers, never these values.
constexpr std::uint64_t kEpollWatch = 1;
constexpr std::uint64_t kCancel = 2;

constexpr unsigned kEntries = 1024;

// The ring of the worker thread running one (close_socket finds it here).
thread_local IoRing* t_ring = nullptr;

// The newest setup the kernel takes: completions run only when the worker asks for them
// (6.1), else without interrupting it (5.19). An older kernel lacks features used here.
int setup(io_uring& ring) {
  const unsigned tries[] = {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_COOP_TASKRUN};
  int ret = -EINVAL;
  for (const unsigned flags : tries) {
    io_uring_params params{};
    params.flags = flags;
    ret = io_uring_queue_init_params(kEntries, &ring, &params);
    if (ret == 0) {
      if ((params.features & IORING_FEAT_FAST_POLL) == 0) {
        io_uring_queue_exit(&ring);
        return -ENOTSUP;
      }
      return 0;
    }
    if (ret != -EINVAL) return ret;  // refused outright (seccomp, sysctl): no point in trying less
  }
  return ret;
}

std::string refusal(int ret) {
  if (ret == -EINVAL) return "io_uring: this kernel lacks what the proxy uses (Linux 5.19 or newer)";
  if (ret == -ENOTSUP) return "io_uring: this kernel has no fast poll (Linux 5.19 or newer)";
  return std::string("io_uring: ") + std::strerror(-ret) +
         (ret == -EPERM || ret == -ENOSYS ? " (a seccomp profile or kernel.io_uring_disabled refuses it)" : "");
}

}  // namespace

bool IoRing::available(std::string& why) {
  io_uring ring{};
  const int ret = setup(ring);
  if (ret != 0) {
    why = refusal(ret);
    return false;
  }
  io_uring_queue_exit(&ring);
  return true;
}

std::unique_ptr<IoRing> IoRing::open(net::io_context& ioc, std::string& why) {
  io_uring ring{};
  const int ret = setup(ring);
  if (ret != 0) {
    why = refusal(ret);
    return nullptr;
  }
  return std::unique_ptr<IoRing>(new IoRing(ioc, ring));
}

IoRing::IoRing(net::io_context& ioc, io_uring& ring) : ioc_(ioc), ring_(ring) {
  epoll_fd_ = epoll_fd_of(net::use_service<boost::asio::detail::epoll_reactor>(ioc_));
  scheduler_ = std::make_unique<SchedulerParts>(parts_of(net::use_service<scheduler>(ioc_)));
}

IoRing::~IoRing() {
  if (t_ring == this) t_ring = nullptr;
  // Operations still in flight (the worker stopped): the kernel is told to drop each, and
  // its buffers are not let go before it has answered. Their handlers are destroyed, not
  // run, as Asio destroys its own when a stopped io_context goes.
  for (Op* op = ops_; op != nullptr; op = op->next) {
    io_uring_sqe* sqe = next_sqe();
    io_uring_prep_cancel64(sqe, reinterpret_cast<std::uint64_t>(op), 0);
    io_uring_sqe_set_data64(sqe, kCancel);
  }
  io_uring_submit(&ring_);
  while (ops_ != nullptr) {
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec wait{1, 0};
    if (io_uring_wait_cqe_timeout(&ring_, &cqe, &wait) != 0) break;  // the kernel keeps them: freed with the ring
    const std::uint64_t data = io_uring_cqe_get_data64(cqe);
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (data == kEpollWatch || data == kCancel) continue;
    Op* op = reinterpret_cast<Op*>(data);
    untrack(op);
    op->complete(result, false);
  }
  io_uring_queue_exit(&ring_);
}

io_uring_sqe* IoRing::next_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {  // the submission queue is full: hand it over now
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void IoRing::track(Op* op) {
  op->prev = nullptr;
  op->next = ops_;
  if (ops_ != nullptr) ops_->prev = op;
  ops_ = op;
}

void IoRing::untrack(Op* op) {
  if (op->prev != nullptr) op->prev->next = op->next;
  if (op->next != nullptr) op->next->prev = op->prev;
  if (ops_ == op) ops_ = op->next;
}

void IoRing::start_recv(Op* op, int fd, void* data, std::size_t size) {
  track(op);
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_recv(sqe, fd, data, size, 0);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::start_sendmsg(Op* op, int fd, const msghdr* msg) {
  track(op);
  io_uring_sqe* sqe = next_sqe();
  // No MSG_WAITALL (which 6.0 honours, older kernels not): a short send comes back and is
  // sent on by the operation (SendOp), the same on every kernel.
  io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
}

void IoRing::watch_epoll() {
  io_uring_sqe* sqe = next_sqe();
  io_uring_prep_poll_multishot(sqe, epoll_fd_, POLLIN);
  io_uring_sqe_set_data64(sqe, kEpollWatch);
}

void IoRing::complete_ready() {
  io_uring_cqe* cqe = nullptr;
  // Completions are taken one at a time: a handler may start operations, and the ring's
  // completion queue is read again from where it stands after each.
  for (;;) {
    if (io_uring_peek_cqe(&ring_, &cqe) != 0 || cqe == nullptr) break;
    const std::uint64_t data = io_uring_cqe_get_data64(cqe);
    const int result = cqe->res;
    const unsigned flags = cqe->flags;
    io_uring_cqe_seen(&ring_, cqe);
    if (data == kCancel) continue;
    if (data == kEpollWatch) {
      if ((flags & IORING_CQE_F_MORE) == 0) watch_epoll();  // the kernel ended the multishot poll
      continue;
    }
    Op* op = reinterpret_cast<Op*>(data);
    untrack(op);
    op->complete(result, true);
  }
}

void IoRing::submit_queued() {
  if (io_uring_sq_ready(&ring_) != 0) io_uring_submit(&ring_);
}

void close_socket(tcp::socket& s) {
  if (t_ring != nullptr) t_ring->submit_queued();
  error_code ignored;
  s.shutdown(tcp::socket::shutdown_both, ignored);
  s.close(ignored);
}

void IoRing::run() {
  t_ring = this;
  watch_epoll();
  net::post(ioc_, [this] { pump(); });
  ioc_.run();  // until stopped: the pump is always queued
}

void IoRing::pump() {
  // One loop turn of the ring, queued after everything else Asio has ready (its reactor's
  // turn, epoll_wait(0), comes before it in the queue, so what epoll has is taken once a
  // turn). Hands over every read and write the turn started; waits for a completion (or
  // for the epoll descriptor: a timer, a post from another thread, a socket of Asio's)
  // only when nothing else is queued; runs the completions' handlers here.
  const bool block = io_uring_cq_ready(&ring_) == 0 && only_reactor_queued(*scheduler_);
  const int ret = block ? io_uring_submit_and_wait(&ring_, 1) : io_uring_submit_and_get_events(&ring_);
  // A post of this thread's own must not interrupt the reactor (that would end the next
  // wait at once).
  if (block) reactor_not_blocked(*scheduler_);
  if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
    throw boost::system::system_error(error_code(-ret, boost::system::system_category()), "io_uring_enter");
  }
  complete_ready();
  net::post(ioc_, [this] { pump(); });
}

}  // namespace mcpproxy
