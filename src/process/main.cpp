// mcp-session-proxy: pins MCP Streamable HTTP sessions to StatefulSet pods.
#include <csignal>
#include <cstdio>
#include <iostream>

#include "core/config/config.hpp"
#include "core/telemetry/log.hpp"
#include "process/server.hpp"

int main(int argc, char** argv) {
  using namespace mcpproxy;
  // A client that goes away must not kill the process with SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  CommandLine cmd;
  try {
    cmd = parse_command_line(argc, argv);
  } catch (const ConfigError& e) {
    std::cerr << "mcp-session-proxy: " << e.what() << "\n";
    return 2;
  }
  if (cmd.help) {
    std::cout << cmd.help_text;
    return 0;
  }
  if (cmd.config_reference) {
    std::cout << config_reference();
    return 0;
  }
  if (cmd.version) {
    std::cout << "mcp-session-proxy " << MCPPROXY_VERSION << "\n";
    return 0;
  }
  Config cfg;
  try {
    cfg = build_config(cmd);
  } catch (const ConfigError& e) {
    std::cerr << "mcp-session-proxy: invalid config: " << e.what() << "\n";
    return 2;
  }
  if (cmd.check_config) {
    std::cout << "# config OK\n" << to_yaml(cfg);
    return 0;
  }
  try {
    setup_logging(cfg.log);
    int code = 0;
    {
      // Gone (its threads joined, its last lines logged) before the logger stops.
      Server server(std::move(cmd), std::move(cfg));
      code = server.run();
    }
    flush_logs();
    spdlog::shutdown();
    return code;
  } catch (const ConfigError& e) {  // a listen address that cannot be bound
    log_event(spdlog::level::critical, "fatal", {{"error", e.what()}});
    flush_logs();
    spdlog::shutdown();
    std::cerr << "mcp-session-proxy: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    log_event(spdlog::level::critical, "fatal", {{"error", e.what()}});
    flush_logs();
    spdlog::shutdown();
    std::cerr << "mcp-session-proxy: " << e.what() << "\n";
    return 1;
  }
}
