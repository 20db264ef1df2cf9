// The per-session order of a GET stream and the requests behind it (stream_gate.hpp).
#include "path/stream_gate.hpp"

#include "path/single_flight.hpp"

namespace mcpproxy {

void StreamGate::erase(std::unordered_map<std::string, Entry>::iterator it) {
  entries_.erase(it);
  entries_count_.store(entries_.size(), std::memory_order_release);
}

void StreamGate::prune(clock::time_point now) {
  while (!expiries_.empty() && expiries_.front().first <= now) {
    auto it = entries_.find(expiries_.front().second);
    if (it != entries_.end() && it->second.streams == 0 && it->second.until <= now && it->second.waiters.empty()) {
      erase(it);
    }
    expiries_.pop_front();
  }
}

void StreamGate::opening(const std::string& session) {
  const std::lock_guard lock(mu_);
  Entry& e = entries_[session];
  ++e.streams;
  e.until = {};  // the expected GET came
  entries_count_.store(entries_.size(), std::memory_order_release);
}

void StreamGate::expect(const std::string& session, clock::time_point until) {
  const std::lock_guard lock(mu_);
  prune(clock::now());
  entries_[session].until = until;
  expiries_.emplace_back(until, session);
  entries_count_.store(entries_.size(), std::memory_order_release);
}

void StreamGate::opened(const std::string& session) {
  std::vector<std::shared_ptr<net::steady_timer>> waiters;
  {
    const std::lock_guard lock(mu_);
    auto it = entries_.find(session);
    if (it == entries_.end() || --it->second.streams > 0) return;
    waiters = std::move(it->second.waiters);
    erase(it);
  }
  wake_waiters(waiters);
}

std::optional<StreamGate::clock::time_point> StreamGate::next_deadline(Entry& e, clock::time_point now,
                                                                       clock::time_point give_up,
                                                                       clock::time_point stop_expecting) {
  // No GET came in time: the client opens none now, and nobody waits for it again.
  if (e.streams == 0 && e.until > now && now >= stop_expecting) e.until = {};
  if (e.streams == 0 && e.until <= now) return std::nullopt;
  if (e.slow && e.streams > 0) return std::nullopt;
  if (now >= give_up) {
    if (e.streams > 0) e.slow = true;
    return std::nullopt;
  }
  // An opening stream is waited for up to the open limit; an expected one up to the
  // expect limit (then for its head, if it is opening by then).
  return e.streams > 0 ? give_up : std::min({e.until, stop_expecting, give_up});
}

net::awaitable<bool> StreamGate::wait(const std::string& session, std::chrono::milliseconds open_limit,
                                      std::chrono::milliseconds expect_limit) {
  const auto executor = co_await net::this_coro::executor;
  const auto start = clock::now();
  const auto give_up = start + open_limit;
  const auto stop_expecting = start + expect_limit;
  std::shared_ptr<net::steady_timer> timer;
  bool waited = false;
  for (;;) {
    {
      const std::lock_guard lock(mu_);
      const auto now = clock::now();
      prune(now);
      auto it = entries_.find(session);
      if (it == entries_.end()) co_return waited;
      Entry& e = it->second;
      const auto deadline = next_deadline(e, now, give_up, stop_expecting);
      if (!deadline) {
        if (e.streams == 0 && e.until <= now && e.waiters.empty()) erase(it);
        co_return waited;
      }
      if (!timer) timer = std::make_shared<net::steady_timer>(executor);
      timer->expires_at(*deadline);
      e.waiters.push_back(timer);
    }
    waited = true;
    // Woken by opened() (cancelled) or at the deadline; either way the state is read again.
    auto [ec] = co_await timer->async_wait(use_tuple);
    static_cast<void>(ec);
    const std::lock_guard lock(mu_);
    auto it = entries_.find(session);
    if (it == entries_.end()) co_return true;
    std::erase(it->second.waiters, timer);
  }
}

}  // namespace mcpproxy
