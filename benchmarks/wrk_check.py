"""Cross-check of the project's load generator (``benchmarks/loadgen.py``) against wrk
(issue 13 item 1, SPEC §7): the same server, the same request, the same connections
and duration, alternating; prints both throughputs, their ratio, and what each client
costs per request (CPU microseconds), so the cheaper one is the benchmark's client.

    apt-get install wrk   # Debian package
    .venv/bin/python benchmarks/wrk_check.py [--duration 5] [--connections 32] [--rounds 2]

The server is the *limit* app (``benchmarks/limit_app.py``: the fastest server here,
so the client's own cost shows most) verifying a real code signed by a throw-away key,
pinned to one CPU and the clients to the others when the machine has more than one.
wrk is driven through ``benchmarks/wrkload.py`` (a Lua script that hands out raw
requests), exactly as ``http_bench.py`` drives it; figures are medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import loadgen  # noqa: E402 - a sibling script, not a package
import wrkload  # noqa: E402
from http_bench import PINNED, SERVER_PIN, _cpu_seconds, free_port, pin_client  # noqa: E402

from suishen.keys.algorithms import Alg, PrivateKey  # noqa: E402
from suishen.keys.issuer import Issuer  # noqa: E402
from suishen.keys.signer import SoftwareSigner  # noqa: E402


def _wrk(port: int, body: dict[str, str], connections: int,
         duration: float) -> tuple[float, float]:
    """(requests/s, client CPU seconds) of one run of wrk through :mod:`wrkload` (the
    Lua-driven client ``http_bench.py`` uses for its saturation runs)."""
    req = loadgen.build_request("POST", "/v1/verify", f"127.0.0.1:{port}", {}, body)
    started = os.times()
    result = wrkload.run_closed("127.0.0.1", port, [req], connections=connections,
                                duration=duration)
    ended = os.times()
    if result.non_2xx or result.errors:
        raise SystemExit(f"wrk saw non-2xx answers or errors: {result.summary()}")
    cpu = (ended.children_user - started.children_user) + (
        ended.children_system - started.children_system)
    return result.throughput, cpu


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the limit app did not listen on port {port} within {timeout:g} s")


def _loadgen(port: int, body: dict[str, str], connections: int,
             duration: float) -> tuple[float, float]:
    req = loadgen.build_request("POST", "/v1/verify", f"127.0.0.1:{port}", {}, body)
    started = time.process_time()
    result = loadgen.run(loadgen.run_closed("127.0.0.1", port, [req],
                                            connections=connections, duration=duration))
    return result.throughput, time.process_time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    private = PrivateKey.generate(Alg.ES256)
    signer = SoftwareSigner.from_private(private)
    code = Issuer(signer, os.urandom(32)).issue_personal(b"\x01" * 10, now=int(time.time()),
                                                          ttl=86_400).text
    pub = private.public()
    jwks = {"keys": [{**pub.jwk_members(), "kid": pub.kid_bytes().hex(), "alg": "ES256",
                      "use": "sig"}]}
    body = {"code": code, "scene": "library", "checkpoint": "LIB-1"}
    with tempfile.TemporaryDirectory() as folder:
        jwks_file = Path(folder) / "jwks.json"
        jwks_file.write_text(json.dumps(jwks))
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - our interpreter and script
            [*SERVER_PIN, sys.executable, str(ROOT / "benchmarks" / "limit_app.py"),
             "--port", str(port), "--jwks", str(jwks_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port)
            print(pin_client() if PINNED else "not pinned: one core", flush=True)
            runs: dict[str, list[tuple[float, float]]] = {"wrk": [], "loadgen": []}
            for _ in range(args.rounds):
                for name in ("wrk", "loadgen"):
                    srv0 = _cpu_seconds(server.pid)
                    if name == "wrk":
                        rate, cpu = _wrk(port, body, args.connections, args.duration)
                    else:
                        rate, cpu = _loadgen(port, body, args.connections, args.duration)
                    srv = _cpu_seconds(server.pid) - srv0
                    per_req = cpu / max(rate * args.duration, 1) * 1e6
                    print(f"  {name:8s} {rate:9,.0f} req/s  client {per_req:6.1f} us CPU/req  "
                          f"server cpu {srv / args.duration:4.0%}", flush=True)
                    runs[name].append((rate, per_req))
        finally:
            server.terminate()
            server.wait(timeout=10)
    # Medians of the alternating rounds: the best round of each would pick the luckiest
    # moment of a shared machine, and the two clients would then disagree by noise.
    wrk_rate = statistics.median(r for r, _ in runs["wrk"])
    wrk_cost = statistics.median(c for _, c in runs["wrk"])
    gen_rate = statistics.median(r for r, _ in runs["loadgen"])
    gen_cost = statistics.median(c for _, c in runs["loadgen"])
    print(json.dumps({
        "pinned": PINNED,
        "rounds": args.rounds,
        "statistic": "median of the rounds",
        "wrk_req_per_s": round(wrk_rate),
        "loadgen_req_per_s": round(gen_rate),
        "loadgen_over_wrk": round(gen_rate / wrk_rate, 3),
        "wrk_client_us_per_req": round(wrk_cost, 1),
        "loadgen_client_us_per_req": round(gen_cost, 1),
        "cheaper_client": "wrk" if wrk_cost < gen_cost else "loadgen",
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
