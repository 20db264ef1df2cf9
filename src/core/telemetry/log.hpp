#pragma once
// Logging: spdlog, text or JSON lines on stderr, written by a background thread so that
// a slow log pipe never blocks a worker (a full queue drops the oldest line instead).

#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "core/config/config.hpp"

namespace mcpproxy {

struct LogField {
  std::string_view key;
  std::string value;
};

void setup_logging(const LogConfig& cfg);
void apply_log_level(const std::string& level);  // SIGHUP
void flush_logs();

// One event: text `msg key=value …` or JSON `{"time":…,"level":…,"msg":…,"key":"value"}`.
void log_event(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<LogField> fields = {});

}  // namespace mcpproxy
