#!/usr/bin/env python3
"""Sessionless MCP pods with tasks in process memory, for the proxy's task-affinity tests.

Like examples/sample_backend.py --pods N: pod N listens on 127.0.1.N, one port for all,
each with its own task and handle tables (as three replicas of an SDK v2 server are).
Speaks 2026-07-28 (Mcp-Method/Mcp-Name checked against the body: 400 -32020 when they
differ, as SEP-2243 servers do) and 2025-11-25 stateless (no session id).

  tools/call slow        creates a task: 2026 `result.resultType: "task"`, 2025 `result.task`
                         (arguments: ttlMs; the answer is an SSE event after a progress
                         notification with --sse, or when arguments.sse is true)
  tools/call open_cart   returns a handle at structuredContent.cart
  tools/call use_cart    the pod's name when it holds the handle in Mcp-Param-Cart, else an error
  tools/call headers     the request's headers as received
  tasks/get|result|cancel|update   the task when this pod holds it; else 200 -32602 "Task not found"
  tasks/list             this pod's tasks
  subscriptions/listen   an SSE stream: an acknowledgement, then comments
  GET /_stats            {"tasks": n, "misses": task requests for a task this pod never made,
                          "hits": task requests for a task it holds and use_cart calls with a cart
                          it holds (what reached the state a pod keeps)}

--task-id ORDINAL:ID makes pod ORDINAL name every task ID (a pod inventing ids);
--task-id-bytes N makes every task id N bytes long.
"""
import argparse
import errno
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK_METHODS = ("tasks/get", "tasks/result", "tasks/cancel", "tasks/update")


class Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, obj=None, sse=False, extra=None):
        if sse:
            body = "".join(f"event: message\ndata: {json.dumps(m)}\n\n" for m in obj).encode()
            ctype = "text/event-stream"
        else:
            body = json.dumps(obj).encode() if obj is not None else b""
            ctype = "application/json"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        if self.path == "/_stats":
            with srv.lock:
                self.send(200, {"tasks": len(srv.tasks), "misses": srv.misses, "hits": srv.hits, "name": srv.name})
            return
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        self.do_GET()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        msg = json.loads(self.rfile.read(length) or b"{}")
        method = msg.get("method")
        rid = msg.get("id")
        params = msg.get("params") or {}
        modern = self.headers.get("MCP-Protocol-Version") == "2026-07-28"
        if modern and not self.headers_agree(method, params):
            self.send(400, {"jsonrpc": "2.0", "id": rid, "error": {"code": -32020, "message": "HeaderMismatch"}})
            return
        if rid is None:
            self.send(202)
            return
        if method == "subscriptions/listen":
            self.listen(rid)
            return
        result, sse = self.answer(method, params, modern)
        reply = {"jsonrpc": "2.0", "id": rid}
        reply.update(result)
        if sse:
            progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
            self.send(200, [progress, reply], sse=True)
        else:
            self.send(200, reply)

    def headers_agree(self, method, params):
        if self.headers.get("Mcp-Method") != method:
            return False
        name = params.get("taskId") if method in TASK_METHODS else params.get("name")
        if name is None:
            return "Mcp-Name" not in self.headers
        return self.headers.get("Mcp-Name") == name

    def answer(self, method, params, modern):
        srv = self.server
        args = params.get("arguments") or {}
        sse = srv.sse or bool(args.get("sse"))
        if method == "tools/call":
            tool = params.get("name")
            if tool == "slow":
                return self.create_task(args, modern), sse
            if tool == "open_cart":
                cart = str(uuid.uuid4())
                with srv.lock:
                    srv.carts.add(cart)
                return {"result": {"content": [], "structuredContent": {"cart": cart}}}, sse
            if tool == "use_cart":
                with srv.lock:
                    held = self.headers.get("Mcp-Param-Cart") in srv.carts
                    srv.hits += held
                text = srv.name if held else "no such cart"
                return {"result": {"content": [{"type": "text", "text": text}], "isError": not held}}, sse
            if tool == "headers":
                return {"result": {"content": [], "structuredContent": {"headers": self.headers.items()}}}, sse
            return {"result": {"content": [{"type": "text", "text": srv.name}]}}, sse
        if method in TASK_METHODS:
            with srv.lock:
                task = srv.tasks.get(params.get("taskId"))
                if task is None:
                    srv.misses += 1
                else:
                    srv.hits += 1
            if task is None:
                return {"error": {"code": -32602, "message": "Task not found"}}, False
            return {"result": {"taskId": task, "status": "completed", "pod": srv.name}}, False
        if method == "tasks/list":
            with srv.lock:
                tasks = [{"taskId": t, "status": "completed"} for t in srv.tasks]
            return {"result": {"tasks": tasks}}, False
        return {"result": {"pod": srv.name}}, False

    def create_task(self, args, modern):
        srv = self.server
        task = srv.fixed_task_id or (str(uuid.uuid4()) + "x" * max(0, srv.id_bytes - 36))[: max(srv.id_bytes, 36)]
        with srv.lock:
            srv.tasks[task] = task
        ttl = args.get("ttlMs", 60000)
        if modern:
            return {"result": {"resultType": "task", "taskId": task, "status": "working", "ttlMs": ttl,
                               "pollIntervalMs": 100, "content": []}}
        return {"result": {"task": {"taskId": task, "status": "working", "ttl": ttl, "pollInterval": 100}}}

    def listen(self, rid):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        ack = {"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged", "params": {"id": rid}}
        try:
            self.chunk(f"event: message\ndata: {json.dumps(ack)}\n\n".encode())
            while True:
                time.sleep(0.2)
                self.chunk(b": keepalive\n\n")
        except OSError:
            pass

    def chunk(self, data):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=3)
    ap.add_argument("--sse", action="store_true")
    ap.add_argument("--task-id", action="append", default=[], metavar="ORDINAL:ID")
    ap.add_argument("--task-id-bytes", type=int, default=36)
    args = ap.parse_args()
    fixed = {}
    for spec in args.task_id:
        ordinal, _, tid = spec.partition(":")
        fixed[int(ordinal)] = tid
    for attempt in range(20):
        servers = []
        try:
            for i in range(args.pods):
                servers.append(Server((f"127.0.1.{i}", servers[0].server_address[1] if servers else 0), Handler))
            break
        except OSError as e:
            for s in servers:
                s.server_close()
            if e.errno != errno.EADDRINUSE or attempt == 19:
                raise
    for i, srv in enumerate(servers):
        srv.name = f"pod-{i}"
        srv.sse = args.sse
        srv.lock = threading.Lock()
        srv.tasks = {}
        srv.carts = set()
        srv.misses = 0
        srv.hits = 0
        srv.fixed_task_id = fixed.get(i)
        srv.id_bytes = args.task_id_bytes
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ports " + str(servers[0].server_address[1]), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
