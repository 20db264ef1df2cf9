// The fetcher of sessions.jwt.jwks_url (jwks_fetch.hpp): one HTTP/1.0 GET (so the answer is
// never chunked and ends with the connection), over TLS for https (the system's CAs, the
// URL's host checked), bounded in time and size.
#include "process/jwks_fetch.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include "core/http/http1.hpp"
#include "core/telemetry/log.hpp"
#include "io/timed_connect.hpp"

namespace mcpproxy {
namespace {

constexpr std::size_t kMaxJwks = 1024U * 1024;

struct Fetched {
  bool ok = false;
  std::string error;
  std::string body;
  std::optional<std::int64_t> max_age;
};

template <class Stream>
net::awaitable<Fetched> exchange(Stream& stream, const JwksUrl& url) {
  Fetched out;
  const std::string request = "GET " + url.target + " HTTP/1.0\r\nHost: " + url.host +
                              "\r\nAccept: application/json\r\nUser-Agent: mcp-session-proxy-jwks\r\n\r\n";
  auto [wec, wn] = co_await net::async_write(stream, net::buffer(request), use_tuple);
  std::string in;
  while (!wec && in.size() <= kMaxJwks + 16384) {
    std::array<char, 8192> buf{};
    auto [ec, n] = co_await stream.async_read_some(net::buffer(buf), use_tuple);
    in.append(buf.data(), n);
    if (ec) break;
  }
  http1::Head head;
  if (wec || http1::parse_response(in, 16384, "GET", head) != http1::Status::complete) {
    out.error = wec ? wec.message() : "no HTTP answer";
    co_return out;
  }
  if (head.status != 200) {
    out.error = "status " + std::to_string(head.status);
    co_return out;
  }
  out.body = in.substr(head.size);
  if (head.framing == http1::Framing::length && out.body.size() > head.content_length) {
    out.body.resize(head.content_length);
  }
  if (out.body.size() > kMaxJwks) {
    out.error = "answer over 1MiB";
    co_return out;
  }
  if (const auto cc = head.get("cache-control")) out.max_age = cache_max_age(*cc);
  out.ok = true;
  co_return out;
}

net::awaitable<Fetched> fetch(JwksUrl url, duration timeout) {
  const auto conn = TimedConnection::start(co_await net::this_coro::executor, timeout);
  Fetched out;
  if (const error_code ec = co_await conn->connect(url.host, url.port)) {
    out.error = ec.message();
  } else if (!url.tls) {
    out = co_await exchange(conn->socket(), url);
  } else {
    net::ssl::context tls(net::ssl::context::tls_client);
    tls.set_default_verify_paths();
    tls.set_verify_mode(net::ssl::verify_peer);
    tls.set_verify_callback(net::ssl::host_name_verification(url.host));
    net::ssl::stream<tcp::socket&> stream(conn->socket(), tls);
    SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str());
    auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::client, use_tuple);
    if (hec) {
      out.error = "TLS: " + hec.message();
    } else {
      out = co_await exchange(stream, url);
    }
  }
  conn->finish();
  co_return out;
}

// One fetch into the cache; how long until the next.
net::awaitable<duration> fetch_once(JwksCache& cache, Metrics& metrics, const JwtConfig& j) {
  const auto url = parse_jwks_url(j.jwks_url);
  Fetched got = co_await fetch(*url, j.jwks_fetch_timeout);
  std::optional<JwkSet> set;
  if (got.ok) {
    set = JwkSet::parse(got.body);
    if (!set) got.error = "not a JWKS";
  }
  if (!set) {
    metrics.jwks_fetches[1].fetch_add(1, std::memory_order_relaxed);
    log_event(spdlog::level::warn, "JWKS fetch failed; the cached keys stay",
              {{"url", j.jwks_url}, {"error", got.error}});
    co_return j.jwks_min_refresh;
  }
  metrics.jwks_fetches[0].fetch_add(1, std::memory_order_relaxed);
  metrics.jwks_keys.store(static_cast<std::int64_t>(set->keys().size()), std::memory_order_relaxed);
  cache.set_keys(std::make_shared<const JwkSet>(std::move(*set)));
  const duration lifetime = got.max_age ? duration(*got.max_age * 1000) : j.jwks_refresh;
  co_return std::clamp(lifetime, j.jwks_min_refresh, std::max(j.jwks_refresh, j.jwks_min_refresh) * 12);
}

}  // namespace

net::awaitable<void> jwks_fetch_loop(JwksCache& cache, Metrics& metrics, const std::shared_ptr<const Config>& cfg,
                                     const std::atomic<bool>& stopping) {
  auto executor = co_await net::this_coro::executor;
  auto timer = std::make_shared<net::steady_timer>(executor);
  std::weak_ptr<net::steady_timer> weak = timer;
  cache.set_kick([executor, weak] {
    net::post(executor, [weak] {
      if (auto t = weak.lock()) t->cancel();
    });
  });
  while (!stopping.load()) {
    // A copy, held across the fetch: a reload replaces cfg meanwhile, and `j` must outlive it.
    const std::shared_ptr<const Config> now = cfg;  // NOLINT(performance-unnecessary-copy-initialization)
    const JwtConfig& j = now->sessions.jwt;
    duration next = duration(1000);
    if (now->sessions.binding == BindingKind::jwt && !j.jwks_url.empty()) {
      next = co_await fetch_once(cache, metrics, j);
      // A refetch asked for meanwhile waits for this one's minimum gap.
      cache.fetched();
    } else {
      cache.fetched();
    }
    timer->expires_after(next);
    co_await timer->async_wait(use_tuple);
  }
  cache.set_kick(nullptr);
}

}  // namespace mcpproxy
