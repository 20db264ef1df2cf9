#include "core/decide/session_limiter.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>

namespace mcpproxy {
namespace {

constexpr std::size_t kMinRing = 8;

}  // namespace

NewSessionLimiter::NewSessionLimiter() : key_(32, '\0') {
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key_.data()), static_cast<int>(key_.size())) != 1) {
    throw std::runtime_error("no randomness for the new-session limiter's key");
  }
}

std::uint64_t NewSessionLimiter::digest(std::string_view client) const {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  // One context per thread, and the algorithm fetched once: a fresh context per call and
  // OpenSSL 3's implicit fetch cost more than the hash itself.
  thread_local const std::unique_ptr<EVP_MD_CTX, Free> ctx(EVP_MD_CTX_new());
  static EVP_MD* const sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (ctx && sha256 != nullptr && EVP_DigestInit_ex(ctx.get(), sha256, nullptr) == 1 &&
      EVP_DigestUpdate(ctx.get(), key_.data(), key_.size()) == 1 &&
      EVP_DigestUpdate(ctx.get(), client.data(), client.size()) == 1 &&
      EVP_DigestFinal_ex(ctx.get(), md.data(), &len) == 1) {
    std::uint64_t out = 0;
    std::memcpy(&out, md.data(), sizeof out);
    return out;
  }
  return std::hash<std::string_view>{}(client);  // OpenSSL out of memory: a digest still, unkeyed
}

unsigned NewSessionLimiter::admit(std::string_view client, clock::time_point now, std::uint32_t limit,
                                  std::chrono::milliseconds window, std::size_t max_clients) {
  if (limit == 0) return 0;
  const std::uint64_t d = digest(client);
  static_assert(kShards == 16, "the digest's top 4 bits pick the shard, its low bits the index slot");
  Shard& s = shards_[d >> 60U];
  const std::size_t share = std::max<std::size_t>(1, max_clients / kShards);
  std::lock_guard lock(s.mu);
  now = std::max(now, s.newest);
  s.expire(now, window, clients_);
  if (Window* w = s.find(d)) {
    if (w->count < limit) {
      ++w->count;
      return 0;
    }
    return static_cast<unsigned>(std::chrono::ceil<std::chrono::seconds>(w->start + window - now).count());
  }
  while (s.size() >= share) {  // the bound: the oldest window goes
    s.drop_oldest();
    clients_.fetch_sub(1, std::memory_order_relaxed);
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  s.open(d, now).count = 1;
  s.newest = now;
  clients_.fetch_add(1, std::memory_order_relaxed);
  return 0;
}

void NewSessionLimiter::expire(clock::time_point now, std::chrono::milliseconds window) {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    s.expire(now, window, clients_);
  }
}

std::size_t NewSessionLimiter::memory_bytes() {
  std::size_t total = 0;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    total += s.bytes();
  }
  return total;
}

NewSessionLimiter::Window* NewSessionLimiter::Shard::find(std::uint64_t client) {
  if (size_ == 0) return nullptr;
  const std::size_t mask = index_.size() - 1;
  for (std::size_t i = home(client);; i = (i + 1) & mask) {
    const std::uint32_t slot = index_[i];
    if (slot == 0) return nullptr;
    if (ring_[slot - 1].client == client) return &ring_[slot - 1];
  }
}

NewSessionLimiter::Window& NewSessionLimiter::Shard::open(std::uint64_t client, clock::time_point start) {
  if (size_ == ring_.size()) resize(std::max(kMinRing, 2 * ring_.size()));
  const std::size_t slot = (head_ + size_) & (ring_.size() - 1);
  ring_[slot] = Window{client, start, 0};
  ++size_;
  std::size_t i = home(client);
  while (index_[i] != 0) i = (i + 1) & (index_.size() - 1);
  index_[i] = static_cast<std::uint32_t>(slot + 1);
  return ring_[slot];
}

void NewSessionLimiter::Shard::drop_oldest() {
  // By its slot, not its digest: two clients may share a digest (one in 2^64).
  std::size_t i = home(ring_[head_].client);
  while (index_[i] != head_ + 1) i = (i + 1) & (index_.size() - 1);
  index_erase(i);
  head_ = (head_ + 1) & (ring_.size() - 1);
  --size_;
}

void NewSessionLimiter::Shard::index_erase(std::size_t hole) {
  // Linear probing's deletion without tombstones: a later entry of the same run moves into
  // the hole when the hole is between its home slot and where it sits.
  const std::size_t mask = index_.size() - 1;
  for (std::size_t j = (hole + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
    const std::size_t from_home = (j - home(ring_[index_[j] - 1].client)) & mask;
    if (from_home >= ((j - hole) & mask)) {
      index_[hole] = index_[j];
      hole = j;
    }
  }
  index_[hole] = 0;
}

void NewSessionLimiter::Shard::expire(clock::time_point now, std::chrono::milliseconds window,
                                      std::atomic<std::size_t>& clients) {
  std::size_t ended = 0;
  while (size_ > 0 && now - ring_[head_].start >= window) {
    drop_oldest();
    ++ended;
  }
  if (ended == 0) return;
  clients.fetch_sub(ended, std::memory_order_relaxed);
  if (size_ == 0) {
    std::vector<Window>().swap(ring_);
    std::vector<std::uint32_t>().swap(index_);
    head_ = 0;
  } else if (ring_.size() > kMinRing && size_ <= ring_.size() / 4) {
    resize(std::max(kMinRing, std::bit_ceil(2 * size_)));
  }
}

void NewSessionLimiter::Shard::resize(std::size_t capacity) {
  std::vector<Window> ring(capacity);
  for (std::size_t i = 0; i < size_; ++i) ring[i] = ring_[(head_ + i) & (ring_.size() - 1)];
  ring_.swap(ring);
  head_ = 0;
  std::vector<std::uint32_t>(2 * capacity, 0).swap(index_);
  const std::size_t mask = index_.size() - 1;
  for (std::size_t slot = 0; slot < size_; ++slot) {
    std::size_t i = home(ring_[slot].client);
    while (index_[i] != 0) i = (i + 1) & mask;
    index_[i] = static_cast<std::uint32_t>(slot + 1);
  }
}

}  // namespace mcpproxy
