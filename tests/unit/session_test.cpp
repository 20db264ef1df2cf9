#include "mcpproxy/session.hpp"
#include "mcpproxy/session_limiter.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace mcpproxy;

namespace {
SessionRecord on(int ordinal) {
  SessionRecord r;
  r.ordinal = ordinal;
  r.url = "http://pod-" + std::to_string(ordinal);
  return r;
}
}  // namespace

TEST(SessionRecord, RoundTrip) {
  SessionRecord r;
  r.ordinal = 3;
  r.url = "http://myserver-3.h.default.svc.cluster.local:8080";
  r.backend_session = "b-1";
  r.init = R"({"jsonrpc":"2.0","id":1,"method":"initialize"})";
  r.created = 1700000000;
  r.epoch = 7;
  const std::string text = encode_record(r);
  EXPECT_NE(text.find("\"v\":1"), std::string::npos);
  const auto back = decode_record(text);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->ordinal, 3);
  EXPECT_EQ(back->url, r.url);
  EXPECT_EQ(back->backend_session, "b-1");
  EXPECT_EQ(back->init, r.init);
  EXPECT_EQ(back->created, 1700000000);
  EXPECT_EQ(back->epoch, 7U);
  EXPECT_EQ(decode_record(R"({"v":1,"ordinal":0})")->epoch, 0U) << "a record never moved";
}

TEST(SessionRecord, RejectsWhatItDoesNotUnderstand) {
  EXPECT_FALSE(decode_record("not json").has_value());
  EXPECT_FALSE(decode_record(R"({"v":2,"ordinal":0})").has_value());
  EXPECT_FALSE(decode_record(R"({"ordinal":0})").has_value());
  EXPECT_FALSE(decode_record(R"({"v":1,"ordinal":-1})").has_value());
  EXPECT_FALSE(decode_record(R"({"v":1,"ordinal":"0"})").has_value());
  EXPECT_TRUE(decode_record(R"({"v":1,"ordinal":0})").has_value());
}

TEST(SessionTable, InsertFindErase) {
  SessionTable t(100, std::chrono::hours(1));
  EXPECT_EQ(t.find("a"), nullptr);
  t.insert("a", on(1));
  ASSERT_NE(t.find("a"), nullptr);
  EXPECT_EQ(t.find("a")->ordinal, 1);
  EXPECT_EQ(t.sessions_on(1), 1);
  EXPECT_EQ(t.size(), 1U);
  t.insert("a", on(2));  // replaced: moves between pods
  EXPECT_EQ(t.sessions_on(1), 0);
  EXPECT_EQ(t.sessions_on(2), 1);
  EXPECT_TRUE(t.erase("a"));
  EXPECT_FALSE(t.erase("a"));
  EXPECT_EQ(t.find("a"), nullptr);
  EXPECT_EQ(t.sessions_on(2), 0);
  EXPECT_EQ(t.size(), 0U);
}

TEST(SessionTable, TtlSlidesOnlyEveryTenth) {
  const auto t0 = clock::now();
  SessionTable t(100, std::chrono::seconds(100));
  t.insert("a", on(0), t0);
  // Used at 5 s (< ttl/10): no refresh, so it still expires at 100 s.
  ASSERT_NE(t.find("a", t0 + std::chrono::seconds(5)), nullptr);
  // Used at 50 s: refreshed, so it lives until 150 s.
  ASSERT_NE(t.find("a", t0 + std::chrono::seconds(50)), nullptr);
  ASSERT_NE(t.find("a", t0 + std::chrono::seconds(149)), nullptr);
  // 149 s refreshed it again; untouched past 149 + 100 it is gone.
  EXPECT_EQ(t.find("a", t0 + std::chrono::seconds(250)), nullptr);
  EXPECT_EQ(t.expired(), 1U);
  EXPECT_EQ(t.sessions_on(0), 0);
}

TEST(SessionTable, SweepDropsExpired) {
  const auto t0 = clock::now();
  SessionTable t(100, std::chrono::seconds(10));
  t.insert("old", on(0), t0);
  t.insert("new", on(1), t0 + std::chrono::seconds(8));
  EXPECT_EQ(t.sweep(t0 + std::chrono::seconds(11)), 1U);
  EXPECT_EQ(t.size(), 1U);
  EXPECT_EQ(t.sessions_on(0), 0);
  EXPECT_EQ(t.sessions_on(1), 1);
}

