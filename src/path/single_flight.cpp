// One flight per key across the workers (single_flight.hpp).
#include "path/single_flight.hpp"

#include <boost/asio/post.hpp>

namespace mcpproxy {

bool SingleFlight::begin(const std::string& key) {
  const std::lock_guard lock(mu_);
  return flights_.try_emplace(key).second;
}

void SingleFlight::end(const std::string& key) {
  std::vector<std::shared_ptr<net::steady_timer>> waiters;
  {
    const std::lock_guard lock(mu_);
    auto it = flights_.find(key);
    if (it == flights_.end()) return;
    waiters = std::move(it->second);
    flights_.erase(it);
  }
  wake_waiters(waiters);
}

void wake_waiters(const std::vector<std::shared_ptr<net::steady_timer>>& waiters) {
  for (const auto& t : waiters) net::post(t->get_executor(), [t] { t->cancel(); });
}

net::awaitable<bool> SingleFlight::wait(const std::string& key, std::chrono::milliseconds limit) {
  const auto executor = co_await net::this_coro::executor;
  std::shared_ptr<net::steady_timer> timer;
  {
    const std::lock_guard lock(mu_);
    auto it = flights_.find(key);
    if (it == flights_.end()) co_return true;
    timer = std::make_shared<net::steady_timer>(executor, limit);
    it->second.push_back(timer);
  }
  auto [ec] = co_await timer->async_wait(use_tuple);
  // Cancelled by end(); else the limit passed with the flight still going.
  co_return ec == net::error::operation_aborted;
}

}  // namespace mcpproxy
