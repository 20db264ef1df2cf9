#pragma once
// Who a session id belongs to (session_ids.cpp): a new session's record, and the count and
// log line of a new session the table did not record. Used by the response bookkeeping
// (Connection) and the legacy stream's endpoint tap (relay.hpp).

#include <string>

#include "path/client_link.hpp"
#include "path/exchange.hpp"
#include "store/sessions.hpp"

namespace mcpproxy {

// The record of a new session (the initialize body kept when it is small enough).
SessionRecord new_record(ConnectionContext& ctx, const Exchange& ex);
// A new session create() did not record: counted and logged (hash only).
void count_unrecorded(ConnectionContext& ctx, const ClientLink& client, const Exchange& ex, const std::string& id,
                      const Sessions::Created& made);

}  // namespace mcpproxy
