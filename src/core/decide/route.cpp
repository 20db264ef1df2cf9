// The routing decisions (route.hpp).
#include "core/decide/route.hpp"

namespace mcpproxy {

Route route_request(const Classified& c, const SessionRecord* rec, int replicas) {
  Route r;
  switch (c.cls) {
    case RequestClass::malformed_session_id:
      r.kind = Route::Kind::refuse;
      r.refusal = kMalformedSessionId;
      return r;
    case RequestClass::new_session:
    case RequestClass::sessionless:
      r.kind = Route::Kind::place;
      return r;
    case RequestClass::session:
      break;
  }
  if (rec == nullptr) {
    r.kind = Route::Kind::refuse;
    r.refusal = kSessionNotFound;
    return r;
  }
  r.ordinal = rec->ordinal;
  // The StatefulSet was scaled down below this session's pod: it is gone.
  r.kind = rec->ordinal >= replicas ? Route::Kind::lost : Route::Kind::forward;
  r.cause = LostCause::scaled_down;
  return r;
}

std::string_view to_string(LostCause c) {
  switch (c) {
    case LostCause::pod_answered_404:
      return "pod_answered_404";
    case LostCause::scaled_down:
      return "ordinal_past_replicas";
    case LostCause::unreachable:
      return "pod_unreachable";
    case LostCause::no_such_pod:
      return "pod_name_gone";
  }
  return "unknown";
}

Unreachable judge_unreachable(ConnectFailure f, std::chrono::steady_clock::duration failing_for,
                              std::chrono::steady_clock::duration grace) {
  Unreachable u;
  switch (f) {
    case ConnectFailure::no_such_pod:
      // A headless Service drops a pod's name while the pod is replaced (until the new one
      // is ready, unless publishNotReadyAddresses): the same pod may come back with it.
      u.lost = failing_for >= grace;
      u.cause = LostCause::no_such_pod;
      u.refusal = kPodNameGone;
      return u;
    case ConnectFailure::dns:
      u.refusal = kPodNameTimeout;  // the caller has the precise reason's answer
      return u;
    case ConnectFailure::refused:
      // A pod that restarts refuses for a while, then answers 404 for the sessions it lost
      // (recovered then, with their state rebuilt); one that stays away is gone.
      u.lost = failing_for >= grace;
      u.cause = LostCause::unreachable;
      u.refusal = kPodUnavailable;
      return u;
    case ConnectFailure::local:
      u.refusal = kProxyOverloaded;
      return u;
  }
  return u;
}

bool can_recover(OnLost policy, const SessionRecord* rec, bool from_query, std::string_view method,
                 bool init_in_store) {
  return policy == OnLost::reinitialize && rec != nullptr && (init_in_store || !rec->init.empty()) && !from_query &&
         method != "DELETE";
}

ResponseAction response_action(const ResponseFacts& f) {
  const bool ok = f.status >= 200 && f.status < 300;
  switch (f.cls) {
    case RequestClass::new_session:
      if (!f.session_header) return ResponseAction::relay;
      return valid_session_id(*f.session_header) ? ResponseAction::record_new_session
                                                 : ResponseAction::reject_bad_session_id;
    case RequestClass::session:
      if (f.status == 404) {
        return f.may_recover && f.recoverable ? ResponseAction::recover : ResponseAction::forget_lost;
      }
      // A pod may repeat the session's id on its answers; another id is not the client's to learn.
      if (f.session_header && *f.session_header != f.session) return ResponseAction::reject_renamed_session;
      return f.method == "DELETE" && ok ? ResponseAction::forget_deleted : ResponseAction::relay;
    case RequestClass::sessionless: {
      if (f.method != "GET" || !ok) return ResponseAction::relay;
      const auto path = f.target.substr(0, f.target.find('?'));
      return path == f.legacy_sse_path ? ResponseAction::tap_legacy_stream : ResponseAction::relay;
    }
    case RequestClass::malformed_session_id:
      break;
  }
  return ResponseAction::relay;
}

}  // namespace mcpproxy
