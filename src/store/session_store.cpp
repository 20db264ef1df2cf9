#include "store/session_store.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>

#include "core/http/http_rules.hpp"
#include "core/telemetry/log.hpp"

namespace mcpproxy {

PodCounts::PodCounts()
    : stored_(new std::atomic<std::int64_t>[kMaxReplicas]), placed_(new std::atomic<std::int64_t>[kMaxReplicas]) {
  for (int i = 0; i < kMaxReplicas; ++i) {
    stored_[i].store(0, std::memory_order_relaxed);
    placed_[i].store(0, std::memory_order_relaxed);
  }
}

std::int64_t PodCounts::load(int ordinal) const {
  if (ordinal < 0 || ordinal >= kMaxReplicas) return 0;
  return std::max<std::int64_t>(
      0, stored_[ordinal].load(std::memory_order_relaxed) + placed_[ordinal].load(std::memory_order_relaxed));
}

void PodCounts::add(int ordinal, std::int64_t delta) {
  if (ordinal >= 0 && ordinal < kMaxReplicas) placed_[ordinal].fetch_add(delta, std::memory_order_relaxed);
}

std::int64_t PodCounts::placed(int ordinal) const { return placed_[ordinal].load(std::memory_order_relaxed); }

void PodCounts::synced(int ordinal, std::int64_t stored, std::int64_t placed_before) {
  // What was placed before the read began is in `stored` now; what came after is not yet.
  stored_[ordinal].store(stored, std::memory_order_relaxed);
  placed_[ordinal].fetch_sub(placed_before, std::memory_order_relaxed);
}

std::string StoreShared::expiry_score() const {
  const auto now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  return std::to_string(now.count() + ttl_ms_.load(std::memory_order_relaxed));
}

void StoreShared::enqueue(QueuedWrite w) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= queue_max_) {
    queue_.pop_front();
    dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  queue_.push_back(std::move(w));
  depth_.store(queue_.size(), std::memory_order_relaxed);
}

void StoreShared::push_front(QueuedWrite w) {
  std::lock_guard lock(mu_);
  if (queue_.size() >= queue_max_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  queue_.push_front(std::move(w));
  depth_.store(queue_.size(), std::memory_order_relaxed);
}

void StoreShared::note_primary(const std::string& address) {
  std::lock_guard lock(primary_mu_);
  if (address == primary_) return;
  if (!primary_.empty()) failovers_.fetch_add(1, std::memory_order_relaxed);
  primary_ = address;
}

std::string StoreShared::primary() const {
  std::lock_guard lock(primary_mu_);
  return primary_;
}

std::optional<QueuedWrite> StoreShared::pop() {
  std::lock_guard lock(mu_);
  if (queue_.empty()) return std::nullopt;
  QueuedWrite w = std::move(queue_.front());
  queue_.pop_front();
  depth_.store(queue_.size(), std::memory_order_relaxed);
  return w;
}

struct RedisStore::Inflight {
  explicit Inflight(net::io_context& ioc) : done(ioc) { done.expires_at(net::steady_timer::time_point::max()); }
  net::steady_timer done;
  Lookup result;
};

RedisStore::RedisStore(net::io_context& ioc, std::shared_ptr<RedisLink> client, StoreShared& shared, Metrics& metrics)
    : ioc_(ioc), client_(std::move(client)), shared_(shared), metrics_(metrics) {}

net::awaitable<RedisLink::Result> RedisStore::timed(StoreOp op, std::vector<std::string> args) {
  const auto start = std::chrono::steady_clock::now();
  auto result = co_await client_->command(std::move(args));
  metrics_.store_duration.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  StoreResult r = StoreResult::ok;
  if (result.ec || result.reply.is_error()) {
    r = StoreResult::error;
  } else if (result.reply.type == RedisReply::Type::nil ||
             (op == StoreOp::expire && result.reply.type == RedisReply::Type::integer && result.reply.integer == 0)) {
    r = StoreResult::miss;
  }
  metrics_.count_store(op, r);
  co_return result;
}

void RedisStore::in_background(StoreOp op, std::vector<std::string> args) {
  net::co_spawn(
      ioc_,
      [self = shared_from_this(), op, args = std::move(args)]() mutable -> net::awaitable<void> {
        co_await self->timed(op, std::move(args));
      },
      net::detached);
}

void RedisStore::index(const std::string& id, int ordinal) {
  in_background(StoreOp::set, {"ZADD", shared_.pod_key(ordinal), shared_.expiry_score(), id});
}

void RedisStore::unindex(const std::string& id, int ordinal) {
  in_background(StoreOp::del, {"ZREM", shared_.pod_key(ordinal), id});
}

net::awaitable<RedisStore::Lookup> RedisStore::get(const std::string& id) {
  if (auto it = inflight_.find(id); it != inflight_.end()) {
    auto shared = it->second;
    co_await shared->done.async_wait(use_tuple);
    co_return shared->result;
  }
  auto mine = std::make_shared<Inflight>(ioc_);
  inflight_.emplace(id, mine);
  std::vector<std::string> args{"GET", shared_.key(id)};

  const auto result = co_await timed(StoreOp::get, std::move(args));
  if (!result.ec && !result.reply.is_error()) {
    mine->result.ok = true;
    if (result.reply.type == RedisReply::Type::string) {
      if (auto rec = decode_record(result.reply.str)) {
        mine->result.record = std::make_shared<const SessionRecord>(std::move(*rec));
      } else {
        log_event(spdlog::level::warn, "redis holds a session record this build cannot read; treated as unknown",
                  {{"session", session_hash(id)}});
      }
    }
  }
  inflight_.erase(id);
  mine->done.cancel();
  co_return mine->result;
}

net::awaitable<RedisStore::Creation> RedisStore::create(const std::string& id, const SessionRecord& rec) {
  std::string value = encode_record(rec);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<std::string> args{"SET", shared_.key(id), value, "PX", shared_.ttl_ms(), "NX"};
    const auto result = co_await timed(StoreOp::set, std::move(args));
    if (result.ec || result.reply.is_error()) {
      // Answer anyway: the record lives in this process and is written when Redis is back.
      shared_.enqueue(QueuedWrite{id, std::move(value), true, rec.ordinal});
      shared_.counts.add(rec.ordinal, 1);
      co_return Creation{};
    }
    if (result.reply.type != RedisReply::Type::nil) {
      index(id, rec.ordinal);
      shared_.counts.add(rec.ordinal, 1);
      co_return Creation{};
    }
    // Another writer holds this id: the first record wins, so every replica routes alike.
    const auto existing = co_await get(id);
    if (existing.record) co_return Creation{true, *existing.record};
    if (!existing.ok) break;
    // Gone between the two commands (it expired, or was deleted): the id is tried once more.
  }
  co_return Creation{true, std::nullopt};
}

