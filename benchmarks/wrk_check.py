"""Cross-check of the project's load generator (``benchmarks/loadgen.py``) against wrk
(issue 13 item 1, SPEC §7): the same server, the same request, the same connections
and duration, alternating; prints both throughputs, their ratio, and what each client
costs per request (CPU microseconds), so the cheaper one is the benchmark's client.

    apt-get install wrk   # Debian package
    .venv/bin/python benchmarks/wrk_check.py [--duration 5] [--connections 32] [--rounds 2]

The server is the *limit* app (``benchmarks/limit_app.py``: the fastest server here,
so the client's own cost shows most) verifying a real code signed by a throw-away key,
pinned to one CPU and the clients to the others when the machine has more than one.
wrk is driven by a small Lua script that sets the method, headers and body.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import loadgen  # noqa: E402 - a sibling script, not a package
from http_bench import PINNED, SERVER_PIN, _cpu_seconds, free_port, pin_client  # noqa: E402

from suishen.keys.algorithms import Alg, PrivateKey  # noqa: E402
from suishen.keys.issuer import Issuer  # noqa: E402
from suishen.keys.signer import SoftwareSigner  # noqa: E402

LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


def _wrk(url: str, script: Path, connections: int, duration: float) -> tuple[float, float]:
    """(requests/s, client CPU seconds) of one wrk run."""
    started = os.times()
    wrk = shutil.which("wrk") or "wrk"
    out = subprocess.run(  # noqa: S603 - wrk found on PATH, our arguments
        [wrk, "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    ended = os.times()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw non-2xx answers:\n{out}")
    cpu = (ended.children_user - started.children_user) + (
        ended.children_system - started.children_system)
    return rate, cpu


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
    parser.add_argument("--rounds", type=int, default=2)
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
        script = Path(folder) / "verify.lua"
        script.write_text(LUA.format(body=json.dumps(json.dumps(body))))
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - our interpreter and script
            [*SERVER_PIN, sys.executable, str(ROOT / "benchmarks" / "limit_app.py"),
             "--port", str(port), "--jwks", str(jwks_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            print(pin_client() if PINNED else "not pinned: one core", flush=True)
            url = f"http://127.0.0.1:{port}/v1/verify"
            best = {"wrk": (0.0, 0.0), "loadgen": (0.0, 0.0)}
            for _ in range(args.rounds):
                for name in ("wrk", "loadgen"):
                    srv0 = _cpu_seconds(server.pid)
                    if name == "wrk":
                        rate, cpu = _wrk(url, script, args.connections, args.duration)
                    else:
                        rate, cpu = _loadgen(port, body, args.connections, args.duration)
                    srv = _cpu_seconds(server.pid) - srv0
                    per_req = cpu / max(rate * args.duration, 1) * 1e6
                    print(f"  {name:8s} {rate:9,.0f} req/s  client {per_req:6.1f} us CPU/req  "
                          f"server cpu {srv / args.duration:4.0%}", flush=True)
                    if rate > best[name][0]:
                        best[name] = (rate, per_req)
        finally:
            server.terminate()
            server.wait(timeout=10)
    wrk_rate, wrk_cost = best["wrk"]
    gen_rate, gen_cost = best["loadgen"]
    print(json.dumps({
        "pinned": PINNED,
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
