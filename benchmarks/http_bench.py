"""HTTP benchmarks of SPEC §7: the service against the naive baseline, in one run.

What it does (all on 127.0.0.1, every server ONE worker process, access log off):

1. starts the service on the **embedded default** (SQLite + in-process state) in a
   temporary data directory, a second service with **Redis** state
   (``SUISHEN_REDIS_URL``, a unique ``SUISHEN_REDIS_PREFIX``; SQLite still) and the
   **naive baseline** (``benchmarks/naive_app.py``: bare FastAPI + pydantic, one
   signature check) that knows both services' public keys;
2. sets up through the HTTP API: 50 citizens with attributes (admin API), a library
   partner and a metro partner per service (rate limit 1,000,000/s so that the limiter
   never interferes), partner access tokens (``/v1/oauth/token``) and citizen tokens
   (development identity provider); codes live ``SUISHEN_CODE_TTL_SECONDS=900``;
3. measures, with the same client for the same duration, alternating the servers
   round by round, best round kept — saturation runs with wrk (:mod:`wrkload`; the
   client that costs least per request, cross-checked against :mod:`loadgen` by
   ``wrk_check.py``; ``--client loadgen`` to switch), open-loop p99 runs with
   :mod:`loadgen` (wrk has no open loop), minting codes with :mod:`loadgen` (it keeps
   the answers):

   * **issuance** ``POST /v1/codes`` (embedded) — saturation, against the naive
     issuance endpoint (JWT check + one signature + pydantic answer) for reference, and
     p99 at half of the service's saturation (open loop, ``--rounds`` runs pooled: the
     p99 of every request sent): goal p99 <= 5 ms;
   * **verify, library** (re-scannable; embedded default) against the naive verify —
     goal >= 1.5x the baseline's throughput and >= 0.7x the *limit* (a raw ASGI app
     decoding with msgspec and checking one signature, ``benchmarks/limit_app.py``),
     and p99 <= 2 ms at half saturation (pooled rounds, alternating with the limit app
     at the same rate: the machine's floor);
   * **verify, metro with journeys** (single use, every code presented once; the Redis
     service with a metro fare table loaded, so every tap rides the journey path: the
     citizen's open entry read in the single-use script, ``tap()``, the compare-and-set
     of the slot, the journey record queued) against the naive verify — goal >= 1.3x;
     p99 at half saturation is printed for information. Taps alternate entries
     (``L1-S01``) and exits at two other stations in two zones; the 32 connections
     deliver a citizen's taps in no fixed order, so this service runs with
     ``SUISHEN_PASSBACK_SECONDS=0`` and ``exit_without_entry: charge_max``: every tap is
     then valid (an entry over an open one closes it ``incomplete``, an exit without
     entry is charged the maximum) and costs what a real ride's tap costs. The journeys
     recorded are checked in the settlement afterwards;
   * **verify, metro on the embedded default** (single use kept in the SQLite file
     before the answer, issue 8 item 3): its ratio to the embedded library run is the
     price of durable single use.

Besides throughput and latency every row shows the CPU share the server process and the
client used during the run (``srv``/``cli``): a server near 100 % is saturated; a client
near 100 % would mean the client, not the server, was the limit.

Run::

    .venv/bin/python benchmarks/http_bench.py                 # 10 s per run, 32 connections
    .venv/bin/python benchmarks/http_bench.py --quick         # smoke check (~1 min)
    .venv/bin/python benchmarks/http_bench.py --duration 20 --rounds 3 --json out.json
    .venv/bin/python benchmarks/http_bench.py --only issuance  # issuance rows only
    .venv/bin/python benchmarks/http_bench.py --only library   # library verify rows only

Exit status: 0 when everything ran (whatever the figures — this is a measurement, not a
test); 1 when something failed to run (a server did not start, setup failed, a load run
saw connection errors, non-2xx answers or unexpected bodies).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # the sibling module, importable when run as a script
import wrkload

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REDIS_URL = os.environ.get("SUISHEN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CITIZENS = 50
CODE_TTL = 900
RATE_LIMIT = 1_000_000
VERIFY_RATIO_LIBRARY = 1.5  # SPEC §7
VERIFY_RATIO_LIMIT = 0.7
VERIFY_RATIO_METRO = 1.3
VERIFY_P99_MS = 2.0
ISSUE_P99_MS = 5.0
VALID = b'"valid":true'
# The metro fare table of the journeys run (see the module docstring).
METRO_FARES = {"operator": "bench-metro", "zones": {"L1-S01": 0, "L2-S12": 1, "L3-S30": 2},
               "fares": {"0": 300, "1": 400, "2": 500}, "max_fare": 900,
               "exit_without_entry": "charge_max"}
METRO_TAPS = (("in", "L1-S01-G1"), ("out", "L2-S12-G3"), ("in", "L1-S01-G2"),
              ("out", "L3-S30-G1"))


class BenchError(RuntimeError):
    """Something failed to run (not a missed target)."""


# --- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return math.nan


class Server:
    """One server subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int,
                 workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and scripts
                self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid) if self.proc else math.nan

    def stop(self, timeout: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group this script created
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}


