"""Where a service process spends its time under load: py-spy samples one pinned
``suishen serve`` (one worker, embedded default) while the project's load generator
drives one endpoint at saturation, then prints the top functions by own time and by
inclusive time (issue 13: "profile first, put the top entries in the note").

    .venv/bin/pip install py-spy      # a profiling tool, not a dependency of the service
    .venv/bin/python benchmarks/profile_service.py verify-library [--duration 10]
    .venv/bin/python benchmarks/profile_service.py issue
    .venv/bin/python benchmarks/profile_service.py verify-metro   # Redis state

py-spy needs ptrace rights over the server (root, or ``kernel.yama.ptrace_scope=0``).
The sampling rate is py-spy's default (100 Hz); ``--native`` adds C frames (slower).
Shares are of the samples taken while the server ran Python or native code; idle
samples (the event loop waiting) are left out with ``--idle`` off. py-spy pauses the
server for each sample (accurate stacks); ``--nonblocking`` does not, and then reads torn
stacks (a function shown under callers it never had). Caveats seen on this machine: the
aiosqlite worker thread is counted while it waits on its queue (``Thread.run`` ~25 %
of samples, when ``/proc`` shows it uses ~4 % of the CPU) — read the main thread's
shares relative to ``Runner.run``.

For exact CPU per stage in the real server, without a sampler,
``benchmarks/verify_inproc_bench.py`` measures the ASGI call in-process.
"""

from __future__ import annotations

import argparse
import collections
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_bench as hb
import loadgen


def _pyspy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def _top(raw: Path, n: int) -> str:
    """Own and inclusive shares per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        total += count
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, table in (("own time", own), ("inclusive time", inclusive)):
        lines.append(f"-- top {n} by {title}")
        for frame, count in table.most_common(n):
            lines.append(f"{count / max(total, 1):6.1%}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    marker = "/site-packages/"
    if marker in path:
        path = path.split(marker, 1)[1]
    elif "/suishen/" in path:
        path = "suishen/" + path.split("/suishen/", 1)[1]
    return f"{name} ({path}:{line})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["verify-library", "verify-metro", "issue"])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--nonblocking", action="store_true",
                        help="sample without pausing the server (less overhead, but py-spy "
                             "then reads torn stacks: shares become unreliable)")
    parser.add_argument("--out", type=Path, help="also keep py-spy's raw output here")
    args = parser.parse_args()
    spy = _pyspy()
    admin_token = "profile-admin-" + secrets.token_hex(24)
    with tempfile.TemporaryDirectory(prefix="suishen-profile-") as tmp:
        workdir = Path(tmp)
        extra = {}
        if args.what == "verify-metro":
            extra = {"SUISHEN_REDIS_URL": hb.REDIS_URL,
                     "SUISHEN_REDIS_PREFIX": f"suishen-profile-{secrets.token_hex(4)}"}
        server = hb.service("suishen", workdir, admin_token, **extra)
        server.start()
        try:
            server.wait_ready("/readyz")
            print(hb.pin_client(), flush=True)
            scenes = ["metro"] if args.what == "verify-metro" else ["library"]
            setup = hb.setup_service(server, admin_token, scenes)
            if args.what == "issue":
                requests = hb.issue_requests(setup)
                once = False
            else:
                minted = loadgen.run(loadgen.run_closed(
                    hb.HOST, server.port, hb.issue_requests(setup), total=20000,
                    keep_bodies=True, connections=args.connections))
                codes = hb.codes_from(minted)
                random.shuffle(codes)
                scene = scenes[0]
                requests = hb.verify_requests(
                    server, setup.partners[scene], codes, scene=scene,
                    checkpoint="L2-S12-G3" if scene == "metro" else "LIB-MAIN-G1",
                    direction="in" if scene == "metro" else None)
                once = scene == "metro"
            raw = args.out or workdir / "pyspy.txt"
            pid = server.proc.pid if server.proc else 0
            spy_argv = [spy, "record", "--pid", str(pid), "--format", "raw",
                        "--duration", str(int(args.duration)), "--output", str(raw)]
            if args.nonblocking:
                spy_argv.append("--nonblocking")
            if args.native:
                spy_argv.append("--native")
            sampler = subprocess.Popen(spy_argv,  # noqa: S603 - py-spy, our arguments stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            done = threading.Event()

            def load() -> None:
                while not done.is_set():
                    result = loadgen.run(loadgen.run_closed(
                        hb.HOST, server.port, requests, connections=args.connections,
                        duration=None if once else 1.0, once=once))
                    print(f"  load: {result.summary()}", flush=True)
                    if once:
                        break

            worker = threading.Thread(target=load, daemon=True)
            worker.start()
            _, err = sampler.communicate(timeout=args.duration + 60)
            done.set()
            worker.join(timeout=30)
            if sampler.returncode != 0 or not raw.exists():
                raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-2000:]}")
            print(_top(raw, args.top))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
