#include "mcpproxy/redis_codec.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

TEST(RedisCodec, EncodesCommandsAsRespArrays) {
  std::string out;
  redis_encode(out, {"SET", "k", "v a l"});
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv a l\r\n");
  redis_encode(out, {"GET", std::string("bin\0ary", 7)});
  EXPECT_EQ(out.substr(31), std::string("*2\r\n$3\r\nGET\r\n$7\r\nbin\0ary\r\n", 26));
}

TEST(RedisCodec, ParsesPipelinedRepliesInOrderAcrossPartialFeeds) {
  RedisParser p;
  const std::string wire = "+OK\r\n:42\r\n$-1\r\n-ERR wrong\r\n$5\r\nhello\r\n*2\r\n:1\r\n$1\r\nx\r\n";
  std::vector<RedisReply> replies;
  for (char c : wire) {  // one byte at a time: the reader keeps partial replies
    p.feed(std::string_view(&c, 1));
    while (auto r = p.next()) replies.push_back(std::move(*r));
  }
  ASSERT_EQ(replies.size(), 6U);
  EXPECT_EQ(replies[0].type, RedisReply::Type::status);
  EXPECT_EQ(replies[0].str, "OK");
  EXPECT_EQ(replies[1].integer, 42);
  EXPECT_EQ(replies[2].type, RedisReply::Type::nil);
  EXPECT_TRUE(replies[3].is_error());
  EXPECT_EQ(replies[3].str, "ERR wrong");
  EXPECT_EQ(replies[4].str, "hello");
  ASSERT_EQ(replies[5].elements.size(), 2U);
  EXPECT_EQ(replies[5].elements[1].str, "x");
  EXPECT_FALSE(p.failed());
}

TEST(RedisCodec, ProtocolErrorFails) {
  RedisParser p;
  p.feed("?garbage\r\n");
  EXPECT_FALSE(p.next().has_value());
  EXPECT_TRUE(p.failed());
}

TEST(RedisUrl, Forms) {
  auto u = parse_redis_url("redis://127.0.0.1:6380/2");
  EXPECT_FALSE(u.tls);
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, "6380");
  EXPECT_EQ(u.db, 2);
  u = parse_redis_url("rediss://alice:s3cret@redis.example:6379");
  EXPECT_TRUE(u.tls);
  EXPECT_EQ(u.username, "alice");
  EXPECT_EQ(u.password, "s3cret");
  EXPECT_EQ(u.db, 0);
  u = parse_redis_url("redis://:only-pass@h");
  EXPECT_EQ(u.username, "");
  EXPECT_EQ(u.password, "only-pass");
  EXPECT_EQ(u.port, "6379");
  EXPECT_EQ(parse_redis_url("redis://[::1]:7000").host, "::1");
  EXPECT_THROW(parse_redis_url("http://h"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis://h/x"), std::invalid_argument);
  EXPECT_THROW(parse_redis_url("redis:///0"), std::invalid_argument);
}