namespace {
// KEYS[1] the record; ARGV: the new record, the epoch it was decided on, the TTL in ms.
// 1 when written, else the record that is there now.
constexpr std::string_view kMoveScript = R"lua(
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  local epoch = 0
  if ok and type(rec) == 'table' and type(rec.epoch) == 'number' then epoch = rec.epoch end
  if epoch ~= tonumber(ARGV[2]) then return cur end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
)lua";
}  // namespace

net::awaitable<std::optional<SessionRecord>> RedisStore::move(const std::string& id, const SessionRecord& rec,
                                                              int from) {
  std::string value = encode_record(rec);
  std::vector<std::string> args{"EVAL",
                                std::string(kMoveScript),
                                "1",
                                shared_.key(id),
                                value,
                                std::to_string(rec.epoch == 0 ? 0 : rec.epoch - 1),
                                shared_.ttl_ms()};

  const auto result = co_await timed(StoreOp::set, std::move(args));
  const bool written = !result.ec && !result.reply.is_error() && result.reply.type != RedisReply::Type::string;
  if (result.ec || result.reply.is_error()) shared_.enqueue(QueuedWrite{id, std::move(value), false, rec.ordinal});
  if (written) {
    unindex(id, from);
    index(id, rec.ordinal);
  }
  if (result.ec || result.reply.is_error() || written) {
    shared_.counts.add(from, -1);
    shared_.counts.add(rec.ordinal, 1);
    co_return std::nullopt;
  }
  auto winner = decode_record(result.reply.str);
  if (!winner) {
    log_event(spdlog::level::warn, "redis holds a session record this build cannot read; the move is not written",
              {{"session", session_hash(id)}});
    co_return std::nullopt;
  }
  co_return winner;
}

net::awaitable<void> RedisStore::remove(const std::string& id, int ordinal) {
  // (Arguments are built outside the co_await: GCC 12 miscompiles a braced list there.)
  std::vector<std::string> args{"DEL", shared_.key(id)};
  unindex(id, ordinal);
  shared_.counts.add(ordinal, -1);
  co_await timed(StoreOp::del, std::move(args));
}

void RedisStore::touch(const std::string& id, std::shared_ptr<const SessionRecord> rec) {
  index(id, rec->ordinal);
  net::co_spawn(
      ioc_,
      [self = shared_from_this(), id, rec = std::move(rec)]() -> net::awaitable<void> {
        std::vector<std::string> args{"PEXPIRE", self->shared_.key(id), self->shared_.ttl_ms()};
        const auto r = co_await self->timed(StoreOp::expire, std::move(args));
        const bool gone = !r.ec && r.reply.type == RedisReply::Type::integer && r.reply.integer == 0;
        if (gone) co_await restore_record(*self->client_, self->shared_, self->metrics_, id, *rec);
      },
      net::detached);
}

