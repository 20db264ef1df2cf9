#!/usr/bin/env python3
"""How evenly new sessions spread over the pods: least_sessions against random, through one
proxy and through two proxy replicas sharing Redis, all placing at once.

For each arm: a fresh redis-server and sample backend (5 pods by default) on loopback, the
proxy replicas in front, then `--sessions` initializes from 8 client threads spread over the
replicas. Reported per arm: the live sessions per pod (read from the pods themselves), the
busiest pod over the mean, and the spread (busiest minus idlest). Bounded: one pass of
`--sessions` initializes per arm, every process stopped at the end.

  python3 bench/balance.py [--sessions 3000] [--pods 5] [--binary build/mcp-session-proxy]
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "balance", "version": "1"}}})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for a server to start")


def get(port, path, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def initialize(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/mcp", INIT, {"Content-Type": "application/json",
                                            "Accept": "application/json, text/event-stream"})
        r = conn.getresponse()
        r.read()
        return r.status == 200
    finally:
        conn.close()


def arm(binary, policy, replicas, sessions, pods):
    procs = []
    try:
        redis_port = free_port()
        procs.append(subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL))
        backend_port = free_port()
        procs.append(subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "sample_backend.py"),
                                       "--pods", str(pods), "--port", str(backend_port)], stdout=subprocess.DEVNULL))
        wait_for(lambda: get(backend_port, "/_stats", "127.0.1.0")[0] == 200)
        ports = []
        for _ in range(replicas):
            port, admin = free_port(), free_port()
            procs.append(subprocess.Popen(
                [binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                 "--replicas", str(pods), "--backend-url-template", f"http://127.0.1.{{ordinal}}:{backend_port}",
                 "--session-store", "redis", "--redis-url", f"redis://127.0.0.1:{redis_port}/0",
                 "--placement", policy, "--threads", "2", "--log-level", "warn", "--access-log", "false"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda a=admin: get(a, "/readyz")[0] == 200)
            ports.append(port)
        failed = []
        per_client = sessions // 8

        def client(i):
            port = ports[i % len(ports)]
            failed.append(sum(0 if initialize(port) else 1 for _ in range(per_client)))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        live = [json.loads(get(backend_port, "/_stats", f"127.0.1.{o}")[1])["sessions"] for o in range(pods)]
        return live, sum(failed)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=3000)
    ap.add_argument("--pods", type=int, default=5)
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "mcp-session-proxy"))
    args = ap.parse_args()
    print(f"{args.sessions} initializes over {args.pods} pods, 8 clients, redis store")
    print(f"{'placement':<16}{'replicas':>9}  {'per pod':<32}{'busiest/mean':>13}{'spread':>8}")
    for policy in ("least_sessions", "random"):
        for replicas in (1, 2):
            live, failed = arm(args.binary, policy, replicas, args.sessions, args.pods)
            mean = sum(live) / len(live)
            print(f"{policy:<16}{replicas:>9}  {' '.join(map(str, live)):<32}{max(live) / mean:>13.3f}"
                  f"{max(live) - min(live):>8}" + (f"  ({failed} failed)" if failed else ""))


if __name__ == "__main__":
    main()
