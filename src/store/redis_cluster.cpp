#include "store/redis_cluster.hpp"

#include <algorithm>

#include "core/telemetry/log.hpp"

namespace mcpproxy {

int key_slot(std::string_view key) {
  // Only the part between the first '{' and the next '}' counts, when that is not empty.
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1) key = key.substr(open + 1, close - open - 1);
  }
  std::uint16_t crc = 0;  // CRC16/XMODEM: polynomial 0x1021, initial 0
  for (const char ch : key) {
    crc = static_cast<std::uint16_t>(crc ^ (static_cast<std::uint8_t>(ch) << 8));
    for (int bit = 0; bit < 8; ++bit) {
      crc = (crc & 0x8000U) != 0 ? static_cast<std::uint16_t>((crc << 1) ^ 0x1021U)
                                 : static_cast<std::uint16_t>(crc << 1);
    }
  }
  return crc % kClusterSlots;
}

std::optional<Redirect> parse_redirect(std::string_view error) {
  Redirect r;
  if (error.starts_with("MOVED ")) {
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    r.ask = true;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const auto space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const std::string_view at = error.substr(space + 1);
  const auto colon = at.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == at.size()) return std::nullopt;
  r.to = RedisEndpoint{std::string(at.substr(0, colon)), std::string(at.substr(colon + 1))};
  return r;
}

namespace {

// The one key a store command names: EVAL's first key, else the first argument.
std::string_view key_of(const std::vector<std::string>& args) {
  if (args.size() >= 4 && (args[0] == "EVAL" || args[0] == "EVALSHA")) return args[3];
  return args.size() >= 2 ? std::string_view(args[1]) : std::string_view();
}

}  // namespace

RedisCluster::RedisCluster(net::io_context& ioc, RedisOptions options, std::string name)
    : ioc_(ioc),
      options_(std::move(options)),
      name_(std::move(name)),
      slots_(kClusterSlots),
      replicas_(kClusterSlots),
      retry_(options_.backoff_max),
      refresh_timer_(ioc) {}

std::shared_ptr<RedisClient> RedisCluster::node(const RedisEndpoint& at) {
  auto& c = nodes_[at.str()];
  if (!c) {
    RedisOptions o = options_;
    o.url.host = at.host;
    o.url.port = at.port;
    o.cluster_seeds.clear();
    o.on_first_attempt = nullptr;  // the cluster is ready when its map is
    o.on_primary = nullptr;
    c = std::make_shared<RedisClient>(ioc_, std::move(o), name_ + "@" + at.str());
    c->start();
  }
  return c;
}

void RedisCluster::start() {
  for (const RedisEndpoint& seed : options_.cluster_seeds) node(seed);
  net::co_spawn(
      ioc_, [self = shared_from_this()] { return self->refresh_loop(); }, net::detached);
}

void RedisCluster::stop() {
  stopped_ = true;
  refresh_timer_.cancel();
  for (auto& [at, c] : nodes_) c->stop();
}

bool RedisCluster::up() const {
  return mapped_ && std::all_of(primaries_.begin(), primaries_.end(), [](const auto& c) { return c->up(); });
}

RedisDiagnosis RedisCluster::diagnosis() const {
  RedisDiagnosis d;
  d.ever_up = retry_.ever_up();
  if (up()) return d;
  if (!problem_.empty()) {
    d.problem = problem_;
    d.misconfigured = misconfigured_;
    return d;
  }
  // No read failed: no node is connected yet, or a primary of the map is not.
  d.problem = mapped_ ? "a primary is not connected" : "no cluster node reachable";
  std::string each;
  const auto add = [&](const std::shared_ptr<RedisClient>& c) {
    if (const auto problem = c->diagnosis().problem; !c->up() && !problem.empty()) {
      each += (each.empty() ? "" : "; ") + problem;
    }
  };
  if (mapped_) {
    std::for_each(primaries_.begin(), primaries_.end(), add);
  } else {
    for (const auto& [at, c] : nodes_) add(c);
  }
  if (!each.empty()) d.problem += " (" + each + ")";
  return d;
}

net::awaitable<bool> RedisCluster::wait_up(const std::shared_ptr<RedisClient>& c) {
  net::steady_timer poll(ioc_);
  const auto until = std::chrono::steady_clock::now() + options_.command_timeout;
  while (!c->up() && std::chrono::steady_clock::now() < until) {
    poll.expires_after(std::chrono::milliseconds(5));
    co_await poll.async_wait(use_tuple);
  }
  co_return c->up();
}