net::awaitable<bool> restore_record(RedisLink& client, StoreShared& shared, Metrics& metrics, const std::string& id,
                                    const SessionRecord& rec) {
  std::vector<std::string> set{"SET", shared.key(id), encode_record(rec), "PX", shared.ttl_ms(), "NX"};
  const auto r = co_await client.command(std::move(set));
  if (r.ec || r.reply.is_error() || r.reply.type == RedisReply::Type::nil) co_return false;
  metrics.records_restored.fetch_add(1, std::memory_order_relaxed);
  std::vector<std::string> zadd{"ZADD", shared.pod_key(rec.ordinal), shared.expiry_score(), id};
  co_await client.command(std::move(zadd));
  co_return true;
}

namespace {

// The marker's value now (set anew when it is missing); nullopt when Redis cannot be asked.
net::awaitable<std::optional<std::string>> table_marker(RedisLink& client, StoreShared& shared) {
  std::vector<std::string> get{"GET", shared.marker_key()};
  auto r = co_await client.command(std::move(get));
  if (!r.ec && r.reply.type == RedisReply::Type::nil) {
    std::random_device rd;
    const std::string token = std::to_string(rd()) + std::to_string(rd());
    std::vector<std::string> set{"SET", shared.marker_key(), token, "NX"};
    co_await client.command(std::move(set));
    std::vector<std::string> again{"GET", shared.marker_key()};
    r = co_await client.command(std::move(again));
  }
  if (r.ec || r.reply.type != RedisReply::Type::string) co_return std::nullopt;
  co_return r.reply.str;
}

// Writes back every session the table holds, kRestorers at a time (pipelined on the one
// connection); `restored` is how many were written (the others were in Redis already).
// False when Redis went away before every one was tried.
net::awaitable<bool> restore_all(std::shared_ptr<RedisLink> client, StoreShared& shared, SessionTable& table,
                                 Metrics& metrics, std::size_t& restored) {
  constexpr std::size_t kRestorers = 32;
  auto executor = co_await net::this_coro::executor;
  const auto held =
      std::make_shared<std::vector<std::pair<std::string, std::shared_ptr<const SessionRecord>>>>(table.held());
  const auto before = metrics.records_restored.load(std::memory_order_relaxed);
  auto running = std::make_shared<std::size_t>(kRestorers);
  net::steady_timer all_done(executor, net::steady_timer::time_point::max());
  for (std::size_t k = 0; k < kRestorers; ++k) {
    net::co_spawn(
        executor,
        [=, &shared, &metrics, &all_done]() -> net::awaitable<void> {
          for (std::size_t i = k; i < held->size(); i += kRestorers) {
            if (!client->up()) break;
            co_await restore_record(*client, shared, metrics, (*held)[i].first, *(*held)[i].second);
          }
          if (--*running == 0) all_done.cancel();
        },
        net::detached);
  }
  co_await all_done.async_wait(use_tuple);
  restored = metrics.records_restored.load(std::memory_order_relaxed) - before;
  co_return client->up();
}

// Reads the table marker; when it is not the one last seen, Redis lost its records and
// every session the table holds is written back. Returns the marker (nullopt: unreadable).
net::awaitable<std::optional<std::string>> heal_if_lost(std::shared_ptr<RedisLink> client, StoreShared& shared,
                                                        SessionTable& table, Metrics& metrics,
                                                        std::string& marker_seen) {
  auto marker = co_await table_marker(*client, shared);
  if (!marker) co_return marker;
  bool complete = true;
  if (*marker != marker_seen && !marker_seen.empty()) {
    log_event(spdlog::level::warn,
              "redis lost the session records (its table marker changed): writing back the sessions this process "
              "holds",
              {{"held", std::to_string(table.size())}});
    std::size_t restored = 0;
    complete = co_await restore_all(client, shared, table, metrics, restored);
    log_event(spdlog::level::info, "session records written back",
              {{"restored", std::to_string(restored)}, {"complete", complete ? "true" : "false"}});
  }
  // Seen once every record was tried: a write-back cut short starts again.
  if (complete) marker_seen = *marker;
  co_return marker;
}

}  // namespace

