#include "mcpproxy/redis_codec.hpp"

#include <hiredis/hiredis.h>

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

RedisParser::RedisParser() : impl_(std::make_unique<Impl>()) {
  if (impl_->reader == nullptr) throw std::bad_alloc();
}

RedisParser::~RedisParser() = default;

void RedisParser::feed(std::string_view bytes) {
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