net::awaitable<RedisLink::Result> RedisCluster::without_primary(int slot, const std::vector<std::string>& args) {
  refresh_wanted_ = true;
  const auto& replica = replicas_[static_cast<std::size_t>(slot)];
  Result r;
  if (args[0] == "GET" && replica && replica->up()) {
    std::vector<std::string> readonly{"READONLY"};
    r = co_await replica->command_after(std::move(readonly), args);
    // A record the replica has is the record; its nil is not an answer (the primary may
    // have taken a write the replica had not got): then Redis could not be asked.
    if (!r.ec && r.reply.type != RedisReply::Type::nil) co_return r;
  }
  r = Result{};
  r.ec = make_error_code(RedisError::not_connected);
  co_return r;
}

std::shared_ptr<RedisClient> RedisCluster::follow(int slot, const Redirect& redirect) {
  if (options_.on_redirect) options_.on_redirect(redirect.ask);
  auto to = node(redirect.to);
  if (!redirect.ask) {
    slots_[static_cast<std::size_t>(slot)] = to;  // the slot lives there now
    refresh_wanted_ = true;
  }
  return to;
}

net::awaitable<RedisLink::Result> RedisCluster::command(std::vector<std::string> args) {
  const int slot = key_slot(key_of(args));
  std::shared_ptr<RedisClient> to = slots_[static_cast<std::size_t>(slot)];
  if (!to || !to->up()) co_return co_await without_primary(slot, args);
  bool asking = false;
  Result r;
  // The command, then at most two redirects (a MOVED during a migration can be followed
  // by an ASK for a key already moved).
  for (int hop = 0; hop < 3; ++hop) {
    // (Arguments are named outside the co_await: GCC 12 miscompiles a braced list there.)
    std::vector<std::string> first;
    if (asking) first.emplace_back("ASKING");
    r = co_await to->command_after(std::move(first), args);
    // A primary lost with the command in flight (killed, say): a read goes to its replica.
    if (r.ec == RedisError::connection_lost || r.ec == RedisError::not_connected) {
      co_return co_await without_primary(slot, args);
    }
    const auto redirect = !r.ec && r.reply.is_error() ? parse_redirect(r.reply.str) : std::nullopt;
    if (!redirect) break;
    to = follow(slot, *redirect);
    asking = redirect->ask;
    const bool connected = co_await wait_up(to);
    if (!connected) break;
  }
  // A cluster that is down (a primary failed, no replica promoted yet) means the map is
  // about to change. (A lost connection left the loop through without_primary, which asks
  // for a fresh map itself.)
  if (r.reply.is_error() && r.reply.str.starts_with("CLUSTERDOWN")) refresh_wanted_ = true;
  co_return r;
}

bool RedisCluster::read_map(const RedisReply& reply) {
  // [[start, end, [host, port, id], [replica host, port, id]...], ...]
  const auto endpoint = [](const RedisReply& n) {
    return RedisEndpoint{n.elements[0].str, std::to_string(n.elements[1].integer)};
  };
  std::vector<std::shared_ptr<RedisClient>> slots(kClusterSlots);
  std::vector<std::shared_ptr<RedisClient>> replicas(kClusterSlots);
  std::vector<std::shared_ptr<RedisClient>> primaries;
  for (const RedisReply& range : reply.elements) {
    if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) continue;
    const auto first = std::clamp<std::int64_t>(range.elements[0].integer, 0, kClusterSlots - 1);
    const auto last = std::clamp<std::int64_t>(range.elements[1].integer, 0, kClusterSlots - 1);
    auto primary = node(endpoint(range.elements[2]));
    const bool has_replica = range.elements.size() >= 4 && range.elements[3].elements.size() >= 2;
    auto replica = has_replica ? node(endpoint(range.elements[3])) : nullptr;
    std::fill(slots.begin() + first, slots.begin() + last + 1, primary);
    std::fill(replicas.begin() + first, replicas.begin() + last + 1, replica);
    if (std::find(primaries.begin(), primaries.end(), primary) == primaries.end()) primaries.push_back(primary);
  }
  const bool whole = std::none_of(slots.begin(), slots.end(), [](const auto& p) { return p == nullptr; });
  // A map read mid-failover may leave out the failed primary's ranges: those keep what
  // was known (their replica still answers reads).
  for (std::size_t s = 0; s < slots.size(); ++s) {
    if (slots[s] == nullptr) {
      slots[s] = slots_[s];
      replicas[s] = replicas_[s];
    }
  }
  slots_ = std::move(slots);
  replicas_ = std::move(replicas);
  primaries_ = std::move(primaries);
  return whole;
}