net::awaitable<void> flush_queue_loop(std::shared_ptr<RedisLink> client, StoreShared& shared, Metrics& metrics,
                                      const std::atomic<bool>& stopping) {
  auto executor = co_await net::this_coro::executor;
  net::steady_timer tick(executor);
  bool was_up = false;
  while (!stopping.load()) {
    shared.up.store(client->up());
    if (client->up() && !was_up && shared.depth() > 0) {
      log_event(spdlog::level::info, "redis is back: writing queued session records",
                {{"queued", std::to_string(shared.depth())}});
    }
    was_up = client->up();
    // Oldest first, as long as Redis takes them.
    while (client->up()) {
      auto w = shared.pop();
      if (!w) break;
      std::vector<std::string> args = {"SET", shared.key(w->id), w->value, "PX", shared.ttl_ms()};
      if (w->only_if_absent) args.emplace_back("NX");
      const auto r = co_await client->command(std::move(args));
      if (r.ec || r.reply.is_error()) {
        metrics.count_store(StoreOp::set, StoreResult::error);
        shared.push_front(std::move(*w));
        break;
      }
      metrics.count_store(StoreOp::set, r.reply.type == RedisReply::Type::nil ? StoreResult::miss : StoreResult::ok);
      if (r.reply.type != RedisReply::Type::nil) {
        std::vector<std::string> zadd{"ZADD", shared.pod_key(w->ordinal), shared.expiry_score(), w->id};
        co_await client->command(std::move(zadd));
      }
    }
    // The interval bounds how soon a queued record reaches Redis after it returns.
    tick.expires_after(std::chrono::milliseconds(100));
    co_await tick.async_wait(use_tuple);
  }
}

net::awaitable<void> count_loop(std::shared_ptr<RedisLink> client, StoreShared& shared, SessionTable& table,
                                Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                const std::atomic<bool>& stopping) {
  auto executor = co_await net::this_coro::executor;
  net::steady_timer tick(executor);
  std::string marker_seen;
  bool started = false;  // the first marker read is done (or Redis was down at start)
  while (!stopping.load()) {
    std::optional<std::string> marker;
    if (client->up()) marker = co_await heal_if_lost(client, shared, table, metrics, marker_seen);
    // Ready once the marker is known, or once every connection's first attempt failed.
    const bool first_read = !started && (marker.has_value() || shared.connecting.load() == 1);
    if (first_read) {
      started = true;
      shared.connecting.fetch_sub(1);
    }
    const int replicas = cfg->backend.replicas;
    for (int o = 0; o < replicas && client->up(); ++o) {
      const std::int64_t placed_before = shared.counts.placed(o);
      const auto now =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
      std::vector<std::string> trim{"ZREMRANGEBYSCORE", shared.pod_key(o), "-inf", std::to_string(now.count())};
      co_await client->command(std::move(trim));
      std::vector<std::string> card{"ZCARD", shared.pod_key(o)};
      const auto r = co_await client->command(std::move(card));
      if (!r.ec && r.reply.type == RedisReply::Type::integer) shared.counts.synced(o, r.reply.integer, placed_before);
    }
    tick.expires_after(started ? cfg->sessions.redis.counts_interval : std::chrono::milliseconds(10));
    co_await tick.async_wait(use_tuple);
  }
}

RedisOptions redis_options(const Config& cfg) {
  const auto& r = cfg.sessions.redis;
  RedisOptions o;
  // Sentinel mode: the URL gives credentials, TLS and db; the address comes from sentinel.
  o.url = parse_redis_url(r.url.empty() ? "redis://from-the-nodes" : r.url);
  if (r.mode == RedisMode::cluster) {
    for (const std::string& node : r.nodes) {
      const auto colon = node.rfind(':');
      o.cluster_seeds.push_back(RedisEndpoint{node.substr(0, colon), node.substr(colon + 1)});
    }
  }
  if (r.mode == RedisMode::sentinel) {
    for (const std::string& node : r.nodes) {
      const auto colon = node.rfind(':');
      o.sentinels.push_back(RedisEndpoint{node.substr(0, colon), node.substr(colon + 1)});
    }
    o.sentinel_master = r.sentinel_master;
    if (!r.sentinel_password_file.empty()) {
      std::ifstream in(r.sentinel_password_file);
      std::getline(in, o.sentinel_password);
    }
  }
  o.password = o.url.password;
  if (!r.password_file.empty()) {
    std::ifstream in(r.password_file);
    std::getline(in, o.password);
  } else if (const char* env = std::getenv("MCP_SESSION_PROXY_REDIS_PASSWORD"); env != nullptr && o.password.empty()) {
    o.password = env;
  }
  o.connect_timeout = r.connect_timeout;
  o.command_timeout = r.command_timeout;
  o.backoff_max = r.reconnect_max_backoff;
  o.tls_ca_file = r.tls_ca_file;
  o.tls_server_name = r.tls_server_name;
  o.tls_verify = r.tls_verify;
  o.reply_limits = RedisReplyLimits{r.max_reply_size, r.max_reply_elements, r.max_reply_depth};
  return o;
}

}  // namespace mcpproxy
