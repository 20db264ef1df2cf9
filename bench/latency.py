#!/usr/bin/env python3
"""Latency of one request through the proxy against the same request sent to the pod directly.

  python3 bench/latency.py [--binary build/mcp-session-proxy] [--n 200]

Measures, with the sample backend (three pods on 127.0.1.N) on this machine:
  - SSE first event: a tools/call answered as an SSE stream; time from sending the request
    to the arrival of the first event, direct vs through the proxy (memory store);
  - initialize: time to the full answer, direct vs proxy with the memory store vs proxy with
    the redis store (the record is written to Redis before the answer goes out).
Prints medians and p90 in microseconds. Everything runs on 127.0.0.1; bounded in count.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Conn:
    """One keep-alive HTTP/1.1 connection; times the first body byte and the whole answer."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host, self.port = host, port

    def post(self, body, headers=None, until=b"\n\n"):
        data = json.dumps(body).encode()
        head = [f"POST /mcp HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                "Accept: application/json, text/event-stream", f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        start = time.perf_counter()
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        buf = b""
        first = None
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            buf += chunk
            hdr_end = buf.find(b"\r\n\r\n")
            if hdr_end < 0:
                continue
            body = buf[hdr_end + 4:]
            if first is None and until in body:
                first = time.perf_counter() - start
            headers_text = buf[:hdr_end].decode().lower()
            if "content-length:" in headers_text:
                n = int(headers_text.split("content-length:")[1].split("\r\n")[0])
                if len(body) >= n:
                    return first or time.perf_counter() - start, time.perf_counter() - start, buf
            elif body.endswith(b"0\r\n\r\n"):
                return first, time.perf_counter() - start, buf


def session_header(raw):
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"mcp-session-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise RuntimeError("no session id")


INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}
TICK = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ticker", "arguments": {"count": 1, "interval_ms": 0}}}


def stats(xs):
    xs = sorted(x * 1e6 for x in xs)
    return f"median {statistics.median(xs):8.0f} us   p90 {xs[int(len(xs) * 0.9)]:8.0f} us"


def wait_ready(admin):
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", admin), timeout=1) as s:
                s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("proxy not ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/mcp-session-proxy"))
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    procs = []
    try:
        backend = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples/sample_backend.py"), "--pods", "3",
                                    "--port", "0"], stdout=subprocess.PIPE, text=True)
        procs.append(backend)
        pod_port = int(backend.stdout.readline().split()[1])
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL))
        proxies = {}
        for store in ("memory", "redis"):
            port, admin = free_port(), free_port()
            cmd = [args.binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                   "--replicas", "1", "--backend-url-template", f"http://127.0.1.{{ordinal}}:{pod_port}",
                   "--threads", "1", "--log-level", "warn", "--session-store", store]
            if store == "redis":
                cmd += ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
            procs.append(subprocess.Popen(cmd))
            wait_ready(admin)
            proxies[store] = port
        time.sleep(0.5)  # let the Redis connections come up before timing

        targets = {"direct": ("127.0.1.0", pod_port), "proxy (memory)": ("127.0.0.1", proxies["memory"]),
                   "proxy (redis)": ("127.0.0.1", proxies["redis"])}
        print(f"{args.n} requests each, one keep-alive connection, sample backend pod 0\n")
        print("initialize, full answer:")
        for name, (host, port) in targets.items():
            c = Conn(host, port)
            times = [c.post(INIT)[1] for _ in range(args.n)]
            print(f"  {name:16s} {stats(times)}")
        print("tools/call answered as SSE, first event:")
        for name, (host, port) in list(targets.items())[:2]:
            c = Conn(host, port)
            sid = session_header(c.post(INIT)[2])
            times = [c.post(TICK, {"Mcp-Session-Id": sid}, until=b"progress")[0] for _ in range(args.n)]
            print(f"  {name:16s} {stats(times)}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


if __name__ == "__main__":
    main()