def service(name: str, workdir: Path, admin_token: str, **extra: str) -> Server:
    port = free_port()
    data = workdir / name
    data.mkdir()
    env = {
        **_base_env(),
        "SUISHEN_ENV": "development",
        "SUISHEN_DATA_DIR": str(data),
        "SUISHEN_HOST": HOST,
        "SUISHEN_PORT": str(port),
        "SUISHEN_WORKERS": "1",
        "SUISHEN_ACCESS_LOG": "false",
        "SUISHEN_LOG_LEVEL": "warning",
        "SUISHEN_ADMIN_TOKEN": admin_token,
        "SUISHEN_CODE_TTL_SECONDS": str(CODE_TTL),
        "SUISHEN_PARTNER_TOKEN_TTL_SECONDS": "3600",
        **extra,
    }
    argv = [*SERVER_PIN, sys.executable, "-c", "from suishen.app.server import serve; serve()"]
    return Server(name, argv, env, port, workdir)


def naive(workdir: Path, jwks: Sequence[str]) -> Server:
    port = free_port()
    argv = [*SERVER_PIN, sys.executable, str(ROOT / "benchmarks" / "naive_app.py"),
            "--host", HOST, "--port", str(port), "--jwks", ",".join(jwks)]
    return Server("naive", argv, _base_env(), port, workdir)


def limit(workdir: Path, jwks: Sequence[str]) -> Server:
    """The per-core limit of SPEC §7 (benchmarks/limit_app.py)."""
    port = free_port()
    argv = [*SERVER_PIN, sys.executable, str(ROOT / "benchmarks" / "limit_app.py"),
            "--host", HOST, "--port", str(port), "--jwks", ",".join(jwks)]
    return Server("limit", argv, _base_env(), port, workdir)


# Servers on CPU 0, the load client (this process) on the others, when the machine has
# more than one core (SPEC §7: server and client on different cores).
_CPUS = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
PINNED = len(_CPUS) > 1 and shutil.which("taskset") is not None
SERVER_PIN = ["taskset", "-c", str(_CPUS[0])] if PINNED else []


def pin_client() -> str:
    """Pin this process (the load client) away from the servers' core; say what it did."""
    if not PINNED:
        return "not pinned: this machine has one core (or no taskset); figures are shared-core"
    os.sched_setaffinity(0, set(_CPUS[1:]))
    return f"servers pinned to CPU {_CPUS[0]}, load client to CPU {','.join(map(str, _CPUS[1:]))}"


def pin_redis() -> tuple[str, Callable[[], None]]:
    """Keep a local Redis server off the servers' core (with the load client), and say so.

    Redis is its own tier (docs/capacity.md sizes it apart) and must not take the
    service's core. With two cores it then shares the other one with wrk, which bounds
    the metro run partly (see benchmarks/README.md). Returns the line to print and a
    function that restores Redis's affinity at the end."""
    def nothing() -> None:
        return None

    if not PINNED:
        return "Redis not pinned (one core)", nothing
    try:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(REDIS_URL, socket_timeout=2)
        info = client.info("server")
        client.close()
        pid = int(info["process_id"])
        if urlsplit(REDIS_URL).hostname not in ("127.0.0.1", "localhost", "::1"):
            return "Redis not pinned (not on this machine)", nothing
        before = os.sched_getaffinity(pid)
        os.sched_setaffinity(pid, set(_CPUS[1:]))
    except Exception as exc:  # noqa: BLE001 - best effort: say why and go on unpinned
        return (f"Redis not pinned ({type(exc).__name__}: {str(exc)[:120]}): metro figures "
                "share cores"), nothing

    def restore() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(pid, before)

    return (f"Redis (pid {pid}) pinned to CPU {','.join(map(str, _CPUS[1:]))} with the "
            "load client, off the servers' core (restored at the end)", restore)


# --- API setup ----------------------------------------------------------------------


@dataclass
class Setup:
    """What the load runs need from one server."""

    server: Server
    citizen_tokens: list[str]
    partners: dict[str, str] = field(default_factory=dict)  # scene -> access token


