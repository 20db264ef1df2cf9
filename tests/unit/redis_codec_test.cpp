#include "core/tables/redis_codec.hpp"

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

TEST(RedisCodec, RepliesPastTheBoundsFailBeforeAnyAllocation) {
  const RedisReplyLimits limits{1024, 16, 2};
  struct Case {
    std::string wire;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"*2147483647\r\n", "an array of 2147483647 elements"},
           {"$2147483647\r\nabc", "a bulk string of 2147483647 bytes"},
           {"*1\r\n*1\r\n*1\r\n:1\r\n", "nested past the bound of 2"},
           {"*3\r\n$600\r\n" + std::string(600, 'a') + "\r\n$600\r\n" + std::string(500, 'a'),
            "a reply past 1024 bytes"},
           {"+" + std::string(70000, 's'), "a reply past 1024 bytes"},
           {"$x\r\n", "malformed length"},
           {":1\n", "without CRLF"},
           {"$-2\r\n", "malformed length"},
       }) {
    RedisParser p(limits);
    p.feed(c.wire);
    EXPECT_FALSE(p.next().has_value()) << c.wire.substr(0, 20);
    EXPECT_TRUE(p.failed()) << c.wire.substr(0, 20);
    EXPECT_NE(p.error().find(c.error), std::string::npos) << p.error();
  }
}

TEST(RedisCodec, RepliesWithinTheBoundsParseWhateverTheirSplit) {
  const RedisReplyLimits limits{1024, 16, 2};
  // Each reply is within the bounds; together they are past max_size: the count is per reply.
  const std::string big(900, 'b');
  const std::string wire =
      "$900\r\n" + big + "\r\n*2\r\n*2\r\n:1\r\n$0\r\n\r\n$-1\r\n*0\r\n*-1\r\n$900\r\n" + big + "\r\n+OK\r\n";
  for (std::size_t step : {1U, 2U, 7U, 64U, 4096U}) {
    RedisParser p(limits);
    std::vector<RedisReply> replies;
    for (std::size_t at = 0; at < wire.size(); at += step) {
      p.feed(std::string_view(wire).substr(at, step));
      while (auto r = p.next()) replies.push_back(std::move(*r));
    }
    ASSERT_FALSE(p.failed()) << "step " << step << ": " << p.error();
    ASSERT_EQ(replies.size(), 6U) << "step " << step;
    EXPECT_EQ(replies[0].str, big);
    ASSERT_EQ(replies[1].elements.size(), 2U);
    EXPECT_EQ(replies[1].elements[0].elements[1].str, "");
    EXPECT_EQ(replies[1].elements[1].type, RedisReply::Type::nil);
    EXPECT_TRUE(replies[2].elements.empty());
    EXPECT_EQ(replies[4].str, big);
    EXPECT_EQ(replies[5].str, "OK");
  }
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
