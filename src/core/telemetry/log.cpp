#include "core/telemetry/log.hpp"

#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <nlohmann/json.hpp>

namespace mcpproxy {
namespace {
std::atomic<bool> g_json{false};
}

void setup_logging(const LogConfig& cfg) {
  if (spdlog::get("mcp") == nullptr) {
    spdlog::init_thread_pool(8192, 1);
    auto logger = spdlog::create_async_nb<spdlog::sinks::stderr_sink_mt>("mcp");
    spdlog::set_default_logger(logger);
  }
  g_json.store(cfg.format == "json");
  if (cfg.format == "json") {
    spdlog::set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})", spdlog::pattern_time_type::utc);
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  }
  apply_log_level(cfg.level);
  spdlog::flush_on(spdlog::level::warn);
}

void apply_log_level(const std::string& level) { spdlog::set_level(spdlog::level::from_str(level)); }

// Through the raw pointer: a copy of the logger's shared_ptr released here could be the
// one its thread's last message races with (the count lives in the shared library).
void flush_logs() { spdlog::default_logger_raw()->flush(); }

void log_event(spdlog::level::level_enum level, std::string_view msg, std::initializer_list<LogField> fields) {
  if (!spdlog::should_log(level)) return;
  std::string line;
  if (g_json.load(std::memory_order_relaxed)) {
    line = "\"msg\":" + nlohmann::json(msg).dump();
    for (const auto& f : fields) {
      line += ',';
      line += nlohmann::json(f.key).dump();
      line += ':';
      line += nlohmann::json(f.value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  } else {
    line = msg;
    for (const auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      const bool quote = f.value.empty() || f.value.find_first_of(" \"=") != std::string::npos;
      line += quote ? nlohmann::json(f.value).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) : f.value;
    }
  }
  spdlog::log(level, "{}", line);
}

}  // namespace mcpproxy
