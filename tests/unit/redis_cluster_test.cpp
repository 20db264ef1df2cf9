// The cluster's slot and redirect arithmetic, against the values the Redis Cluster
// specification gives.
#include <gtest/gtest.h>

#include "store/redis_cluster.hpp"

using namespace mcpproxy;

TEST(RedisCluster, KeySlotsAreCrc16XmodemModulo16384) {
  EXPECT_EQ(key_slot("123456789"), 0x31C3);  // the CRC16/XMODEM check value
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot(""), 0);
  // Only the hash tag counts, when it is not empty.
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar")) << "an empty first tag: the whole key";
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
}

TEST(RedisCluster, RedirectsNameTheirNode) {
  const auto moved = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved.has_value());
  EXPECT_FALSE(moved->ask);
  EXPECT_EQ(moved->to, (RedisEndpoint{"127.0.0.1", "6381"}));
  const auto ask = parse_redirect("ASK 3999 redis-2.redis:6379");
  ASSERT_TRUE(ask.has_value());
  EXPECT_TRUE(ask->ask);
  EXPECT_EQ(ask->to, (RedisEndpoint{"redis-2.redis", "6379"}));
  EXPECT_FALSE(parse_redirect("ERR wrong number of arguments").has_value());
  EXPECT_FALSE(parse_redirect("MOVED 3999").has_value());
  EXPECT_FALSE(parse_redirect("MOVED 3999 nohostport").has_value());
  EXPECT_FALSE(parse_redirect("CLUSTERDOWN The cluster is down").has_value());
}
