"""CPU per request of ``POST /v1/verify`` (library scene) inside the process, no HTTP.

Drives the real ASGI app (``create_app``: the embedded default, development posture,
a temporary data directory, lifespan included) with hand-made ASGI messages for
``POST /v1/verify`` in the re-scannable ``library`` scene, across 50 citizens' codes,
and prints thread-CPU microseconds per request (``time.thread_time``, so the figures
do not count other processes on a shared machine):

* ``whole``: the whole ASGI call (EdgeMiddleware, the fast lane, token check, rate
  limit, the pipeline, audit record, metrics, the answer);
* ``signature``: :meth:`suishen.keys.algorithms.PublicKey.verify` alone over the same
  codes (what the call cannot avoid);
* ``remainder``: whole minus signature, the service's own Python work (SPEC §7: the
  library verify must reach 0.7x the limit app, which is raw ASGI + msgspec + one
  signature check, so this is the part to keep small);
* ``limit app``: ``benchmarks/limit_app.py``'s ASGI callable over the same requests
  (decode, parse, one signature, a fixed answer), so the service's own work can be read
  against the limit's in the same run; ``audit store``: process CPU (all threads) of
  storing the queued audit records, which a server does in the background.

Each figure is the median of ``--rounds`` rounds (3) of ``--requests`` requests
(20,000), timed in chunks of 1,000 with the queued audit records stored between
chunks (untimed, as the server's background writer does). The partner's rate limit
is 1,000,000 per second (or the requests would be 429), and every answer is checked:
status 200 and ``"valid":true``. The process pins itself to the last CPU when it can
(``os.sched_setaffinity``). Run::

    .venv/bin/python benchmarks/verify_inproc_bench.py [--requests 20000] [--rounds 3]
    .venv/bin/python benchmarks/verify_inproc_bench.py --profile [--requests 10000]

``--profile`` prints a cProfile table (by own time) of one round instead; cProfile
inflates small Python calls, so use it to rank, and the plain run to measure.

``--instructions`` counts instructions instead of time (valgrind's callgrind, Debian
package ``valgrind``): the script runs itself under callgrind six times, with 100 and
with ``100 + --requests`` (default for this mode 1,000) requests, the same for the
signature checks alone and for the limit app, and prints the differences per request,
with the service / limit ratio in instructions (a steal-free proxy of the §7 ratio,
not the ratio itself: served requests add the server's own work). The counts do not
depend on the machine's load and repeat to about 0.2 %, so a change of 1 % in the
service's own work shows, which timing on a shared machine cannot resolve; they rank
Python work well, but a count is not a time (the signature's instructions run about
twice as fast per instruction as the interpreter's)::

    .venv/bin/python benchmarks/verify_inproc_bench.py --instructions [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from suishen.app.main import create_app
from suishen.app.settings import Settings
from suishen.codecs import sc1

ADMIN_TOKEN = secrets.token_urlsafe(32)
CODES = 50
FLUSH_EVERY = 1000


def _pin() -> str:
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[-1]})
        return f"pinned to CPU {cpus[-1]}"
    except (AttributeError, OSError):
        return "not pinned"


async def _setup(client: httpx.AsyncClient) -> tuple[bytes, list[str]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = await client.post("/v1/admin/partners", headers=admin, json={
        "name": "bench library", "scenes": ["library"], "attributes": [],
        "rate_limit_per_second": 1_000_000})
    assert r.status_code == 201, r.text
    partner = r.json()
    t = await client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": partner["client_id"],
        "client_secret": partner["client_secret"]})
    assert t.status_code == 200, t.text
    codes = []
    for i in range(CODES):
        c = await client.post("/v1/dev/citizen-token", json={"sub": f"bench-{i}"})
        assert c.status_code == 200, c.text
        r = await client.post("/v1/codes", headers={
            "Authorization": f"Bearer {c.json()['access_token']}"})
        assert r.status_code == 201, r.text
        codes.append(r.json()["code"])
    return f"Bearer {t.json()['access_token']}".encode(), codes


async def _limit_app(app: Any, folder: Path) -> Any:
    """benchmarks/limit_app.py's ASGI app with this app's verification keys (their JWK
    Set written into ``folder``, the run's data directory)."""
    import limit_app  # beside this script (sys.path[0])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench") as client:
        jwks = (await client.get("/v1/keys")).text
    path = folder / "limit-jwks.json"
    path.write_text(jwks, encoding="utf-8")
    return limit_app.create_app(str(path))


def _signature_round(app: Any, codes: list[str], n: int) -> float:
    """Thread-CPU us of PublicKey.verify alone over the codes' signatures."""
    ring = app.state.runtime.keys.view().keyring
    work = []
    for code in codes:
        envelope = sc1.parse(code)
        key = ring.get(envelope.kid)
        assert key is not None
        m = envelope.message
        work.append((key.public, m.signature, m.to_be_signed()))
    assert all(pub.verify(sig, msg) for pub, sig, msg in work)
    started = time.thread_time()
    for i in range(n):
        pub, sig, msg = work[i % CODES]
        pub.verify(sig, msg)
    return (time.thread_time() - started) / n * 1e6


async def _main(args: argparse.Namespace) -> None:
    for name in list(os.environ):
        if name.startswith("SUISHEN_"):
            del os.environ[name]
    pinned = "not pinned" if args.child else _pin()
    tmp = Path(tempfile.mkdtemp(prefix="verify-inproc-"))
    app = create_app(Settings(data_dir=tmp, admin_token=ADMIN_TOKEN, code_ttl_seconds=900))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://bench") as client:
            auth, codes = await _setup(client)
        bodies = [json.dumps({"code": c, "scene": "library"}).encode() for c in codes]
        base = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                "method": "POST", "scheme": "http", "path": "/v1/verify",
                "raw_path": b"/v1/verify", "query_string": b"", "root_path": "",
                "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5555)}
        scopes, messages = [], []
        for body in bodies:
            scope = dict(base)
            scope["headers"] = [(b"host", b"127.0.0.1:8000"), (b"authorization", auth),
                                (b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]
            scopes.append(scope)
            messages.append({"type": "http.request", "body": body, "more_body": False})
        statuses: list[int] = []
        answers: list[bytes] = []

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            else:
                answers.append(message["body"])

        async def one(i: int, target: Any = app) -> None:
            message = messages[i]

            async def receive() -> Any:
                return message

            # A fresh scope per request, as a server gives one (the app may write to it).
            scope = dict(scopes[i])
            await target(scope, receive, send)

        def check() -> None:
            assert set(statuses) == {200}, statuses[:5]
            assert all(b'"valid":true' in a for a in answers), answers[:2]
            statuses.clear()
            answers.clear()

        for i in range(CODES * 4):  # warm-up: caches, label children, code paths
            await one(i % CODES)
        check()
        n = args.requests
        audit = app.state.runtime.audit
        if args.child == "whole":  # under callgrind: exactly n requests after the warm-up
            await audit.flush()
            for i in range(n):
                await one(i % CODES)
            await audit.flush()  # the server's background writer stores them too
            check()
            return
        if args.child == "signature":
            _signature_round(app, codes, n)
            return
        if args.child == "limit":  # the limit app over the same requests
            limit_app = await _limit_app(app, tmp)
            for i in range(n):
                await one(i % CODES, limit_app)
            check()
            return
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            for i in range(n):
                await one(i % CODES)
            profile.disable()
            check()
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
            return
        limit = await _limit_app(app, tmp)

        async def limit_round() -> float:
            for i in range(CODES * 4):  # warm-up
                await one(i % CODES, limit)
            check()
            started = time.thread_time()
            for i in range(n):
                await one(i % CODES, limit)
            spent = time.thread_time() - started
            check()
            return float(spent / n * 1e6)

        whole, sig, stored, limited = [], [], [], []
        for _ in range(args.rounds):
            limited.append(await limit_round())
            spent = store = 0.0
            for chunk in range(0, n, FLUSH_EVERY):
                started = time.thread_time()
                for i in range(chunk, min(n, chunk + FLUSH_EVERY)):
                    await one(i % CODES)
                spent += time.thread_time() - started
                # Untimed: store the queued audit records, as the server's writer does
                # in the background (a queue that only grows would time the GC instead).
                started = time.process_time()
                await audit.flush()
                store += time.process_time() - started
            whole.append(spent / n * 1e6)
            stored.append(store / n * 1e6)
            check()
            sig.append(_signature_round(app, codes, n))
        w, s = statistics.median(whole), statistics.median(sig)
        rest = statistics.median(a - b for a, b in zip(whole, sig, strict=True))
        print(f"verify in process, library scene, {n} requests x {args.rounds} rounds "
              f"({pinned}; medians, thread CPU)")
        print(f"  whole ASGI call : {w:7.1f} us/request   rounds {_fmt(whole)}")
        print(f"  signature alone : {s:7.1f} us/request   rounds {_fmt(sig)}")
        print(f"  remainder       : {rest:7.1f} us/request   (median of the rounds' "
              "differences: whole and signature rounds alternate)")
        print(f"  limit app       : {statistics.median(limited):7.1f} us/request   rounds "
              f"{_fmt(limited)}   (service / limit per request: "
              f"{w / statistics.median(limited):.2f})")
        print(f"  audit store     : {statistics.median(stored):7.1f} us/request   (process "
              "CPU of storing the queued records, all threads; the server does it in the "
              "background on the same core)")


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.1f}" for v in values)


BASE_REQUESTS = 100  # counted in both runs of a pair: start-up and warm-up cancel out


def _callgrind(valgrind: str, child: str, n: int) -> int:
    """Instructions of one run of this script as ``child`` with ``n`` operations."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and script, fixed arguments
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--child", child, "--requests", str(n)],
        capture_output=True, text=True, check=False)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"callgrind run failed ({child}, {n}):\n{out.stderr[-2000:]}")
    return int(found.group(1))


def _instructions(extra: int) -> None:
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
    runs = [(child, n) for child in ("whole", "signature", "limit")
            for n in (BASE_REQUESTS, BASE_REQUESTS + extra)]
    print(f"verify in process, library scene: instructions per request (callgrind; "
          f"{BASE_REQUESTS + extra} minus {BASE_REQUESTS} requests, 6 runs)", flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = list(pool.map(lambda run: _callgrind(valgrind, *run), runs))
    whole = (counts[1] - counts[0]) / extra
    signature = (counts[3] - counts[2]) / extra
    limit = (counts[5] - counts[4]) / extra
    print(f"  whole ASGI call : {whole:10,.0f} instructions/request")
    print(f"  signature alone : {signature:10,.0f} instructions/request")
    print(f"  remainder       : {whole - signature:10,.0f} instructions/request")
    print(f"  limit app       : {limit:10,.0f} instructions/request   (its own work "
          f"{limit - signature:,.0f}; service / limit: {whole / limit:.3f}; the service's "
          f"work beyond the limit's: {whole - limit:,.0f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None,
                        help="requests per round (20,000; 1,000 with --instructions)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile one round")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions per request under callgrind instead")
    parser.add_argument("--top", type=int, default=60, help="rows of the profile table")
    parser.add_argument("--child", choices=["whole", "signature", "limit"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions:
        _instructions(args.requests or 1000)
        return
    if args.requests is None:
        args.requests = 20_000
    asyncio.run(_main(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
