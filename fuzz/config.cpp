// Config loading: any YAML either becomes a valid config or a ConfigError naming a key.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const mcpproxy::Config cfg = mcpproxy::config_from_yaml(text, "fuzz");
    (void)mcpproxy::to_yaml(cfg);
  } catch (const mcpproxy::ConfigError&) {
    // the expected answer to a bad file
  }
  return 0;
}
