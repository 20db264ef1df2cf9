#!/usr/bin/env python3
"""A small stateful MCP server (Streamable HTTP, 2025-11-25) for demos, tests and benchmarks.

One process serves several "pods": each --port is its own server with its own session
table, named pod-0, pod-1, ... in order. Only the Python standard library is used.

  POST /mcp   initialize (mints Mcp-Session-Id), notifications (202), tools/list, tools/call
  GET  /mcp   the standalone SSE stream of a session (keep-alive comments, pushed notifications)
  DELETE /mcp ends a session
  GET  /sse + POST /messages?sessionId=...   the legacy 2024-11-05 HTTP+SSE transport
  GET  /_stats  this pod's live sessions and initializes so far (for tests and demos)
  GET  /_health  200, or 503 after POST /_health "down" (until "up"): a health-check path

Tools: whoami (pod name and a per-session counter), headers (the request's headers), big (a result of `bytes` bytes),
ticker (an SSE response: `count` progress notifications `interval_ms` apart, then the result),
notify (pushes a notification on the session's GET stream), rename (answers with another
Mcp-Session-Id than the session's: a pod that renames a live session, for the proxy's tests).
--fixed-session-id ORDINAL:ID makes pod ORDINAL answer every initialize (and announce every
legacy stream) with ID (a pod whose
ids repeat, or collide with another pod's: the proxy must not hand such an id out twice).
Responses are JSON unless --sse is given (then every request answer is an SSE stream, as
the SDK does by default) or the tool is ticker.
"""
import argparse
import errno
import json
import queue
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROTOCOL = "2025-11-25"


class Pod:
    def __init__(self, name, sse, fixed_id=None):
        self.name = name
        self.sse = sse
        self.fixed_id = fixed_id  # every initialize and legacy stream mints this id (--fixed-session-id)
        self.lock = threading.Lock()
        self.sessions = {}  # id -> {"counter": int, "stream": queue or None}
        self.initializes = 0
        self.healthy = True


class Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: a burst of connections (a proxy opening many at
    # once) would wait for SYN retransmits, seconds, instead of being accepted.
    request_queue_size = 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small header and body writes must not wait for delayed ACKs

    def log_message(self, *args):
        pass

    @property
    def pod(self):
        return self.server.pod

    # -- plumbing ---------------------------------------------------------------------------
    def _json(self, status, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse_start(self, headers=None):
        self.send_response(200)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, text):
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _sse_end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _event(self, msg, event="message"):
        self._chunk(f"event: {event}\ndata: {json.dumps(msg)}\n\n")

    def _error(self, status, code, message, mid=None):
        self._json(status, {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": mid})

    # -- Streamable HTTP --------------------------------------------------------------------
    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        try:
            msg = json.loads(raw or b"null")
        except ValueError:
            return self._error(400, -32700, "Parse error")
        if self.path.startswith("/messages"):
            return self._legacy_post(msg)
        if self.path == "/_health":  # "up" or "down": what GET /_health answers from now on
            self.pod.healthy = msg == "up"
            return self._json(200, {"healthy": self.pod.healthy})
        if isinstance(msg, list):
            msgs = msg
        else:
            msgs = [msg]
        sid = self.headers.get("Mcp-Session-Id")
        first = msgs[0] if msgs and isinstance(msgs[0], dict) else {}
        if first.get("method") == "initialize":
            sid = self.pod.fixed_id or uuid.uuid4().hex
            with self.pod.lock:
                self.pod.sessions[sid] = {"counter": 0, "stream": None}
                self.pod.initializes += 1
            result = {"protocolVersion": PROTOCOL, "capabilities": {"tools": {}},
                      "serverInfo": {"name": self.pod.name, "version": "1.0"}}
            return self._answer({"jsonrpc": "2.0", "id": first.get("id"), "result": result}, {"Mcp-Session-Id": sid})
        if not sid:
            return self._error(400, -32000, "Bad Request: Mcp-Session-Id header is required", first.get("id"))
        with self.pod.lock:
            session = self.pod.sessions.get(sid)
        if session is None:
            return self._error(404, -32001, "Session not found", first.get("id"))
        if "id" not in first:
            return self._json(202)
        return self._call(first, session, sid)

    def _answer(self, msg, headers=None, force_sse=False):
        if self.pod.sse or force_sse:
            self._sse_start(headers)
            self._event(msg)
            return self._sse_end()
        return self._json(200, msg, headers)

    def _result(self, mid, result):
        return {"jsonrpc": "2.0", "id": mid, "result": result}

    def _call(self, msg, session, sid):
        method, mid, params = msg.get("method"), msg.get("id"), msg.get("params") or {}
        if method == "tools/list":
            tools = [{"name": n, "inputSchema": {"type": "object"}} for n in ("whoami", "headers", "big", "ticker", "notify", "rename")]
            return self._answer(self._result(mid, {"tools": tools}))
        if method != "tools/call":
            return self._answer({"jsonrpc": "2.0", "id": mid, "error": {"code": -32601, "message": "Method not found"}})
        name, args = params.get("name"), params.get("arguments") or {}
        with self.pod.lock:
            session["counter"] += 1
            counter = session["counter"]
        if name == "whoami":
            text = json.dumps({"pod": self.pod.name, "counter": counter})
            return self._answer(self._result(mid, {"content": [{"type": "text", "text": text}],
                                                   "structuredContent": {"pod": self.pod.name, "counter": counter}}))
        if name == "headers":
            # What reached the pod: the test of the proxy's header edits reads it.
            return self._answer(self._result(mid, {"content": [{"type": "text", "text": "headers"}],
                                                   "structuredContent": {"headers": [[k, v] for k, v in self.headers.items()]}}))
        if name == "big":
            size = int(args.get("bytes", 1 << 20))
            blob = ("0123456789abcdef" * (size // 16 + 1))[:size]
            return self._answer(self._result(mid, {"content": [{"type": "text", "text": blob}]}))
        if name == "ticker":
            count, interval = int(args.get("count", 3)), int(args.get("interval_ms", 200)) / 1000.0
            self._sse_start()
            for i in range(count):
                self._event({"jsonrpc": "2.0", "method": "notifications/progress",
                             "params": {"progressToken": mid, "progress": i + 1, "total": count}})
                time.sleep(interval)
            self._event(self._result(mid, {"content": [{"type": "text", "text": "done"}]}))
            return self._sse_end()
        if name == "notify":
            stream = session.get("stream")
            if stream is not None:
                stream.put({"jsonrpc": "2.0", "method": "notifications/message",
                            "params": {"level": "info", "data": args.get("text", "hello")}})
            return self._answer(self._result(mid, {"content": [{"type": "text", "text": "sent" if stream else "no stream"}]}))
        if name == "rename":
            # Announces another id for a live session (the session keeps its own id here).
            return self._answer(self._result(mid, {"content": [{"type": "text", "text": "renamed"}]}),
                                {"Mcp-Session-Id": uuid.uuid4().hex})
        return self._answer({"jsonrpc": "2.0", "id": mid, "error": {"code": -32602, "message": "Unknown tool"}})

    def do_GET(self):
        if self.path.startswith("/sse"):
            return self._legacy_stream()
        if self.path == "/_health":
            return self._json(200 if self.pod.healthy else 503, {"healthy": self.pod.healthy})
        if self.path == "/_stats":
            with self.pod.lock:
                stats = {"pod": self.pod.name, "sessions": len(self.pod.sessions), "initializes": self.pod.initializes}
            return self._json(200, stats)
        sid = self.headers.get("Mcp-Session-Id")
        with self.pod.lock:
            session = self.pod.sessions.get(sid) if sid else None
        if session is None:
            return self._error(404 if sid else 400, -32001 if sid else -32000, "Session not found" if sid else "no session")
        stream = queue.Queue()
        session["stream"] = stream
        self._stream_from(stream, session)

    def _stream_from(self, stream, session, first=None):
        self._sse_start()
        try:
            if first:
                self._chunk(first)
            while True:
                try:
                    msg = stream.get(timeout=self.server.keepalive)
                except queue.Empty:
                    self._chunk(": keepalive\n\n")
                    continue
                if msg is None:
                    break
                self._event(msg)
            self._sse_end()
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            if session.get("stream") is stream:
                session["stream"] = None
            self.close_connection = True

    def do_DELETE(self):
        sid = self.headers.get("Mcp-Session-Id")
        with self.pod.lock:
            session = self.pod.sessions.pop(sid, None) if sid else None
        if session is None:
            return self._error(404, -32001, "Session not found")
        if session.get("stream") is not None:
            session["stream"].put(None)
        self._json(200)

    # -- legacy HTTP+SSE (2024-11-05) --------------------------------------------------------
    def _legacy_stream(self):
        sid = self.pod.fixed_id or uuid.uuid4().hex
        session = {"counter": 0, "stream": queue.Queue()}
        with self.pod.lock:
            self.pod.sessions[sid] = session
        try:
            self._stream_from(session["stream"], session, f"event: endpoint\ndata: /messages?sessionId={sid}\n\n")
        finally:
            with self.pod.lock:
                self.pod.sessions.pop(sid, None)

    def _legacy_post(self, msg):
        sid = (self.path.split("sessionId=", 1) + [""])[1].split("&")[0]
        with self.pod.lock:
            session = self.pod.sessions.get(sid)
        if session is None or session.get("stream") is None:
            return self._error(404, -32001, "Session not found", msg.get("id") if isinstance(msg, dict) else None)
        self._json(202)
        if isinstance(msg, dict) and "id" in msg:
            with self.pod.lock:
                session["counter"] += 1
                counter = session["counter"]
            if msg.get("method") == "initialize":
                result = {"protocolVersion": "2024-11-05", "capabilities": {"tools": {}},
                          "serverInfo": {"name": self.pod.name, "version": "1.0"}}
            else:
                result = {"structuredContent": {"pod": self.pod.name, "counter": counter},
                          "content": [{"type": "text", "text": json.dumps({"pod": self.pod.name, "counter": counter})}]}
            session["stream"].put(self._result(msg["id"], result))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, action="append", required=True,
                    help="one per pod (pod-0, pod-1, ...); with --pods, the one port all pods share (0: a free one)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--pods", type=int, default=0,
                    help="serve this many pods on one port, pod N on the loopback address 127.0.1.N "
                         "(so a proxy reaches them with the template http://127.0.1.{ordinal}:PORT)")
    ap.add_argument("--sse", action="store_true", help="answer every request with an SSE stream")
    ap.add_argument("--keepalive", type=float, default=15.0, help="seconds between SSE keep-alive comments")
    ap.add_argument("--fixed-session-id", action="append", default=[], metavar="ORDINAL:ID",
                    help="pod ORDINAL answers every initialize (and legacy stream) with ID (repeatable)")
    args = ap.parse_args()
    fixed = {}
    for spec in args.fixed_session_id:
        ordinal, _, sid = spec.partition(":")
        if not ordinal.isdigit() or not sid:
            ap.error(f"--fixed-session-id wants ORDINAL:ID, got {spec!r}")
        fixed[int(ordinal)] = sid
    if args.pods:
        binds = [(f"127.0.1.{i}", None) for i in range(args.pods)]
    else:
        binds = [(args.host, port) for port in args.port]
    # With --pods and --port 0 the kernel picks pod-0's port, free on 127.0.1.0 only: the
    # other pods' addresses may have it taken (another test's listener). Then all pods
    # try again on another port (bounded).
    for attempt in range(20):
        servers = []
        try:
            for i, (host, port) in enumerate(binds):
                if port is None:
                    port = args.port[0] if i == 0 else servers[0].server_address[1]
                servers.append(Server((host, port), Handler))
            break
        except OSError as e:
            for srv in servers:
                srv.server_close()
            if not (args.pods and args.port[0] == 0 and e.errno == errno.EADDRINUSE) or attempt == 19:
                raise
    for i, srv in enumerate(servers):
        srv.daemon_threads = True
        srv.pod = Pod(f"pod-{i}", args.sse, fixed.get(i))
        srv.keepalive = args.keepalive
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    # The ports, one line, so a test that asked for port 0 learns where the pods are.
    print("ports " + " ".join(str(s.server_address[1]) for s in servers), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
