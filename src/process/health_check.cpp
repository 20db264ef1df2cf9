#include "process/health_check.hpp"

#include <boost/asio/write.hpp>
#include <vector>

#include "core/http/http1.hpp"
#include "core/telemetry/log.hpp"
#include "io/timed_connect.hpp"

namespace mcpproxy {
namespace {

constexpr std::size_t kMaxProbeHead = 8192;

}  // namespace

net::awaitable<bool> probe_pod(PodAddress addr, std::string path, duration timeout) {
  const auto conn = TimedConnection::start(co_await net::this_coro::executor, timeout);
  error_code ec = co_await conn->connect(addr.host, addr.port);
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + addr.authority +
                              "\r\nUser-Agent: mcp-session-proxy-health-check\r\nConnection: close\r\n\r\n";
  if (!ec) std::tie(ec, std::ignore) = co_await net::async_write(conn->socket(), net::buffer(request), use_tuple);
  std::string in;
  http1::Head head;
  auto st = http1::Status::need_more;
  while (!ec && st == http1::Status::need_more) {
    std::array<char, 2048> buf{};
    std::size_t n = 0;
    std::tie(ec, n) = co_await conn->socket().async_read_some(net::buffer(buf), use_tuple);
    in.append(buf.data(), n);
    st = http1::parse_response(in, kMaxProbeHead, "GET", head);
  }
  conn->finish();
  co_return st == http1::Status::complete&& head.status >= 200 && head.status < 400;
}

namespace {

// Failed probes in a row, per ordinal; only touched on the admin context.
using Failures = std::shared_ptr<std::vector<int>>;

net::awaitable<void> probe_and_judge(PodHealth& health, Metrics& metrics, Failures failures, int o, PodAddress addr,
                                     std::string path, duration timeout, int limit) {
  const bool up = co_await probe_pod(std::move(addr), path, timeout);
  int& failed = (*failures)[o];
  const bool was_failing = health.probe_failing(o);
  failed = up ? 0 : failed + 1;
  const bool failing = failed >= limit;
  metrics.health_check_up[o].store(up ? 2 : 1, std::memory_order_relaxed);
  if (failing == was_failing) co_return;
  health.probe_result(o, !failing);
  log_event(failing ? spdlog::level::warn : spdlog::level::info,
            failing ? "pod failed its health check: no new sessions placed there"
                    : "pod passed its health check: placed on again",
            {{"pod", std::to_string(o)}, {"path", path}});
}

// The check was turned off (by a reload): every pod is placeable again as far as it goes.
void forget_probes(PodHealth& health, Metrics& metrics, std::vector<int>& failures) {
  for (int o = 0; o < kMaxReplicas; ++o) {
    if (failures[o] != 0 || metrics.health_check_up[o].load(std::memory_order_relaxed) != 0) {
      failures[o] = 0;
      health.probe_result(o, true);
      metrics.health_check_up[o].store(0, std::memory_order_relaxed);
    }
  }
}

}  // namespace

net::awaitable<void> health_check_loop(PodHealth& health, Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                       const std::atomic<bool>& stopping) {
  auto executor = co_await net::this_coro::executor;
  net::steady_timer tick(executor);
  auto failures = std::make_shared<std::vector<int>>(kMaxReplicas, 0);
  while (!stopping.load()) {
    const BackendConfig& b = cfg->backend;  // read before the wait: a reload replaces it
    if (b.health_check_path.empty()) forget_probes(health, metrics, *failures);
    // The probes of a round run side by side; each is bounded by the timeout (< interval).
    for (int o = 0; o < b.replicas && !b.health_check_path.empty(); ++o) {
      net::co_spawn(executor,
                    probe_and_judge(health, metrics, failures, o, b.pods[o], b.health_check_path,
                                    b.health_check_timeout, b.health_check_failures),
                    net::detached);
    }
    tick.expires_after(b.health_check_interval);
    co_await tick.async_wait(use_tuple);
  }
}

}  // namespace mcpproxy
