"""Offline codes end to end (issue 9 item 8, SPEC.md §6.1): a wallet enrolled against a
real ``suishen serve``, a bundle fetched, the server STOPPED, codes made on the "phone"
and decided at a "gate" with no network — then revocation through a re-sync, and the
same offline codes verified online; the gate's decisions uploaded (``suishen gate
upload``) into the rider's history."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from suishen.timefmt import parse_rfc3339, rfc3339
from tests.e2e.harness import ROOT, SUISHEN, Server

pytestmark = pytest.mark.e2e


def cli(*args: str, expect: int | None = 0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(SUISHEN), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False,
                          env=None if env is None else {**os.environ, **env})
    if expect is not None:
        assert done.returncode == expect, (args, done.stdout, done.stderr)
    return done


def gate(folder: Path, *codes: str, at: int | None = None) -> list[dict[str, Any]]:
    extra = [] if at is None else ["--at", rfc3339(at)]
    done = cli("gate", "verify", "--bundle", str(folder / "bundle.cose"),
               "--anchor", str(folder / "anchor.json"), "--scene", "metro",
               "--direction", "in", "--checkpoint", "L2-S12-G3",
               "--state", str(folder / "gate-state.json"), *extra, *codes, expect=None)
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_enroll_fetch_stop_decide_offline_then_revoke_and_resync(tmp_path: Path) -> None:
    data, wallet, gate_dir = tmp_path / "data", tmp_path / "wallet", tmp_path / "gate"
    gate_dir.mkdir()
    data.mkdir()
    srv = Server(data).start()
    try:
        partner = srv.register_partner(["metro"])
        token = srv.citizen("rider-1")["Authorization"].removeprefix("Bearer ")
        enrolled = json.loads(cli("wallet", "enroll", "--url", srv.url, "--token", token,
                                  "--dir", str(wallet), "--name", "e2e phone").stdout)
        assert enrolled["credentials"] == 72  # 3 days of hourly slots
        fetched = json.loads(cli("bundle", "fetch", "--url", srv.url,
                                 "--client-id", partner["client_id"],
                                 "--client-secret", partner["client_secret"],
                                 "--out", str(gate_dir / "bundle.cose")).stdout)
        assert fetched["delta"] is False
        anchor = httpx.get(srv.url + "/v1/trust-anchor")
        assert anchor.status_code == 200
        (gate_dir / "anchor.json").write_text(anchor.text)
    finally:
        srv.stop()

    # --- no server: the phone makes codes, the gate decides them -----------------------
    with pytest.raises(httpx.HTTPError):
        httpx.get(srv.url + "/healthz", timeout=0.5)
    now = int(time.time())
    slot_start = now - now % 3600
    old = None
    if now - slot_start >= 100:  # a code the phone made 100 s ago (in its own slot)
        old = cli("wallet", "code", "--dir", str(wallet), "--at", rfc3339(now - 100)).stdout
    code = cli("wallet", "code", "--dir", str(wallet)).stdout.strip()
    assert code.startswith("SC1:") and len(code) <= 366  # QR version 11-M
    [first] = gate(gate_dir, code)
    assert first["valid"] and first["reason"] == "ok" and first["kind"] == "offline", first
    [again] = gate(gate_dir, code)
    assert again["reason"] == "replayed"
    if old is not None:
        [late] = gate(gate_dir, old.strip())
    else:  # too early in the slot for that: present a fresh code 100 s late instead
        [late] = gate(gate_dir, cli("wallet", "code", "--dir", str(wallet)).stdout.strip(),
                      at=now + 100)
    assert late["reason"] == "expired", late
    inspected = json.loads(cli("bundle", "inspect", str(gate_dir / "bundle.cose")).stdout)
    # the current slot and 24 hours ahead, and in the 90 s after the hour (the grace at
    # the default offline lifetime of 30 s and skew of 30 s) the slot that just ended
    issued = parse_rfc3339(inspected["issued_at"])
    assert inspected["revoked"] == 0
    assert inspected["slots"] == (26 if issued % 3600 < 90 else 25), inspected

    # --- the server is back: online verification, then revocation ----------------------
    first_url, first_port = srv.url, srv.port
    srv = Server(data)
    srv.port, srv.url = first_port, first_url  # where the wallet was enrolled
    srv.start()
    try:
        # the gate's offline decisions go up: re-verified, into the rider's history
        creds = ["--url", srv.url, "--client-id", partner["client_id"],
                 "--client-secret", partner["client_secret"]]
        state = str(gate_dir / "gate-state.json")
        uploaded = json.loads(cli("gate", "upload", "--state", state, *creds).stdout)
        assert uploaded["uploaded"] == 3 and uploaded["accepted"] == 1, uploaded
        assert uploaded["ignored"] + uploaded["errors"] == 2, uploaded  # replayed, expired
        assert json.loads(Path(state).read_text())["log"] == []  # marked: not re-sent
        again = json.loads(cli("gate", "upload", "--state", state, *creds).stdout)
        assert again["uploaded"] == 0
        mine = httpx.get(srv.url + "/v1/me/verifications",
                         headers=srv.citizen("rider-1")).json()["items"]
        assert [(i["offline"], i["result"], i["checkpoint"]) for i in mine] == [
            (True, "ok", "L2-S12-G3")], mine
        metro = srv.partner_headers(partner)
        online = cli("wallet", "code", "--dir", str(wallet)).stdout.strip()
        body = {"code": online, "scene": "metro", "direction": "in", "checkpoint": "L2-S1-G1"}
        ok = httpx.post(srv.url + "/v1/verify", headers=metro, json=body).json()
        assert ok["valid"] and ok["kind"] == "offline" and ok["subject"], ok
        replayed = httpx.post(srv.url + "/v1/verify", headers=metro, json=body).json()
        assert replayed["reason"] == "replayed"

        # the window is full: a refill (the enrolment's token) answers nothing new, or the
        # one slot that entered the window if the hour turned meanwhile
        refilled = json.loads(cli("wallet", "refill", "--dir", str(wallet)).stdout)
        assert refilled["credentials"] in (0, 1), refilled
        citizen = srv.citizen("rider-1")
        [device] = httpx.get(srv.url + "/v1/devices", headers=citizen).json()["devices"]
        assert device["name"] == "e2e phone" and device["status"] == "active"
        gone = httpx.delete(f"{srv.url}/v1/devices/{device['device_id']}", headers=citizen)
        assert gone.status_code == 204
        after = cli("wallet", "code", "--dir", str(wallet)).stdout.strip()
        body["code"] = after
        revoked = httpx.post(srv.url + "/v1/verify", headers=metro, json=body).json()
        assert revoked["reason"] == "revoked", revoked

        # the secret from SUISHEN_CLIENT_SECRET (kept out of the process list); none at
        # all is a usage error, a wrong one (even one starting with "-", written with "=")
        # is refused by the service
        fetch = ["bundle", "fetch", "--url", srv.url, "--client-id", partner["client_id"],
                 "--out", str(gate_dir / "bundle.cose")]
        missing = cli(*fetch, expect=2, env={"SUISHEN_CLIENT_SECRET": ""})
        assert "SUISHEN_CLIENT_SECRET" in missing.stderr, missing.stderr
        wrong = cli(*fetch, "--client-secret=-not-the-secret", expect=1)
        assert "invalid_client" in wrong.stderr or "401" in wrong.stderr, wrong.stderr
        synced_at = int(time.time())
        resynced = json.loads(cli(*fetch, env={
            "SUISHEN_CLIENT_SECRET": partner["client_secret"]}).stdout)
        assert resynced["delta"] is True and resynced["version"] > fetched["version"]
    finally:
        srv.stop()
    [decision] = gate(gate_dir, cli("wallet", "code", "--dir", str(wallet)).stdout.strip())
    assert decision["reason"] == "revoked", decision
    inspected = json.loads(cli("bundle", "inspect", str(gate_dir / "bundle.cose")).stdout)
    # One revoked credential (the device's) in every slot of the horizon at the resync:
    # the current slot and the next 24 hours. When an hour began between the first
    # fetch and the resync, the gate still holds the slot that ended (its codes can be
    # fresh for a little while) and the delta flips only the horizon's slots, so that
    # one slot may show none (seen at 15:00 UTC on 2026-12-03: 25 revoked of 26 slots).
    current = synced_at - synced_at % 3600
    by_slot = {parse_rfc3339(slot): n for slot, n in inspected["revoked_by_slot"].items()}
    assert sorted(s for s in by_slot if s >= current) == list(
        range(current, current + 25 * 3600, 3600)), by_slot
    assert all(n == 1 for s, n in by_slot.items() if s >= current), by_slot
    assert all(n in (0, 1) and s == current - 3600 for s, n in by_slot.items()
               if s < current), by_slot
