// Asynchronous pod-name lookups (dns.hpp): a c-ares channel driven by the worker's loop.
// c-ares says which of its sockets it wants watched (the socket-state callback); each is
// watched with a posix::stream_descriptor (never owning it: c-ares closes its sockets), and
// one timer runs c-ares' own retransmission timeouts.
#include "io/dns.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <map>
#include <mutex>

namespace mcpproxy {
namespace {

class DnsCategory : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "dns"; }
  std::string message(int v) const override {
    return "DNS lookup failed: " + std::string(to_string(static_cast<DnsFailure>(v)));
  }
};

DnsFailure failure_of_status(int status) {
  switch (status) {
    case ARES_SUCCESS:
      return DnsFailure::none;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
      return DnsFailure::nxdomain;
    case ARES_ETIMEOUT:
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return DnsFailure::timeout;
    case ARES_ECONNREFUSED:
      return DnsFailure::no_server;
    default:
      return DnsFailure::servfail;
  }
}

// One lookup: the answer, and the timer its coroutine waits on (cancelled by the answer).
struct Pending {
  explicit Pending(net::io_context& ioc) : timer(ioc) {}
  net::steady_timer timer;
  bool done = false;
  DnsAnswer answer;
  std::uint16_t port = 0;
};

void collect(Pending& p, const ares_addrinfo* res) {
  int ttl = -1;
  for (const ares_addrinfo_node* n = res != nullptr ? res->nodes : nullptr; n != nullptr; n = n->ai_next) {
    if (n->ai_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(n->ai_addr);
      p.answer.endpoints.emplace_back(net::ip::address_v4(ntohl(sin->sin_addr.s_addr)), p.port);
    } else if (n->ai_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(n->ai_addr);
      net::ip::address_v6::bytes_type bytes{};
      std::copy_n(sin6->sin6_addr.s6_addr, bytes.size(), bytes.begin());
      p.answer.endpoints.emplace_back(net::ip::address_v6(bytes), p.port);
    } else {
      continue;
    }
    ttl = ttl < 0 ? n->ai_ttl : std::min(ttl, n->ai_ttl);
  }
  p.answer.ttl = std::chrono::seconds(std::max(ttl, 0));
}

void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
  std::unique_ptr<std::shared_ptr<Pending>> owner(static_cast<std::shared_ptr<Pending>*>(arg));
  Pending& p = **owner;
  p.done = true;
  p.answer.failure = failure_of_status(status);
  if (p.answer.failure == DnsFailure::none) collect(p, res);
  if (p.answer.failure == DnsFailure::none && p.answer.endpoints.empty()) p.answer.failure = DnsFailure::nxdomain;
  if (res != nullptr) ares_freeaddrinfo(res);
  p.timer.cancel();
}

}  // namespace

const boost::system::error_category& dns_category() {
  static const DnsCategory category;
  return category;
}

error_code make_error_code(DnsFailure f) { return {static_cast<int>(f), dns_category()}; }

DnsFailure dns_failure_of(const error_code& ec) {
  return ec.category() == dns_category() ? static_cast<DnsFailure>(ec.value()) : DnsFailure::none;
}

struct DnsResolver::Impl {
  struct Watch {
    Watch(net::io_context& ioc, int fd) : sd(ioc, fd) {}
    net::posix::stream_descriptor sd;
    bool want_read = false;
    bool want_write = false;
    bool reading = false;
    bool writing = false;
  };

  explicit Impl(net::io_context& context) : ioc(context), timer(context) {}
  net::io_context& ioc;
  ares_channel channel = nullptr;
  std::map<int, std::shared_ptr<Watch>> watches;
  net::steady_timer timer;

  static void sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->watches.find(fd);
    if (readable == 0 && writable == 0) {
      if (it == self->watches.end()) return;
      it->second->sd.release();  // c-ares closes the socket; its waits end as aborted
      self->watches.erase(it);
      return;
    }
    if (it == self->watches.end()) it = self->watches.emplace(fd, std::make_shared<Watch>(self->ioc, fd)).first;
    it->second->want_read = readable != 0;
    it->second->want_write = writable != 0;
    self->arm(fd, it->second);
  }

  bool current(int fd, const std::shared_ptr<Watch>& w) const {
    auto it = watches.find(fd);
    return it != watches.end() && it->second == w;
  }

  void arm(int fd, const std::shared_ptr<Watch>& w) {
    if (w->want_read && !w->reading) {
      w->reading = true;
      w->sd.async_wait(net::posix::stream_descriptor::wait_read, [this, fd, w](error_code ec) {
        w->reading = false;
        if (ec) return;  // released (the resolver may be gone): nothing else is touched
        ares_process_fd(channel, fd, ARES_SOCKET_BAD);
        after_process(fd, w);
      });
    }
    if (w->want_write && !w->writing) {
      w->writing = true;
      w->sd.async_wait(net::posix::stream_descriptor::wait_write, [this, fd, w](error_code ec) {
        w->writing = false;
        if (ec) return;
        ares_process_fd(channel, ARES_SOCKET_BAD, fd);
        after_process(fd, w);
      });
    }
  }

  void after_process(int fd, const std::shared_ptr<Watch>& w) {
    if (current(fd, w)) arm(fd, w);
    schedule();
  }

  // c-ares' next retransmission or timeout, if a query is in flight.
  void schedule() {
    timeval tv{};
    if (ares_timeout(channel, nullptr, &tv) == nullptr) return;
    timer.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer.async_wait([this](error_code ec) {
      if (ec) return;
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      schedule();
    });
  }
};

DnsResolver::DnsResolver(net::io_context& ioc) : impl_(std::make_shared<Impl>(ioc)) {
  static std::once_flag once;
  std::call_once(once, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options opts{};
  opts.sock_state_cb = &Impl::sock_state;
  opts.sock_state_cb_data = impl_.get();
  // Short retransmissions: a lost datagram costs 250 ms, not glibc's 5 s; the caller's
  // limit bounds the whole lookup in any case.
  opts.timeout = 250;
  opts.tries = 3;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (ares_init_options(&impl_->channel, &opts, mask) != ARES_SUCCESS) impl_->channel = nullptr;
}

DnsResolver::~DnsResolver() {
  // Ends every query (their callbacks see ARES_EDESTRUCTION) and releases every socket.
  if (impl_->channel != nullptr) ares_destroy(impl_->channel);
  impl_->timer.cancel();
}

net::awaitable<DnsAnswer> DnsResolver::lookup(std::string host, std::uint16_t port, std::chrono::milliseconds limit) {
  auto pending = std::make_shared<Pending>(impl_->ioc);
  pending->port = port;
  if (impl_->channel == nullptr) {
    pending->answer.failure = DnsFailure::no_server;
    co_return pending->answer;
  }
  pending->timer.expires_after(limit);
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  ares_getaddrinfo(impl_->channel, host.c_str(), nullptr, &hints, &on_answer, new std::shared_ptr<Pending>(pending));
  impl_->schedule();
  if (!pending->done) co_await pending->timer.async_wait(use_tuple);
  // Past the limit: the query goes on in c-ares (and ends there); its answer is dropped.
  if (!pending->done) pending->answer.failure = DnsFailure::timeout;
  co_return std::move(pending->answer);
}

}  // namespace mcpproxy
