// The one base64 decoder (base64.hpp) under the rules of its two users: JWS/JWK parts
// (base64url, no padding, canonical) and SEP-2243 header values (standard, padding optional).
#include "core/http/base64.hpp"

#include <gtest/gtest.h>

#include <algorithm>

#include "jwt_mint.hpp"

using namespace mcpproxy;

namespace {

std::optional<std::string> jws(std::string_view in) {
  return base64_decode(in, Base64Alphabet::url, Base64Padding::forbidden_canonical);
}
std::optional<std::string> header(std::string_view in) {
  return base64_decode(in, Base64Alphabet::standard, Base64Padding::optional);
}

// RFC 4648 encoding without padding (jwt_mint's base64url; the standard alphabet from it).
std::string encode(const std::string& bytes, bool url) {
  std::string out = jwt_mint::b64url(bytes);
  if (!url) {
    std::replace(out.begin(), out.end(), '-', '+');
    std::replace(out.begin(), out.end(), '_', '/');
  }
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
