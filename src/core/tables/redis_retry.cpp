#include "core/tables/redis_retry.hpp"

#include <algorithm>
#include <array>

#include "core/telemetry/log.hpp"

namespace mcpproxy {

std::string_view to_string(RedisRetryReason reason) {
  static constexpr std::array<std::string_view, kRedisRetryReasons> kNames = {
      "connect_failed", "connection_lost", "protocol_error", "setup_refused",
      "not_primary",    "command_timeout", "sentinel",       "slot_map"};
  return kNames[static_cast<std::size_t>(reason)];
}

RedisRetry::RedisRetry(duration cap) : cap_(std::max(cap, kFloor)) {}

std::optional<RedisRetry::Report> RedisRetry::connected(time_point now) {
  up_ = true;
  ever_up_ = true;
  up_since_ = now;
  // A connection set up again within the same outage (the last one ended right after its
  // setup) is counted by the failure that ends it, not logged.
  if (connected_logged_) return std::nullopt;
  connected_logged_ = true;
  Report r{attempts_ == 0 ? Report::Kind::connected : Report::Kind::reconnected, attempts_, unlogged_};
  unlogged_ = 0;
  return r;
}

void RedisRetry::went_down(time_point now) {
  if (up_ && now - up_since_ >= cap_) {
    // The connection lasted: what follows is a new outage, retried from the floor.
    backoff_ = kFloor;
    attempts_ = 0;
    unlogged_ = 0;
    connected_logged_ = false;
    logged_details_.clear();
  }
  up_ = false;
}

duration RedisRetry::next_wait(double unit) {
  // Jitter down to half: replicas that lost Redis together do not all come back at once.
  const auto span = backoff_.count();
  const auto half = span / 2;
  const duration wait{half + static_cast<duration::rep>(unit * static_cast<double>(span - half))};
  backoff_ = std::min(backoff_ * 2, cap_);
  return wait;
}

RedisRetry::Next RedisRetry::failed(std::string detail, time_point now, double unit) {
  const bool was_up = up_;
  went_down(now);
  ++attempts_;
  ++unlogged_;
  std::optional<Report::Kind> kind;
  const bool new_detail = std::find(logged_details_.begin(), logged_details_.end(), detail) == logged_details_.end();
  if (attempts_ == 1) {
    kind = was_up ? Report::Kind::lost : Report::Kind::failing;
  } else if (new_detail && logged_details_.size() < 8) {
    kind = Report::Kind::changed;
  } else if (now - logged_at_ >= kSummaryEvery) {
    kind = Report::Kind::still_failing;
  }
  Next next;
  if (kind) {
    next.report = Report{*kind, attempts_, unlogged_ - 1};
    unlogged_ = 0;
    logged_at_ = now;
    if (new_detail && logged_details_.size() < 8) logged_details_.push_back(detail);
  }
  detail_ = std::move(detail);
  next.wait = next_wait(unit);
  return next;
}

duration RedisRetry::paced(time_point now, double unit) {
  went_down(now);
  return next_wait(unit);
}

void log_retry(const RedisRetry::Report& report, std::string_view what, std::string_view client,
               RedisRetryReason reason, const std::string& detail, bool misconfigured, duration wait) {
  using Kind = RedisRetry::Report::Kind;
  std::string msg(what);
  switch (report.kind) {
    case Kind::connected:
    case Kind::reconnected:
      return;  // the caller says what it connected to
    case Kind::lost:
      msg += misconfigured ? " lost, and is not usable as configured; retrying" : " connection lost; reconnecting";
      break;
    case Kind::failing:
      msg += misconfigured ? " is not usable as configured; retrying" : " unavailable; retrying";
      break;
    case Kind::changed:
      msg += misconfigured ? " is not usable as configured; retrying"
                           : " still unavailable, now for another reason; retrying";
      break;
    case Kind::still_failing:
      msg += " still down after " + std::to_string(report.attempts) + " attempts; retrying";
      break;
  }
  log_event(misconfigured ? spdlog::level::err : spdlog::level::warn, msg,
            {{"client", std::string(client)},
             {"reason", std::string(to_string(reason))},
             {"error", detail},
             {"attempts", std::to_string(report.attempts)},
             {"unlogged", std::to_string(report.unlogged)},
             {"retry_in", format_duration(wait)}});
}

SentinelAnswer read_sentinel_answer(const std::vector<RedisReply>& replies, bool with_auth) {
  SentinelAnswer a;
  if (replies.empty()) return a;
  if (with_auth && replies.front().is_error()) {
    a.kind = SentinelAnswer::Kind::auth_refused;
    a.detail = replies.front().str;
    return a;
  }
  const RedisReply& answer = replies.back();
  if (answer.type == RedisReply::Type::array && answer.elements.size() == 2) {
    a.kind = SentinelAnswer::Kind::primary;
    a.host = answer.elements[0].str;
    a.port = answer.elements[1].str;
  } else if (answer.type == RedisReply::Type::nil) {
    a.kind = SentinelAnswer::Kind::unknown_master;  // a sentinel's answer for a name it does not monitor
  } else if (answer.is_error() && answer.str.starts_with("ERR unknown command")) {
    a.kind = SentinelAnswer::Kind::not_a_sentinel;
    a.detail = answer.str;
  } else if (answer.is_error() && (answer.str.starts_with("NOAUTH") || answer.str.starts_with("WRONGPASS"))) {
    a.kind = SentinelAnswer::Kind::auth_refused;
    a.detail = answer.str;
  } else {
    a.detail = answer.is_error() ? answer.str : "an answer that is not [host, port]";
  }
  return a;
}

SentinelVerdict judge_sentinels(const std::vector<std::pair<std::string, SentinelAnswer>>& answers,
                                std::string_view master) {
  SentinelVerdict v;
  bool all_unreachable = !answers.empty();
  std::string each;
  for (const auto& [at, a] : answers) {
    std::string what;
    switch (a.kind) {
      case SentinelAnswer::Kind::primary:
        return {};
      case SentinelAnswer::Kind::unreachable:
        what = at + ": " + a.detail;
        break;
      case SentinelAnswer::Kind::not_a_sentinel:
        what = at + " is not a sentinel (" + a.detail + "): sessions.redis.nodes lists the sentinels";
        v.misconfigured = true;
        break;
      case SentinelAnswer::Kind::unknown_master:
        what = "sentinel " + at + " knows no master '" + std::string(master) + "' (sessions.redis.sentinel_master)";
        v.misconfigured = true;
        break;
      case SentinelAnswer::Kind::auth_refused:
        what = "sentinel " + at + " refused the connection (" + a.detail + "): sessions.redis.sentinel_password_file";
        v.misconfigured = true;
        break;
      case SentinelAnswer::Kind::other:
        what = "sentinel " + at + ": " + a.detail;
        break;
    }
    all_unreachable = all_unreachable && a.kind == SentinelAnswer::Kind::unreachable;
    each += (each.empty() ? "" : "; ") + what;
  }
  if (all_unreachable) {
    // From here the cause cannot be told apart from a wrong address, and without a sentinel
    // the primary is not known at all.
    v.misconfigured = true;
    v.reason = "no sentinel reachable (" + each + ")";
  } else {
    v.reason = "no sentinel named a primary: " + each;
  }
  return v;
}

bool says_not_a_cluster(std::string_view error) {
  return error.find("cluster support disabled") != std::string_view::npos || error.starts_with("ERR unknown command");
}

}  // namespace mcpproxy