def _check(response: httpx.Response, expected: int, what: str) -> dict[str, Any]:
    if response.status_code != expected:
        raise BenchError(f"{what}: HTTP {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


def setup_service(server: Server, admin_token: str, scenes: Sequence[str]) -> Setup:
    admin = {"Authorization": f"Bearer {admin_token}"}
    tokens: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for i in range(CITIZENS):
            sub = f"bench-citizen-{i:03d}"
            _check(client.put(f"/v1/admin/subjects/{sub}", headers=admin, json={
                "status": "active",
                "attributes": {"name": f"Citizen {i}", "reader_id": f"R-{i:05d}",
                               "transit_account": f"T-{i:07d}",
                               "medical_insurance_id": f"M-{i:09d}"},
            }), 200, "upsert subject")
            token = _check(client.post("/v1/dev/citizen-token", json={"sub": sub}), 200,
                           "citizen token")
            tokens.append(str(token["access_token"]))
        setup = Setup(server, tokens)
        attributes = {"library": ["reader_id"], "metro": ["transit_account"]}
        for scene in scenes:
            partner = _check(client.post("/v1/admin/partners", headers=admin, json={
                "name": f"bench {scene}", "scenes": [scene],
                "attributes": attributes.get(scene, []),
                "rate_limit_per_second": RATE_LIMIT,
            }), 201, "register partner")
            issued = _check(client.post("/v1/oauth/token", data={
                "grant_type": "client_credentials", "client_id": partner["client_id"],
                "client_secret": partner["client_secret"],
            }), 200, "partner token")
            setup.partners[scene] = str(issued["access_token"])
    return setup


def setup_naive(server: Server) -> Setup:
    tokens = []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for i in range(CITIZENS):
            token = _check(client.post("/v1/dev/citizen-token",
                                       json={"sub": f"bench-citizen-{i:03d}"}),
                           200, "naive citizen token")
            tokens.append(str(token["access_token"]))
    return Setup(server, tokens)


# --- request lists ------------------------------------------------------------------


def issue_requests(setup: Setup) -> list[bytes]:
    host = f"{HOST}:{setup.server.port}"
    return [loadgen.build_request("POST", "/v1/codes", host, {"Authorization": f"Bearer {t}"})
            for t in setup.citizen_tokens]


def verify_requests(server: Server, token: str, codes: Sequence[str], *, scene: str,
                    checkpoint: str, direction: str | None = None) -> list[bytes]:
    host = f"{HOST}:{server.port}"
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    for code in codes:
        body: dict[str, Any] = {"code": code, "scene": scene, "checkpoint": checkpoint}
        if direction is not None:
            body["direction"] = direction
        out.append(loadgen.build_request("POST", "/v1/verify", host, headers, body))
    return out


def journey_requests(server: Server, token: str, codes: Sequence[str]) -> list[bytes]:
    """Metro taps riding journeys: entries and exits in turn (:data:`METRO_TAPS`)."""
    host = f"{HOST}:{server.port}"
    headers = {"Authorization": f"Bearer {token}"}
    out = []
    for i, code in enumerate(codes):
        direction, checkpoint = METRO_TAPS[i % len(METRO_TAPS)]
        body = {"code": code, "scene": "metro", "checkpoint": checkpoint,
                "direction": direction}
        out.append(loadgen.build_request("POST", "/v1/verify", host, headers, body))
    return out


def load_fares(server: Server, admin_token: str) -> None:
    """Put the metro fare table of the journeys run."""
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        _check(client.put("/v1/admin/fares/metro", json=METRO_FARES,
                          headers={"Authorization": f"Bearer {admin_token}"}),
               200, "metro fare table")


def settled_journeys(server: Server, admin_token: str) -> dict[str, Any]:
    """Today's settlement on ``server`` (UTC): the journeys the run recorded."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        return _check(client.get("/v1/admin/settlement", params={"date": day},
                                 headers={"Authorization": f"Bearer {admin_token}"}),
                      200, "settlement")


def codes_from(result: loadgen.Result) -> list[str]:
    return [str(json.loads(body)["code"]) for body in result.bodies]


def minted_codes(minted: Minted, n: int) -> list[str]:
    """``n`` codes of the minted source's server, for a baseline that never consumes them."""
    got = minted.bench.closed(f"mint {n:,} codes for the baseline", minted.setup.server,
                              issue_requests(minted.setup), total=n, keep_bodies=True)
    return codes_from(got.result)


# --- measuring ----------------------------------------------------------------------


@dataclass
class Measured:
    """One load run with the CPU the server and the client used meanwhile."""

    label: str
    server: str
    result: loadgen.Result
    server_cpu: float  # share of one core
    client_cpu: float
    steal: float = math.nan  # share of the machine's CPU time the hypervisor took

    def invalid(self) -> str | None:
        r = self.result
        problems = []
        if r.errors:
            problems.append(f"{r.errors} errors ({'; '.join(r.error_samples[:2])})")
        if r.non_2xx:
            problems.append(f"non-2xx {dict((s, n) for s, n in r.statuses.items() if s >= 300)}")
        if r.body_mismatches:
            problems.append(f"{r.body_mismatches} answers not valid")
        return ", ".join(problems) or None


def _steal_ticks() -> tuple[int, int] | None:
    """(steal, all) clock ticks since boot of the servers' CPU when they are pinned,
    else of the whole machine (``/proc/stat``); None where there is no such file.

    Steal is the time a virtual CPU was ready to run but the hypervisor ran someone
    else: on a shared machine it is noise no benchmark can remove (seen here: 0 to
    20 % of a run on 2026-12-03, different for two servers in one round), so every
    run prints it and comparisons print their ratios corrected for it too."""
    line = f"cpu{_CPUS[0]} " if PINNED else "cpu "
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            found = next((row for row in stat if row.startswith(line)), "")
        fields = [int(x) for x in found.split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7], sum(fields[:8])) if len(fields) >= 8 else None


