#!/usr/bin/env python3
"""mcp-session-proxy against nginx and HAProxy at the same job, side by side on this machine.

  python3 bench/bench.py                 # the full run (a few minutes), results to stdout
  python3 bench/bench.py --write-docs    # ... and into docs/benchmarks.md
  python3 bench/bench.py --smoke         # CI: every arm answers correctly (1 s each), no figures

Everything runs on 127.0.0.1 / 127.0.1.N. Backends: nginx serving three "pods" that answer
every POST with a fixed JSON-RPC result and a fresh Mcp-Session-Id, fast enough that the
proxy is the bottleneck. Arms, run interleaved (A B C D E A B C D E ...) so drift hits all:
  1 mcp-session-proxy, memory store, one worker thread
  2 mcp-session-proxy, redis store, one worker thread, warm cache
  1u, 2u the same with io_backend io_uring (the arm fails if the workers do not run on it)
  3 nginx, hash $http_mcp_session_id consistent, one worker, upstream keep-alive
  4 HAProxy, balance hdr(Mcp-Session-Id), one thread, http-reuse always
  5 the backend directly (the limit)
Sessions are created through each proxy first; wrk then rotates over their ids.
Also: initialize rate with the redis store, and RSS per cached session.
"""
import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import http.client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")
INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "bench", "version": "1"}}})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host, port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} did not open")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICKS


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pods_nginx_config(pod_port, extra=""):
    """The benches' backend: three pods (nginx server blocks on 127.0.1.0-2, pod_port) that
    answer every request with a fixed JSON-RPC result and an Mcp-Session-Id: a fresh one to a
    request without one (an initialize), the session's own to the others (a pod that renamed
    a live session would get 502 from the proxy); `extra` goes into each server block."""
    return "\n".join(f"""  server {{
    listen 127.0.1.{i}:{pod_port};
    set $mcp_sid $http_mcp_session_id;
    if ($mcp_sid = "") {{
      set $mcp_sid $request_id;
    }}
{extra}    location / {{
      default_type application/json;
      add_header Mcp-Session-Id $mcp_sid always;
      return 200 '{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"pod-{i}"}}]}}}}';
    }}
  }}""" for i in range(3))


def proxy_nginx_config(port, pod_port, extra_upstream=""):
    """nginx as the benches' peer: listens on 127.0.0.1:port, consistent hash on
    Mcp-Session-Id over the three pods, upstream keep-alive, no buffering (SSE)."""
    servers = "\n".join(f"    server 127.0.1.{i}:{pod_port};" for i in range(3))
    return f"""  upstream pods {{
    hash $http_mcp_session_id consistent;
{servers}
    keepalive 64;
{extra_upstream}  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}"""


