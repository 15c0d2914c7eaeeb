"""What the SC1 exact-layout fast path saves: parse + claims decode, and a whole
verification, with the fast path and with the general path only.

Both paths run interleaved in one process over the same issued codes (half ES256, half
EdDSA), best of ``--repeat`` rounds, so the ratio is meaningful on a noisy machine::

    .venv/bin/python benchmarks/sc1_fast_path_bench.py [--repeat 7] [--codes 200]

It prints the per-code time of each path and the ratio. The fast path stays only
while it pays (see the decision note in ``codecs/sc1.py``).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from suishen.codecs import sc1
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.issuer import Issuer
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.keys.signer import SoftwareSigner
from suishen.verifiers.core import verify
from suishen.verifiers.policy import scene

NOW = 1_800_000_000


@contextmanager
def general_path_only() -> Iterator[None]:
    """Switch the fast path off (the layout matchers answer "not mine")."""
    saved = sc1._parse_personal_layout, sc1._personal_claims_layout
    sc1._parse_personal_layout = lambda data: None  # type: ignore[assignment]
    sc1._personal_claims_layout = lambda payload: None  # type: ignore[assignment]
    try:
        yield
    finally:
        sc1._parse_personal_layout, sc1._personal_claims_layout = saved


def _best_per_call(run: Callable[[], None], calls: int, repeat: int, general: bool) -> float:
    best = float("inf")
    for _ in range(repeat):
        if general:
            with general_path_only():
                start = time.perf_counter()
                run()
                elapsed = time.perf_counter() - start
        else:
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
        best = min(best, elapsed / calls)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--codes", type=int, default=200)
    args = parser.parse_args()

    issuers = []
    for alg in (Alg.ES256, Alg.EDDSA):
        private = PrivateKey.generate(alg)
        issuers.append(Issuer(SoftwareSigner.from_private(private), os.urandom(32)))
    ring = KeyRing(
        VerificationKey(i.kid, i.signer.public(), KeyState.ACTIVE, blinding=i.blinding)
        for i in issuers
    )
    texts = [
        issuers[n % 2].issue_personal(os.urandom(10), now=NOW, ttl=60).text
        for n in range(args.codes)
    ]
    library = scene("library")

    def parse_all() -> None:
        for _ in range(20):
            for text in texts:
                sc1.decode_claims(sc1.parse(text).message.payload)

    def verify_all() -> None:
        for text in texts:
            verify(text, keys=ring, policy=library, now=NOW)

    rows = []
    for name, run, calls in (("parse + claims", parse_all, 20 * len(texts)),
                             ("whole verify", verify_all, len(texts))):
        fast_general = [0.0, 0.0]
        for _ in range(2):  # interleave: fast, general, fast, general
            for i, general in enumerate((False, True)):
                t = _best_per_call(run, calls, args.repeat, general)
                fast_general[i] = t if fast_general[i] == 0 else min(fast_general[i], t)
        fast, general = fast_general
        rows.append((name, fast, general))
    print(f"{'':16} {'fast path':>12} {'general path':>14} {'general/fast':>13}")
    for name, fast, general in rows:
        print(f"{name:16} {fast * 1e6:10.2f}us {general * 1e6:12.2f}us {general / fast:12.2f}x")
    _, vfast, vgeneral = rows[1]
    print(f"fast path saves {(vgeneral - vfast) / vgeneral:.1%} of a whole verification")


if __name__ == "__main__":
    main()