def _steal_share(before: tuple[int, int] | None) -> float:
    after = _steal_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return math.nan
    return (after[0] - before[0]) / (after[1] - before[1])


def _client_cpu() -> float:
    """CPU seconds of this process and its finished children (wrk runs as a child)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration: float = args.duration
        self.warmup: float = args.warmup
        self.connections: int = args.connections
        self.settle: float = args.settle
        self.log: list[Measured] = []
        # Saturation runs use wrk when installed: it costs about half the client CPU per
        # request of loadgen, and the two agree within noise (benchmarks/wrk_check.py).
        # Runs that keep bodies (minting codes) or stop after a total stay on loadgen.
        self.client: str = getattr(args, "client", "loadgen")

    def measure(self, label: str, server: Server, runner: Callable[[], Any]) -> Measured:
        if not server.alive():
            raise BenchError(f"{server.name} is not running:\n{server.log_tail()}")
        cpu0, client0, t0 = server.cpu(), _client_cpu(), time.perf_counter()
        steal0 = _steal_ticks()
        result: loadgen.Result = loadgen.run(runner())
        wall = time.perf_counter() - t0
        steal = _steal_share(steal0)
        # The server's share over the time load was applied: wrk's own duration when it
        # is the client (not its script start-up, see wrkload.WrkResult.load_seconds).
        loaded = getattr(result, "load_seconds", math.nan)
        busy = loaded if 0 < loaded < wall else wall
        measured = Measured(label, server.name, result,
                            (server.cpu() - cpu0) / busy, (_client_cpu() - client0) / wall,
                            steal)
        self.log.append(measured)
        print(f"  {label:<34} {server.name:<15} {result.summary()}; "
              f"cpu srv {measured.server_cpu:.0%} cli {measured.client_cpu:.0%}; "
              f"steal {_pct(steal)}", flush=True)
        problem = measured.invalid()
        if problem:
            raise BenchError(f"{label} on {server.name}: {problem}")
        time.sleep(self.settle)  # let the server finish background work (audit flushes)
        return measured

    def closed(self, label: str, server: Server, requests: Sequence[bytes], *,
               once: bool = False, expect: bytes | None = None,
               keep_bodies: bool = False, duration: float | None = None,
               total: int | None = None) -> Measured:
        if self.client == "wrk" and not keep_bodies and total is None and duration:
            async def wrk_runner() -> loadgen.Result:
                return wrkload.run_closed(HOST, server.port, requests,
                                          connections=self.connections, duration=duration,
                                          once=once, expect=expect)
            return self.measure(label, server, wrk_runner)

        def runner() -> Any:
            return loadgen.run_closed(
                HOST, server.port, requests, connections=self.connections,
                duration=duration if total is None else None, total=total, once=once,
                expect=expect, keep_bodies=keep_bodies)
        return self.measure(label, server, runner)

    def open(self, label: str, server: Server, requests: Sequence[bytes], rate: float, *,
             once: bool = False, expect: bytes | None = None) -> Measured:
        def runner() -> Any:
            return loadgen.run_open(HOST, server.port, requests, rate=rate,
                                    duration=self.duration, connections=self.connections,
                                    once=once, expect=expect)
        return self.measure(label, server, runner)

    def open_rounds(self, label: str, pairs: Sequence[tuple[Server, Sequence[bytes]]],
                    rate: float, *, expect: bytes | None = None) -> list[Measured]:
        """Open-loop runs at ``rate``, ``--rounds`` of them, the servers in turn within
        a round; for each server one :class:`Measured` whose latencies pool every round
        (its p99 is that of all the requests sent, which one run of a few seconds does
        not pin down: the same build's p99 moved 1.5-3.8 ms from run to run on
        2026-12-08). Prints each round's p99 beside the pooled one."""
        runs: dict[str, list[Measured]] = {server.name: [] for server, _ in pairs}
        for rnd in range(self.args.rounds):
            for server, requests in pairs:
                runs[server.name].append(self.open(f"{label} r{rnd + 1}", server, requests,
                                                   rate, expect=expect))
        out = []
        for server, _ in pairs:
            done = runs[server.name]
            pooled = Measured(
                label, server.name, loadgen.Result.pooled([m.result for m in done]),
                statistics.fmean(m.server_cpu for m in done),
                statistics.fmean(m.client_cpu for m in done),
                math.nan if any(math.isnan(m.steal) for m in done)
                else statistics.fmean(m.steal for m in done))
            print(f"  {label}: {server.name} p99 round by round "
                  + ", ".join(f"{m.result.p99 * 1000:.2f}" for m in done)
                  + f" ms; all {pooled.result.completed:,} requests pooled: "
                  f"{pooled.result.p99 * 1000:.2f} ms", flush=True)
            out.append(pooled)
        return out

    def compare(self, label: str, pairs: Sequence[tuple[Server, Source]], *,
                expect: bytes | None = None, keep_bodies: bool = False) -> list[Measured]:
        """Alternate the servers for ``rounds`` rounds (warm-up before each run); the best
        round of each server is returned, in the order of ``pairs``.

        A :class:`Minted` source gives single-use requests: fresh ones are minted before
        each run (warm-up included) and each is sent at most once.
        """
        best: dict[str, Measured] = {}
        per_round: list[dict[str, float]] = []
        for rnd in range(self.args.rounds):
            per_round.append({})
            order = list(pairs) if rnd % 2 == 0 else list(reversed(pairs))
            for server, source in order:
                once = isinstance(source, Minted)
                use: Sequence[bytes]
                if isinstance(source, Minted):
                    use = source.take(source.needed(self.warmup + self.duration))
                else:
                    use = source
                if self.warmup > 0:
                    warm = self.closed(f"{label} (warm-up)", server, use, once=once,
                                       expect=expect, duration=self.warmup)
                    if once:  # skip what the warm-up spent (wrk: sent, answered or not)
                        use = use[getattr(warm.result, "consumed", warm.result.completed) :]
                run = self.closed(f"{label} (round {rnd + 1})", server, use, once=once,
                                  expect=expect, keep_bodies=keep_bodies,
                                  duration=self.duration)
                if isinstance(source, Minted):
                    source.observed(run.result)
                key = server.name
                per_round[-1][key] = run.result.throughput
                per_round[-1][key + " steal"] = run.steal
                if key not in best or run.result.throughput > best[key].result.throughput:
                    best[key] = run
        # The ratios round by round (each round runs every server once, back to back):
        # how far the best-of ratio in the table is from what a single round says.
        # Corrected for steal: each rate as if its server had had the whole core
        # (rate / (1 - steal on the servers' CPU)), for reading, never for a verdict.
        first = pairs[0][0].name
        for server, _ in pairs[1:]:
            ratios = [r[first] / r[server.name] for r in per_round if r.get(server.name)]
            fair = [(r[first] / (1 - r[first + " steal"]))
                    / (r[server.name] / (1 - r[server.name + " steal"]))
                    for r in per_round if r.get(server.name)]
            print(f"  {label}: {first} / {server.name} round by round: "
                  + ", ".join(f"{x:.2f}x" for x in ratios) + "; corrected for steal: "
                  + ", ".join("-" if math.isnan(x) else f"{x:.2f}x" for x in fair),
                  flush=True)
        return [best[server.name] for server, _ in pairs]


