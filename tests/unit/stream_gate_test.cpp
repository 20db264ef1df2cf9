// StreamGate: the per-session order of a GET stream and the requests behind it, with the
// waiter on one io_context and the stream's progress reported from another thread, as the
// workers do.
#include "path/stream_gate.hpp"

#include "core/decide/placement.hpp"
#include "core/telemetry/metrics.hpp"
#include "io/upstream.hpp"
#include "store/sessions.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <optional>
#include <thread>

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// One wait() on its own io_context: started with poll() (it runs until it registers and
// suspends, or returns), finished with run().
class Waiter {
 public:
  Waiter(mcpproxy::StreamGate& gate, std::string session, std::chrono::milliseconds open_limit,
         std::chrono::milliseconds expect_limit) {
    start_ = clock_type::now();
    net::co_spawn(
        ioc_,
        [&gate, session = std::move(session), open_limit, expect_limit, this]() -> net::awaitable<void> {
          result_ = co_await gate.wait(session, open_limit, expect_limit);
          elapsed_ = clock_type::now() - start_;
        },
        net::detached);
    ioc_.poll();
  }
  bool done() const { return result_.has_value(); }
  // Runs the waiter to its end; returns what wait() returned.
  bool finish() {
    ioc_.run();
    return result_.value();
  }
  clock_type::duration elapsed() const { return elapsed_; }
  void poll() { ioc_.poll(); }

 private:
  net::io_context ioc_;
  clock_type::time_point start_;
  std::optional<bool> result_;
  clock_type::duration elapsed_{};
};

// What another worker does: reports the stream's progress from its own thread.
void from_another_thread(const std::function<void()>& f) { std::thread(f).join(); }

TEST(StreamGate, NothingOpeningMeansNoWait) {
  mcpproxy::StreamGate gate;
  EXPECT_FALSE(gate.any());
  Waiter w(gate, "s1", 10s, 10s);
  ASSERT_TRUE(w.done());
  EXPECT_FALSE(w.finish());
}

TEST(StreamGate, AnotherSessionsStreamHoldsNobody) {
  mcpproxy::StreamGate gate;
  gate.opening("other");
  EXPECT_TRUE(gate.any());
  Waiter w(gate, "s1", 10s, 10s);
  ASSERT_TRUE(w.done());
  EXPECT_FALSE(w.finish());
  gate.opened("other");
  EXPECT_FALSE(gate.any());
}

TEST(StreamGate, ARequestWaitsForTheOpeningStreamsHeadReportedByAnotherWorker) {
  mcpproxy::StreamGate gate;
  gate.opening("s1");
  Waiter w(gate, "s1", 10s, 10s);
  EXPECT_FALSE(w.done());  // registered and suspended
  from_another_thread([&] { gate.opened("s1"); });
  EXPECT_TRUE(w.finish());
  EXPECT_LT(w.elapsed(), 5s);  // woken by opened(), not by the limit
  EXPECT_FALSE(gate.any());
}

TEST(StreamGate, TwoOpeningStreamsHoldUntilBothAreAnswered) {
  mcpproxy::StreamGate gate;
  gate.opening("s1");
  gate.opening("s1");
  Waiter w(gate, "s1", 10s, 10s);
  from_another_thread([&] { gate.opened("s1"); });
  w.poll();
  EXPECT_FALSE(w.done());
  from_another_thread([&] { gate.opened("s1"); });
  EXPECT_TRUE(w.finish());
  EXPECT_LT(w.elapsed(), 5s);
}

TEST(StreamGate, AStreamThatIsNeverAnsweredHoldsNoLongerThanTheOpenLimit) {
  mcpproxy::StreamGate gate;
  gate.opening("s1");
  Waiter w(gate, "s1", 50ms, 10s);
  EXPECT_TRUE(w.finish());
  EXPECT_GE(w.elapsed(), 50ms);
  EXPECT_LT(w.elapsed(), 5s);
  gate.opened("s1");
}

TEST(StreamGate, APodThatHoldsItsStreamsHeadCostsOneWaitNotOnePerRequest) {
  mcpproxy::StreamGate gate;
  gate.opening("s1");
  Waiter first(gate, "s1", 50ms, 10s);
  EXPECT_TRUE(first.finish());
  EXPECT_GE(first.elapsed(), 50ms);
  Waiter second(gate, "s1", 50ms, 10s);
  ASSERT_TRUE(second.done()) << "the session's stream was found slow: no second wait";
  EXPECT_FALSE(second.finish());
  gate.opened("s1");
}

TEST(StreamGate, AnExpectedStreamIsWaitedForThroughItsHead) {
  mcpproxy::StreamGate gate;
  gate.expect("s1", clock_type::now() + 10s);
  EXPECT_TRUE(gate.any());
  Waiter w(gate, "s1", 10s, 10s);
  EXPECT_FALSE(w.done());
  from_another_thread([&] { gate.opening("s1"); });  // the client's GET arrives
  w.poll();
  EXPECT_FALSE(w.done());  // now waiting for the pod's head
  from_another_thread([&] { gate.opened("s1"); });
  EXPECT_TRUE(w.finish());
  EXPECT_LT(w.elapsed(), 5s);
  EXPECT_FALSE(gate.any());
}

