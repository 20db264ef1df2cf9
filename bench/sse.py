#!/usr/bin/env python3
"""Many open SSE streams through the proxy: its RSS, and the latency of one event while they are open.

  python3 bench/sse.py [--streams 10000] [--binary build/mcp-session-proxy]
  python3 bench/sse.py --streams 5000 --peers   # nginx and HAProxy relay the same streams, one after the other

A small asyncio MCP-shaped backend (one process, pods on 127.0.1.0-2) mints sessions on
initialize and holds a GET stream per session; POST /ping?to=<session> sends one event on
that session's stream. The client opens --streams sessions and their GET streams through
the proxy, then measures 200 single events end to end (ping sent -> event received)
through the proxy while all streams stay open, and the same against a pod directly.
With --peers, nginx (one worker, consistent hash on Mcp-Session-Id, proxy_buffering off) and
HAProxy (one thread, balance hdr(Mcp-Session-Id), option http-no-delay: without it each event
waits about 200 ms, as HAProxy sends with MSG_MORE) carry the same number of streams to the
same backend after the proxy, each measured the same way (RSS of all its processes).
Bounded: the streams are closed and everything stops at the end.
"""
import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (free ports, RSS, the peers' configurations)
from bench import ROOT, free_port, rss_kib  # noqa: E402


# ---- the backend ------------------------------------------------------------------------
STREAMS = {}


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST" and target.startswith("/ping"):
                sid = target.split("to=", 1)[1]
                q = STREAMS.get(sid)
                if q:
                    q.put_nowait(body)
                writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
            elif method == "POST":
                sid = uuid.uuid4().hex
                out = b'{"jsonrpc":"2.0","id":1,"result":{}}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: " + sid.encode() +
                             b"\r\nContent-Length: " + str(len(out)).encode() + b"\r\n\r\n" + out)
            elif method == "GET":
                sid = headers.get("mcp-session-id", "")
                q = asyncio.Queue()
                STREAMS[sid] = q
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                try:
                    while True:
                        data = await q.get()
                        event = b"event: message\ndata: " + data + b"\n\n"
                        writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                        await writer.drain()
                finally:
                    STREAMS.pop(sid, None)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def backend_main(port):
    servers = [await asyncio.start_server(handle, f"127.0.1.{i}", port, backlog=4096) for i in range(3)]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


# ---- the client -------------------------------------------------------------------------
async def request(host, port, method, target, body=b"", headers=None):
    reader, writer = await asyncio.open_connection(host, port)
    hdrs = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{hdrs}\r\n".encode() + body)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    return reader, writer, head


async def open_stream(host, port, sem):
    async with sem:
        r, w, head = await request(host, port, "POST", "/mcp", b'{"jsonrpc":"2.0","id":1,"method":"initialize"}',
                                   {"Content-Type": "application/json"})
        sids = [l.split(":", 1)[1].strip() for l in head.decode().split("\r\n") if l.lower().startswith("mcp-session-id")]
        if not sids:
            raise RuntimeError("initialize refused: " + head.decode(errors="replace").split("\r\n")[0])
        sid = sids[0]
        w.close()
        reader, writer, head = await request(host, port, "GET", "/mcp", headers={"Mcp-Session-Id": sid,
                                                                               "Accept": "text/event-stream"})
        assert head.startswith(b"HTTP/1.1 200"), head
        return sid, reader, writer


async def one_event_latency(host, port, pod_port, sid, reader):
    stamp = str(time.perf_counter_ns()).encode()
    _, w, _ = await request("127.0.1.0", pod_port, "POST", f"/ping?to={sid}", stamp)
    w.close()
    while True:
        line = await reader.readline()
        if stamp in line:
            return time.perf_counter_ns() - int(stamp)


