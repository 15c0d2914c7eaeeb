"""Trust-bundle size at city scale (SPEC.md §6.1, issue 9 item 4).

Builds, with the project's own codec and signing code, the signed bundle a gate needs
for the next 24 hours and a signed one-minute delta carrying device revocations, for a
city of ``--citizens`` with one device each, hourly credentials for ``--days`` days and
``--revoked`` of them revoked or suspended, and prints their sizes against the budgets
(bundle ≤ 2 MB, delta ≤ 16 KB) and the build time::

    .venv/bin/python benchmarks/bundle_size.py                # 34 million citizens
    .venv/bin/python benchmarks/bundle_size.py --citizens 100000   # a quick run

Model: each slot has its own status list of ``ceil(citizens × 1.25)`` indices (room to
allocate random indices without long searches); a revoked or suspended citizen has the
bit of their credential set in every slot; the gate's horizon is the slot it is in plus
the next 24 (25 lists: it may be anywhere within the current hour). A device
revocation flips one index in each of the horizon's slots. The largest bundle is the one
built in the first seconds after the hour: it also holds the slot that just ended, for
the codes made at its end (``keys.bundle.ended_grace``, 90 s at the defaults): 26 lists,
reported as ``bundle_bytes_after_the_hour``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from dataclasses import replace

from suishen.codecs import bundle as codec
from suishen.keys import bundle as signing
from suishen.keys.algorithms import Alg, PrivateKey

BUNDLE_BUDGET = 2 * 1000 * 1000
DELTA_BUDGET = 16 * 1000
SLOT = 3600
T0 = 1_800_000_000


def keys_section(n: int = 3) -> tuple[codec.BundleKey, ...]:
    out = []
    for i in range(n):
        key = PrivateKey.generate(Alg.EDDSA)
        out.append(
            codec.BundleKey(
                kid=key.public().kid_bytes(),
                alg=key.alg.cose,
                pub=key.public().raw,
                nbf=T0 - 86_400 * (i + 1),
                exp=None if i == 0 else T0 + 86_400 * 3,
                state="active" if i == 0 else "retired",
            )
        )
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=34_000_000)
    parser.add_argument("--revoked", type=float, default=0.001, help="fraction revoked")
    parser.add_argument("--days", type=int, default=3, help="days of credentials issued")
    parser.add_argument("--horizon-hours", type=int, default=24)
    parser.add_argument("--delta-revocations", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - reproducible synthetic data, not secrets
    size = math.ceil(args.citizens * 1.25)
    revoked = round(args.citizens * args.revoked)
    anchor = PrivateKey.generate(Alg.EDDSA)
    anchor_kid = anchor.public().kid_bytes()
    keys = keys_section()

    slot_starts = signing.horizon_slots(T0 + SLOT // 2, SLOT, args.horizon_hours * SLOT)
    revoked_by_slot = {slot: rng.sample(range(size), revoked) for slot in slot_starts}
    started = time.perf_counter()
    full = signing.build(
        version=1000,
        now=T0 + SLOT // 2,  # mid-slot: the current slot and the next 24 are needed
        keys=keys,
        slot_seconds=SLOT,
        list_sizes=dict.fromkeys(slot_starts, size),
        revoked=revoked_by_slot,
        horizon=args.horizon_hours * SLOT,
    )
    signed_full = signing.sign(anchor, anchor_kid, full)
    build_seconds = time.perf_counter() - started

    # Just after the hour: the slot that ended is still in the bundle (its codes made
    # in the last seconds are fresh for up to the grace), on top of the same horizon.
    grace = signing.ended_grace(skew=30, offline_lifetime=30)
    after_slots = signing.horizon_slots(T0 + 5, SLOT, args.horizon_hours * SLOT, grace)
    for slot in after_slots:
        if slot not in revoked_by_slot:
            revoked_by_slot[slot] = rng.sample(range(size), revoked)
    after_hour = signing.build(
        version=999, now=T0 + 5, keys=keys, slot_seconds=SLOT,
        list_sizes=dict.fromkeys(after_slots, size), revoked=revoked_by_slot,
        horizon=args.horizon_hours * SLOT, keep_ended=grace,
    )
    signed_after = signing.sign(anchor, anchor_kid, after_hour)

    # One minute later: the same slots, plus a device revocation flips one index of
    # each device's credential in every slot the gate holds.
    later = replace(full, version=1001, issued_at=full.issued_at + 60,
                    refresh_after=full.refresh_after + 60, expires_at=full.expires_at + 60)
    flips = {slot: rng.sample(range(size), args.delta_revocations) for slot in slot_starts}
    delta = signing.delta(later, since=full, flips=flips)
    signed_delta = signing.sign(anchor, anchor_kid, delta)
    started = time.perf_counter()
    opened = signing.open_signed(signed_full, {anchor_kid: anchor.public()})
    sum(1 for _ in opened.lists)
    verify_seconds = time.perf_counter() - started

    report = {
        "citizens": args.citizens,
        "credentials_issued_per_citizen": args.days * 24,
        "revoked_or_suspended": revoked,
        "list_size_per_slot": size,
        "slots_in_gate_bundle": len(full.lists),
        "bundle_bytes": len(signed_full),
        "bundle_budget_bytes": BUNDLE_BUDGET,
        "bundle_ratio_to_budget": round(len(signed_full) / BUNDLE_BUDGET, 3),
        "bytes_per_revoked_credential": round(len(signed_full) / (revoked * len(full.lists)), 2),
        "slots_after_the_hour": len(after_hour.lists),
        "bundle_bytes_after_the_hour": len(signed_after),
        "bundle_after_the_hour_ratio_to_budget": round(len(signed_after) / BUNDLE_BUDGET, 3),
        "delta_device_revocations": args.delta_revocations,
        "delta_bytes": len(signed_delta),
        "delta_budget_bytes": DELTA_BUDGET,
        "delta_ratio_to_budget": round(len(signed_delta) / DELTA_BUDGET, 3),
        "build_seconds": round(build_seconds, 2),
        "gate_verify_decode_seconds": round(verify_seconds, 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
