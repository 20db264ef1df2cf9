#!/usr/bin/env python3
"""MCP 2026-07-28 requests through mcp-session-proxy, nginx and HAProxy, side by side.

  python3 bench/era.py                # both modes, 3 interleaved rounds of 5 s per arm (about 3 min)
  python3 bench/era.py --smoke        # CI: every arm 1 s per mode; the proxy arms misroute no task
  python3 bench/era.py --write-docs   # ... and the tables into docs/benchmarks.md

Two modes, each a wrk run per arm (bench/era.lua), arms interleaved as in bench.py:
  sessionless  a 2026 tools/call (Mcp-Method, Mcp-Name, MCP-Protocol-Version 2026-07-28, no
               session): what a request of the sessionless era costs each relay
  task         a tools/call whose answer creates a task (2026 `resultType: "task"`), then a
               tasks/get of that task with its id in Mcp-Name, sent as soon as the answer is in.
               mcp-session-proxy learns task -> pod from the answer (before relaying it) and
               routes the tasks/get there; nginx and HAProxy have no way to know where a task
               is and place every request at random (`random` / `balance random`), so about two
               in three tasks/get reach a pod that does not hold the task: their misroute rate
               is reported next to their speed.
Arms: mcp-session-proxy with the memory store and with the redis store (where the task
record is written to Redis before the answer is relayed), one worker thread each; nginx and
HAProxy (one worker, upstream keep-alive); the backend directly (one pod: nothing misroutes).

The backend is nginx again, fast enough that the relay is the bottleneck: three pods on
127.0.1.0-2 that answer a tools/call of `slow` with a new task (`t<pod>-<request id>`), a
tasks/get with the task when its id names this pod and with JSON-RPC -32602 "Task not found"
otherwise (as a pod with its task table in memory answers a task it never made), and any
other request with a fixed result. Everything on 127.0.0.1 / 127.0.1.N, bounded in time.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
MODES = ("sessionless", "task")


def pods_config(port):
    """Three 2026 pods (nginx server blocks on 127.0.1.0-2): tasks named after their pod."""
    task_pod = "\n".join(f'    "~^t{i}-" {i};' for i in range(3))
    blocks = [f"""  map $http_mcp_name $task_pod {{
{task_pod}
    default "";
  }}"""]
    for i in range(3):
        blocks.append(f"""  server {{
    listen 127.0.1.{i}:{port};
    set $task_here "$http_mcp_method:$task_pod";
    location / {{
      default_type application/json;
      if ($task_here = "tasks/get:{i}") {{
        return 200 '{{"jsonrpc":"2.0","id":8,"result":{{"taskId":"$http_mcp_name","status":"completed","ttlMs":60000}}}}';
      }}
      if ($http_mcp_method = "tasks/get") {{
        return 200 '{{"jsonrpc":"2.0","id":8,"error":{{"code":-32602,"message":"Task not found"}}}}';
      }}
      if ($http_mcp_name = "slow") {{
        return 200 '{{"jsonrpc":"2.0","id":7,"result":{{"resultType":"task","taskId":"t{i}-$request_id","status":"working","ttlMs":60000,"pollIntervalMs":100}}}}';
      }}
      return 200 '{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":"pod-{i}"}}]}}}}';
    }}
  }}""")
    return "\n".join(blocks)


class EraBench(bench.Bench):
    def start(self):
        self.pod_port = bench.free_port()
        self.backend = self.nginx("pods2026", pods_config(self.pod_port))
        for i in range(3):
            bench.wait_port(f"127.0.1.{i}", self.pod_port)
        self.redis_port = bench.free_port()
        self.redis_proc = self.spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save",
                                      "", "--appendonly", "no"])
        bench.wait_port("127.0.0.1", self.redis_port)
        self.arms = {}
        template = f"http://127.0.1.{{ordinal}}:{self.pod_port}"
        for store in ("memory", "redis"):
            port = bench.free_port()
            cmd = [self.binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{bench.free_port()}",
                   "--threads", "1", "--replicas", "3", "--backend-url-template", template, "--log-level", "warn",
                   "--session-store", store]
            if store == "redis":
                cmd += ["--redis-url", f"redis://127.0.0.1:{self.redis_port}/0"]
            p = self.spawn(cmd)
            bench.wait_port("127.0.0.1", port)
            self.arms[f"mcp-session-proxy ({store})"] = (port, lambda p=p: [p.pid])
        servers = "\n".join(f"    server 127.0.1.{i}:{self.pod_port};" for i in range(3))
        port = bench.free_port()
        ng = self.nginx("proxy", f"""  upstream pods {{
    random;
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://pods;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}""")
        bench.wait_port("127.0.0.1", port)
        self.arms["nginx (random)"] = (port, lambda ng=ng: [ng.pid] + bench.children(ng.pid))
        port = bench.free_port()
        cfg = os.path.join(self.tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(bench.haproxy_config(port, self.pod_port).replace("balance hdr(Mcp-Session-Id)\n  hash-type consistent",
                                                                      "balance random"))
        hp = self.spawn(["haproxy", "-f", cfg])
        bench.wait_port("127.0.0.1", port)
        self.arms["haproxy (random)"] = (port, lambda hp=hp: [hp.pid] + bench.children(hp.pid))
        self.arms["direct (one pod)"] = (None, lambda: [self.backend.pid] + bench.children(self.backend.pid))
        time.sleep(0.3)  # the redis arm's connection comes up in the background

    def era_wrk(self, port, seconds, connections, mode):
        host, p = ("127.0.1.0", self.pod_port) if port is None else ("127.0.0.1", port)
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", os.path.join(ROOT, "bench/era.lua"),
                              f"http://{host}:{p}/mcp"], capture_output=True, text=True,
                             env={**os.environ, "MODE": mode}, timeout=seconds + 60)
        for line in out.stdout.splitlines():
            if line.startswith("RESULT "):
                return __import__("json").loads(line[7:])
        raise RuntimeError("wrk gave no result: " + out.stdout + out.stderr)

    def run_modes(self, rounds, seconds, connections):
        results = {mode: {name: [] for name in self.arms} for mode in MODES}
        for r in range(rounds):
            for mode in MODES:
                for name, (port, pids) in self.arms.items():
                    before = bench.cpu_seconds(pids())
                    res = self.era_wrk(port, seconds, connections, mode)
                    res["cpu_per_100k"] = (bench.cpu_seconds(pids()) - before) / max(res["requests"], 1) * 100000
                    results[mode][name].append(res)
                    extra = (f"  tasks {res['created']}, tasks/get misrouted {res['misrouted']} of "
                             f"{res['found'] + res['misrouted']}" if mode == "task" else "")
                    print(f"  round {r + 1} {mode:11s} {name:28s} {res['rps']:8.0f} req/s  p50 {res['p50_us']:5d} us  "
                          f"p99 {res['p99_us']:6d} us  errors {res['errors'] + res['non2xx']}{extra}", flush=True)
        return results


def misroute(rs):
    found = sum(r["found"] for r in rs)
    miss = sum(r["misrouted"] for r in rs)
    return miss, found + miss


def report(results):
    lines = []
    for mode, title in (("sessionless", "A 2026-07-28 request without a session (`tools/call`, Mcp-Method and "
                                        "Mcp-Name headers)"),
                        ("task", "A task-creating `tools/call`, then `tasks/get` of that task (Mcp-Name: its id), "
                                 "half the requests each")):
        rs_by = results[mode]
        med = {n: (statistics.median(r["rps"] for r in rs), statistics.median(r["p99_us"] for r in rs))
               for n, rs in rs_by.items()}
        lines += [f"{title}:", "",
                  "| arm | req/s | p50 us | p99 us | CPU s / 100k req | errors | tasks/get misrouted | "
                  "req/s vs nginx | vs HAProxy | vs direct | p99 vs nginx | p99 vs HAProxy |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for n, rs in rs_by.items():
            rps, p99 = med[n]
            miss, total = misroute(rs)
            mis = f"{miss} of {total} ({100 * miss / total:.0f} %)" if mode == "task" and total else "-"
            lines.append(
                f"| {n} | {rps:.0f} | {statistics.median(r['p50_us'] for r in rs):.0f} | {p99:.0f} | "
                f"{statistics.median(r['cpu_per_100k'] for r in rs):.2f} | {sum(r['errors'] + r['non2xx'] for r in rs)} | "
                f"{mis} | {rps / med['nginx (random)'][0]:.2f} | {rps / med['haproxy (random)'][0]:.2f} | "
                f"{rps / med['direct (one pod)'][0]:.2f} | {med['nginx (random)'][1] / p99:.2f} | "
                f"{med['haproxy (random)'][1] / p99:.2f} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def check(results):
    """The run's assertions: no transport or HTTP error anywhere; through the proxy every
    tasks/get reached its task's pod (and there were some)."""
    problems = []
    for mode, by_arm in results.items():
        for n, rs in by_arm.items():
            bad = sum(r["errors"] + r["non2xx"] for r in rs)
            if bad:
                problems.append(f"{mode} {n}: {bad} errors")
            if mode == "task" and n.startswith("mcp-session-proxy"):
                miss, total = misroute(rs)
                if miss or total == 0:
                    problems.append(f"{n}: {miss} of {total} tasks/get misrouted")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/mcp-session-proxy"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--smoke", action="store_true", help="every arm 1 s per mode; fail on an error or a misroute")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.seconds = 1, 1
    b = EraBench(args)
    try:
        b.start()
        cmd = " ".join(["python3 bench/era.py"] + sys.argv[1:])
        print(f"{len(b.arms)} arms x {len(MODES)} modes, {args.rounds} rounds of {args.seconds} s, "
              f"wrk -t1 -c{args.connections}", flush=True)
        results = b.run_modes(args.rounds, args.seconds, args.connections)
        problems = check(results)
        text = report(results)
        print("\n" + text)
        if problems:
            print("FAIL: " + "; ".join(problems))
            return 1
        if args.smoke:
            print(f"smoke: {len(b.arms) * len(MODES)} passed, 0 failed")
            return 0
        if args.write_docs:
            path = os.path.join(ROOT, "docs/benchmarks.md")
            begin, end = "<!-- era.py: begin -->", "<!-- era.py: end -->"
            page = open(path).read()
            if begin not in page:
                page = page.rstrip("\n") + f"\n\n## 2026-07-28 requests and tasks (issue #27)\n\n{begin}\n{end}\n"
            head, rest = page.split(begin, 1)
            generated = f"Measured {time.strftime('%Y-%m-%d')} with `{cmd}`.\n\n{text}"
            with open(path, "w") as f:
                f.write(head + begin + "\n" + generated + end + rest.split(end, 1)[1])
        return 0
    finally:
        b.stop()


if __name__ == "__main__":
    sys.exit(main())
