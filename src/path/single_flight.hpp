#pragma once
// One flight per key across the workers: the first caller of begin() runs it, the others
// wait for its end (bounded) and then read what it left. Used for the recovery of a lost
// session: twenty requests of one session that find it lost cause one re-initialize.
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/net.hpp"

namespace mcpproxy {

// Wakes coroutines waiting on these timers, each on its own worker (a timer is cancelled on
// the thread that runs it): the waiters of SingleFlight and of StreamGate.
void wake_waiters(const std::vector<std::shared_ptr<net::steady_timer>>& waiters);

class SingleFlight {
 public:
  // True: the caller runs the flight and must call end(). False: one is in progress.
  bool begin(const std::string& key);
  // The flight is over: its waiters go on (from any thread).
  void end(const std::string& key);
  // Waits until the flight of `key` is over, at most `limit`. True if it ended in time.
  net::awaitable<bool> wait(const std::string& key, std::chrono::milliseconds limit);

 private:
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<net::steady_timer>>> flights_;
};

// Ends a flight begun by this holder when it goes out of scope.
class FlightGuard {
 public:
  FlightGuard(SingleFlight& flights, std::string key) : flights_(flights), key_(std::move(key)) {}
  ~FlightGuard() { flights_.end(key_); }
  FlightGuard(const FlightGuard&) = delete;
  FlightGuard& operator=(const FlightGuard&) = delete;

 private:
  SingleFlight& flights_;
  std::string key_;
};

}  // namespace mcpproxy
