#include "core/tables/session.hpp"
#include "core/decide/session_limiter.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>
#include <vector>

using namespace mcpproxy;

namespace {
SessionRecord on(int ordinal) {
  SessionRecord r;
  r.ordinal = ordinal;
  r.url = "http://pod-" + std::to_string(ordinal);
  return r;
}

// xorshift64: the churn tests' random steps, the same sequence on every run.
struct XorShift {
  std::uint64_t x = 88172645463325252ULL;
  std::uint64_t operator()() {
    x ^= x << 13U;
    x ^= x >> 7U;
    x ^= x << 17U;
    return x;
  }
};
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
  EXPECT_FALSE(back->init_not_kept);
  EXPECT_EQ(text.find("init_not_kept"), std::string::npos);
  r.init = std::string();
  r.init_not_kept = true;  // said in the record: the session cannot be re-initialized elsewhere
  const auto flagged = decode_record(encode_record(r));
  ASSERT_TRUE(flagged.has_value());
  EXPECT_TRUE(flagged->init_not_kept);
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
  // A table full of pinned sessions takes no new one: it neither drops one nor grows.
  SessionTable small(4, std::chrono::hours(1));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(small.insert("p" + std::to_string(i), on(0)));
    small.pin("p" + std::to_string(i), +1);
  }
  EXPECT_EQ(small.pinned(), 4U);
  EXPECT_FALSE(small.has_room());
  EXPECT_FALSE(small.insert("p4", on(0)));
  std::shared_ptr<const SessionRecord> holder;
  EXPECT_EQ(small.insert_new("p5", on(0), &holder), NewSession::full);
  EXPECT_EQ(small.size(), 4U);
  EXPECT_EQ(small.evicted(), 0U);
  small.pin("p0", -1);
  EXPECT_TRUE(small.has_room()) << "a cache may drop a session that is not pinned";
  EXPECT_EQ(small.insert_new("p5", on(0), &holder), NewSession::inserted);
  EXPECT_EQ(small.find("p0"), nullptr);
  EXPECT_EQ(small.size(), 4U);
}

TEST(SessionTable, ANewSessionNeverTakesALiveIdOver) {
  for (const TableRole role : {TableRole::cache, TableRole::store}) {
    SessionTable t(100, std::chrono::seconds(10), SIZE_MAX, role);
    const auto t0 = clock::now();
    SessionRecord owner = on(0);
    owner.principal = "alice";
    std::shared_ptr<const SessionRecord> holder;
    ASSERT_EQ(t.insert_new("sid", owner, &holder, t0), NewSession::inserted);
    EXPECT_EQ(holder, nullptr);
    SessionRecord intruder = on(1);
    intruder.principal = "mallory";
    EXPECT_EQ(t.insert_new("sid", intruder, &holder, t0 + std::chrono::seconds(1)), NewSession::taken);
    ASSERT_NE(holder, nullptr);
    EXPECT_EQ(holder->ordinal, 0);
    EXPECT_EQ(t.find("sid", t0 + std::chrono::seconds(2))->principal, "alice") << "the record is unchanged";
    EXPECT_EQ(t.sessions_on(1), 0);
    // An expired record holds nothing.
    EXPECT_EQ(t.insert_new("sid", intruder, &holder, t0 + std::chrono::seconds(30)), NewSession::inserted);
    EXPECT_EQ(t.find("sid", t0 + std::chrono::seconds(30))->ordinal, 1);
    EXPECT_EQ(t.size(), 1U);
  }
}

TEST(SessionTable, AnIdReusedAfterExpiryStartsWithNoPins) {
  for (const TableRole role : {TableRole::cache, TableRole::store}) {
    SessionTable t(100, std::chrono::seconds(10), SIZE_MAX, role);
    const auto t0 = clock::now();
    std::shared_ptr<const SessionRecord> holder;
    ASSERT_EQ(t.insert_new("sid", on(0), &holder, t0), NewSession::inserted);
    t.pin("sid", +1);  // the old session's stream
    ASSERT_EQ(t.pinned(), 1U);
    // Expired (not swept): a pod mints the id again, for another session.
    ASSERT_EQ(t.insert_new("sid", on(1), &holder, t0 + std::chrono::seconds(30)), NewSession::inserted);
    EXPECT_EQ(t.pinned(), 0U) << "the old stream's pin is not the new session's";
    EXPECT_EQ(t.pinned_bytes(), 0U);
    t.pin("sid", -1);  // the old stream ends: no pin goes below zero
    EXPECT_EQ(t.pinned(), 0U);
    t.pin("sid", +1);  // the new session's own stream
    EXPECT_EQ(t.pinned(), 1U);
    t.pin("sid", -1);
    EXPECT_EQ(t.pinned(), 0U);
    EXPECT_EQ(t.pinned_bytes(), 0U);
    EXPECT_EQ(t.sessions_on(0), 0);
    EXPECT_EQ(t.sessions_on(1), 1);
    EXPECT_TRUE(t.erase("sid"));
    EXPECT_EQ(t.bytes(), 0U);
  }
}

