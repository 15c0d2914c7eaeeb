"""Which Redis client on the hot path (issue 7 item 10): the metro verify (single use,
Redis state) with each candidate client, the servers alternating round by round.

    .venv/bin/python benchmarks/redis_client_bench.py                  # 10 s runs, 3 rounds
    .venv/bin/python benchmarks/redis_client_bench.py --duration 20 --rounds 3
    .venv/bin/python benchmarks/redis_client_bench.py --micro          # client only, no HTTP

Candidates (``--clients`` picks some; each is a ``suishen serve`` process, one worker):

* ``fast``: the hand-written pipelined RESP client (``app/storage/redis_fast.py``), if
  this tree still has it;
* ``redis-py+hiredis``: redis-py's asyncio client with the hiredis parser and the
  service's ``BlockingConnectionPool``;
* ``redis-py+hiredis/pool``: the same with the non-blocking ``ConnectionPool``;
* ``redis-py/python``: redis-py with its pure-Python parser (the old comparison).

The server process is pinned to CPU 0 and this script (the load client) to CPU 1 with
``os.sched_setaffinity`` (as ``taskset`` would); Redis itself runs where the OS puts it.
Every code is presented once (``direction=in``, fresh codes minted before each run), so
each request costs the service one ``EVALSHA`` (rate limit) and one ``SET NX`` (single
use). The table gives per client the best round's throughput and latency, the server's
CPU time per request (its cheapest round: on shared cores the steadier figure), and
both against the first client listed.

``--micro`` measures the clients without HTTP: in one process per client, 32 tasks call
``RedisState.rate_limit`` and ``first_use`` back to back for a few seconds; it prints
operations per second and the CPU microseconds the process spent per operation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import http_bench  # the sibling module: servers, setup, minting, alternating rounds
from http_bench import (
    REDIS_URL,
    Bench,
    BenchError,
    Minted,
    Server,
    service,
    setup_service,
    verify_requests,
)

SERVER_CPU, CLIENT_CPU = 0, 1
CLIENT_ENV = "SUISHEN_BENCH_REDIS_CLIENT"

# Run in the server (or micro-bench) process before anything imports redis: selects the
# hot-path client of RedisState for this process only. A benchmark switch, not a setting.
PRELUDE = r"""
import os
variant = os.environ.get("SUISHEN_BENCH_REDIS_CLIENT", "default")
import redis.asyncio
import redis.asyncio.connection
if variant == "redis-py/python":  # the pure-Python parser even though hiredis is installed
    from redis._parsers import _AsyncRESP2Parser
    _init = redis.asyncio.connection.AbstractConnection.__init__
    def _python_parser(self, *args, **kwargs):
        kwargs.setdefault("parser_class", _AsyncRESP2Parser)
        _init(self, *args, **kwargs)
    redis.asyncio.connection.AbstractConnection.__init__ = _python_parser
import suishen.app.storage.redis_state as rs
if variant.startswith("redis-py"):
    if hasattr(rs, "FastRedis"):
        _from_url = rs.RedisState.from_url.__func__
        rs.RedisState.from_url = classmethod(
            lambda cls, url, **kw: _from_url(cls, url, **{**kw, "fast_client": False}))
    if variant.endswith("/pool"):
        class _Pool(redis.asyncio.ConnectionPool):
            def __init__(self, *args, timeout=None, **kwargs):
                super().__init__(*args, **kwargs)
        rs.aioredis = type("aioredis", (), {"BlockingConnectionPool": _Pool,
                                             "Redis": redis.asyncio.Redis})
import sys
_parser = type(redis.asyncio.Connection()._parser).__name__
print(f"redis client: {variant} (redis-py parser {_parser}, "
      f"fast client {'present' if hasattr(rs, 'FastRedis') else 'absent'})", file=sys.stderr)
"""

SERVE = PRELUDE + "\nfrom suishen.app.server import serve\nserve()\n"

MICRO = PRELUDE + r"""
import asyncio, json, secrets, time
from suishen.app.storage.redis_state import RedisState

async def main(url, seconds, tasks):
    state = RedisState.from_url(url, prefix="suishen-bench-micro-" + secrets.token_hex(4))
    ops = 0
    async def worker(stop):
        nonlocal ops
        while time.perf_counter() < stop:
            await state.rate_limit("bench", per_second=1_000_000,
                                   now_ms=int(time.time() * 1000))
            assert await state.first_use(secrets.token_bytes(16), ttl_seconds=5)
            ops += 1
    await asyncio.gather(*(worker(time.perf_counter() + 0.5) for _ in range(tasks)))  # warm
    ops = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(t0 + seconds) for _ in range(tasks)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await state.close()
    print(json.dumps({"pairs_per_s": ops / wall, "cpu_us_per_pair": cpu / ops * 1e6,
                      "cpu_share": cpu / wall}))