net::awaitable<RedisCluster::MapRead> RedisCluster::refresh() {
  MapRead m;
  const auto add = [&m](const std::string& what) { m.problem += (m.problem.empty() ? "" : "; ") + what; };
  for (auto& [at, c] : nodes_) {
    if (!c->up()) continue;
    m.asked = true;
    std::vector<std::string> slots_cmd{"CLUSTER", "SLOTS"};
    const Result r = co_await c->command(std::move(slots_cmd));
    if (r.ec || r.reply.type != RedisReply::Type::array) {
      const std::string why = r.ec                 ? r.ec.message()
                              : r.reply.is_error() ? r.reply.str
                                                   : std::string("an answer that is not a slot map");
      if (!r.ec && r.reply.is_error() && says_not_a_cluster(r.reply.str)) {
        m.misconfigured = true;
        add("sessions.redis.mode is cluster, but " + at + " is not a cluster node (" + why + ")");
      } else {
        add(at + ": " + why);
      }
      continue;
    }
    const bool whole = read_map(r.reply);
    if (!mapped_ && whole) {
      log_event(spdlog::level::info, "redis cluster mapped",
                {{"client", name_}, {"primaries", std::to_string(primaries_.size())}});
    }
    mapped_ = whole;
    m.read = true;
    m.misconfigured = false;
    m.problem = whole ? "" : "the slot map " + at + " gave leaves slots without a primary";
    co_return m;
  }
  co_return m;
}

void RedisCluster::settle(const MapRead& m) {
  const auto now = std::chrono::steady_clock::now();
  const double jitter = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  if (up()) {
    if (!retry_.up()) retry_.connected(now);  // logged as "redis cluster mapped" (refresh)
    problem_.clear();
    misconfigured_ = false;
    next_read_ = now;
    return;
  }
  // No node connected yet: nothing was sent; their own connections retry (and log).
  if (!m.asked) return;
  if (!m.read || !mapped_) {
    problem_ = m.problem;
    misconfigured_ = m.misconfigured;
    if (options_.on_retry) options_.on_retry(RedisRetryReason::slot_map);
    const auto next = retry_.failed(problem_, now, jitter);
    if (next.report) {
      log_retry(*next.report, "redis cluster slot map", name_, RedisRetryReason::slot_map, problem_, misconfigured_,
                next.wait);
    }
    next_read_ = now + next.wait;
    return;
  }
  // The map is known, a primary in it is not connected (failed, its replica not promoted
  // yet, or its connection still being made): read again, less often the longer it lasts.
  problem_.clear();
  misconfigured_ = false;
  next_read_ = now + retry_.paced(now, jitter);
}

net::awaitable<void> RedisCluster::refresh_loop() {
  auto self = shared_from_this();
  const auto started = std::chrono::steady_clock::now();
  bool reported = false;
  auto since_read = std::chrono::steady_clock::now();
  while (!stopped_) {
    // Read the map until it is known, when a command met a topology change, when a
    // primary is not connected, and every 5 s regardless; never sooner than settle() said.
    const auto now = std::chrono::steady_clock::now();
    if ((!mapped_ || refresh_wanted_ || !up() || now - since_read >= std::chrono::seconds(5)) && now >= next_read_) {
      refresh_wanted_ = false;
      const MapRead m = co_await refresh();
      if (m.read) since_read = now;
      settle(m);
    }
    if (options_.on_cluster_map) {
      const auto reachable = std::count_if(primaries_.begin(), primaries_.end(), [](const auto& p) { return p->up(); });
      options_.on_cluster_map(static_cast<int>(primaries_.size()), static_cast<int>(reachable));
    }
    // Readiness: once the map is known and its primaries connected, once a node said it is
    // not a cluster node, or once the seeds had their connect time without answering.
    if (!reported &&
        (up() || misconfigured_ || now - started > options_.connect_timeout + std::chrono::milliseconds(100))) {
      reported = true;
      if (options_.on_first_attempt) options_.on_first_attempt();
    }
    refresh_timer_.expires_after(std::chrono::milliseconds(up() ? 100 : 20));
    co_await refresh_timer_.async_wait(use_tuple);
  }
}

std::shared_ptr<RedisLink> make_redis_link(net::io_context& ioc, const RedisOptions& options, std::string name) {
  if (!options.cluster_seeds.empty()) return std::make_shared<RedisCluster>(ioc, options, std::move(name));
  return std::make_shared<RedisClient>(ioc, options, std::move(name));
}

}  // namespace mcpproxy