TEST(SessionTable, AReplacementAlwaysSucceedsAndItsBytesFollow) {
  // A move replaces a session's record: it adds no session, so a full table takes it.
  SessionTable t(2, std::chrono::seconds(10), SIZE_MAX, TableRole::store);
  const auto t0 = clock::now();
  SessionRecord a = on(0);
  a.init = std::string(100, 'i');
  ASSERT_TRUE(t.insert("a", a, t0));
  ASSERT_TRUE(t.insert("b", on(0), t0));
  EXPECT_FALSE(t.insert("c", on(0), t0)) << "full";
  t.pin("a", +1);
  const std::size_t before = t.bytes();
  SessionRecord moved = a;
  moved.ordinal = 1;
  moved.backend_session = std::string(50, 'b');
  EXPECT_TRUE(t.insert("a", moved, t0 + std::chrono::seconds(1)));
  EXPECT_EQ(t.find("a", t0 + std::chrono::seconds(1))->ordinal, 1);
  EXPECT_EQ(t.bytes(), before + 50);
  EXPECT_EQ(t.sessions_on(0), 1);
  EXPECT_EQ(t.sessions_on(1), 1);
  EXPECT_TRUE(t.insert("a", on(1), t0 + std::chrono::seconds(2)));  // and smaller again
  t.pin("a", -1);
  EXPECT_EQ(t.pinned_bytes(), 0U);
  EXPECT_TRUE(t.erase("a"));
  EXPECT_TRUE(t.erase("b"));
  EXPECT_EQ(t.bytes(), 0U);
}

TEST(SessionTable, AsTheStoreAFullTableDropsNoLiveSession) {
  // The memory store: the table is the only copy, so only an expired session makes room.
  SessionTable t(4, std::chrono::seconds(10), SIZE_MAX, TableRole::store);
  const auto t0 = clock::now();
  std::shared_ptr<const SessionRecord> holder;
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(t.insert_new("s" + std::to_string(i), on(0), &holder, t0), NewSession::inserted);
  EXPECT_FALSE(t.has_room(t0 + std::chrono::seconds(5)));
  EXPECT_EQ(t.insert_new("late", on(0), &holder, t0 + std::chrono::seconds(5)), NewSession::full);
  EXPECT_FALSE(t.insert("late", on(0), t0 + std::chrono::seconds(5)));
  EXPECT_EQ(t.evicted(), 0U);
  for (int i = 0; i < 4; ++i) EXPECT_NE(t.find("s" + std::to_string(i), t0 + std::chrono::seconds(5)), nullptr);
  // Used at 5 s, they expire at 15 s: then one goes for the newcomer, counted as expired.
  const auto later = t0 + std::chrono::seconds(16);
  EXPECT_TRUE(t.has_room(later));
  EXPECT_EQ(t.insert_new("late", on(0), &holder, later), NewSession::inserted);
  EXPECT_EQ(t.evicted(), 0U);
  EXPECT_GE(t.expired(), 1U);
  EXPECT_LE(t.size(), 4U);
}

TEST(SessionTable, WritersOnEveryShardAtOnceNeverPassTheBound) {
  SessionTable t(100, std::chrono::hours(1), SIZE_MAX, TableRole::store);
  std::atomic<int> inserted{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      std::shared_ptr<const SessionRecord> holder;
      for (int i = 0; i < 2000; ++i) {
        const NewSession r = t.insert_new("w" + std::to_string(w) + "-" + std::to_string(i), on(w), &holder);
        if (r == NewSession::inserted) inserted.fetch_add(1);
      }
    });
  }
  for (auto& th : writers) th.join();
  EXPECT_EQ(t.size(), 100U);
  EXPECT_EQ(inserted.load(), 100);
}

