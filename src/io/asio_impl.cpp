// Asio and Beast compiled once, for the whole program (BOOST_*_SEPARATE_COMPILATION).
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>

#include "io/net.hpp"

namespace mcpproxy {

bool harmless(const error_code& ec) {
  return ec == net::error::operation_aborted || ec == net::error::eof || ec == beast::http::error::end_of_stream ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe || ec == net::error::not_connected ||
         ec == net::error::bad_descriptor || ec == beast::error::timeout;
}

}  // namespace mcpproxy
