#pragma once
// HTTP/1.x for the data plane: heads (http1_head.hpp: the strict parser, field names, the
// views a head is read through) and body framing (http1_body.hpp: Content-Length, chunked,
// close-delimited). Strict where a proxy must be (RFC 9112); no I/O, no allocation once the
// field vector has grown.

#include "core/http/http1_body.hpp"  // IWYU pragma: export
#include "core/http/http1_head.hpp"  // IWYU pragma: export