TEST(SessionTable, PinnedBytesNeverPushTheTablePastItsMemoryBound) {
  constexpr std::size_t kBound = 64 * 1024;
  SessionTable t(1000000, std::chrono::hours(1), kBound);
  const auto big = [](int i) {
    SessionRecord r = on(0);
    r.init = std::string(4096, static_cast<char>('a' + i % 26)) + std::to_string(i);  // each its own record
    return r;
  };
  std::shared_ptr<const SessionRecord> holder;
  ASSERT_EQ(t.insert_new("idle-0", big(100), &holder), NewSession::inserted);
  ASSERT_EQ(t.insert_new("idle-1", big(101), &holder), NewSession::inserted);
  int streams = 0;
  for (int i = 0; i < 40; ++i) {
    const std::string id = "stream-" + std::to_string(i);
    if (t.insert_new(id, big(i), &holder) == NewSession::full) break;
    t.pin(id, +1);
    ++streams;
    ASSERT_LE(t.bytes(), kBound) << i;
  }
  EXPECT_GT(streams, 10);
  EXPECT_LT(streams, 16) << "about 15 fit in 64 KiB";
  EXPECT_LE(t.pinned_bytes(), kBound);
  EXPECT_EQ(t.insert_new("one-more", big(99), &holder), NewSession::full);
  EXPECT_EQ(t.evicted(), 2U) << "a cache's idle sessions went first, never a pinned one";
  for (int i = 0; i < streams; ++i) EXPECT_NE(t.find("stream-" + std::to_string(i)), nullptr);
  // As the store, a record whose body does not fit is kept without it.
  SessionTable store(1000000, std::chrono::hours(1), kBound, TableRole::store);
  int without = 0;
  for (int i = 0; i < 40; ++i) {
    const NewSession r = store.insert_new("s" + std::to_string(i), big(i), &holder);
    ASSERT_NE(r, NewSession::full) << i;
    without += r == NewSession::inserted_without_init ? 1 : 0;
    ASSERT_LE(store.bytes(), kBound) << i;
  }
  EXPECT_GT(without, 20);
  const auto last = store.find("s39");
  ASSERT_NE(last, nullptr);
  EXPECT_TRUE(last->init.empty());
  EXPECT_TRUE(last->init_not_kept);
  EXPECT_EQ(store.evicted(), 0U);
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
  XorShift next;
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

TEST(SessionTable, PinsAgreeWithAModelUnderChurnAndTheBoundsHold) {
  // Random new sessions, pins, unpins, erases and lookups against std::map, in both roles:
  // the pinned sums follow, a pinned session is never dropped, the count bound holds, and
  // as the store no live session is dropped and an id is never taken over.
  for (const TableRole role : {TableRole::cache, TableRole::store}) {
    constexpr std::size_t kMax = 700;
    SessionTable t(kMax, std::chrono::hours(1), SIZE_MAX, role);
    std::map<std::string, std::pair<int, int>> model;  // id -> {ordinal, pins}
    XorShift next;
    std::shared_ptr<const SessionRecord> holder;
    for (int step = 0; step < 100'000; ++step) {
      const std::uint64_t r = next();
      std::string id = "sess-" + std::to_string(r % 1000);
      if (r % 11 == 0) id += std::string(50, 'x');  // beyond the inline key
      // A cache may have dropped an unpinned session: the model learns it from the table.
      if (role == TableRole::cache && model.count(id) != 0 && model[id].second == 0 && !t.find(id)) model.erase(id);
      const auto it = model.find(id);
      switch ((r >> 32U) % 5) {
        case 0: {
          const int ordinal = static_cast<int>((r >> 40U) % 5);
          const NewSession got = t.insert_new(id, on(ordinal), &holder);
          if (it != model.end()) {
            ASSERT_EQ(got, NewSession::taken) << id;
            EXPECT_EQ(holder->ordinal, it->second.first);
          } else if (got != NewSession::full) {
            model[id] = {ordinal, 0};
          } else {
            ASSERT_TRUE(role == TableRole::store || t.pinned() >= kMax) << id;
          }
          break;
        }
        case 1:
          if (it != model.end() && it->second.second < 200) {
            t.pin(id, +1);
            ++it->second.second;
          }
          break;
        case 2:
          if (it != model.end() && it->second.second > 0) {
            t.pin(id, -1);
            --it->second.second;
          }
          break;
        case 3:
          EXPECT_EQ(t.erase(id), it != model.end()) << id;
          if (it != model.end()) model.erase(it);
          break;
        default:
          ASSERT_EQ(t.find(id) != nullptr, it != model.end()) << id;
      }
      ASSERT_LE(t.size(), kMax);
    }
    std::size_t pinned = 0;
    for (const auto& [id, v] : model) {
      pinned += v.second > 0 ? 1 : 0;
      // (A cache may have dropped the unpinned ones since they were last looked at.)
      if (v.second > 0 || role == TableRole::store) {
        ASSERT_NE(t.find(id), nullptr) << id;
      }
    }
    EXPECT_EQ(t.pinned(), pinned);
    if (role == TableRole::store) {
      EXPECT_EQ(t.size(), model.size());
    }
    EXPECT_EQ(t.evicted() == 0, role == TableRole::store);
    for (const auto& [id, v] : model) {
      for (int k = 0; k < v.second; ++k) t.pin(id, -1);
      t.erase(id);
    }
    EXPECT_EQ(t.size(), 0U);
    EXPECT_EQ(t.pinned(), 0U);
    EXPECT_EQ(t.pinned_bytes(), 0U);
    EXPECT_EQ(t.bytes(), 0U) << "every byte charged is given back";
  }
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
