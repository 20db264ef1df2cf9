// RedisStore against a Redis-speaking server on loopback: the commands it sends in the
// background keep the store alive until they end, so a worker that lets go of it meanwhile
// leaves them nothing dangling.
#include "store/session_store.hpp"

#include <gtest/gtest.h>

#include <array>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>
#include <string>

#include "core/tables/redis_codec.hpp"

namespace {

using namespace mcpproxy;
using namespace std::chrono_literals;

// Answers every command of one connection at once: PING with PONG, any other with 1 (what
// ZADD and PEXPIRE answer for a key that exists). Counts the commands other than PING.
net::awaitable<void> serve_one(tcp::acceptor& acceptor, int& commands) {
  auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
  if (ec) co_return;
  RedisParser parser;
  std::array<char, 4096> buf{};
  for (;;) {
    auto [read_ec, n] = co_await socket.async_read_some(net::buffer(buf), use_tuple);
    if (read_ec) co_return;
    parser.feed(std::string_view(buf.data(), n));
    std::string out;
    while (auto cmd = parser.next()) {
      const bool ping = !cmd->elements.empty() && cmd->elements[0].str == "PING";
      if (!ping) ++commands;
      out += ping ? "+PONG\r\n" : ":1\r\n";
    }
    if (parser.failed()) co_return;
    auto [write_ec, written] = co_await net::async_write(socket, net::buffer(out), use_tuple);
    if (write_ec) co_return;
  }
}

// Runs `ioc` until `done` holds or five seconds pass.
template <typename Done>
bool run_until(net::io_context& ioc, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!done() && std::chrono::steady_clock::now() < deadline) ioc.run_one_for(100ms);
  return done();
}

TEST(RedisStore, BackgroundCommandsHoldTheStoreUntilTheyEnd) {
  net::io_context ioc;
  tcp::acceptor acceptor(ioc, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  int commands = 0;
  net::co_spawn(ioc, serve_one(acceptor, commands), net::detached);

  RedisOptions options;
  options.url.host = "127.0.0.1";
  options.url.port = std::to_string(acceptor.local_endpoint().port());
  options.command_timeout = 5s;
  auto link = make_redis_link(ioc, options, "test");
  link->start();
  ASSERT_TRUE(run_until(ioc, [&] { return link->up(); }));

  StoreShared shared("test:", 60s, 16);
  Metrics metrics;
  auto store = std::make_shared<RedisStore>(ioc, link, shared, metrics);
  auto rec = std::make_shared<SessionRecord>();
  rec->ordinal = 1;
  store->touch("session-a", rec);  // ZADD and PEXPIRE, both in the background
  const std::weak_ptr<RedisStore> weak = store;
  store.reset();  // the worker lets go before either command has been sent
  ASSERT_FALSE(weak.expired()) << "the background commands must hold the store";

  ASSERT_TRUE(run_until(ioc, [&] { return weak.expired(); })) << "released once both commands ended";
  EXPECT_EQ(commands, 2);
  // Both ended in the store (it counted them), neither failed.
  const auto count = [&](StoreOp op, StoreResult r) {
    return metrics.store_ops[static_cast<int>(op)][static_cast<int>(r)].load();
  };
  EXPECT_EQ(count(StoreOp::set, StoreResult::ok), 1U);     // the index entry (ZADD)
  EXPECT_EQ(count(StoreOp::expire, StoreResult::ok), 1U);  // the TTL (PEXPIRE)
  EXPECT_EQ(metrics.store_duration.count(), 2U);
  link->stop();
}

}  // namespace
