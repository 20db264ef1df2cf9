#pragma once
// The order of a session's GET stream and the requests that follow it, across workers.
//
// A server that asks its client something (elicitation, sampling, roots) sends the request
// on the session's standalone GET stream, and drops it when no stream is open. The SDK
// client opens that stream and sends its next call a fraction of a millisecond apart, on two
// connections. Directly, the server reads them in that order. Through a proxy they reach the
// pod on two pooled connections, and a pod whose event loop polls level-triggered (libuv,
// so every Node.js server) reads a connection it served a moment ago first, whatever
// arrived first: the call overtakes the stream, and the request the tool sends is lost.
//
// So a session's requests that reach the proxy while its GET stream is being opened wait
// until the pod has answered the GET's head (the pod has registered the stream by then), at
// most `backend.stream_open_wait`: the pod sees them in the order the proxy did.
//
// The proxy's worker threads read connections independently, so the proxy itself can read
// the call first when the GET came on a connection another thread is about to read. The
// SDK clients open the GET when the pod accepts `notifications/initialized`: after that
// 202 (for `backend.stream_open_wait`), a request of the session waits for the GET to start
// opening, at most `backend.stream_expect_window`, then for its head. A client that opens
// no GET costs one such wait per session: the session stops expecting one after it.
//
// Nothing is held otherwise; a request checks one atomic counter when no session is in
// either state.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/net.hpp"

namespace mcpproxy {

class StreamGate {
 public:
  // The GET stream of `session` is on its way to the pod (the proxy has read its head).
  void opening(const std::string& session);
  // The pod answered its head, or the exchange ended without one: the session's waiting
  // requests go on. One call per opening().
  void opened(const std::string& session);
  // The pod accepted the session's `notifications/initialized`: its client opens the GET
  // stream now. Until `until`, the session's requests wait for it as for an opening one.
  void expect(const std::string& session, std::chrono::steady_clock::time_point until);
  // True while any session has a GET stream opening or expected: the only check on the
  // common path.
  bool any() const noexcept { return entries_count_.load(std::memory_order_acquire) != 0; }
  // Waits while a GET stream of `session` is opening (at most `open_limit`), or expected (at
  // most `expect_limit` for it to start opening; when it does not, the session stops
  // expecting it). Returns whether it had to wait. Runs on the caller's executor; opened()
  // on any thread wakes it.
  net::awaitable<bool> wait(const std::string& session, std::chrono::milliseconds open_limit,
                            std::chrono::milliseconds expect_limit);

 private:
  using clock = std::chrono::steady_clock;
  struct Entry {
    int streams = 0;          // GETs of the session opening now
    clock::time_point until;  // the GET is expected until then (none since the epoch)
    // A request waited the whole open limit: this pod holds its GET's head back (until a
    // first event, say); the session's later requests do not wait for it again.
    bool slow = false;
    std::vector<std::shared_ptr<net::steady_timer>> waiters;
  };
  // When a waiter of `e` looks again; none when it need not wait (longer). Caller locks.
  static std::optional<clock::time_point> next_deadline(Entry& e, clock::time_point now, clock::time_point give_up,
                                                        clock::time_point stop_expecting);
  // Drops entries whose expectation passed with no GET and nobody waiting (caller locks).
  void prune(clock::time_point now);
  void erase(std::unordered_map<std::string, Entry>::iterator it);
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::deque<std::pair<clock::time_point, std::string>> expiries_;  // of expect(), in order
  std::atomic<std::size_t> entries_count_{0};
};

// Holds a session's GET stream open in the gate until released (the pod's head arrived) or
// destroyed (the exchange ended without one).
class StreamOpening {
 public:
  StreamOpening() = default;
  StreamOpening(StreamGate& gate, std::string session) : gate_(&gate), session_(std::move(session)) {
    gate_->opening(session_);
  }
  ~StreamOpening() { release(); }
  StreamOpening(const StreamOpening&) = delete;
  StreamOpening& operator=(const StreamOpening&) = delete;
  StreamOpening(StreamOpening&& o) noexcept : gate_(o.gate_), session_(std::move(o.session_)) { o.gate_ = nullptr; }
  StreamOpening& operator=(StreamOpening&& o) noexcept {
    if (this != &o) {
      release();
      gate_ = o.gate_;
      session_ = std::move(o.session_);
      o.gate_ = nullptr;
    }
    return *this;
  }
  void release() {
    if (gate_ != nullptr) gate_->opened(session_);
    gate_ = nullptr;
  }

 private:
  StreamGate* gate_ = nullptr;
  std::string session_;
};

}  // namespace mcpproxy