TEST(SessionTable, BoundedEvictsLeastRecentlyUsed) {
  SessionTable t(64, std::chrono::hours(1));  // the bound is the table's, however the ids hash
  for (int i = 0; i < 1000; ++i) t.insert("s" + std::to_string(i), on(0));
  EXPECT_EQ(t.size(), 64U);
  EXPECT_EQ(t.evicted(), 1000U - t.size());
  EXPECT_EQ(t.sessions_on(0), static_cast<std::int64_t>(t.size()));
  EXPECT_NE(t.find("s999"), nullptr);  // the newest survives
}

TEST(SessionTable, PinnedSessionsOutliveAFloodOfThreeTimesTheBound) {
  SessionTable t(100, std::chrono::hours(1));
  for (int i = 0; i < 10; ++i) {
    t.insert("streaming-" + std::to_string(i), on(1));
    t.pin("streaming-" + std::to_string(i), +1);
  }
  for (int i = 0; i < 300; ++i) t.insert("flood-" + std::to_string(i), on(0));
  EXPECT_EQ(t.size(), 100U);
  for (int i = 0; i < 10; ++i) EXPECT_NE(t.find("streaming-" + std::to_string(i)), nullptr) << i;
  EXPECT_EQ(t.sessions_on(1), 10);
  // Unpinned, they are sessions like the others again: the next flood takes them.
  for (int i = 0; i < 10; ++i) t.pin("streaming-" + std::to_string(i), -1);
  for (int i = 300; i < 600; ++i) t.insert("flood-" + std::to_string(i), on(0));
  EXPECT_EQ(t.sessions_on(1), 0);
  // A table of pinned sessions grows past its bound rather than drop one.
  SessionTable small(4, std::chrono::hours(1));
  for (int i = 0; i < 6; ++i) {
    small.insert("p" + std::to_string(i), on(0));
    small.pin("p" + std::to_string(i), +1);
  }
  EXPECT_EQ(small.size(), 6U);
  EXPECT_EQ(small.evicted(), 0U);
}

TEST(SessionTable, TheMemoryBoundHoldsAgainstLargeInitializeBodies) {
  SessionTable t(1000000, std::chrono::hours(1), 64 * 1024);
  for (int i = 0; i < 100; ++i) {
    SessionRecord r = on(0);
    r.init = std::string(4096, static_cast<char>('a' + i % 26)) + std::to_string(i);  // each its own record
    t.insert("big-" + std::to_string(i), r);
    EXPECT_LE(t.bytes(), 64U * 1024) << i;
  }
  EXPECT_GT(t.evicted(), 80U) << "about 15 fit in 64 KiB";
  EXPECT_NE(t.find("big-99"), nullptr) << "the newest stays";
  // Sessions with nothing of their own cost a node each: thousands fit.
  SessionTable plain(1000000, std::chrono::hours(1), 1024 * 1024);
  for (int i = 0; i < 5000; ++i) plain.insert("p" + std::to_string(i), on(i % 3));
  EXPECT_EQ(plain.size(), 5000U);
  EXPECT_EQ(plain.evicted(), 0U);
  for (int i = 0; i < 5000; ++i) plain.erase("p" + std::to_string(i));
  EXPECT_EQ(plain.bytes(), 0U) << "every byte charged is given back";
}

