"""Golden and hostile SC1 codes from tests/vectors/, each run through the partner SDK
(``suishen.sdk.Verifier.from_jwks``); see tests/vectors/README.md for the file format."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from suishen.codecs import cose, sc1
from suishen.keys.algorithms import Alg, PrivateKey, b64u_decode
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing
from suishen.keys.keyset import KeySet
from suishen.keys.signer import SoftwareSigner
from suishen.sdk import Reason, Verifier
from suishen.verifiers.core import verify
from suishen.verifiers.memory import InMemoryReplay
from suishen.verifiers.policy import SCENES, AcceptKinds, Presentation, scene

VECTORS = Path(__file__).resolve().parent / "vectors"
FILES = sorted(
    p.relative_to(VECTORS).as_posix()
    for folder in ("golden", "negative")
    for p in (VECTORS / folder).glob("*.json")
)
KEYS: dict[str, Any] = json.loads((VECTORS / "keys.json").read_text(encoding="utf-8"))


def load(rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / rel).read_text(encoding="utf-8"))
    return data


@functools.cache
def make_vectors() -> ModuleType:
    """tests/vectors/make_vectors.py, imported from its path (it is a script)."""
    name = "suishen_tests_make_vectors"
    spec = importlib.util.spec_from_file_location(name, VECTORS / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_there_are_vectors() -> None:
    # -7/-8 as the issuer writes them, -9/-19 (RFC 9864) as verifiers also accept them
    assert len([f for f in FILES if f.startswith("golden/")]) == 4
    assert len([f for f in FILES if f.startswith("negative/")]) >= 30


@pytest.mark.parametrize("rel", FILES)
def test_vector(rel: str) -> None:
    vector = load(rel)
    assert set(vector) >= {"description", "code", "now", "scene", "direction",
                           "expected_reason"}
    verifier = Verifier.from_jwks(KEYS["jwks"][vector.get("jwks", "default")])
    for prior in vector.get("prior", []):
        earlier = verifier.verify(vector["code"], scene=prior["scene"], now=prior["now"],
                                  direction=prior["direction"],
                                  checkpoint=prior.get("checkpoint"))
        assert earlier.reason == Reason(prior["expected_reason"])
    decision = verifier.verify(vector["code"], scene=vector["scene"], now=vector["now"],
                               direction=vector["direction"],
                               checkpoint=vector.get("checkpoint"))
    assert decision.reason == Reason(vector["expected_reason"]), vector["description"]
    assert decision.valid is (decision.reason is Reason.OK)
    # The SDK never sees the citizen's handle: it has no blinding secrets.
    assert decision.subject_handle is None
    name = Path(rel).stem
    if rel.startswith("negative/"):
        assert name.startswith(vector["expected_reason"]), "file name must say the reason"


def test_every_reason_has_a_vector_but_scene_not_allowed() -> None:
    reasons = {load(rel)["expected_reason"] for rel in FILES}
    # trust_expired is a gate's judgement of its own bundle, passback and no_entry of a
    # citizen's journey state (verifiers/transit.py): none is a property of a code.
    not_of_a_code = {"scene_not_allowed", "trust_expired", "passback", "no_entry"}
    assert reasons == {r.value for r in Reason} - not_of_a_code
    readme = (VECTORS / "README.md").read_text(encoding="utf-8")
    assert "Why there is no `scene_not_allowed` vector" in readme


def test_vectors_are_reproducible_from_keys_json() -> None:
    module = make_vectors()
    files = module.build(KEYS)
    assert sorted(files) == FILES
    for rel, content in files.items():
        assert module.dump(content) == (VECTORS / rel).read_text(encoding="utf-8"), rel


# --- keys.json ---------------------------------------------------------------------------
def kek() -> KeyEncryptionKey:
    return KeyEncryptionKey.from_text(KEYS["kek"])


def service_keyset() -> KeySet:
    return KeySet.from_dict(KEYS["keyset"])


def test_keys_json_is_consistent() -> None:
    keyset = service_keyset()
    keyset.check_kek(kek())  # every sealed secret opens
    module = make_vectors()
    assert keyset.jwks(now=module.T0) == KEYS["jwks"]["default"]
    revoked = keyset.revoke(keyset.active().kid, now=module.T0 - 600)
    assert revoked.jwks(now=module.T0) == KEYS["jwks"]["es256_revoked"]
    ring = keyset.keyring(kek())
    trusted = {n: e for n, e in KEYS["private_keys"].items() if e["trusted"]}
    assert {e["kid"] for e in trusted.values()} == {k.kid.hex() for k in ring}
    for entry in KEYS["private_keys"].values():
        private = PrivateKey.from_raw(Alg.parse(entry["alg"]), b64u_decode(entry["d"]))
        assert private.public().kid_bytes().hex() == entry["kid"]
        key = ring.get(bytes.fromhex(entry["kid"]))
        if entry["trusted"]:
            assert key is not None
            assert key.public.raw == private.public().raw
            assert key.blinding == b64u_decode(entry["blinding"])
        else:
            assert key is None
    # The service signs with ES256 by default; the EdDSA key is retired, still verifying.
    assert keyset.active().alg is Alg.ES256


@pytest.mark.parametrize("rel", [f for f in FILES if f.startswith("golden/")])
def test_golden_code_unblinds_only_at_the_service(rel: str) -> None:
    vector = load(rel)
    policy = scene(vector["scene"])
    at_service = verify(vector["code"], keys=service_keyset().keyring(kek()), policy=policy,
                        now=vector["now"])
    assert at_service.reason is Reason.OK
    assert at_service.subject_handle == bytes.fromhex(vector["subject_handle"])
    assert at_service.claims is not None
    assert (at_service.claims.iat, at_service.claims.exp) == (vector["iat"], vector["exp"])
    assert at_service.claims.cti.hex() == vector["cti"]
    assert at_service.kid == vector["kid"]
    for ring in (service_keyset().keyring(), KeyRing.from_jwks(KEYS["jwks"]["default"])):
        elsewhere = verify(vector["code"], keys=ring, policy=policy, now=vector["now"])
        assert elsewhere.reason is Reason.OK
        assert elsewhere.subject_handle is None
    # The clear handle is nowhere in the code.
    raw = sc1.from_text(vector["code"])
    assert bytes.fromhex(vector["subject_handle"]) not in raw


@pytest.mark.parametrize("name", ["es256", "eddsa"])
def test_golden_codes_match_the_issuer(name: str) -> None:
    """The generator builds codes like the Issuer does: byte for byte for EdDSA
    (deterministic signatures), everything but the signature for ES256."""
    module = make_vectors()
    entry = KEYS["private_keys"][name]
    vector = load(f"golden/ok_{name}.json")
    issuer = Issuer(
        signer=SoftwareSigner(
            PrivateKey.from_raw(Alg.parse(entry["alg"]), b64u_decode(entry["d"])),
            bytes.fromhex(entry["kid"]),
        ),
        blinding=b64u_decode(entry["blinding"]),
    )
    issued = issuer.issue_personal(bytes.fromhex(vector["subject_handle"]), now=vector["iat"],
                                   ttl=module.TTL, cti=bytes.fromhex(vector["cti"]))
    ours = cose.decode_sign1(sc1.from_text(issued.text))
    theirs = cose.decode_sign1(sc1.from_text(vector["code"]))
    assert (ours.protected_raw, ours.payload) == (theirs.protected_raw, theirs.payload)
    if name == "eddsa":
        assert issued.text == vector["code"]
    verifier = Verifier.from_jwks(KEYS["jwks"]["default"])
    assert verifier.verify(issued.text, scene="library", now=vector["now"]).valid


# --- shared replay memory (SDK) --------------------------------------------------------------
def test_sdk_verifiers_can_share_one_replay_memory() -> None:
    # Two gates of one station sharing a replay memory: the second presentation is a
    # replay. (An *empty* InMemoryReplay is falsy because it has __len__; the SDK once
    # replaced it with a fresh one, silently splitting single use.)
    vector = load("golden/ok_es256.json")
    shared = InMemoryReplay()
    gate_a = Verifier.from_jwks(KEYS["jwks"]["default"], replay=shared)
    gate_b = Verifier.from_jwks(KEYS["jwks"]["default"], replay=shared)
    assert gate_a.replay is shared and gate_b.replay is shared
    first = gate_a.verify(vector["code"], scene="metro", direction="in", now=vector["now"])
    second = gate_b.verify(vector["code"], scene="metro", direction="in", now=vector["now"])
    assert (first.reason, second.reason) == (Reason.OK, Reason.REPLAYED)


def test_sdk_accepts_jwks_as_json_text() -> None:
    vector = load("golden/ok_eddsa.json")
    for jwks in (json.dumps(KEYS["jwks"]["default"]),
                 json.dumps(KEYS["jwks"]["default"]).encode()):
        verifier = Verifier.from_jwks(jwks)
        assert verifier.verify(vector["code"], scene="library", now=vector["now"]).valid


# --- scene_not_allowed: not constructible as a code yet (see the README) -------------------
def test_accept_kinds_rule() -> None:
    rule = AcceptKinds(frozenset({"personal"}))
    assert rule.check(Presentation("personal", "hospital")) is None
    assert rule.check(Presentation("offline", "hospital")) is Reason.SCENE_NOT_ALLOWED
    assert rule.check(Presentation("enterprise", "hospital")) is Reason.SCENE_NOT_ALLOWED
    assert rule.check(Presentation("", "hospital")) is Reason.SCENE_NOT_ALLOWED


@pytest.mark.parametrize("name", sorted(SCENES))
def test_scene_table_kinds(name: str) -> None:
    policy = SCENES[name]
    assert policy.check(Presentation("personal", name)) is None
    offline = policy.check(Presentation("offline", name))
    if name in ("hospital", "pharmacy"):
        assert offline is Reason.SCENE_NOT_ALLOWED  # medical identity: server-signed only
    else:
        assert offline is None
    assert policy.check(Presentation("static-venue", name)) is Reason.SCENE_NOT_ALLOWED