def tree_rss_kib(pid):
    """RSS of a process and its children (nginx's master and worker)."""
    total = rss_kib(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            for child in f.read().split():
                total += rss_kib(int(child))
    except OSError:
        pass
    return total


def start_arm(name, args, pod_port, tmp):
    """Starts one relay of the streams; returns (process, port)."""
    port = free_port()
    if name == "mcp-session-proxy":
        cmd = [args.binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{free_port()}",
               "--replicas", "1", "--threads", "1", "--backend-url-template",
               f"http://127.0.1.{{ordinal}}:{pod_port}", "--log-level", "warn",
               "--max-connections", str(args.streams * 2 + 100)]
    elif name == "nginx":
        conf = os.path.join(tmp, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes 1;
worker_rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[1]};
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx.err warn;
events {{ worker_connections {min(args.streams * 3 + 200, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 100)}; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  upstream pods {{
    hash $http_mcp_session_id consistent;
    server 127.0.1.0:{pod_port};
    server 127.0.1.1:{pod_port};
    server 127.0.1.2:{pod_port};
  }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 1h;
    }}
  }}
}}
""")
        cmd = ["nginx", "-c", conf, "-p", tmp]
    else:
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            # Streams: long timeouts, and each event sent at once (without http-no-delay
            # HAProxy sends with MSG_MORE and the event waits for the client's delayed ACK).
            f.write(bench.haproxy_config(port, pod_port, maxconn=args.streams + 200, timeout="1h",
                                         extra_defaults=["option http-no-delay"]))
        cmd = ["haproxy", "-f", cfg]
    return subprocess.Popen(cmd, stderr=subprocess.DEVNULL), port


def start_backend():
    pod_port = free_port()
    backend = subprocess.Popen([sys.executable, __file__, "--backend", str(pod_port)], stdout=subprocess.PIPE, text=True)
    backend.stdout.readline()
    return backend, pod_port


async def measure_arm(name, args, tmp):
    print(f"{name}: opening {args.streams} streams", file=sys.stderr, flush=True)
    # A backend of its own: the streams of the arm before are still open there (it notices a
    # closed stream only when it next writes to it).
    backend, pod_port = start_backend()
    proc, port = start_arm(name, args, pod_port, tmp)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # nginx's worker is up after its listener
        rss0 = tree_rss_kib(proc.pid)
        sem = asyncio.Semaphore(200)
        t0 = time.time()
        streams = await asyncio.gather(*(open_stream("127.0.0.1", port, sem) for _ in range(args.streams)))
        opened = time.time() - t0
        rss1 = tree_rss_kib(proc.pid)
        lat = []
        for i in range(args.events):
            sid, reader, _ = streams[i * 37 % len(streams)]
            lat.append(await one_event_latency("127.0.0.1", port, pod_port, sid, reader))
        for _, _, w in streams:
            w.close()
        return {"arm": name, "opened": opened, "rss0": rss0, "rss1": rss1, "lat": lat}
    finally:
        proc.terminate()
        proc.wait()
        backend.terminate()
        backend.wait()


def fmt(xs):
    xs = sorted(x / 1000 for x in xs)
    return f"median {statistics.median(xs):.0f} us, p99 {xs[int(len(xs) * 0.99) - 1]:.0f} us"


async def client_main(args):
    tmp = tempfile.mkdtemp(prefix="sse-bench-")
    try:
        arms = ["mcp-session-proxy"] + (["nginx", "haproxy"] if args.peers else [])
        results = [await measure_arm(a, args, tmp) for a in arms]
        backend, pod_port = start_backend()
        try:
            direct = await open_stream("127.0.1.0", pod_port, asyncio.Semaphore(1))
            dlat = [await one_event_latency("127.0.1.0", pod_port, pod_port, direct[0], direct[1])
                    for _ in range(args.events)]
            direct[2].close()
        finally:
            backend.terminate()
            backend.wait()
        for r in results:
            print(f"{r['arm']}: {args.streams} SSE streams open in {r['opened']:.1f} s; RSS {r['rss0'] / 1024:.1f} MiB idle -> "
                  f"{r['rss1'] / 1024:.1f} MiB ({(r['rss1'] - r['rss0']) * 1024 / args.streams:.0f} bytes per stream); "
                  f"one event with all open: {fmt(r['lat'])}")
        print(f"direct to the pod: one event {fmt(dlat)}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--backend":
        asyncio.run(backend_main(int(sys.argv[2])))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/mcp-session-proxy"))
    ap.add_argument("--streams", type=int, default=10000)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--peers", action="store_true", help="nginx and HAProxy relay the same streams too")
    args = ap.parse_args()
    # Each stream is a client and an upstream descriptor in the proxy, and one in each peer.
    # The proxy needs two descriptors a stream (client and pod side).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    fit = (hard - 500) // 2
    if args.streams > fit:
        print(f"note: {args.streams} streams need {2 * args.streams + 500} descriptors in the proxy; "
              f"the limit here is {hard}: measuring {fit}", file=sys.stderr)
        args.streams = fit
    asyncio.run(client_main(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
