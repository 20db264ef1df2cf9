#include "core/decide/placement.hpp"

#include <gtest/gtest.h>

#include <map>

using namespace mcpproxy;

TEST(Placement, OneReplicaIsOrdinalZero) {
  std::mt19937_64 rng(1);
  EXPECT_EQ(place(
                PlacementPolicy::least_sessions, 1, [](int) { return true; }, [](int) { return 0; }, rng),
            0);
}

TEST(Placement, RandomCoversAllPods) {
  std::mt19937_64 rng(1);
  std::map<int, int> seen;
  for (int i = 0; i < 3000; ++i)
    ++seen[place(
        PlacementPolicy::random, 3, [](int) { return true; }, [](int) { return 0; }, rng)];
  ASSERT_EQ(seen.size(), 3U);
  for (const auto& [o, n] : seen) EXPECT_GT(n, 800) << o;
}

TEST(Placement, LeastSessionsEvensOutLoad) {
  std::mt19937_64 rng(7);
  std::vector<std::int64_t> load(4, 0);
  for (int i = 0; i < 4000; ++i) {
    const int o = place(
        PlacementPolicy::least_sessions, 4, [](int) { return true; },
        [&](int p) { return load[static_cast<std::size_t>(p)]; }, rng);
    ++load[static_cast<std::size_t>(o)];
  }
  const auto [lo, hi] = std::minmax_element(load.begin(), load.end());
  EXPECT_LE(*hi - *lo, 40) << "two random choices keep pods within a few percent";
}

TEST(Placement, AvoidsPodsWithManySessions) {
  std::mt19937_64 rng(3);
  int on_busy = 0;
  for (int i = 0; i < 1000; ++i) {
    const int o = place(
        PlacementPolicy::least_sessions, 2, [](int) { return true; }, [](int p) { return p == 0 ? 100 : 0; }, rng);
    on_busy += o == 0;
  }
  EXPECT_EQ(on_busy, 0);
}

TEST(Placement, SkipsEjectedPods) {
  std::mt19937_64 rng(5);
  for (const auto policy : {PlacementPolicy::random, PlacementPolicy::least_sessions}) {
    for (int i = 0; i < 500; ++i) {
      const int o = place(
          policy, 5, [](int p) { return p == 3; }, [](int) { return 0; }, rng);
      EXPECT_EQ(o, 3);
    }
  }
}

TEST(Placement, NoHealthyPodStillPlaces) {
  std::mt19937_64 rng(5);
  const int o = place(
      PlacementPolicy::least_sessions, 3, [](int) { return false; }, [](int) { return 0; }, rng);
  EXPECT_GE(o, 0);
  EXPECT_LT(o, 3);
}

TEST(PodHealth, EjectAndRecover) {
  PodHealth h;
  const auto now = std::chrono::steady_clock::now();
  EXPECT_TRUE(h.healthy(2, now));
  h.eject(2, now + std::chrono::seconds(10));
  EXPECT_FALSE(h.healthy(2, now));
  EXPECT_TRUE(h.healthy(2, now + std::chrono::seconds(11)));
  h.clear(2);
  EXPECT_TRUE(h.healthy(2, now));
  EXPECT_FALSE(h.healthy(kMaxReplicas, now));
}

TEST(PodHealth, AForgottenNameIsPlaceableAgain) {
  PodHealth h;
  const auto t0 = std::chrono::steady_clock::now();
  h.dns_result(2, 1, t0);  // NXDOMAIN
  ASSERT_TRUE(h.name_gone(2));
  ASSERT_FALSE(h.placeable(2, t0));
  // A reload made the pod an IP literal (never looked up): nothing else would clear it.
  h.forget_name(2);
  EXPECT_FALSE(h.name_gone(2));
  EXPECT_EQ(h.dns_failure(2), 0);
  EXPECT_EQ(h.name_gone_for(2, t0 + std::chrono::seconds(5)), std::chrono::steady_clock::duration{});
  EXPECT_TRUE(h.placeable(2, t0));
  // The next NXDOMAIN starts a new count.
  h.dns_result(2, 1, t0 + std::chrono::seconds(10));
  EXPECT_EQ(h.name_gone_for(2, t0 + std::chrono::seconds(12)), std::chrono::seconds(2));
  h.forget_name(-1);  // out of range: ignored
  h.forget_name(kMaxReplicas);
}