TEST(StreamGate, AClientThatOpensNoStreamCostsOneBoundedWait) {
  mcpproxy::StreamGate gate;
  gate.expect("s1", clock_type::now() + 10s);
  Waiter first(gate, "s1", 10s, 30ms);
  EXPECT_TRUE(first.finish());
  EXPECT_GE(first.elapsed(), 30ms);
  EXPECT_LT(first.elapsed(), 5s);
  Waiter second(gate, "s1", 10s, 30ms);
  ASSERT_TRUE(second.done());
  EXPECT_FALSE(second.finish());
  EXPECT_FALSE(gate.any());
}

TEST(StreamGate, AnExpectationThatPassedHoldsNobodyAndIsForgotten) {
  mcpproxy::StreamGate gate;
  gate.expect("s1", clock_type::now() - 1ms);
  Waiter w(gate, "s1", 10s, 10s);
  ASSERT_TRUE(w.done());
  EXPECT_FALSE(w.finish());
  EXPECT_FALSE(gate.any());
}

TEST(StreamGate, ExpectationsOfSessionsThatNeverSendAgainArePruned) {
  mcpproxy::StreamGate gate;
  for (int i = 0; i < 100; ++i) gate.expect("s" + std::to_string(i), clock_type::now() - 1ms);
  gate.expect("last", clock_type::now() - 1ms);  // each expect() prunes what passed
  Waiter w(gate, "unrelated", 10s, 10s);         // so does each wait()
  EXPECT_FALSE(w.finish());
  EXPECT_FALSE(gate.any());
}

// ---- Other worker-side units that need an io_context but no socket ----

std::shared_ptr<const mcpproxy::SessionRecord> run_move(mcpproxy::Sessions& sessions, const std::string& id,
                                                        const mcpproxy::SessionRecord& rec, int from) {
  net::io_context ioc;
  std::shared_ptr<const mcpproxy::SessionRecord> out;
  net::co_spawn(
      ioc, [&]() -> net::awaitable<void> { out = co_await sessions.move(id, rec, from); }, net::detached);
  ioc.run();
  return out;
}

TEST(Sessions, AMoveTheMemoryStoreCannotTakeIsNoSuccess) {
  using mcpproxy::SessionRecord;
  mcpproxy::SessionTable table(2, 10s, SIZE_MAX, mcpproxy::TableRole::store);
  mcpproxy::Metrics metrics;
  mcpproxy::Sessions sessions(table, metrics);
  SessionRecord rec;
  ASSERT_TRUE(table.insert("a", rec));
  ASSERT_TRUE(table.insert("b", rec));
  const auto& set_ok = metrics.store_ops[static_cast<int>(mcpproxy::StoreOp::set)][0];
  const auto& set_error = metrics.store_ops[static_cast<int>(mcpproxy::StoreOp::set)][2];
  SessionRecord moved;
  moved.ordinal = 1;
  moved.backend_session = "on-pod-1";
  moved.epoch = 1;
  // A session in the full table moves: a replacement, always taken.
  EXPECT_EQ(run_move(sessions, "a", moved, 0), nullptr);
  EXPECT_EQ(table.find("a")->ordinal, 1);
  EXPECT_EQ(set_ok.load(), 1U);
  // One that went meanwhile, with live sessions filling the table: not recorded, and the
  // caller is told (the record to follow is the one that was not written), not "moved".
  const auto follow = run_move(sessions, "gone", moved, 0);
  ASSERT_NE(follow, nullptr);
  EXPECT_EQ(follow->ordinal, 1);
  EXPECT_EQ(follow->backend_session, "on-pod-1");
  EXPECT_EQ(table.find("gone"), nullptr);
  EXPECT_EQ(set_error.load(), 1U);
  EXPECT_EQ(set_ok.load(), 1U);
}

TEST(UpstreamPool, AReloadThatChangesAPodsAddressForgetsItsNamesState) {
  net::io_context ioc;
  mcpproxy::Metrics metrics;
  mcpproxy::PodHealth health;
  mcpproxy::UpstreamPool pool(ioc, metrics, health);
  auto named = std::make_shared<mcpproxy::Config>();
  named->backend.replicas = 1;
  named->backend.pods = {mcpproxy::parse_pod_url("http://pod-0.example.invalid:8080")};
  pool.configure(named);
  const auto now = clock_type::now();
  health.dns_result(0, static_cast<std::uint8_t>(mcpproxy::DnsFailure::nxdomain), now);
  ASSERT_FALSE(health.placeable(0, now));
  // The same address again: what its lookups said stands.
  pool.configure(std::make_shared<mcpproxy::Config>(*named));
  EXPECT_TRUE(health.name_gone(0));
  // Now an IP literal, never looked up: nothing else would ever clear the NXDOMAIN.
  auto literal = std::make_shared<mcpproxy::Config>(*named);
  literal->backend.pods = {mcpproxy::parse_pod_url("http://127.0.0.1:8080")};
  pool.configure(literal);
  EXPECT_FALSE(health.name_gone(0));
  EXPECT_EQ(health.dns_failure(0), 0);
  EXPECT_TRUE(health.placeable(0, now));
  EXPECT_EQ(pool.address(0).port, "8080");
}

}  // namespace
