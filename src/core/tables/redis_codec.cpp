#include "core/tables/redis_codec.hpp"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <boost/url/parse.hpp>
#include <charconv>
#include <stdexcept>

namespace mcpproxy {

void redis_encode(std::string& out, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  argv.reserve(args.size());
  lens.reserve(args.size());
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  const int n = redisFormatCommandArgv(&cmd, static_cast<int>(args.size()), argv.data(), lens.data());
  if (n < 0 || cmd == nullptr) throw std::bad_alloc();
  out.append(cmd, static_cast<std::size_t>(n));
  redisFreeCommand(cmd);
}

struct RedisParser::Impl {
  redisReader* reader = redisReaderCreate();
  ~Impl() { redisReaderFree(reader); }
};

RedisParser::RedisParser(RedisReplyLimits limits) : impl_(std::make_unique<Impl>()), limits_(limits) {
  if (impl_->reader == nullptr) throw std::bad_alloc();
  // hiredis keeps at most this much unread input before it compacts; the scan bounds it anyway.
  impl_->reader->maxbuf = 1024 * 1024;
}

RedisParser::~RedisParser() = default;

void RedisParser::element_done() {
  // An element ended: it may end the arrays it closes, and then the reply.
  while (!open_.empty()) {
    if (--open_.back() > 0) return;
    open_.pop_back();
  }
  reply_bytes_ = 0;
}

bool RedisParser::header_line_done() {
  const char type = line_.empty() ? '\0' : line_.front();
  if (type == '+' || type == '-' || type == ':') {
    element_done();
    return true;
  }
  if (type != '$' && type != '*') {
    error_ = "not a RESP2 reply (type byte " + std::to_string(static_cast<unsigned char>(type)) + ")";
    return false;
  }
  std::int64_t n = 0;
  const char* end = line_.data() + line_.size() - 2;  // before the CRLF
  const auto [p, ec] = std::from_chars(line_.data() + 1, end, n);
  if (ec != std::errc{} || p != end || n < -1) {
    error_ = "a malformed length line";
    return false;
  }
  if (n <= 0) {  // nil, or an empty array (an empty string still has its CRLF to come)
    if (type == '$' && n == 0) {
      bulk_left_ = 2;
      return true;
    }
    element_done();
    return true;
  }
  const auto count = static_cast<std::size_t>(n);
  if (type == '$') {
    if (count > limits_.max_size) {
      error_ = "a bulk string of " + std::to_string(count) + " bytes, past the bound of " +
               std::to_string(limits_.max_size) + " (sessions.redis.max_reply_size)";
      return false;
    }
    bulk_left_ = count + 2;
    return true;
  }
  if (count > limits_.max_elements) {
    error_ = "an array of " + std::to_string(count) + " elements, past the bound of " +
             std::to_string(limits_.max_elements) + " (sessions.redis.max_reply_elements)";
    return false;
  }
  if (open_.size() >= limits_.max_depth) {
    error_ = "arrays nested past the bound of " + std::to_string(limits_.max_depth);
    return false;
  }
  open_.push_back(n);
  return true;
}

bool RedisParser::take_line_bytes(std::string_view piece, bool ends_line) {
  constexpr std::size_t kMaxLine = 64 * 1024;  // a status or error line; lengths are short
  line_.append(piece);
  if (line_.size() > kMaxLine) {
    error_ = "a reply line past " + std::to_string(kMaxLine) + " bytes";
    return false;
  }
  if (!ends_line) return true;
  if (line_.size() < 3 || line_[line_.size() - 2] != '\r') {
    error_ = "a reply line without CRLF";
    return false;
  }
  const bool ok = header_line_done();
  line_.clear();
  return ok;
}

bool RedisParser::within_limits(std::string_view bytes) {
  while (!bytes.empty()) {
    const bool in_bulk = bulk_left_ > 0;
    const auto nl = in_bulk ? std::string_view::npos : bytes.find('\n');
    std::size_t used = nl == std::string_view::npos ? bytes.size() : nl + 1;
    if (in_bulk) used = std::min(bulk_left_, bytes.size());
    // Counted before the bytes are taken: the reply they end resets the count.
    reply_bytes_ += used;
    if (reply_bytes_ > limits_.max_size) {
      error_ = "a reply past " + std::to_string(limits_.max_size) + " bytes (sessions.redis.max_reply_size)";
      return false;
    }
    if (in_bulk) {
      bulk_left_ -= used;
      if (bulk_left_ == 0) element_done();
    } else if (!take_line_bytes(bytes.substr(0, used), nl != std::string_view::npos)) {
      return false;
    }
    bytes.remove_prefix(used);
  }
  return true;
}

void RedisParser::feed(std::string_view bytes) {
  if (failed_) return;
  if (!within_limits(bytes)) {
    failed_ = true;
    return;
  }
  if (redisReaderFeed(impl_->reader, bytes.data(), bytes.size()) != REDIS_OK) {
    failed_ = true;
    error_ = impl_->reader->errstr;
  }
}

namespace {

RedisReply convert(const redisReply* r) {
  RedisReply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::error;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::array;
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      out.type = RedisReply::Type::nil;
      break;
  }
  return out;
}

}  // namespace

std::optional<RedisReply> RedisParser::next() {
  if (failed_) return std::nullopt;
  void* raw = nullptr;
  if (redisReaderGetReply(impl_->reader, &raw) != REDIS_OK) {
    failed_ = true;
    error_ = impl_->reader->errstr;
    return std::nullopt;
  }
  if (raw == nullptr) return std::nullopt;
  auto* reply = static_cast<redisReply*>(raw);
  RedisReply out = convert(reply);
  freeReplyObject(reply);
  return out;
}

RedisUrl parse_redis_url(const std::string& url) {
  auto r = boost::urls::parse_absolute_uri(url);
  if (!r) throw std::invalid_argument("not a URL: " + r.error().message());
  RedisUrl out;
  if (r->scheme() == "rediss") {
    out.tls = true;
  } else if (r->scheme() != "redis") {
    throw std::invalid_argument("scheme must be redis:// or rediss://, got '" + std::string(r->scheme()) + "://'");
  }
  out.host = r->host_type() == boost::urls::host_type::ipv6 ? r->host_ipv6_address().to_string()
                                                            : std::string(r->encoded_host());
  if (out.host.empty()) throw std::invalid_argument("no host");
  if (r->has_port()) out.port = std::string(r->port());
  if (r->has_userinfo()) {
    out.username = std::string(r->user());
    out.password = std::string(r->password());
    // redis://:password@host is the password-only (requirepass) form.
  }
  const std::string path(r->path());
  if (!path.empty() && path != "/") {
    const std::string db = path.substr(1);
    int n = -1;
    const auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), n);
    if (ec != std::errc{} || p != db.data() + db.size() || n < 0) {
      throw std::invalid_argument("the path must be a database number, got '" + path + "'");
    }
    out.db = n;
  }
  return out;
}

}  // namespace mcpproxy