def haproxy_config(port, pod_port, threads=1, maxconn=4096, timeout="60s", extra_defaults=()):
    """HAProxy as the benches' peer: listens on 127.0.0.1:port, routes by Mcp-Session-Id
    (consistent hash) to the three pods on pod_port."""
    defaults = "".join(f"  {line}\n" for line in extra_defaults)
    return f"""global
  nbthread {threads}
  maxconn {maxconn}
defaults
  mode http
  timeout connect 5s
  timeout client {timeout}
  timeout server {timeout}
  http-reuse always
{defaults}frontend fe
  bind 127.0.0.1:{port}
  default_backend pods
backend pods
  balance hdr(Mcp-Session-Id)
  hash-type consistent
""" + "".join(f"  server p{i} 127.0.1.{i}:{pod_port}\n" for i in range(3))


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="mcp-bench-")
        self.procs = []
        self.binary = args.binary
        self.baseline = getattr(args, "baseline_binary", None)
        # Workers of each relay (proxy --threads, nginx worker_processes, HAProxy nbthread);
        # the backend keeps one.
        self.workers = getattr(args, "workers", 1)

    def spawn(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.tmp, "stderr.log"), "a"), **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def nginx(self, name, body, workers=1):
        conf = os.path.join(self.tmp, f"{name}.conf")
        with open(conf, "w") as f:
            f.write(f"""worker_processes {workers};
daemon off;
pid {self.tmp}/{name}.pid;
error_log {self.tmp}/{name}.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path {self.tmp}/{name}-body;
  proxy_temp_path {self.tmp}/{name}-proxy;
  fastcgi_temp_path {self.tmp}/{name}-fcgi;
  uwsgi_temp_path {self.tmp}/{name}-uwsgi;
  scgi_temp_path {self.tmp}/{name}-scgi;
{body}
}}
""")
        return self.spawn(["nginx", "-c", conf, "-p", self.tmp])

    def start(self):
        self.pod_port = free_port()
        self.backend = self.nginx("backend", pods_nginx_config(self.pod_port))
        for i in range(3):
            wait_port(f"127.0.1.{i}", self.pod_port)
        self.redis_port = free_port()
        self.redis_proc = self.spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                                      "--appendonly", "no"])
        wait_port("127.0.0.1", self.redis_port)

        self.arms = {}
        template = f"http://127.0.1.{{ordinal}}:{self.pod_port}"
        uring = ["--io-backend", "io_uring"]
        stores = [("memory", self.binary, "mcp-session-proxy (memory)", []),
                  ("redis", self.binary, "mcp-session-proxy (redis)", []),
                  ("memory", self.binary, "mcp-session-proxy (memory, io_uring)", uring),
                  ("redis", self.binary, "mcp-session-proxy (redis, io_uring)", uring)]
        if self.baseline:
            # Another build of the proxy in the same interleaved run (before/after a change).
            stores.append(("memory", self.baseline, "baseline (memory)", []))
        if os.environ.get("MCPPROXY_BENCH_NO_URING"):
            # Where io_uring is refused (a seccomp profile, a memlock limit): the epoll arms alone.
            stores = [s for s in stores if s[3] != uring]
        for store, binary, arm, extra in stores:
            port = free_port()
            admin = free_port()
            cmd = [binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
                   "--threads", str(self.workers), "--replicas", "3", "--backend-url-template", template, "--log-level", "warn",
                   "--session-store", store] + extra
            if store == "redis":
                cmd += ["--redis-url", f"redis://127.0.0.1:{self.redis_port}/0"]
            p = self.spawn(cmd)
            wait_port("127.0.0.1", port)
            if extra == uring:
                # An io_uring arm that fell back to epoll (a kernel or seccomp profile that
                # refuses it) would measure the wrong thing: refused here, not reported.
                page = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
                if f'mcp_proxy_workers{{io_backend="io_uring"}} {self.workers}' not in page:
                    raise RuntimeError(f"{arm}: the workers do not run on io_uring here (see the proxy's log)")
            self.arms[arm] = (port, lambda p=p: [p.pid], p.pid)
        port = free_port()
        ng = self.nginx("proxy", proxy_nginx_config(port, self.pod_port), workers=self.workers)
        wait_port("127.0.0.1", port)
        self.arms["nginx"] = (port, lambda ng=ng: [ng.pid] + children(ng.pid), None)
        port = free_port()
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(haproxy_config(port, self.pod_port, threads=self.workers))
        hp = self.spawn(["haproxy", "-f", cfg])
        wait_port("127.0.0.1", port)
        self.arms["haproxy"] = (port, lambda hp=hp: [hp.pid] + children(hp.pid), None)
        self.arms["direct"] = (None, lambda: [self.backend.pid] + children(self.backend.pid), None)
        time.sleep(0.3)  # the redis arm's connection comes up in the background

    def sessions(self, name, port, n, extra_headers=None):
        """Creates n sessions through the arm; returns the path of the id file."""
        host, p = ("127.0.1.0", self.pod_port) if port is None else ("127.0.0.1", port)
        conn = http.client.HTTPConnection(host, p)
        ids = []
        for _ in range(n):
            conn.request("POST", "/mcp", INIT, {"Content-Type": "application/json",
                                                "Accept": "application/json, text/event-stream",
                                                **(extra_headers or {})})
            r = conn.getresponse()
            r.read()
            if r.status != 200 or not r.getheader("Mcp-Session-Id"):
                raise RuntimeError(f"{name}: initialize answered {r.status}")
            ids.append(r.getheader("Mcp-Session-Id"))
        path = os.path.join(self.tmp, name.replace(" ", "_").replace("(", "").replace(")", "") + ".ids")
        with open(path, "w") as f:
            f.write("\n".join(ids) + "\n")
        return path

    def wrk(self, port, seconds, connections, env):
        host, p = ("127.0.1.0", self.pod_port) if port is None else ("127.0.0.1", port)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", os.path.join(ROOT, "bench/mcp.lua"),
                              f"http://{host}:{p}/mcp"], capture_output=True, text=True, env={**os.environ, **env},
                             timeout=seconds + 60)
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        raise RuntimeError("wrk gave no result: " + out.stdout + out.stderr)

    def throughput(self, rounds, seconds, connections, sessions):
        ids = {name: self.sessions(name, port, sessions) for name, (port, _, _) in self.arms.items()}
        results = {name: [] for name in self.arms}
        for r in range(rounds):
            for name, (port, pids, _) in self.arms.items():
                before = cpu_seconds(pids())
                res = self.wrk(port, seconds, connections, {"SESSIONS": ids[name], "MODE": "call"})
                res["cpu_per_100k"] = (cpu_seconds(pids()) - before) / max(res["requests"], 1) * 100000
                results[name].append(res)
                print(f"  round {r + 1} {name:38s} {res['rps']:9.0f} req/s  p50 {res['p50_us']:5d} us  "
                      f"p99 {res['p99_us']:6d} us  errors {res['errors'] + res['non2xx']}", flush=True)
        return results

    def moderate_load_latency(self, rounds, seconds):
        """One connection, one request at a time (wrk -c1): the latency each arm adds to the
        backend's own, with the machine far from saturated."""
        ids = {name: self.sessions(name, port, 100) for name, (port, _, _) in self.arms.items()}
        results = {name: [] for name in self.arms}
        for r in range(rounds):
            for name, (port, _, _) in self.arms.items():
                res = self.wrk(port, seconds, 1, {"SESSIONS": ids[name], "MODE": "call"})
                results[name].append(res)
                print(f"  c1 round {r + 1} {name:38s} {res['rps']:9.0f} req/s  p50 {res['p50_us']:5d} us  "
                      f"p99 {res['p99_us']:6d} us", flush=True)
        return results

    def initialize_rate_and_rss(self, seconds):
        port, _, pid = self.arms["mcp-session-proxy (redis)"]
        rss_before = rss_kib(pid)
        res = self.wrk(port, seconds, 16, {"MODE": "initialize"})
        # The records of the sessions just made, in Redis and in the local table.
        rss_after = rss_kib(pid)
        created = res["requests"]
        return res, created, (rss_after - rss_before) * 1024 / max(created, 1)


