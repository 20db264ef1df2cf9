#!/usr/bin/env python3
"""Where the proxy's own time goes, in numbers that do not drift on a noisy machine.

  python3 bench/profile.py instructions   # instructions per proxied request (callgrind)
  python3 bench/profile.py instructions 32  # the same with 32 connections (default 4)
  python3 bench/profile.py instructions 4 io_uring  # ... with io_backend io_uring (default epoll)
  python3 bench/profile.py instructions-2026 sessionless  # ... per 2026-07-28 request (bench/era.py's modes)
  python3 bench/profile.py instructions-2026 task redis  # ... a task-creating call and its tasks/get, redis store
  python3 bench/profile.py allocations    # allocations per relayed SSE chunk (heaptrack)
  MCPPROXY_PROFILE_BINDING=jwt python3 bench/profile.py instructions  # sessions.binding jwt

instructions: the proxy (one worker) runs under `valgrind --tool=callgrind` in front of the
bench's nginx backend; 200 sessions are created, then `wrk -t1 -c4` (or -cN) rotates over
them for 6 s. Counters are zeroed once the sessions exist and dumped when wrk is done; prints the
instructions of that steady state divided by the requests wrk made, and its ten costliest
functions. (Before 2026-11-30 the figure was the whole run's, start-up included, which
overstated by 1-2k per request depending on how many requests a run served.)

allocations: the proxy (one worker) runs under heaptrack in front of the sample backend;
one session makes one `ticker` call streaming N events (1 ms apart), then the proxy stops.
Run for 200 and 2,000 events: equal allocation counts mean none per relayed chunk.

MCPPROXY_PROFILE_BINDING=authorization|jwt profiles with that session binding: every request
carries one bearer token (for jwt an Ed25519-signed JWT against a JWKS file, made here with
the openssl command).

MCPPROXY_BINARY=path profiles another build (an older commit, to compare);
MCPPROXY_CALLGRIND_OUT=path keeps the callgrind output (callgrind_annotate --inclusive=yes).
"""
import base64
import glob
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

ROOT = bench.ROOT
BINARY = os.environ.get("MCPPROXY_BINARY", os.path.join(ROOT, "build/mcp-session-proxy"))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def binding_args(cmd, tmp):
    """Adds MCPPROXY_PROFILE_BINDING's flags to cmd; returns the Authorization to send (or None)."""
    binding = os.environ.get("MCPPROXY_PROFILE_BINDING", "none")
    if binding == "none":
        return None
    if binding == "authorization":
        cmd += ["--session-binding", "authorization"]
        return "Bearer opaque-profile-token"
    key = os.path.join(tmp, "ed25519.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"], check=True,
                         capture_output=True).stdout[-32:]
    jwks = os.path.join(tmp, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "p", "x": b64url(pub)}]}, f)
    header = b64url(json.dumps({"alg": "EdDSA", "kid": "p"}).encode())
    claims = b64url(json.dumps({"iss": "https://as.profile", "sub": "alice", "aud": "https://mcp.profile",
                                "exp": int(time.time()) + 3600}).encode())
    signing_input = os.path.join(tmp, "jwt-input")
    with open(signing_input, "w") as f:
        f.write(f"{header}.{claims}")
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", signing_input], check=True,
                         capture_output=True).stdout
    cmd += ["--session-binding", "jwt", "--jwks-file", jwks, "--jwt-issuer", "https://as.profile", "--jwt-audience",
            "https://mcp.profile"]
    return f"Bearer {header}.{claims}.{b64url(sig)}"


def instructions(connections=4, backend="epoll"):
    class Args:
        binary = BINARY
    b = bench.Bench(Args())
    out = os.path.join(b.tmp, "callgrind.out")
    try:
        b.start()
        port = bench.free_port()
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", BINARY,
               "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{bench.free_port()}", "--threads", "1",
               "--replicas", "3", "--backend-url-template", f"http://127.0.1.{{ordinal}}:{b.pod_port}",
               "--log-level", "warn", "--io-backend", backend]
        auth = binding_args(cmd, b.tmp)
        p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        bench.wait_port("127.0.0.1", port, 60)
        sessions = 200
        ids = b.sessions("callgrind", port, sessions, {"Authorization": auth} if auth else None)
        # Steady state: counters zeroed once the sessions exist, dumped when wrk is done, so
        # start-up (dynamic linking, first allocations) is not spread over the requests.
        subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
        res = b.wrk(port, 6, connections, {"SESSIONS": ids, "MODE": "call", **({"AUTH": auth} if auth else {})})
        subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True, check=True)
        p.terminate()
        p.wait(timeout=60)

        def total_of(path):
            text = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
            return text, int(next(l for l in text.splitlines() if "PROGRAM TOTALS" in l).split()[0].replace(",", ""))

        text, steady = total_of(next(f for f in sorted(glob.glob(out + ".*"))))
        print(f"steady state: {res['requests']} requests, {steady:,} instructions: "
              f"{steady / res['requests']:,.0f} per request")
        if os.environ.get("MCPPROXY_CALLGRIND_OUT"):
            subprocess.run(["cp", next(f for f in sorted(glob.glob(out + ".*"))), os.environ["MCPPROXY_CALLGRIND_OUT"]],
                           check=True)
        rows = [l for l in text.splitlines() if "%)" in l and "PROGRAM TOTALS" not in l][:10]
        print("\n".join(r[:160] for r in rows))
    finally:
        b.stop()


