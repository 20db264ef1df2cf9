// The JWKS URL's key cache shared by the workers (jwks.hpp).
#include "core/identity/jwks.hpp"

#include <charconv>

#include "core/http/http1.hpp"

namespace mcpproxy {

void JwksCache::set_keys(std::shared_ptr<const JwkSet> keys) {
  keys_.store(std::move(keys), std::memory_order_release);
  version_.fetch_add(1, std::memory_order_acq_rel);
}

bool JwksCache::ask_refetch(std::chrono::steady_clock::time_point now, duration min_gap) {
  std::function<void()> kick;
  {
    const std::lock_guard lock(mu_);
    if (asked_) return true;
    if (last_ask_ != std::chrono::steady_clock::time_point{} && now - last_ask_ < min_gap) return false;
    last_ask_ = now;
    asked_ = true;
    kick = kick_;
  }
  if (kick) kick();
  return true;
}

void JwksCache::wait_next(std::function<void()> wake) {
  const std::lock_guard lock(mu_);
  waiters_.push_back(std::move(wake));
}

void JwksCache::set_kick(std::function<void()> kick) {
  const std::lock_guard lock(mu_);
  kick_ = std::move(kick);
}

void JwksCache::fetched() {
  std::vector<std::function<void()>> waiters;
  {
    const std::lock_guard lock(mu_);
    asked_ = false;
    waiters.swap(waiters_);
  }
  for (auto& w : waiters) w();
}

std::optional<std::int64_t> cache_max_age(std::string_view cc) {
  std::optional<std::int64_t> age;
  while (!cc.empty()) {
    const auto comma = cc.find(',');
    std::string_view d = cc.substr(0, comma);
    cc = comma == std::string_view::npos ? std::string_view() : cc.substr(comma + 1);
    while (!d.empty() && d.front() == ' ') d.remove_prefix(1);
    while (!d.empty() && d.back() == ' ') d.remove_suffix(1);
    if (http1::iequals(d, "no-store") || http1::iequals(d, "no-cache")) return std::nullopt;
    constexpr std::string_view kMaxAge = "max-age=";
    if (d.size() > kMaxAge.size() && http1::iequals(d.substr(0, kMaxAge.size()), kMaxAge)) {
      std::int64_t v = 0;
      const std::string_view n = d.substr(kMaxAge.size());
      const auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), v);
      if (ec == std::errc{} && p == n.data() + n.size() && v >= 0) age = v;
    }
  }
  return age;
}

}  // namespace mcpproxy
