#pragma once
// The client side of a connection, as the request path's stages see it (the idea of Envoy's
// RouterFilterInterface): the client socket, the one deadline the connection waits under,
// the watch for a client that leaves while its pod works, and the writes to the client.
// Stages hold a ClientLink&, never the Connection (downstream.hpp).

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/config/config.hpp"
#include "core/http/client_address.hpp"
#include "io/net.hpp"
#include "path/connection_context.hpp"

namespace mcpproxy {

class ClientLink {
 public:
  ClientLink(ConnectionContext& ctx, tcp::socket socket, std::uint64_t id);

  tcp::socket& socket() { return socket_; }
  std::uint64_t id() const { return id_; }
  std::string conn() const { return std::to_string(id_); }  // the connection's id in log lines
  // The peer's address: as text (X-Forwarded-For, logs), and parsed (where the walk to the
  // client's address starts, client_address.hpp).
  const std::string& peer_ip() const { return peer_ip_; }
  const IpAddress& peer() const { return peer_; }

  // Deadlines of the data path are counted in worker ticks and checked by the tick, not
  // armed as a timer around every read and write (that was a tenth of the proxy's
  // user-space instructions): one deadline at a time, as a connection waits for one thing.
  // `upstream`: the pod socket an upstream wait is on (closed when the deadline passes).
  enum class Wait : std::uint8_t { none, idle, head, body, write, upstream };
  static constexpr std::int64_t kTickMs = 100;
  void expect_within(Wait what, duration limit, tcp::socket* upstream = nullptr);
  void stop_waiting() { waiting_ = Wait::none; }
  bool expired(Wait what) const { return expired_ == what; }

  // While the pod works, the only way to learn that the client left is to watch its
  // socket. Most exchanges end within a millisecond and a watch costs a reactor
  // registration, so it is armed only for an exchange still running at the worker's next
  // tick: a client that leaves during a long tool call or an SSE stream is noticed within
  // about 200 ms. One watch per connection, reused; `generation` tells a late completion
  // of an earlier exchange's watch from the current one.
  void begin_watch(tcp::socket* upstream);
  void end_watch();
  bool client_gone() const { return watch_.client_gone || closed_; }

  // The worker's tick: a deadline that passed closes what waits on it. True when the watch
  // is due: the owner arms it with itself to keep alive while the watch waits.
  bool on_tick(std::uint64_t tick);
  void arm_watch(std::shared_ptr<void> keep);

  // Ends the connection whatever it is doing (and the pod exchange it watches).
  void close();
  bool closed() const { return closed_; }

  // One gathered write to the client: [head] [chunk size] [data] [CRLF] [last chunk], sent
  // at once as far as the socket takes it; false when the client failed. `pending`: the
  // rest is in unsent(), for the caller to write (write_rest, or its own wait).
  bool write_now(std::string_view head, std::string_view data, bool last, bool chunked, bool& pending);
  const std::array<net::const_buffer, 5>& unsent() const { return out_; }
  net::awaitable<bool> write_rest(duration limit);
  // A whole message (a local reply), under `limit`; false when the client failed.
  net::awaitable<bool> write(std::string_view bytes, duration limit);

 private:
  struct Watch {
    std::uint64_t generation = 0;
    bool active = false;
    bool armed = false;
    bool client_gone = false;
    tcp::socket* upstream = nullptr;
    std::uint64_t started_tick = 0;
  };

  ConnectionContext& ctx_;
  tcp::socket socket_;
  std::uint64_t id_;
  std::string peer_ip_;
  IpAddress peer_;
  bool closed_ = false;
  Wait waiting_ = Wait::none;
  Wait expired_ = Wait::none;
  std::uint64_t deadline_tick_ = 0;
  tcp::socket* deadline_upstream_ = nullptr;
  Watch watch_;
  // A write the socket did not take whole: what is left, and the chunk size line it may
  // point into.
  std::array<net::const_buffer, 5> out_{};
  std::array<char, 20> chunk_line_{};
};

}  // namespace mcpproxy