def instructions_2026(mode, connections=4, store="memory"):
    """Instructions per request of bench/era.py's modes (2026-07-28, no session): `sessionless`
    (a tools/call; its answer is read for a task, as a sessionless tools/call's is) or `task`
    (a task-creating tools/call, then tasks/get of that task by Mcp-Name: half each)."""
    import era
    b = era.EraBench(type("Args", (), {"binary": BINARY})())
    out = os.path.join(b.tmp, "callgrind.out")
    try:
        b.pod_port = bench.free_port()
        b.backend = b.nginx("pods2026", era.pods_config(b.pod_port))
        for i in range(3):
            bench.wait_port(f"127.0.1.{i}", b.pod_port)
        port = bench.free_port()
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", BINARY,
               "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{bench.free_port()}", "--threads", "1",
               "--replicas", "3", "--backend-url-template", f"http://127.0.1.{{ordinal}}:{b.pod_port}",
               "--log-level", "warn", "--session-store", store]
        if store == "redis":
            redis_port = bench.free_port()
            b.spawn(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"])
            bench.wait_port("127.0.0.1", redis_port)
            cmd += ["--redis-url", f"redis://127.0.0.1:{redis_port}/0"]
        p = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        bench.wait_port("127.0.0.1", port, 60)
        b.era_wrk(port, 1, connections, mode)  # warm: pooled pod connections, first allocations
        subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True, check=True)
        res = b.era_wrk(port, 6, connections, mode)
        subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True, check=True)
        p.terminate()
        p.wait(timeout=60)
        dump = next(f for f in sorted(glob.glob(out + ".*")))
        text = subprocess.run(["callgrind_annotate", dump], capture_output=True, text=True).stdout
        steady = int(next(l for l in text.splitlines() if "PROGRAM TOTALS" in l).split()[0].replace(",", ""))
        extra = (f"; tasks/get misrouted {res['misrouted']} of {res['found'] + res['misrouted']}"
                 if mode == "task" else "")
        print(f"2026 {mode} ({store} store): {res['requests']} requests, {steady:,} instructions: "
              f"{steady / res['requests']:,.0f} per request{extra}")
        if os.environ.get("MCPPROXY_CALLGRIND_OUT"):
            subprocess.run(["cp", dump, os.environ["MCPPROXY_CALLGRIND_OUT"]], check=True)
    finally:
        b.stop()


def allocations(events):
    tmp = tempfile.mkdtemp(prefix="mcp-heap-")
    be = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples/sample_backend.py"), "--pods", "1",
                           "--port", "0", "--sse"], stdout=subprocess.PIPE, text=True)
    pod_port = int(be.stdout.readline().split()[1])
    port = bench.free_port()
    out = os.path.join(tmp, "heap")
    px = subprocess.Popen(["heaptrack", "-o", out, BINARY, "--listen", f"127.0.0.1:{port}",
                           "--admin-listen", f"127.0.0.1:{bench.free_port()}", "--threads", "1", "--replicas", "1",
                           "--backend-url-template", f"http://127.0.1.{{ordinal}}:{pod_port}", "--log-level", "warn"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port("127.0.0.1", port, 60)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        c.request("POST", "/mcp", bench.INIT, headers)
        r = c.getresponse()
        r.read()
        headers["Mcp-Session-Id"] = r.getheader("Mcp-Session-Id")
        c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers)
        c.getresponse().read()
        c.request("POST", "/mcp", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "ticker", "arguments": {"count": events, "interval_ms": 1}}}), headers)
        body = c.getresponse().read().decode()
        relayed = body.count("event:")
    finally:
        # heaptrack runs the proxy as its child: the signal goes to the proxy itself.
        subprocess.run(["pkill", "-INT", "-f", f"^{BINARY} --listen 127.0.0.1:{port}"])
        px.wait(timeout=120)
        be.terminate()
    data = glob.glob(out + "*")[0]
    text = subprocess.run(["heaptrack_print", "-f", data], capture_output=True, text=True).stdout
    calls = next(l for l in text.splitlines() if l.startswith("calls to allocation functions:"))
    print(f"{relayed} events relayed; {calls}")
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "instructions"
    tool = {"instructions": "valgrind", "instructions-2026": "valgrind", "allocations": "heaptrack"}.get(what)
    if tool and not __import__("shutil").which(tool):
        sys.exit(f"{tool} is needed (Debian: apt-get install valgrind heaptrack); it is not part of scripts/setup.sh")
    if what == "instructions":
        instructions(int(sys.argv[2]) if len(sys.argv) > 2 else 4, sys.argv[3] if len(sys.argv) > 3 else "epoll")
    elif what == "instructions-2026":
        instructions_2026(sys.argv[2] if len(sys.argv) > 2 else "sessionless", 4,
                          sys.argv[3] if len(sys.argv) > 3 else "memory")
    elif what == "allocations":
        for n in (200, 2000):
            allocations(n)
    else:
        sys.exit(__doc__)