class Minted:
    """Single-use verify requests, minted on demand through ``POST /v1/codes``.

    ``estimate`` (requests/s) sizes each batch: first an upper bound, then the best rate
    measured with these requests; a batch holds 25 % more than that rate needs.
    """

    def __init__(self, bench: Bench, setup: Setup, make: Callable[[list[str]], list[bytes]],
                 estimate: float) -> None:
        self.bench = bench
        self.setup = setup
        self.make = make
        self.estimate = estimate
        self.measured = 0.0

    def needed(self, seconds: float, rate: float | None = None) -> int:
        return math.ceil((rate or self.estimate) * 1.25 * seconds) + 100

    def take(self, n: int) -> list[bytes]:
        minted = self.bench.closed(f"mint {n:,} single-use codes", self.setup.server,
                                   issue_requests(self.setup), total=n, keep_bodies=True)
        codes = codes_from(minted.result)
        if len(codes) != n:
            raise BenchError(f"minted {len(codes)} codes instead of {n}")
        return self.make(codes)

    def observed(self, result: loadgen.Result) -> None:
        if result.exhausted:
            print("  note: the single-use codes ran out before the end of the run; its rate "
                  "is over the time it had codes", flush=True)
        self.measured = max(self.measured, result.throughput)
        self.estimate = self.measured