TEST(SessionTable, AgreesWithAMapUnderChurn) {
  // Random inserts, moves, erases and lookups against std::map: exercises the index's
  // growth, backward-shift deletion, node reuse and ids longer than the inline key.
  SessionTable t(1'000'000, std::chrono::hours(1));
  std::map<std::string, int> model;
  std::uint64_t x = 88172645463325252ULL;
  auto next = [&x] {
    x ^= x << 13U;
    x ^= x >> 7U;
    x ^= x << 17U;
    return x;
  };
  for (int step = 0; step < 200'000; ++step) {
    const std::uint64_t r = next();
    const std::uint64_t k = r % 5000;
    std::string id = "sess-" + std::to_string(k);
    if (k % 7 == 0) id += std::string(60 + k % 150, 'x');  // beyond the inline key
    switch ((r >> 32U) % 4) {
      case 0:
      case 1: {
        const int ordinal = static_cast<int>((r >> 40U) % 5);
        t.insert(id, on(ordinal));
        model[id] = ordinal;
        break;
      }
      case 2:
        EXPECT_EQ(t.erase(id), model.erase(id) == 1) << id;
        break;
      default: {
        const auto found = t.find(id);
        const auto it = model.find(id);
        ASSERT_EQ(found != nullptr, it != model.end()) << id;
        if (found) {
          EXPECT_EQ(found->ordinal, it->second);
        }
      }
    }
  }
  EXPECT_EQ(t.size(), model.size());
  std::array<std::int64_t, 5> per_pod{};
  for (const auto& [id, ordinal] : model) {
    const auto found = t.find(id);
    ASSERT_NE(found, nullptr) << id;
    EXPECT_EQ(found->ordinal, ordinal);
    ++per_pod[static_cast<std::size_t>(ordinal)];
  }
  for (int o = 0; o < 5; ++o) EXPECT_EQ(t.sessions_on(o), per_pod[static_cast<std::size_t>(o)]);
}

TEST(SessionTable, EqualRecordsAreStoredOnce) {
  SessionTable t(100, std::chrono::hours(1));
  SessionRecord a = on(1);
  a.init = R"({"jsonrpc":"2.0","id":0,"method":"initialize"})";
  a.created = 1;
  SessionRecord b = a;
  b.created = 2;  // not kept by the table
  SessionRecord c = a;
  c.init += " ";
  t.insert("a", a);
  t.insert("b", b);
  t.insert("c", c);
  t.insert("p", on(1));
  t.insert("q", on(1));
  EXPECT_EQ(t.find("a").get(), t.find("b").get());
  EXPECT_NE(t.find("a").get(), t.find("c").get());
  EXPECT_EQ(t.find("c")->init, c.init);
  EXPECT_EQ(t.find("p").get(), t.find("q").get());
  EXPECT_NE(t.find("p").get(), t.find("a").get());
  EXPECT_TRUE(t.find("p")->init.empty());
  // What a re-initialize replays tells records apart too: the target, the fields.
  SessionRecord d = a;
  d.init_fields = "X-Tenant: one\r\n";
  SessionRecord e = a;
  e.init_target = "/mcp?tenant=two";
  t.insert("d", d);
  t.insert("e", e);
  EXPECT_EQ(t.find("d")->init_fields, d.init_fields);
  EXPECT_EQ(t.find("e")->init_target, e.init_target);
  EXPECT_TRUE(t.find("a")->init_fields.empty());
  SessionRecord f;
  f.ordinal = 1;
  f.init_fields = "X-Tenant: one\r\n";  // nothing but fields: not the pod's plain record
  t.insert("f", f);
  EXPECT_EQ(t.find("f")->init_fields, f.init_fields);
  EXPECT_TRUE(t.find("p")->init_fields.empty());
}

TEST(SessionTable, RefusesWhatItCannotHold) {
  SessionTable t(100, std::chrono::hours(1));
  t.insert("", on(0));
  t.insert("neg", on(-1));
  t.insert("far", on(kMaxReplicas));
  EXPECT_EQ(t.size(), 0U);
}

TEST(NewSessionLimiter, AFixedWindowPerClient) {
  NewSessionLimiter limiter;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  const std::chrono::milliseconds window(10000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.admit("a", t0, 3, window), 0U);
  EXPECT_EQ(limiter.admit("a", t0 + std::chrono::milliseconds(2500), 3, window), 8U) << "seconds left, rounded up";
  EXPECT_EQ(limiter.admit("b", t0, 3, window), 0U) << "clients are counted apart";
  EXPECT_EQ(limiter.admit("a", t0 + window, 3, window), 0U) << "a new window";
  EXPECT_EQ(limiter.admit("a", t0, 0, window), 0U) << "0: no bound";
}
