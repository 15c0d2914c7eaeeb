"""Closed-loop load with wrk (the Debian package) as the client, returning the same
:class:`loadgen.Result` the project's generator returns, so ``http_bench.py`` can use
whichever client costs less per request (SPEC §7, issue 13 item 1).

``benchmarks/wrk_check.py`` measured both on the same pinned server: wrk costs about
30 µs of client CPU per request against the project generator's 50–60 µs, and their
throughputs agree within the run-to-run noise — so saturation runs use wrk. Open-loop
runs (p99 at half of saturation) stay on the project's generator: wrk has no open-loop
mode (its fork wrk2 does, but is not packaged by Debian), and a closed loop hides
queueing delay (coordinated omission).

How: the request list (raw HTTP/1.1 requests from :func:`loadgen.build_request`) is
written into a Lua script as a table; wrk's ``request()`` hands them out in turn (one
wrk thread, so one Lua state holds the order). ``response()`` counts statuses and, with
``expect``, 2xx bodies lacking the substring. With ``once`` (single-use codes) each
request is sent at most once: when the list runs out, wrk keeps sending the last one
but those answers are not counted, and the run's elapsed time is scaled to the share
of requests sent before it ran out (a closed loop sends at a steady rate) — the
result says ``exhausted`` then, as the project generator does.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import loadgen

_LUA = r"""
local requests = {REQUESTS}
local once = {ONCE}
local expect = {EXPECT}
local n, i = #requests, 0
-- globals: done() reads them from the thread with thread:get (locals are invisible)
counted, extra, mismatches, sent = 0, 0, 0, 0
statuses = {}
exhausted = false

function request()
  i = i + 1
  if i <= n then sent = i end
  if i > n then
    if once then
      exhausted = true
      return requests[n]
    end
    i = 1
  end
  return requests[i]
end

function response(status, headers, body)
  if exhausted then
    extra = extra + 1
    return
  end
  counted = counted + 1
  statuses[status] = (statuses[status] or 0) + 1
  if expect and status >= 200 and status < 300 and not string.find(body, expect, 1, true) then
    mismatches = mismatches + 1
  end
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests_)
  local t = threads[1]
  local st = {}
  for k, v in pairs(t:get("statuses")) do st[tostring(k)] = v end
  local e = summary.errors
  io.write("SUISHEN-WRK ", string.format(
    '{"counted":%d,"sent":%d,"extra":%d,"mismatches":%d,"exhausted":%s,"duration_us":%d,' ..
    '"requests":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"statuses":{',
    t:get("counted"), t:get("sent"), t:get("extra"), t:get("mismatches"),
    tostring(t:get("exhausted")),
    summary.duration, summary.requests, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  local first = true
  for k, v in pairs(st) do
    if not first then io.write(",") end
    io.write(string.format('"%s":%d', k, v))
    first = false
  end
  io.write("}}\n")
end
"""


_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _lua_string(data: bytes) -> str:
    """A Lua string literal for arbitrary bytes: printable ASCII as is, everything else
    (quotes, backslashes, CR/LF, non-ASCII) as a decimal escape."""
    text = data.decode("latin-1")
    return '"' + _UNSAFE.sub(lambda m: f"\\{ord(m.group()):03d}", text) + '"'


@dataclass
class WrkResult(loadgen.Result):
    """A :class:`loadgen.Result` whose percentiles come from wrk's latency histogram
    (wrk reports percentiles, not every latency)."""

    wrk_percentiles: dict[float, float] = field(default_factory=dict)  # p -> seconds
    # Requests of the list that left the client, answered or not: wrk stops at its
    # deadline with requests in flight, which the server has seen (single-use codes
    # spent) but wrk never counts. A following run over the same list starts after them.
    consumed: int = 0
    wrk_max: float = float("nan")
    # Seconds wrk applied load (its own clock, unscaled). wrk first parses the Lua
    # script, which for a single-use list of ~40,000 requests takes about a second
    # while the server waits: a CPU share over the subprocess's whole wall time would
    # show that second as server idle (metro runs read 81-85 % instead of ~97 %).
    load_seconds: float = float("nan")

    def percentile(self, p: float, *, scheduled: bool = False) -> float:
        if scheduled or p not in self.wrk_percentiles:
            return super().percentile(p, scheduled=scheduled)
        return self.wrk_percentiles[p]

    @property
    def max(self) -> float:
        return self.wrk_max


def available() -> bool:
    """True when the ``wrk`` binary is on PATH."""
    return shutil.which("wrk") is not None


def run_closed(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int,
    duration: float,
    once: bool = False,
    expect: bytes | None = None,
) -> WrkResult:
    """One closed-loop wrk run of ``duration`` seconds over ``requests`` (see the
    module docstring for ``once``). One wrk thread: the request order is one list."""
    if not requests:
        raise ValueError("no requests")
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    script = (
        _LUA.replace("{REQUESTS}", "{" + ",".join(_lua_string(r) for r in requests) + "}")
        .replace("{ONCE}", "true" if once else "false")
        .replace("{EXPECT}", "nil" if expect is None else _lua_string(expect))
    )
    with tempfile.TemporaryDirectory(prefix="suishen-wrk-") as folder:
        path = Path(folder) / "load.lua"
        path.write_text(script, encoding="latin-1")
        out = subprocess.run(  # noqa: S603 - wrk from PATH, our own arguments
            [wrk, "-t1", f"-c{connections}", f"-d{max(duration, 1):g}s", "--timeout", "10s",
             "-s", str(path), f"http://{host}:{port}/"],
            capture_output=True, text=True, check=False, timeout=duration + 60,
        )
    match = re.search(r"SUISHEN-WRK (\{.*\})", out.stdout)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-500:]}{out.stdout[-500:]}")
    figures = json.loads(match.group(1))
    elapsed = figures["duration_us"] / 1e6
    sent = figures["counted"] + figures["extra"]
    if figures["exhausted"] and sent:
        elapsed *= figures["counted"] / sent  # the time it had requests (steady closed loop)
    statuses: Counter[int] = Counter({int(k): v for k, v in figures["statuses"].items()})
    return WrkResult(
        mode="closed (wrk)",
        connections=connections,
        elapsed=elapsed,
        completed=figures["counted"],
        statuses=statuses,
        errors=figures["errors"],
        body_mismatches=figures["mismatches"],
        exhausted=bool(figures["exhausted"]),
        consumed=figures["sent"],
        wrk_percentiles={50: figures["p50"] / 1e6, 90: figures["p90"] / 1e6,
                         99: figures["p99"] / 1e6},
        wrk_max=figures["max"] / 1e6,
        load_seconds=figures["duration_us"] / 1e6,
    )
