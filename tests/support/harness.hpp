#pragma once
// Test harness: real processes (the proxy binary, the sample backend, SDK servers) on
// 127.0.0.1 and free ports, and a small blocking HTTP client. Waits are bounded polls of
// an observable condition (a port answering, a metric reaching a value), never sleeps.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace harness {

std::uint16_t free_port();

class Process {
 public:
  // Starts argv[0] with its stdout on a pipe (read_line) and stderr to `stderr_path` (or inherited).
  explicit Process(std::vector<std::string> argv, std::string stderr_path = "");
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // The next stdout line, waiting up to `timeout`; nullopt on timeout or end.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);
  void signal(int signo);
  // Exit code, or -signal; nullopt when still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string pending_;
  std::optional<int> status_;
};

struct Response {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

// One request on a new connection; status 0 when the connection failed.
Response request(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body = "",
                 const Headers& headers = {}, const std::string& host = "127.0.0.1");

// A streamed response: the head, then body pieces as they arrive, each with its time.
class Stream {
 public:
  Stream(std::uint16_t port, const std::string& method, const std::string& target, const std::string& body,
         const Headers& headers, const std::string& host = "127.0.0.1");
  ~Stream();
  int status() const { return status_; }
  std::string header(const std::string& name) const;
  // Reads until `text` has appeared in the body (or the stream ends / `timeout`).
  bool read_until(const std::string& text, std::chrono::milliseconds timeout);
  // Reads to the end of the response.
  bool read_to_end(std::chrono::milliseconds timeout);
  void close();
  const std::string& body() const { return body_; }
  // When the body first contained `text` (steady clock), if it did.
  std::optional<std::chrono::steady_clock::time_point> seen_at(const std::string& text) const;
  std::chrono::steady_clock::time_point ended_at() const { return ended_; }

 private:
  bool read_some(std::chrono::milliseconds timeout);
  struct Impl;
  Impl* impl_;
  int status_ = 0;
  std::map<std::string, std::string> headers_;
  std::string body_;
  std::vector<std::pair<std::size_t, std::chrono::steady_clock::time_point>> arrivals_;
  std::chrono::steady_clock::time_point ended_{};
  bool done_ = false;
};

// A raw client connection, for what a well-behaved HTTP client never sends (pipelined
// requests, chunked bodies, smuggling shapes, HTTP/1.0).
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port, const std::string& host = "127.0.0.1");
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  bool send(const std::string& bytes);
  // Reads until `text` has been received (true) or the peer closed / `timeout` passed.
  bool read_until(const std::string& text, std::chrono::milliseconds timeout);
  // Reads until the peer closes the connection (true), or `timeout` passes.
  bool read_to_close(std::chrono::milliseconds timeout);
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

// Polls `cond` until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The value of one sample in a Prometheus text page (exact series text, e.g. `x{pod="0"}`).
std::optional<double> metric(const std::string& page, const std::string& series);
// The sum of every sample of a family (whatever its labels); 0 when it has none.
double metric_sum(const std::string& page, const std::string& family);

// Resident set of a process, KiB (-1 when it cannot be read).
long rss_kib(pid_t pid);

// A listening TCP socket on `host` (a loopback address) and a free port, for a peer the
// test plays itself (a fake Redis, a pod); -1 on failure.
int listen_loopback(int backlog, std::uint16_t& port, const std::string& host = "127.0.0.1");

// One request (head, then as many body bytes as its Content-Length says) read from a
// connection a test accepted itself, each read bounded by `timeout`; what arrived (the
// head incomplete: empty).
std::string read_http_request(int fd, std::chrono::seconds timeout);

std::string source_dir();  // the repository root
std::string proxy_binary();

// A running proxy on free ports.
struct Proxy {
  // `launcher`: a command the proxy is run under (tests/support/without_io_uring.cpp).
  Proxy(std::vector<std::string> extra_args, const std::string& name = "proxy",
        const std::vector<std::string>& launcher = {});
  std::uint16_t port = 0;
  std::uint16_t admin = 0;
  std::string log_path;
  std::unique_ptr<Process> process;
  std::string metrics() const;
  std::string log() const;
};

// The sample backend: `pods` pods on one port (a free one unless given), pod N on 127.0.1.N.
struct SampleBackend {
  explicit SampleBackend(int pods, std::vector<std::string> extra_args = {}, std::uint16_t at_port = 0);
  std::uint16_t port = 0;
  std::string url_template() const;
  std::unique_ptr<Process> process;
};

}  // namespace harness

namespace harness {

// A real redis-server on 127.0.0.1 and a free port, stopped with the object.
struct RedisServer {
  explicit RedisServer(std::vector<std::string> extra_args = {}, std::uint16_t port = 0);
  ~RedisServer();
  void kill();     // SIGKILL, as a crash
  void restart();  // same port, same arguments (data is gone: no persistence)
  std::uint16_t port = 0;
  std::string url(int db = 0) const { return "redis://127.0.0.1:" + std::to_string(port) + "/" + std::to_string(db); }
  std::vector<std::string> args;
  std::unique_ptr<Process> process;

 private:
  bool port_is_plain() const;
};

// One blocking command over plain TCP (RESP via the project's codec); the reply as text:
// a string or status as is, an integer in decimal, nil as "(nil)", an error as "ERR…", an
// array as "[a b c]".
std::string redis_cmd(std::uint16_t port, const std::vector<std::string>& args);

}  // namespace harness
