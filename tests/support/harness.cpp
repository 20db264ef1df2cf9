#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace harness {
namespace http = boost::beast::http;
using clock = std::chrono::steady_clock;

std::uint16_t free_port() {
  // Below the kernel's ephemeral range: a port the kernel hands out for port 0 is also one
  // it hands to outgoing connections, and the flood tests open thousands of those, so one
  // could take the port between this pick and the server's bind (seen in CI). Outside the
  // range only another pick can, and the proxy's start retries on that (Proxy below).
  std::uint16_t low = 32768;
  if (std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range"); range) {
    unsigned first = 0;
    if (range >> first && first > 11000 && first <= 65535) low = static_cast<std::uint16_t>(first);
  }
  thread_local std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(10000, low - 1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(pick(rng)));
    const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (bound) return ntohs(addr.sin_port);
  }
  throw std::runtime_error("no free port below the ephemeral range");
}

Process::Process(std::vector<std::string> argv, std::string stderr_path) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    if (!stderr_path.empty()) {
      const int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (err >= 0) ::dup2(err, STDERR_FILENO);
    }
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  out_fd_ = out[0];
}

Process::~Process() {
  if (running()) {
    signal(SIGKILL);
    wait(std::chrono::seconds(10));
  }
  if (out_fd_ >= 0) ::close(out_fd_);
}

std::optional<std::string> Process::read_line(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    const auto nl = pending_.find('\n');
    if (nl != std::string::npos) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    pending_.append(buf, static_cast<std::size_t>(n));
  }
}

void Process::signal(int signo) {
  if (pid_ > 0 && !status_) ::kill(pid_, signo);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (status_) return status_;
  const auto deadline = clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      return status_;
    }
    if (clock::now() >= deadline) return std::nullopt;
    // The child's exit is the event waited for; this poll interval only bounds the latency.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool Process::running() { return !wait(std::chrono::milliseconds(0)).has_value(); }

std::string Response::header(const std::string& name) const {
  std::string lower;
  for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto it = headers.find(lower);
  return it == headers.end() ? "" : it->second;
}

