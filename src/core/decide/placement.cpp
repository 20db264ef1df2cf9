#include "core/decide/placement.hpp"

#include <vector>

namespace mcpproxy {

int place(PlacementPolicy policy, int replicas, const std::function<bool(int)>& healthy,
          const std::function<std::int64_t(int)>& load, std::mt19937_64& rng) {
  if (replicas <= 1) return 0;
  // Candidates without allocating on the common path: draw, and redraw a few times
  // when the draw lands on an ejected pod; fall back to a scan when many are out.
  auto draw = [&]() -> int {
    std::uniform_int_distribution<int> pick(0, replicas - 1);
    for (int tries = 0; tries < 4; ++tries) {
      const int o = pick(rng);
      if (healthy(o)) return o;
    }
    std::vector<int> ok;
    for (int o = 0; o < replicas; ++o) {
      if (healthy(o)) ok.push_back(o);
    }
    if (ok.empty()) return pick(rng);
    std::uniform_int_distribution<std::size_t> any(0, ok.size() - 1);
    return ok[any(rng)];
  };
  const int a = draw();
  if (policy == PlacementPolicy::random) return a;
  // The second choice is another pod than the first whenever one is healthy.
  std::uniform_int_distribution<int> other(0, replicas - 2);
  int b = a;
  for (int tries = 0; tries < 4 && b == a; ++tries) {
    const int o = other(rng);
    const int candidate = o >= a ? o + 1 : o;
    if (healthy(candidate)) b = candidate;
  }
  if (b == a) b = draw();
  return load(b) < load(a) ? b : a;
}

PodHealth::PodHealth()
    : drained_(new std::atomic<std::uint8_t>[kMaxReplicas]),
      until_(new std::atomic<std::int64_t>[kMaxReplicas]),
      refusing_since_(new std::atomic<std::int64_t>[kMaxReplicas]),
      probe_failing_(new std::atomic<bool>[kMaxReplicas]),
      ejections_(new std::atomic<std::uint64_t>[kMaxReplicas]),
      dns_failure_(new std::atomic<std::uint8_t>[kMaxReplicas]),
      name_gone_since_(new std::atomic<std::int64_t>[kMaxReplicas]) {
  for (int i = 0; i < kMaxReplicas; ++i) {
    ejections_[i].store(0, std::memory_order_relaxed);
    probe_failing_[i].store(false, std::memory_order_relaxed);
    drained_[i].store(0, std::memory_order_relaxed);
    until_[i].store(0, std::memory_order_relaxed);
    refusing_since_[i].store(0, std::memory_order_relaxed);
    dns_failure_[i].store(0, std::memory_order_relaxed);
    name_gone_since_[i].store(0, std::memory_order_relaxed);
  }
}

namespace {
constexpr std::uint8_t kNxdomain = 1;  // DnsFailure::nxdomain
}  // namespace

std::uint8_t PodHealth::dns_result(int ordinal, std::uint8_t failure, std::chrono::steady_clock::time_point now) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return failure;
  if (failure == 0) {
    name_gone_since_[ordinal].store(0, std::memory_order_relaxed);
  } else if (failure == kNxdomain) {
    std::int64_t none = 0;
    name_gone_since_[ordinal].compare_exchange_strong(none, now.time_since_epoch().count(), std::memory_order_relaxed);
  }
  return dns_failure_[ordinal].exchange(failure, std::memory_order_relaxed);
}

void PodHealth::forget_name(int ordinal) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return;
  name_gone_since_[ordinal].store(0, std::memory_order_relaxed);
  dns_failure_[ordinal].store(0, std::memory_order_relaxed);
}

std::uint8_t PodHealth::dns_failure(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return 0;
  return dns_failure_[ordinal].load(std::memory_order_relaxed);
}

bool PodHealth::name_gone(int ordinal) const { return dns_failure(ordinal) == kNxdomain; }

std::chrono::steady_clock::duration PodHealth::name_gone_for(int ordinal,
                                                             std::chrono::steady_clock::time_point now) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return {};
  const std::int64_t since = name_gone_since_[ordinal].load(std::memory_order_relaxed);
  if (since == 0) return {};
  return std::chrono::steady_clock::duration(now.time_since_epoch().count() - since);
}

namespace {
constexpr std::uint8_t kByConfig = 1;
constexpr std::uint8_t kByAdmin = 2;
}  // namespace

void PodHealth::drain_from_config(const std::vector<int>& ordinals) {
  for (int i = 0; i < kMaxReplicas; ++i) drained_[i].fetch_and(static_cast<std::uint8_t>(~kByConfig));
  for (int o : ordinals) {
    if (o >= 0 && o < kMaxReplicas) drained_[o].fetch_or(kByConfig);
  }
}

void PodHealth::drain_from_admin(int ordinal, bool on) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return;
  if (on) {
    drained_[ordinal].fetch_or(kByAdmin);
  } else {
    drained_[ordinal].fetch_and(static_cast<std::uint8_t>(~kByAdmin));
  }
}

void PodHealth::probe_result(int ordinal, bool up) {
  if (ordinal >= 0 && ordinal < kMaxReplicas) probe_failing_[ordinal].store(!up, std::memory_order_relaxed);
}

bool PodHealth::probe_failing(int ordinal) const {
  return ordinal >= 0 && ordinal < kMaxReplicas && probe_failing_[ordinal].load(std::memory_order_relaxed);
}

bool PodHealth::draining(int ordinal) const {
  return ordinal >= 0 && ordinal < kMaxReplicas && drained_[ordinal].load(std::memory_order_relaxed) != 0;
}

std::chrono::steady_clock::time_point PodHealth::ejected_until(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return {};
  return std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(until_[ordinal].load(std::memory_order_relaxed)));
}

std::chrono::steady_clock::duration PodHealth::refused(int ordinal, std::chrono::steady_clock::time_point now) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return {};
  const std::int64_t t = now.time_since_epoch().count();
  std::int64_t since = 0;
  // The first refusal since the pod last answered starts the count.
  if (refusing_since_[ordinal].compare_exchange_strong(since, t, std::memory_order_relaxed)) return {};
  return std::chrono::steady_clock::duration(t - since);
}

void PodHealth::eject(int ordinal, std::chrono::steady_clock::time_point until) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return;
  until_[ordinal].store(until.time_since_epoch().count(), std::memory_order_relaxed);
  ejections_[ordinal].fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t PodHealth::ejections(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return 0;
  return ejections_[ordinal].load(std::memory_order_relaxed);
}

void PodHealth::clear(int ordinal) {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return;
  // Loads first: this runs on every answered request, the stores only after trouble.
  if (until_[ordinal].load(std::memory_order_relaxed) != 0) until_[ordinal].store(0, std::memory_order_relaxed);
  if (refusing_since_[ordinal].load(std::memory_order_relaxed) != 0) {
    refusing_since_[ordinal].store(0, std::memory_order_relaxed);
  }
}

bool PodHealth::healthy(int ordinal, std::chrono::steady_clock::time_point now) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return false;
  return until_[ordinal].load(std::memory_order_relaxed) <= now.time_since_epoch().count();
}

}  // namespace mcpproxy