import sys
asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
"""

ALL_CLIENTS = ("fast", "redis-py+hiredis", "redis-py+hiredis/pool", "redis-py/python")


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _pinned_argv(code: str) -> list[str]:
    # taskset when present (it shows in `ps`), else the affinity is set in the child.
    if shutil.which("taskset"):
        return ["taskset", "-c", str(SERVER_CPU), sys.executable, "-c", code]
    return [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{SERVER_CPU}}})\n"
            + code]


def run_http(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> int:
    admin_token = "bench-admin-" + secrets.token_hex(24)
    prefix = f"suishen-bench-{os.getpid()}-{secrets.token_hex(4)}"
    args.redis_prefix = prefix
    mine: list[Server] = []
    for client in args.clients:
        name = client.replace("redis-py", "rpy").replace("/", "-")[:15]
        server = service(name, workdir, admin_token, SUISHEN_REDIS_URL=REDIS_URL,
                         SUISHEN_REDIS_PREFIX=prefix, **{CLIENT_ENV: client})
        server.argv = _pinned_argv(SERVE)
        mine.append(server)
        servers.append(server)
        server.start()
    for server in mine:
        server.wait_ready("/readyz")
        print(f"{server.name}: {server.log_tail(300).strip().splitlines()[0]}", flush=True)
    _pin(CLIENT_CPU)
    bench = Bench(args)
    sources = []
    for server in mine:
        setup = setup_service(server, admin_token, ["metro"])

        def make(codes: list[str], server: Server = server, token: str = setup.partners["metro"]
                 ) -> list[bytes]:
            return verify_requests(server, token, codes, scene="metro",
                                   checkpoint="L2-S12-G3", direction="in")

        sources.append((server, Minted(bench, setup, make, estimate=args.estimate)))
    best = bench.compare("verify metro", sources, expect=http_bench.VALID)
    # CPU per request: the server's CPU time over the requests it answered in a measured
    # round (the cheapest round). On shared cores it moves less than req/s, which also
    # depends on how much of its core the server was given.
    cost = {}
    for server in mine:
        runs = [m for m in bench.log if m.server == server.name and "(round" in m.label]
        cost[server.name] = min(m.server_cpu / m.result.throughput * 1e6 for m in runs)
    first, first_cost = best[0].result.throughput, cost[mine[0].name]
    print()
    print(f"{'client':<24} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv cpu':>8} "
          f"{'us CPU/req':>11} {'req/s vs first':>15} {'CPU vs first':>13}")
    for client, server, measured in zip(args.clients, mine, best, strict=True):
        r = measured.result
        print(f"{client:<24} {r.throughput:>8,.0f} {r.p50 * 1000:>7.2f} {r.p99 * 1000:>7.2f} "
              f"{measured.server_cpu:>8.0%} {cost[server.name]:>11,.0f} "
              f"{r.throughput / first:>14.2f}x {cost[server.name] / first_cost:>12.2f}x")
    print("req/s: best round; us CPU/req: server CPU time per answered request, cheapest "
          "round; both against the first client listed.")
    if args.json:
        Path(args.json).write_text(json.dumps([
            {"client": c, "server_cpu": m.server_cpu, "cpu_us_per_request": cost[s.name],
             **m.result.as_dict()}
            for c, s, m in zip(args.clients, mine, best, strict=True)], indent=2))
    return 0


def run_micro(args: argparse.Namespace) -> int:
    rows = []
    for rnd in range(args.rounds):
        order = args.clients if rnd % 2 == 0 else list(reversed(args.clients))
        for client in order:
            env = {**os.environ, CLIENT_ENV: client}
            done = subprocess.run(  # noqa: S603 - our own interpreter
                [*_pinned_argv(MICRO), REDIS_URL, str(args.duration), "32"], env=env,
                capture_output=True, text=True, timeout=args.duration + 60, check=False)
            if done.returncode != 0:
                raise BenchError(f"{client}: {done.stderr[-2000:]}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  round {rnd + 1} {client:<24} {figures['pairs_per_s']:>9,.0f} pairs/s "
                  f"{figures['cpu_us_per_pair']:>7.1f} us CPU/pair "
                  f"({figures['cpu_share']:.0%} of a core)", flush=True)
            rows.append((client, figures))
    print()
    print(f"{'client':<24} {'pairs/s':>9} {'us CPU/pair':>12}   (best round; a pair is "
          "rate_limit + first_use)")
    for client in args.clients:
        mine = [f for c, f in rows if c == client]
        top = max(mine, key=lambda f: f["pairs_per_s"])
        cheapest = min(f["cpu_us_per_pair"] for f in mine)
        print(f"{client:<24} {top['pairs_per_s']:>9,.0f} {cheapest:>12.1f}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--clients", default=None,
                        help=f"comma-separated, of {', '.join(ALL_CLIENTS)} (default: all "
                        "that this tree has)")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--estimate", type=float, default=3000.0,
                        help="first guess of req/s, sizes the first batch of codes")
    parser.add_argument("--micro", action="store_true", help="the clients alone, no HTTP")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    has_fast = (http_bench.ROOT / "app" / "storage" / "redis_fast.py").exists()
    default = [c for c in ALL_CLIENTS if has_fast or c != "fast"]
    args.clients = args.clients.split(",") if args.clients else default
    unknown = set(args.clients) - set(ALL_CLIENTS)
    if unknown or (not has_fast and "fast" in args.clients):
        parser.error(f"unknown or absent clients: {sorted(unknown) or ['fast']}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.redis_prefix = None
    print(f"redis_client_bench: {args.duration:g} s x {args.rounds} rounds, "
          f"{args.connections} connections; server on CPU {SERVER_CPU}, client on CPU "
          f"{CLIENT_CPU}; {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M:%S')}",
          flush=True)
    if args.micro:
        return run_micro(args)
    workdir = Path(tempfile.mkdtemp(prefix="suishen-redis-bench-"))
    servers: list[Server] = []
    try:
        return run_http(args, workdir, servers)
    except BenchError as exc:
        print(f"redis_client_bench: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for server in reversed(servers):
            server.stop()
        http_bench.cleanup_redis(args.redis_prefix)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    sys.exit(main())
