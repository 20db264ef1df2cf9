#!/usr/bin/env python3
"""The first request of a new client connection, when the relay's pooled pod connections
have been closed meanwhile: does the request wait for a connect?

  python3 bench/first_request.py [--rounds 100] [--binary build/mcp-session-proxy]

Pods close idle keep-alive connections after a while (Node's HTTP server, which most MCP
servers run on, after 5 s); a relay whose pooled connection is gone pays a connect (and
a name lookup) inside the next request. Here the pods (nginx, three on 127.0.1.0-2) close
idle connections after 400 ms, and every relay lets go of idle pod connections after
200 ms, below the pod's own timeout as docs/operations.md advises:

  - mcp-session-proxy with backend.warm_connections 1 (the default): a spare connection per
    pod is made again in the background when the idle timeout closes one;
  - mcp-session-proxy with backend.warm_connections 0: the request connects;
  - nginx (upstream keepalive, keepalive_timeout 200ms) and HAProxy (http-reuse always,
    pool-purge-delay 200ms);
  - the pod directly (a new connection to it is part of every sample).

Each round waits 0.6 s (every pool has idled out, the warm spares have been remade), then
sends one tools/call of an existing session through each arm on a new connection, the arms'
order rotating; the time is from the start of the connect to the end of the answer, as the
client sees it (this machine's wake-up after an idle spell is in every arm's figure). The
two proxy arms also report their own view, from their access log (`duration_ms`: the head
read to the end of the answer), where the connect and the lookup inside the request show
without the client's noise. Prints p50, p90 and p99 per arm in microseconds. Bounded:
rounds x 0.6 s, then all stop.
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from bench import free_port, wait_port  # noqa: E402

CALL = (b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"whoami","arguments":{}}}')


def one_request(host, port, session):
    """Connect, send one call, read the whole answer; seconds from connect to the last byte."""
    start = time.perf_counter()
    with socket.create_connection((host, port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                  b"Accept: application/json, text/event-stream\r\nMcp-Session-Id: " + session.encode() +
                  b"\r\nContent-Length: " + str(len(CALL)).encode() + b"\r\n\r\n" + CALL)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"{host}:{port} closed before the answer's end")
            buf += chunk
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = buf[:end].decode().lower()
            if not head.startswith("http/1.1 200"):
                raise RuntimeError(f"{host}:{port} answered {head.splitlines()[0]}")
            length = int(head.split("content-length:")[1].split("\r\n")[0])
            if len(buf) - end - 4 >= length:
                return time.perf_counter() - start


def session_of(host, port):
    with socket.create_connection((host, port)) as s:
        body = bench.INIT.encode()
        s.sendall(b"POST /mcp HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                  b"Accept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\n\r\n" + body)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    for line in raw.split(b"\r\n"):
        if line.lower().startswith(b"mcp-session-id:"):
            return line.split(b":", 1)[1].strip().decode()
    raise RuntimeError(f"{host}:{port}: no session id in {raw[:200]!r}")


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(bench.ROOT, "build/mcp-session-proxy"))
    ap.add_argument("--rounds", type=int, default=200)
    args = ap.parse_args()
    b = bench.Bench(argparse.Namespace(binary=args.binary))
    try:
        b.pod_port = free_port()
        b.backend = b.nginx("backend", bench.pods_nginx_config(b.pod_port, extra="    keepalive_timeout 400ms;\n"))
        for i in range(3):
            wait_port(f"127.0.1.{i}", b.pod_port)
        arms = {}
        template = f"http://127.0.1.{{ordinal}}:{b.pod_port}"
        logs = {}
        for name, warm in (("proxy, warm_connections 1", "1"), ("proxy, warm_connections 0", "0")):
            port = free_port()
            logs[name] = os.path.join(b.tmp, f"proxy-{warm}.log")
            p = subprocess.Popen([args.binary, "--listen", f"127.0.0.1:{port}", "--admin-listen",
                                  f"127.0.0.1:{free_port()}", "--threads", "1", "--replicas", "3",
                                  "--backend-url-template", template, "--upstream-idle-timeout", "200ms",
                                  "--upstream-warm", warm],
                                 stdout=subprocess.DEVNULL, stderr=open(logs[name], "w"))
            b.procs.append(p)
            wait_port("127.0.0.1", port)
            arms[name] = ("127.0.0.1", port)
        port = free_port()
        b.nginx("proxy", bench.proxy_nginx_config(port, b.pod_port, extra_upstream="    keepalive_timeout 200ms;\n"))
        wait_port("127.0.0.1", port)
        arms["nginx"] = ("127.0.0.1", port)
        port = free_port()
        cfg = os.path.join(b.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(bench.haproxy_config(port, b.pod_port).replace(
                "  http-reuse always\n", "  http-reuse always\n  default-server pool-purge-delay 200ms\n"))
        b.spawn(["haproxy", "-f", cfg])
        wait_port("127.0.0.1", port)
        arms["haproxy"] = ("127.0.0.1", port)
        arms["pod directly"] = ("127.0.1.0", b.pod_port)

        sessions = {name: session_of(*addr) for name, addr in arms.items()}
        samples = {name: [] for name in arms}
        names = list(arms)
        for name in logs:  # from here on, the access lines are the measured requests'
            logs[name] = (logs[name], os.path.getsize(logs[name]))
        for r in range(args.rounds):
            time.sleep(0.6)  # every pool idles out; the pod closes what is left
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                samples[name].append(one_request(*arms[name], sessions[name]))
        print(f"first request of a new client connection, pooled pod connections idled out "
              f"({args.rounds} rounds), microseconds:")
        print(f"  {'arm':28s} {'p50':>6s} {'p90':>6s} {'p99':>6s} {'mean':>6s}")
        for name in names:
            xs = [x * 1e6 for x in samples[name]]
            print(f"  {name:28s} {percentile(xs, 0.5):6.0f} {percentile(xs, 0.9):6.0f} {percentile(xs, 0.99):6.0f} "
                  f"{statistics.mean(xs):6.0f}")
        print("the same requests as the proxy saw them (access log duration_ms), microseconds:")
        for name, (path, offset) in logs.items():
            with open(path) as f:
                f.seek(offset)
                xs = [float(m.group(1)) * 1000 for m in re.finditer(r"access .*duration_ms=([0-9.]+)", f.read())]
            print(f"  {name:28s} {percentile(xs, 0.5):6.0f} {percentile(xs, 0.9):6.0f} {percentile(xs, 0.99):6.0f} "
                  f"{statistics.mean(xs):6.0f}  ({len(xs)} requests)")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