Source = Sequence[bytes] | Minted


# --- the report ---------------------------------------------------------------------


@dataclass
class Row:
    scenario: str
    m: Measured
    ratio: float | None = None
    goal: str = ""
    verdict: str = ""


def _pct(share: float) -> str:
    return f"{share:.0%}" if not math.isnan(share) else "-"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}" if not math.isnan(seconds) else "-"


def print_table(rows: Sequence[Row]) -> None:
    head = (f"{'scenario':<40} {'server':<15} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'srv':>5} {'cli':>5} {'steal':>5} {'ratio':>6}  {'goal':<16} result")
    print(head)
    print("-" * len(head))
    for row in rows:
        r = row.m.result
        rate = f"{r.throughput:,.0f}"
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        print(f"{row.scenario:<40} {row.m.server:<15} {rate:>8} {_ms(r.p50):>7} "
              f"{_ms(r.p99):>7} {row.m.server_cpu:>5.0%} {row.m.client_cpu:>5.0%} "
              f"{_pct(row.m.steal):>5} {ratio:>6}  {row.goal:<16} {row.verdict}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# --- the whole run ------------------------------------------------------------------


def run_bench(args: argparse.Namespace, workdir: Path, servers: list[Server]) -> list[Row]:
    admin_token = "bench-admin-" + secrets.token_hex(24)
    prefix = f"suishen-bench-{os.getpid()}-{secrets.token_hex(4)}"
    args.redis_prefix = prefix
    only_issuance = args.only == "issuance"
    only_library = args.only == "library"
    embedded = service("suishen-sqlite", workdir, admin_token)
    redis = service("suishen-redis", workdir, admin_token,
                    SUISHEN_REDIS_URL=REDIS_URL, SUISHEN_REDIS_PREFIX=prefix,
                    SUISHEN_PASSBACK_SECONDS="0")  # every tap valid in any order: docstring
    services = (embedded,) if only_issuance or only_library else (embedded, redis)
    for server in services:
        servers.append(server)
        server.start()
    for server in services:
        server.wait_ready("/readyz")
    base = naive(workdir, [s.url + "/v1/keys" for s in services])
    servers.append(base)
    base.start()
    base.wait_ready("/healthz")
    top = limit(workdir, [embedded.url + "/v1/keys"])
    if not only_issuance:
        servers.append(top)
        top.start()
        top.wait_ready("/healthz")
    print(pin_client(), flush=True)
    pinned_redis, args.unpin_redis = pin_redis()
    print(pinned_redis, flush=True)
    print(f"closed-loop client: {args.client}; open-loop runs: loadgen", flush=True)
    print(f"servers: {', '.join(f'{s.name} :{s.port}' for s in servers)} "
          f"(Redis prefix {prefix}); logs in {workdir}", flush=True)

    s_embedded = setup_service(embedded, admin_token, ["library", "metro"])
    s_naive = setup_naive(base)
    bench = Bench(args)
    rows: list[Row] = []

    if not only_library:
        # 1. Issuance (embedded default), against the naive issuance endpoint.
        print("issuance: POST /v1/codes", flush=True)
        svc_issue, naive_issue = bench.compare(
            "issue", [(embedded, issue_requests(s_embedded)), (base, issue_requests(s_naive))])
        half_issue = svc_issue.result.throughput / 2
        (issue_p99,) = bench.open_rounds("issue p99 @ 50% (open loop)",
                                         [(embedded, issue_requests(s_embedded))], half_issue)
        ratio = svc_issue.result.throughput / naive_issue.result.throughput
        rows += [
            Row("issue /v1/codes, saturation", svc_issue, ratio, "(info)", ""),
            Row("issue naive baseline, saturation", naive_issue),
            Row(f"issue p99 @ 50% sat ({half_issue:,.0f}/s)", issue_p99, None,
                f"p99 <= {ISSUE_P99_MS:g} ms",
                verdict(issue_p99.result.p99 * 1000 <= ISSUE_P99_MS)),
        ]

    if only_issuance:
        return _write_json(args, bench, rows)
    # The codes for the library runs are minted apart from the measured runs, so those
    # can use the cheaper client (wrk keeps no bodies).
    codes = codes_from(bench.closed("mint 6,000 codes for library", embedded,
                                    issue_requests(s_embedded), total=6000,
                                    keep_bodies=True).result)
    if not codes:
        raise BenchError("issuance produced no codes")

    # 2. Verify, library (re-scannable), embedded default.
    print("verify: library (embedded default)", flush=True)
    random.shuffle(codes)
    library = codes[:5000]
    lib_svc = verify_requests(embedded, s_embedded.partners["library"], library, scene="library",
                              checkpoint="LIB-MAIN-G1")
    lib_naive = verify_requests(base, "naive-does-not-check", library,
                                scene="library", checkpoint="LIB-MAIN-G1")
    lib_limit = verify_requests(top, "limit-does-not-check", library,
                                scene="library", checkpoint="LIB-MAIN-G1")
    svc_lib, naive_lib, limit_lib = bench.compare(
        "verify library", [(embedded, lib_svc), (base, lib_naive), (top, lib_limit)],
        expect=VALID)
    half_lib = svc_lib.result.throughput / 2
    # With the machine's own floor: the limit app (no work beyond one signature) at the
    # same rate, round by round. A p99 above the budget there is the machine's (steal,
    # the client), not the service's.
    lib_p99, floor_p99 = bench.open_rounds("verify library p99 @ 50% (open)",
                                           [(embedded, lib_svc), (top, lib_limit)],
                                           half_lib, expect=VALID)
    ratio = svc_lib.result.throughput / naive_lib.result.throughput
    rows += [
        Row("verify library, saturation", svc_lib, ratio, f">= {VERIFY_RATIO_LIBRARY}x",
            verdict(ratio >= VERIFY_RATIO_LIBRARY)),
        Row("verify naive baseline, saturation", naive_lib),
        Row("verify limit (raw ASGI), saturation", limit_lib),
        Row("verify library / limit", svc_lib,
            svc_lib.result.throughput / limit_lib.result.throughput,
            f">= {VERIFY_RATIO_LIMIT}x limit",
            verdict(svc_lib.result.throughput / limit_lib.result.throughput
                    >= VERIFY_RATIO_LIMIT)),
        Row(f"verify library p99 @ 50% ({half_lib:,.0f}/s)", lib_p99, None,
            f"p99 <= {VERIFY_P99_MS:g} ms",
            verdict(lib_p99.result.p99 * 1000 <= VERIFY_P99_MS)),
        Row("  limit p99 at that rate (floor)", floor_p99, None, "(info: machine)", ""),
    ]

    if only_library:
        return _write_json(args, bench, rows)

    # 3. Verify, metro with journeys (single use, entries and exits, a fare table),
    # Redis state: every code shown once, minted just before each run.
    s_redis = setup_service(redis, admin_token, ["metro"])
    load_fares(redis, admin_token)
    print("verify: metro with journeys (Redis state, single use, fare table)", flush=True)
    minted = Minted(
        bench, s_redis,
        lambda codes: journey_requests(redis, s_redis.partners["metro"], codes),
        estimate=svc_lib.result.throughput)
    metro_naive = verify_requests(base, "naive-does-not-check", minted_codes(minted, 5000),
                                  scene="metro", checkpoint="L2-S12-G3", direction="in")
    svc_metro, naive_metro = bench.compare("verify metro", [(redis, minted),
                                                            (base, metro_naive)],
                                           expect=VALID)
    half_metro = svc_metro.result.throughput / 2
    ratio = svc_metro.result.throughput / naive_metro.result.throughput
    rows += [
        Row("verify metro+journeys+Redis, sat.", svc_metro, ratio,
            f">= {VERIFY_RATIO_METRO}x", verdict(ratio >= VERIFY_RATIO_METRO)),
        Row("verify naive baseline, saturation", naive_metro),
    ]
    fresh = minted.take(minted.needed(args.duration, half_metro))
    metro_p99 = bench.open("verify metro p99 @ 50% (open)", redis, fresh, half_metro,
                           once=True, expect=VALID)
    rows.append(Row(f"verify metro p99 @ 50% ({half_metro:,.0f}/s)", metro_p99, None,
                    f"p99 <= {VERIFY_P99_MS:g} ms (info)",
                    verdict(metro_p99.result.p99 * 1000 <= VERIFY_P99_MS)))
    settled = settled_journeys(redis, admin_token)
    statuses: dict[str, int] = {}
    for operator in settled["operators"]:
        for status, count in operator["by_status"].items():
            statuses[status] = statuses.get(status, 0) + count
    print(f"  journeys recorded by the metro runs: {settled['journeys']:,} "
          f"({', '.join(f'{k} {v:,}' for k, v in sorted(statuses.items()))}), "
          f"{settled['fares']:,} fen", flush=True)
    if not statuses.get("complete"):
        raise BenchError("the metro runs recorded no complete journey")

    # 4. Verify, metro on the embedded default: single use kept durable in the SQLite
    # file before each answer (issue 8 item 3). Its price is the ratio to the embedded
    # library run (same server, re-scannable scene).
    print("verify: metro (embedded default, SQLite single use)", flush=True)
    minted_e = Minted(
        bench, s_embedded,
        lambda codes: verify_requests(embedded, s_embedded.partners["metro"], codes,
                                      scene="metro", checkpoint="L2-S12-G3", direction="in"),
        estimate=svc_lib.result.throughput)
    (svc_metro_e,) = bench.compare("verify metro embedded", [(embedded, minted_e)],
                                   expect=VALID)
    rows.append(Row("verify metro embedded (SQLite once), sat.", svc_metro_e,
                    svc_metro_e.result.throughput / svc_lib.result.throughput,
                    "(info: / library)", ""))
    return _write_json(args, bench, rows)


def _write_json(args: argparse.Namespace, bench: Bench, rows: list[Row]) -> list[Row]:
    if args.json:
        Path(args.json).write_text(json.dumps({
            "settings": {"duration": args.duration, "connections": args.connections,
                         "rounds": args.rounds, "warmup": args.warmup},
            "rows": [{"scenario": r.scenario, "server": r.m.server,
                      "ratio": r.ratio, "goal": r.goal, "verdict": r.verdict,
                      "server_cpu": r.m.server_cpu, "client_cpu": r.m.client_cpu,
                      "steal": None if math.isnan(r.m.steal) else r.m.steal,
                      **r.m.result.as_dict()} for r in rows],
            "runs": [{"label": m.label, "server": m.server,
                      "steal": None if math.isnan(m.steal) else m.steal,
                      **m.result.as_dict()} for m in bench.log],
        }, indent=2))
    return rows


def cleanup_redis(prefix: str | None) -> None:
    if not prefix:
        return
    try:
        import redis as redis_lib

        client = redis_lib.Redis.from_url(REDIS_URL, socket_timeout=2)
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
    except Exception as exc:  # noqa: BLE001 - best effort
        print(f"(could not clean Redis keys {prefix}*: {exc})", file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="See the module docstring for what is measured.")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds per measured run (default 10)")
    parser.add_argument("--connections", type=int, default=32,
                        help="client connections (default 32)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternating rounds per comparison, best kept (default 2)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of warm-up before each saturation run (default 1)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="pause after each run for background work (default 1)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke check: 2 s runs, one round, short warm-up")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--client", choices=["wrk", "loadgen"],
                        default="wrk" if wrkload.available() else "loadgen",
                        help="closed-loop client for saturation runs (default: wrk when "
                             "installed; open-loop p99 runs always use loadgen)")
    parser.add_argument("--only", choices=["issuance", "library"],
                        help="measure only this scenario (issuance: service vs naive "
                             "issuance and the p99 at half load; no Redis, no limit app; "
                             "library: the library verify rows, with the limit app and "
                             "its floor, no issuance rows, no Redis)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds, args.warmup, args.settle = 2.0, 1, 0.3, 0.3
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("duration, rounds and connections must be positive")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.redis_prefix = None
    args.unpin_redis = lambda: None
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="suishen-http-bench-"))
    servers: list[Server] = []
    status = 0
    print(f"http_bench: {args.duration:g} s per run, {args.connections} connections, "
          f"{args.rounds} round(s), warm-up {args.warmup:g} s; {os.cpu_count()} CPUs; "
          f"client loop: {'uvloop' if _has_uvloop() else 'asyncio'}", flush=True)
    try:
        rows = run_bench(args, workdir, servers)
        print()
        print_table(rows)
        print()
        print("req/s: best of the rounds (closed loop) or achieved rate (open loop); p50/p99 "
              "from request write to full answer (open loop at 50%: every round's requests "
              "pooled); srv/cli: CPU share of one core used by "
              "the server process while load was applied (wrk's own duration, not its script "
              "start-up) / the load client over the whole run; steal: share of the "
              "machine's CPU time the hypervisor gave to others during the run; ratio: "
              "service throughput / naive baseline throughput measured in this run.")
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    except BenchError as exc:
        print(f"\nhttp_bench: FAILED: {exc}", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for server in reversed(servers):
            server.stop()
        cleanup_redis(args.redis_prefix)
        args.unpin_redis()
        if args.keep or status == 1:
            print(f"(server logs kept in {workdir})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return status


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