def soak(b, seconds):
    name = "mcp-session-proxy (memory)"
    port, _, pid = b.arms[name]
    ids = b.sessions(name, port, 1000)
    wrk = subprocess.Popen(["wrk", "-t1", "-c4", f"-d{seconds}s", "-s", os.path.join(ROOT, "bench/mcp.lua"),
                            f"http://127.0.0.1:{port}/mcp"], stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "SESSIONS": ids, "MODE": "call"})
    samples = []
    start = time.time()
    while wrk.poll() is None and time.time() - start < seconds + 30:
        samples.append((round(time.time() - start), rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd"))))
        print(f"  t={samples[-1][0]:4d}s  RSS {samples[-1][1]} KiB  fds {samples[-1][2]}", flush=True)
        time.sleep(10)
    out = wrk.communicate()[0]
    res = json.loads(next(l[7:] for l in out.splitlines() if l.startswith("RESULT ")))
    steady = samples[1:] or samples
    print(f"soak {seconds} s: {res['requests']} requests ({res['rps']:.0f}/s), errors {res['errors'] + res['non2xx']}; "
          f"RSS {steady[0][1]} -> {steady[-1][1]} KiB (max {max(s[1] for s in steady)}), "
          f"fds {steady[0][2]} -> {steady[-1][2]} (max {max(s[2] for s in steady)})")
    return 0 if res["errors"] + res["non2xx"] == 0 else 1


def initialize_rates(b, rounds, seconds):
    """New sessions per second through the proxy with each store, interleaved: does Redis set
    the ceiling of initialize, or the proxy's own work?"""
    rates = {"memory": [], "redis": []}
    for r in range(rounds):
        for store in rates:
            port, pids, _ = b.arms[f"mcp-session-proxy ({store})"]
            cpu0 = cpu_seconds(pids())
            redis0 = cpu_seconds([b.redis_proc.pid])
            res = b.wrk(port, seconds, 16, {"MODE": "initialize"})
            cpu = cpu_seconds(pids()) - cpu0
            redis_cpu = cpu_seconds([b.redis_proc.pid]) - redis0
            n = max(res["requests"], 1)
            rates[store].append((res["requests"] / seconds, cpu * 100000 / n, redis_cpu * 100000 / n))
            print(f"  round {r + 1} {store:7s} {rates[store][-1][0]:8.0f} initializes/s  CPU per 100k: proxy "
                  f"{rates[store][-1][1]:.2f} s, redis-server {rates[store][-1][2]:.2f} s  "
                  f"errors {res['errors'] + res['non2xx']}", flush=True)
    for store, xs in rates.items():
        print(f"{store}: median {statistics.median(x[0] for x in xs):.0f} initializes/s; CPU per 100k: proxy "
              f"{statistics.median(x[1] for x in xs):.2f} s, redis-server {statistics.median(x[2] for x in xs):.2f} s "
              f"(wrk -c16, {rounds} rounds of {seconds} s)")
    return 0


def redis_trips(b):
    """Commands Redis served (INFO commandstats) for new sessions and for warm calls."""
    def stats():
        out = subprocess.run(["redis-cli", "-p", str(b.redis_port), "INFO", "commandstats"],
                             capture_output=True, text=True).stdout
        counts = {}
        for line in out.splitlines():
            if line.startswith("cmdstat_") and line[8:12] != "info":
                name, rest = line.split(":", 1)
                counts[name[8:]] = int(rest.split(",")[0].split("=")[1])
        return counts

    def diff(before, after):
        return {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    name = "mcp-session-proxy (redis)"
    port = b.arms[name][0]
    s0 = stats()
    ids = b.sessions(name, port, 500)
    s1 = stats()
    res = b.wrk(port, 5, 32, {"SESSIONS": ids, "MODE": "call"})
    s2 = stats()
    print(f"redis arm: 500 initializes -> Redis commands {diff(s0, s1)}; "
          f"{res['requests']} calls on those sessions -> Redis commands {diff(s1, s2) or 'none'}")
    return 0


def median(results, key):
    return statistics.median(r[key] for r in results)


def report_latency(results):
    direct = median(results["direct"], "p50_us")
    lines = ["One connection, one request at a time (`wrk -t1 -c1`, medians of the rounds): the latency an arm adds to the "
             "backend's own p50.", "",
             "| arm | req/s | p50 us | p99 us | p50 added vs direct, us |", "|---|---|---|---|---|"]
    for n, rs in results.items():
        p50 = median(rs, "p50_us")
        lines.append(f"| {n} | {median(rs, 'rps'):.0f} | {p50:.0f} | {median(rs, 'p99_us'):.0f} | "
                     f"{'-' if n == 'direct' else f'{p50 - direct:.0f}'} |")
    return "\n".join(lines)


def report(results, init, machine):
    names = list(results)
    lines = ["| arm | req/s | p50 us | p99 us | p99.9 us | CPU s / 100k req | errors |", "|---|---|---|---|---|---|---|"]
    for n in names:
        rs = results[n]
        lines.append(f"| {n} | {median(rs, 'rps'):.0f} | {median(rs, 'p50_us'):.0f} | {median(rs, 'p99_us'):.0f} | "
                     f"{median(rs, 'p999_us'):.0f} | {median(rs, 'cpu_per_100k'):.2f} | "
                     f"{sum(r['errors'] + r['non2xx'] for r in rs)} |")
    lines += ["", "Ratios (median req/s of the arm / median req/s of the peer; p99 the other way round, >1 is better):", "",
              "| arm | vs nginx | vs HAProxy | vs direct | p99 vs nginx | p99 vs HAProxy | CPU vs nginx | CPU vs HAProxy |",
              "|---|---|---|---|---|---|---|---|"]
    for n in [n for n in names if n.startswith(("mcp-session-proxy", "baseline"))]:
        rps = median(results[n], "rps")
        p99 = median(results[n], "p99_us")
        cpu = median(results[n], "cpu_per_100k")
        lines.append(f"| {n} | {rps / median(results['nginx'], 'rps'):.2f} | {rps / median(results['haproxy'], 'rps'):.2f} | "
                     f"{rps / median(results['direct'], 'rps'):.2f} | {median(results['nginx'], 'p99_us') / p99:.2f} | "
                     f"{median(results['haproxy'], 'p99_us') / p99:.2f} | {median(results['nginx'], 'cpu_per_100k') / cpu:.2f} | "
                     f"{median(results['haproxy'], 'cpu_per_100k') / cpu:.2f} |")
    if init:
        res, created, per_session = init
        lines += ["", f"initialize through mcp-session-proxy (redis store): {res['rps']:.0f} new sessions/s "
                      f"(p50 {res['p50_us']} us, p99 {res['p99_us']} us), {created} sessions; "
                      f"RSS growth {per_session:.0f} bytes per session held in the local table."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/mcp-session-proxy"))
    ap.add_argument("--baseline-binary", default=None,
                    help="another build as an extra arm (memory store), to compare before and after a change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--initialize-rates", action="store_true",
                    help="instead: initializes per second with the memory and the redis store, interleaved")
    ap.add_argument("--workers", type=int, default=1,
                    help="worker threads or processes of every relay (proxy --threads, nginx worker_processes, "
                         "HAProxy nbthread)")
    ap.add_argument("--smoke", action="store_true", help="every arm once for 1 s; fail on any error")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--redis-trips", action="store_true",
                    help="instead: Redis commands per new session and per warm call (INFO commandstats)")
    ap.add_argument("--soak", type=int, default=0, metavar="SECONDS",
                    help="instead: wrk -c4 on the memory arm for SECONDS, RSS and open descriptors sampled every 10 s")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.seconds, args.sessions = 1, 1, 50
    b = Bench(args)
    try:
        b.start()
        if args.soak:
            return soak(b, args.soak)
        if args.redis_trips:
            return redis_trips(b)
        if args.initialize_rates:
            return initialize_rates(b, args.rounds, args.seconds)
        cmd = " ".join(["python3 bench/bench.py"] + sys.argv[1:])
        print(f"{len(b.arms)} arms, {args.workers} worker(s) per relay, {args.rounds} rounds of {args.seconds} s, wrk -t1 -c{args.connections}, "
              f"{args.sessions} sessions per arm", flush=True)
        results = b.throughput(args.rounds, args.seconds, args.connections, args.sessions)
        bad = {n: sum(r["errors"] + r["non2xx"] for r in rs) for n, rs in results.items()}
        if any(bad.values()):
            print(f"FAIL: errors per arm {bad}")
            return 1
        if args.smoke:
            print(f"smoke: {len(results)} passed, 0 failed")
            return 0
        latency = b.moderate_load_latency(args.rounds, max(2, args.seconds // 2))
        init = b.initialize_rate_and_rss(args.seconds)
        machine = (f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; "
                   + subprocess.run(["sh", "-c", "nginx -v 2>&1; haproxy -v | head -1; wrk --version 2>&1 | head -1; "
                                     "redis-server --version"], capture_output=True, text=True).stdout.replace("\n", "; "))
        text = report(results, init, machine) + "\n\n" + report_latency(latency)
        print("\n" + text)
        if args.write_docs:
            # Only the generated part of the page is replaced; the sections measured by the
            # other scripts (SSE streams, soak, allocations) stay as they are.
            path = os.path.join(ROOT, "docs/benchmarks.md")
            begin, end = "<!-- bench.py: begin -->", "<!-- bench.py: end -->"
            page = open(path).read() if os.path.exists(path) else f"# Benchmarks\n\n{begin}\n{end}\n"
            if begin not in page:
                page = f"# Benchmarks\n\n{begin}\n{end}\n" + page.split("\n", 1)[1]
            head, rest = page.split(begin, 1)
            tail = rest.split(end, 1)[1]
            generated = (f"Measured {time.strftime('%Y-%m-%d')} with `{cmd}` on {machine}\n\n"
                         f"Everything on one 2-core machine: wrk, the proxy under test and the nginx backend share the "
                         f"cores, so absolute figures are low and the ratios are what to read.\n\n{text}\n")
            with open(path, "w") as f:
                f.write(head + begin + "\n" + generated + end + tail)
        return 0
    finally:
        b.stop()


if __name__ == "__main__":
    sys.exit(main())