namespace {

int connect_to(std::uint16_t port, const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::string build_request(const std::string& method, const std::string& target, const std::string& body,
                          const Headers& headers, const std::string& host, std::uint16_t port) {
  std::ostringstream out;
  out << method << " " << target << " HTTP/1.1\r\nHost: " << host << ":" << port << "\r\n";
  bool has_type = false;
  bool has_accept = false;
  for (const auto& [k, v] : headers) {
    out << k << ": " << v << "\r\n";
    has_type |= strcasecmp(k.c_str(), "content-type") == 0;
    has_accept |= strcasecmp(k.c_str(), "accept") == 0;
  }
  if (!has_accept) out << "Accept: application/json, text/event-stream\r\n";
  if (!body.empty() && !has_type) out << "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST") out << "Content-Length: " << body.size() << "\r\n";
  out << "\r\n" << body;
  return out.str();
}

bool send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

RawConnection::RawConnection(std::uint16_t port, const std::string& host) : fd_(connect_to(port, host)) {}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(const std::string& bytes) { return fd_ >= 0 && send_all(fd_, bytes); }

bool RawConnection::read_until(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (received_.find(text) == std::string::npos) {
    if (closed_ || fd_ < 0) return false;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    pollfd p{fd_, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return received_.find(text) != std::string::npos;
    }
    received_.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

bool RawConnection::read_to_close(std::chrono::milliseconds timeout) {
  // No text can match a NUL-led marker in these tests: reads until the close.
  read_until(std::string("\0never", 6), timeout);
  return closed_;
}

struct Stream::Impl {
  int fd = -1;
  http::response_parser<http::string_body> parser;
  std::string input;  // received bytes the parser has not consumed yet
};

Stream::Stream(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body,
               const Headers& headers, const std::string& host)
    : impl_(new Impl) {
  impl_->parser.body_limit(boost::none);
  impl_->parser.eager(true);
  if (method == "HEAD") impl_->parser.skip(true);
  impl_->fd = connect_to(port, host);
  if (impl_->fd < 0 || !send_all(impl_->fd, build_request(method, target, body, headers, host, port))) {
    done_ = true;
    return;
  }
  const auto deadline = clock::now() + std::chrono::seconds(30);
  while (!impl_->parser.is_header_done() && !done_ && clock::now() < deadline) read_some(std::chrono::seconds(30));
  if (impl_->parser.is_header_done()) {
    status_ = impl_->parser.get().result_int();
    for (const auto& f : impl_->parser.get()) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      headers_[name] = std::string(f.value());
    }
  }
}

Stream::~Stream() {
  close();
  delete impl_;
}

void Stream::close() {
  if (impl_->fd >= 0) {
    ::close(impl_->fd);
    impl_->fd = -1;
  }
  done_ = true;
}

std::string Stream::header(const std::string& name) const {
  Response r;
  r.headers = headers_;
  return r.header(name);
}

bool Stream::read_some(std::chrono::milliseconds timeout) {
  if (done_ || impl_->fd < 0) return false;
  pollfd p{impl_->fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buf[65536];
  const ssize_t n = ::recv(impl_->fd, buf, sizeof buf, 0);
  if (n <= 0) {
    boost::beast::error_code ec;
    impl_->parser.put_eof(ec);
    done_ = true;
    ended_ = clock::now();
    body_ = impl_->parser.get().body();
    return false;
  }
  impl_->input.append(buf, static_cast<std::size_t>(n));
  while (!impl_->input.empty() && !impl_->parser.is_done()) {
    boost::beast::error_code ec;
    const auto consumed = impl_->parser.put(boost::asio::buffer(impl_->input), ec);
    impl_->input.erase(0, consumed);
    if (ec == http::error::need_more) break;
    if (ec) {
      done_ = true;
      return false;
    }
    if (consumed == 0) break;
  }
  const std::string& b = impl_->parser.get().body();
  if (b.size() > body_.size()) {
    body_ = b;
    arrivals_.emplace_back(body_.size(), clock::now());
  }
  if (impl_->parser.is_done()) {
    done_ = true;
    ended_ = clock::now();
  }
  return true;
}

bool Stream::read_until(const std::string& text, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (body_.find(text) == std::string::npos) {
    if (done_ || clock::now() >= deadline) return false;
    read_some(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
  }
  return true;
}

bool Stream::read_to_end(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (!done_) {
    if (clock::now() >= deadline) return false;
    read_some(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
  }
  return impl_->parser.is_done();
}

std::optional<clock::time_point> Stream::seen_at(const std::string& text) const {
  const auto at = body_.find(text);
  if (at == std::string::npos) return std::nullopt;
  for (const auto& [size, when] : arrivals_) {
    if (size >= at + text.size()) return when;
  }
  return std::nullopt;
}

Response request(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body,
                 const Headers& headers, const std::string& host) {
  Stream s(port, method, target, body, headers, host);
  Response r;
  if (s.status() == 0) return r;
  s.read_to_end(std::chrono::seconds(30));
  r.status = s.status();
  for (const char* h : {"content-type", "mcp-session-id", "content-length", "transfer-encoding", "connection",
                        "x-accel-buffering", "cache-control", "retry-after"}) {
    const std::string v = s.header(h);
    if (!v.empty()) r.headers[h] = v;
  }
  r.body = s.body();
  return r;
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    if (cond()) return true;
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::optional<double> metric(const std::string& page, const std::string& series) {
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

double metric_sum(const std::string& page, const std::string& family) {
  std::istringstream in(page);
  double sum = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(family + " ", 0) == 0 || line.rfind(family + "{", 0) == 0) {
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
  }
  return sum;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int listen_loopback(int backlog, std::uint16_t& port, const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  port = ntohs(addr.sin_port);
  return fd;
}

std::string read_http_request(int fd, std::chrono::seconds timeout) {
  const timeval bound{static_cast<time_t>(timeout.count()), 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound);
  std::string in;
  std::array<char, 4096> buf{};
  for (ssize_t n; in.find("\r\n\r\n") == std::string::npos && (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;) {
    in.append(buf.data(), static_cast<std::size_t>(n));
  }
  const auto end = in.find("\r\n\r\n");
  if (end == std::string::npos) return "";
  const auto cl = in.find("Content-Length: ");
  const std::size_t want = end + 4 + (cl == std::string::npos ? 0 : std::stoul(in.substr(cl + 16)));
  for (ssize_t n; in.size() < want && (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;) {
    in.append(buf.data(), static_cast<std::size_t>(n));
  }
  return in;
}

std::string source_dir() { return MCPPROXY_SOURCE_DIR; }
std::string proxy_binary() { return MCPPROXY_BINARY; }

Proxy::Proxy(std::vector<std::string> extra_args, const std::string& name, const std::vector<std::string>& launcher) {
  // The suite runs once per io backend (tests/integration/CMakeLists.txt), unless the test
  // names one itself.
  const bool names_backend = std::find(extra_args.begin(), extra_args.end(), "--io-backend") != extra_args.end();
  if (const char* backend = std::getenv("MCPPROXY_TEST_IO_BACKEND");
      backend != nullptr && *backend != '\0' && !names_backend) {
    extra_args.insert(extra_args.begin(), {"--io-backend", backend});
  }
  // A port picked free can be taken before the proxy binds it (another test's pick): then
  // the proxy exits saying so, and it starts again on other ports. Any other exit is the test's.
  for (int attempt = 1;; ++attempt) {
    port = free_port();
    admin = free_port();
    log_path = std::string(MCPPROXY_TEST_TMP) + "/" + name + "-" + std::to_string(port) + ".log";
    std::vector<std::string> argv = launcher;
    argv.insert(argv.end(), {proxy_binary(), "--listen", "127.0.0.1:" + std::to_string(port), "--admin-listen",
                             "127.0.0.1:" + std::to_string(admin)});
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    process = std::make_unique<Process>(argv, log_path);
    const bool ready =
        eventually([&] { return !process->running() || request(admin, "GET", "/readyz").status == 200; });
    if (ready && process->running()) return;
    if (attempt < 5 && !process->running() && log().find("Address already in use") != std::string::npos) continue;
    throw std::runtime_error("proxy did not become ready: " + log());
  }
}

std::string Proxy::metrics() const { return request(admin, "GET", "/metrics").body; }

std::string Proxy::log() const {
  std::ifstream in(log_path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

SampleBackend::SampleBackend(int pods, std::vector<std::string> extra_args, std::uint16_t at_port) {
  std::vector<std::string> argv = {"python3", source_dir() + "/examples/sample_backend.py",
                                   "--pods",  std::to_string(pods),
                                   "--port",  std::to_string(at_port)};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  process = std::make_unique<Process>(argv);
  const auto line = process->read_line(std::chrono::seconds(15));
  if (!line || line->rfind("ports ", 0) != 0) throw std::runtime_error("sample backend did not start");
  port = static_cast<std::uint16_t>(std::stoi(line->substr(6)));
}

std::string SampleBackend::url_template() const { return "http://127.0.1.{ordinal}:" + std::to_string(port); }

}  // namespace harness

#include "core/tables/redis_codec.hpp"

namespace harness {

RedisServer::RedisServer(std::vector<std::string> extra_args, std::uint16_t fixed_port) : args(std::move(extra_args)) {
  port = fixed_port != 0 ? fixed_port : free_port();
  restart();
}

void RedisServer::restart() {
  // Its own files in the test directory: the log (a pipe nobody reads would fill and stall
  // a chatty server) and any RDB a replication writes (never loaded by the next server).
  const std::string tmp = MCPPROXY_TEST_TMP;
  const std::string rdb = "redis-" + std::to_string(port) + ".rdb";
  std::filesystem::remove(tmp + "/" + rdb);
  std::vector<std::string> argv = {"redis-server",
                                   "--bind",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(port),
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--daemonize",
                                   "no",
                                   "--logfile",
                                   tmp + "/redis-" + std::to_string(port) + ".server.log",
                                   "--dir",
                                   tmp,
                                   "--dbfilename",
                                   rdb};
  argv.insert(argv.end(), args.begin(), args.end());
  process = std::make_unique<Process>(argv, std::string(MCPPROXY_TEST_TMP) + "/redis-" + std::to_string(port) + ".log");
  // TLS-only servers (port 0) are probed by their owner.
  if (port_is_plain()) {
    auto answers = [&] {
      const std::string pong = redis_cmd(port, {"PING"});
      return pong == "PONG" || pong.rfind("NOAUTH", 0) == 0;  // a server with a password answers too
    };
    if (!eventually([&] { return answers() || !process->running(); }) || !process->running()) {
      throw std::runtime_error("redis-server did not start");
    }
  }
}

bool RedisServer::port_is_plain() const {
  for (std::size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "--port" && args[i + 1] == "0") return false;
  }
  return true;
}

void RedisServer::kill() {
  process->signal(SIGKILL);
  process->wait(std::chrono::seconds(10));
}

RedisServer::~RedisServer() { kill(); }

std::string redis_cmd(std::uint16_t port, const std::vector<std::string>& args) {
  const int fd = connect_to(port, "127.0.0.1");
  if (fd < 0) return "(connect failed)";
  std::string out;
  mcpproxy::redis_encode(out, args);
  if (!send_all(fd, out)) {
    ::close(fd);
    return "(send failed)";
  }
  mcpproxy::RedisParser parser;
  std::optional<mcpproxy::RedisReply> reply;
  while (!reply && !parser.failed()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) break;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    parser.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    reply = parser.next();
  }
  ::close(fd);
  if (!reply) return "(no reply)";
  switch (reply->type) {
    case mcpproxy::RedisReply::Type::nil:
      return "(nil)";
    case mcpproxy::RedisReply::Type::integer:
      return std::to_string(reply->integer);
    case mcpproxy::RedisReply::Type::array: {
      // The elements' text, space-separated, in brackets (nested arrays show empty).
      std::string text = "[";
      for (const auto& e : reply->elements) {
        text += (text.size() > 1 ? " " : "") +
                (e.type == mcpproxy::RedisReply::Type::integer ? std::to_string(e.integer) : e.str);
      }
      return text + "]";
    }
    default:
      return reply->str;
  }
}

}  // namespace harness
