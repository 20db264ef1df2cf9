// What a Redis server (or anything on its address) sends: the bounded RESP scan and
// hiredis behind it, fed in pieces; every reply that comes out is decoded as a record.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/tables/redis_codec.hpp"
#include "core/tables/session.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t step = 1 + data[0] % 32;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  mcpproxy::RedisParser parser(mcpproxy::RedisReplyLimits{4096, 64, 4});
  for (std::size_t at = 0; at < bytes.size() && !parser.failed(); at += step) {
    parser.feed(bytes.substr(at, step));
    while (auto reply = parser.next()) {
      if (reply->type == mcpproxy::RedisReply::Type::string) (void)mcpproxy::decode_record(reply->str);
      if (reply->elements.size() > 64) __builtin_trap();  // the bound held
    }
  }
  return 0;
}
