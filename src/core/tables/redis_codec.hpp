#pragma once
// RESP on the wire, sans I/O: hiredis encodes commands (redisFormatCommandArgv) and parses
// replies (redisReader); no socket in here. Driven by redis_client, tested without a server.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mcpproxy {

struct RedisReply {
  enum class Type { nil, status, error, integer, string, array };
  Type type = Type::nil;
  std::string str;  // status, error, string
  std::int64_t integer = 0;
  std::vector<RedisReply> elements;
  bool is_error() const { return type == Type::error; }
};

// Appends one encoded command to `out`.
void redis_encode(std::string& out, const std::vector<std::string>& args);

// Bounds of one reply, checked on the bytes before hiredis sees them (hiredis allocates an
// array's element table as soon as it reads its count, and buffers a bulk string whole).
struct RedisReplyLimits {
  std::size_t max_size = 32U * 1024 * 1024;  // bytes of one reply, framing included
  std::size_t max_elements = 65536;          // of one array
  std::size_t max_depth = 8;                 // arrays within arrays
};

// Feed bytes as they arrive; take complete replies in order.
class RedisParser {
 public:
  explicit RedisParser(RedisReplyLimits limits = {});
  ~RedisParser();
  RedisParser(const RedisParser&) = delete;
  RedisParser& operator=(const RedisParser&) = delete;

  void feed(std::string_view bytes);
  // A complete reply, nullopt when more bytes are needed. A protocol error leaves
  // `failed()` true: the connection must be dropped.
  std::optional<RedisReply> next();
  bool failed() const { return failed_; }
  std::string error() const { return error_; }

 private:
  // Checks the framing of `bytes` against the limits; false (with error_) past one.
  bool within_limits(std::string_view bytes);
  bool header_line_done();
  bool take_line_bytes(std::string_view piece, bool ends_line);
  void element_done();

  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool failed_ = false;
  std::string error_;
  // The scan of the framing, resumed across feeds: a header line being read, or the rest
  // of a bulk string being skipped; per open array, its elements still to come.
  RedisReplyLimits limits_;
  std::string line_;
  std::size_t bulk_left_ = 0;  // bytes of a bulk string and its CRLF still to skip
  std::vector<std::int64_t> open_;
  std::size_t reply_bytes_ = 0;
};

// redis://[user[:password]@]host[:port][/db] and rediss:// (TLS).
struct RedisUrl {
  bool tls = false;
  std::string host;
  std::string port = "6379";
  std::string username;
  std::string password;
  int db = 0;
};
// Throws std::invalid_argument with a clear reason.
RedisUrl parse_redis_url(const std::string& url);

}  // namespace mcpproxy
