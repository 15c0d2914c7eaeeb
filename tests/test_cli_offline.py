"""The offline commands (app/cli_offline.py) without a server: `wallet code`,
`bundle inspect`, `gate verify` (text and QR images, --state, exit codes)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from suishen.app.cli import main
from suishen.codecs import bundle as codec
from suishen.keys import bundle as signing
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey, b64u
from suishen.sdk.gate import read_bundle_file, write_bundle_file
from suishen.sdk.wallet import Wallet
from suishen.timefmt import rfc3339

SLOT = 3600
T0 = 1_800_000_000


class Service:
    url = "http://service.invalid"

    def __init__(self) -> None:
        self.key = PrivateKey.generate(Alg.ES256)
        self.anchor = PrivateKey.generate(Alg.EDDSA)
        self.version = 0

    def register(self, name: str, keys: list[dict[str, str]]) -> dict[str, Any]:
        creds = []
        for i, jwk in enumerate(keys):
            raw = koff.issue_credential(
                self.key, self.key.public().kid_bytes(), os.urandom(32), handle=b"\x01" * 10,
                nbf=T0 + i * SLOT, exp=T0 + (i + 1) * SLOT, device=PublicKey.from_jwk(jwk),
                status_index=100 + i,
            )
            creds.append({"credential": b64u(raw)})
        return {"device_id": "d1", "credentials": creds}

    def signed_bundle(self, now: int, revoked: dict[int, set[int]] | None = None) -> bytes:
        self.version += 1
        pub = self.key.public()
        keys = (codec.BundleKey(pub.kid_bytes(), pub.alg.cose, pub.raw, T0 - 60, None, "active"),)
        bundle = signing.build(
            version=self.version, now=now, keys=keys, slot_seconds=SLOT,
            list_sizes=dict.fromkeys(signing.horizon_slots(now, SLOT), 4096),
            revoked=revoked or {},
        )
        return signing.sign(self.anchor, self.anchor.public().kid_bytes(), bundle)

    def anchor_jwks(self) -> dict[str, Any]:
        pub = self.anchor.public()
        return {"keys": [{**pub.jwk_members(), "kid": pub.kid_bytes().hex(), "use": "sig",
                          "alg": "EdDSA"}]}


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    service = Service()
    wallet_dir = tmp_path / "wallet"
    Wallet(wallet_dir).enroll(service, count=3)  # type: ignore[arg-type]
    bundle = tmp_path / "bundle.cbor"
    write_bundle_file(bundle, [service.signed_bundle(T0)])
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps(service.anchor_jwks()))
    return {"service": service, "wallet": wallet_dir, "bundle": bundle, "anchor": anchor,
            "tmp": tmp_path}


def at(t: int) -> str:
    return rfc3339(t)


def gate_args(w: dict[str, Any], *extra: str, scene: str = "metro") -> list[str]:
    return ["gate", "verify", "--bundle", str(w["bundle"]), "--anchor", str(w["anchor"]),
            "--scene", scene, *extra]


def test_wallet_code_then_gate_verify_then_replay(world: dict[str, Any], capsys) -> None:
    assert main(["wallet", "code", "--dir", str(world["wallet"]), "--at", at(T0 + 5)]) == 0
    code = capsys.readouterr().out.strip()
    assert code.startswith("SC1:") and len(code) <= 366
    state = str(world["tmp"] / "gate.json")
    args = gate_args(world, "--direction", "in", "--checkpoint", "L2-S12-G3", "--state", state,
                     "--at", at(T0 + 7))
    assert main([*args, code]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["valid"], line["reason"], line["kind"]) == (True, "ok", "offline")
    assert line["checkpoint"] == "L2-S12-G3" and line["scene"] == "metro"
    assert main([*args, code]) == 1  # the state file remembers the first use
    assert json.loads(capsys.readouterr().out)["reason"] == "replayed"


def test_gate_reads_codes_from_qr_images(world: dict[str, Any], capsys) -> None:
    png = world["tmp"] / "code.png"
    svg = world["tmp"] / "code.svg"
    argv = ["wallet", "code", "--dir", str(world["wallet"]), "--at", at(T0 + 5)]
    assert main([*argv, "--format", "png", "--out", str(png)]) == 0
    assert main([*argv, "--format", "svg", "--out", str(svg)]) == 0
    assert svg.read_bytes().startswith(b"<?xml")
    assert main([*gate_args(world, "--at", at(T0 + 6)), str(png)]) == 0
    assert json.loads(capsys.readouterr().out)["valid"] is True


def test_one_line_per_input_and_exit_1_when_any_is_invalid(world: dict[str, Any], capsys) -> None:
    main(["wallet", "code", "--dir", str(world["wallet"]), "--at", at(T0 + 5)])
    code = capsys.readouterr().out.strip()
    assert main([*gate_args(world, "--scene", "library", "--at", at(T0 + 6)), code, "SC1:XX",
                 "HC1:ABC"]) == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["reason"] for x in lines] == ["ok", "malformed", "unsupported_version"]


def test_expired_and_revoked_at_the_gate(world: dict[str, Any], capsys) -> None:
    main(["wallet", "code", "--dir", str(world["wallet"]), "--at", at(T0 + 5)])
    code = capsys.readouterr().out.strip()
    assert main([*gate_args(world, "--at", at(T0 + 200)), code]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "expired"
    service: Service = world["service"]
    write_bundle_file(world["bundle"], [service.signed_bundle(T0, revoked={T0: {100}})])
    assert main([*gate_args(world, "--at", at(T0 + 6)), code]) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "revoked"


def test_bundle_inspect_needs_no_anchor(world: dict[str, Any], capsys) -> None:
    service: Service = world["service"]
    write_bundle_file(world["bundle"], [service.signed_bundle(T0, revoked={T0: {1, 2}})])
    assert main(["bundle", "inspect", str(world["bundle"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == service.version
    assert report["issued_at"] == at(T0) and report["expires_at"] == at(T0 + 86_400)
    assert report["revoked"] == 2 and report["slots"] == 25
    assert report["keys"][0]["kid"] == service.key.public().kid_bytes().hex()


def test_a_bundle_signed_by_another_anchor_is_refused(world: dict[str, Any], capsys) -> None:
    impostor = Service()
    impostor.key = world["service"].key
    write_bundle_file(world["bundle"], [impostor.signed_bundle(T0)])
    assert main([*gate_args(world, "--at", at(T0 + 6)), "SC1:X"]) == 1
    assert "trust anchor" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--scene", "nowhere"], 2),
        (["--at", "yesterday"], 2),
        (["--direction", "sideways"], 2),
    ],
)
def test_usage_errors_exit_2(world: dict[str, Any], argv: list[str], status: int) -> None:
    base = ["gate", "verify", "--bundle", str(world["bundle"]), "--anchor",
            str(world["anchor"]), "--scene", "metro"]
    assert main([*base, *argv, "SC1:X"]) == status


def test_unreadable_anchor_and_bundle(world: dict[str, Any], capsys) -> None:
    bad = world["tmp"] / "bad.json"
    bad.write_text("{not json")
    args = ["gate", "verify", "--bundle", str(world["bundle"]), "--anchor", str(bad),
            "--scene", "metro", "SC1:X"]
    assert main(args) == 2
    junk = world["tmp"] / "junk.cbor"
    junk.write_bytes(b"\xff\x00garbage")
    args = ["gate", "verify", "--bundle", str(junk), "--anchor", str(world["anchor"]),
            "--scene", "metro", "SC1:X"]
    assert main(args) == 1
    assert "not a bundle file" in capsys.readouterr().err
    assert main(["bundle", "inspect", str(junk)]) == 1


def test_wallet_code_without_credentials(world: dict[str, Any], capsys) -> None:
    assert main(["wallet", "code", "--dir", str(world["wallet"]), "--at", at(T0 + 99 * SLOT)]) == 1
    assert "refill" in capsys.readouterr().err
    assert main(["wallet", "code", "--dir", str(world["tmp"] / "none")]) == 2


def test_bundle_file_chain_round_trip(world: dict[str, Any]) -> None:
    chain = read_bundle_file(world["bundle"])
    assert len(chain) == 1 and chain[0][:1] == b"\xd2"
