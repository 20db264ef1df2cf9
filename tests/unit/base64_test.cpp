// The one base64 decoder (base64.hpp) under the rules of its two users: JWS/JWK parts
// (base64url, no padding, canonical) and SEP-2243 header values (standard, padding optional).
#include "core/http/base64.hpp"

#include <gtest/gtest.h>

using namespace mcpproxy;

namespace {

std::optional<std::string> jws(std::string_view in) {
  return base64_decode(in, Base64Alphabet::url, Base64Padding::forbidden_canonical);
}
std::optional<std::string> header(std::string_view in) {
  return base64_decode(in, Base64Alphabet::standard, Base64Padding::optional);
}

// RFC 4648 encoding, for the round trips (no padding).
std::string encode(std::string_view bytes, bool url) {
  const std::string_view chars = url ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                     : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char c : bytes) {
    acc = (acc << 8U) | static_cast<unsigned char>(c);
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out += chars[(acc >> static_cast<unsigned>(bits)) & 63U];
    }
  }
  if (bits > 0) out += chars[(acc << static_cast<unsigned>(6 - bits)) & 63U];
  return out;
}

}  // namespace

TEST(Base64, JwsPartsAreStrictBase64Url) {
  EXPECT_EQ(jws(""), "");
  EXPECT_EQ(jws("aGk"), "hi");
  EXPECT_EQ(jws("-_-_"), "\xfb\xff\xbf");
  EXPECT_FALSE(jws("aGk="));   // no padding
  EXPECT_FALSE(jws("aGl"));    // non-zero bits past the end: one encoding per value
  EXPECT_FALSE(jws("aGk0Y"));  // 4n+1 characters
  EXPECT_FALSE(jws("a"));
  EXPECT_FALSE(jws("a+b/"));  // the standard alphabet's characters
  EXPECT_FALSE(jws("aG k"));
}

TEST(Base64, HeaderValuesAreStandardWithOptionalPadding) {
  EXPECT_EQ(header(""), "");
  EXPECT_EQ(header("YWJj"), "abc");
  EXPECT_EQ(header("w6lsw6hWZQ=="), "\xc3\xa9l\xc3\xa8Ve");
  EXPECT_EQ(header("w6lsw6hWZQ"), "\xc3\xa9l\xc3\xa8Ve");
  EXPECT_EQ(header("YWJj=="), "abc");  // surplus padding is ignored
  EXPECT_EQ(header("===="), "");
  EXPECT_EQ(header("aGl"), "hi");  // the bits past the end are not looked at
  EXPECT_EQ(header("+/+/"), "\xfb\xff\xbf");
  EXPECT_FALSE(header("Y"));
  EXPECT_FALSE(header("Y==="));  // one character once the padding is gone
  EXPECT_FALSE(header("a*bc"));
  EXPECT_FALSE(header("-_-_"));  // the url alphabet's characters
  EXPECT_FALSE(header("a=bc"));  // padding inside
}

TEST(Base64, EveryByteRoundTripsInBothAlphabets) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  // Every length class, and every byte value at the end of a part as well as inside one.
  for (std::size_t len = 0; len <= all.size(); ++len) {
    for (const std::string& part : {all.substr(0, len), all.substr(all.size() - len)}) {
      EXPECT_EQ(jws(encode(part, true)), part);
      EXPECT_EQ(header(encode(part, false)), part);
    }
  }
}
