// What a worker's connections share: the relay buffers they borrow and the registry a
// drain walks (connection_context.hpp).
#include "path/connection_context.hpp"

namespace mcpproxy {

std::unique_ptr<char[]> RelayBuffers::take(std::size_t size) {
  if (size != size_) {
    buffers_.clear();  // the size changed with a reload
    size_ = size;
  }
  if (buffers_.empty()) return std::unique_ptr<char[]>(new char[size]);  // not zeroed: written before read
  auto buffer = std::move(buffers_.back());
  buffers_.pop_back();
  return buffer;
}

void RelayBuffers::give(std::unique_ptr<char[]> buffer, std::size_t size) {
  if (size == size_ && buffers_.size() < kPooled) buffers_.push_back(std::move(buffer));
}

ConnectionRegistry::Handle ConnectionRegistry::add(std::weak_ptr<Connection> c) {
  ++count_;
  return connections_.insert(connections_.end(), std::move(c));
}

void ConnectionRegistry::remove(Handle it) {
  --count_;
  connections_.erase(it);
}

}  // namespace mcpproxy
