#pragma once
// Stage: lost sessions. A session whose pod is gone (route.hpp decides what that means)
// moves to a newly placed pod when the policy allows (sessions.on_lost: reinitialize): the
// client's initialize, as it came but with the current request's credentials, and
// notifications/initialized are replayed there (pod_request.hpp), and the client's id is
// mapped to the pod's new one. One recovery per session at a time in a process: the
// session's other requests wait for it and follow. Otherwise the record goes.
// The recovery returns what happened; the driver (Connection) replays the request once on
// a moved session, or answers.

#include <cstdint>
#include <memory>

#include "core/decide/route.hpp"
#include "io/net.hpp"
#include "path/client_link.hpp"
#include "path/exchange.hpp"

namespace mcpproxy {

class SessionRecovery {
 public:
  SessionRecovery(ConnectionContext& ctx, ClientLink& client) : ctx_(ctx), client_(client) {}

  enum class Recovered : std::uint8_t {
    moved,              // ex.rec and ex.ordinal say where the session is now (moved here, or by another)
    not_found,          // it could not move: its record is gone (404)
    store_unavailable,  // Redis could not be asked: nothing was decided (503)
    in_progress,        // another request's recovery of it has not ended, or decided nothing (503)
  };
  // `may_recover`: the session may be moved (a replay's session is not moved twice: gone).
  net::awaitable<Recovered> recover(Exchange& ex, LostCause cause, bool may_recover);
  // The answer of a session that did not move.
  static Refusal refusal(Recovered r);

 private:
  // Another request of this process recovers the session: its outcome is followed.
  net::awaitable<Recovered> follow(Exchange& ex);
  // The recovery itself (one per session at a time).
  net::awaitable<Recovered> move(Exchange& ex, LostCause cause);
  // Whether `now` is a record that moved the session away from ex.rec.
  bool moved(const Exchange& ex, const std::shared_ptr<const SessionRecord>& now) const;
  net::awaitable<void> forget_lost(Exchange& ex, LostCause cause);
  // Replays the stored initialize and notifications/initialized on a newly placed pod and
  // points the record there.
  net::awaitable<bool> reestablish(Exchange& ex);
  // Another replica's record won the move: the session opened on `ordinal` is ended there.
  net::awaitable<void> follow_winner(Exchange& ex, std::shared_ptr<const SessionRecord> winner, int ordinal,
                                     std::unique_ptr<tcp::socket>& up, const std::string& backend_session);

  ConnectionContext& ctx_;
  ClientLink& client_;
};

}  // namespace mcpproxy
