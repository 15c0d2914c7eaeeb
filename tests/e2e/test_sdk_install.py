"""The SDK installs alone (SPEC.md section 2): a fresh virtual environment gets the wheel
built from this working tree without extras, holds none of the server stack, and
verifies the golden codes offline through the SDK API and the ``suishen`` command.

The wheel is built from a copy of the tree (so the build leaves no ``build/`` or
``*.egg-info`` behind) without build isolation, with the setuptools and wheel of the
test environment; the SDK's dependencies (cryptography, cbor2) come from its hashed lock,
``requirements/sdk.txt``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from suishen.timefmt import rfc3339

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"
# What the server extra brings and the SDK must not (import names).
SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "asyncpg", "redis", "pydantic",
                  "aiosqlite", "msgspec", "jwt", "httpx", "prometheus_client")
SERVER_DISTRIBUTIONS = ("fastapi", "starlette", "uvicorn", "asyncpg", "redis", "pydantic",
                        "pydantic-core", "aiosqlite", "msgspec", "pyjwt", "httpx",
                        "prometheus-client", "hiredis")
# The wheel's inputs, as the Dockerfile copies them.
SOURCES = ("pyproject.toml", "README.md", "src", "app", "codecs", "keys", "verifiers", "sdk")

CHECK_SDK = r"""
import importlib.metadata, importlib.util, json, sys
import suishen
from suishen.sdk import Verifier

server_modules, server_dists, cases = json.loads(sys.argv[1])
present = [m for m in server_modules if importlib.util.find_spec(m) is not None]
installed = sorted(
    (d.metadata["Name"] or "").lower().replace("_", "-") for d in importlib.metadata.distributions()
)
results = []
for case in cases:
    verifier = Verifier.from_jwks(case["jwks"])
    decision = verifier.verify(case["code"], scene=case["scene"], now=case["now"],
                               direction=case["direction"])
    results.append([decision.valid, decision.reason.value, decision.kid])

# An offline code decided at a gate from a trust bundle, with the SDK alone.
import os
from suishen.codecs import bundle as codec
from suishen.keys import bundle as signing, offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.sdk.client import PartnerClient  # noqa: F401 - importable without the server
from suishen.sdk.gate import Gate
from suishen.sdk.wallet import Wallet  # noqa: F401
T0 = 1_800_000_000
key, anchor, device = (PrivateKey.generate(a) for a in (Alg.ES256, Alg.EDDSA, Alg.ES256))
pub = key.public()
credential = koff.issue_credential(key, pub.kid_bytes(), os.urandom(32), handle=b"\x01" * 10,
                                   nbf=T0, exp=T0 + 3600, device=device.public(),
                                   status_index=70_000)
bundle = signing.build(version=1, now=T0, keys=(codec.BundleKey(pub.kid_bytes(), -7, pub.raw,
                       T0 - 60, None, "active"),), slot_seconds=3600,
                       list_sizes={T0: 1 << 17}, revoked={})
gate = Gate.with_anchors({anchor.public().kid_bytes(): anchor.public()})
gate.load_bundle(signing.sign(anchor, anchor.public().kid_bytes(), bundle))
code = koff.make_code(device, credential, iat=T0 + 5)
offline = [gate.verify(code, scene="metro", direction="in", now=T0 + 6).reason,
           gate.verify(code, scene="metro", direction="in", now=T0 + 7).reason]
print(json.dumps({"importable": present, "installed": installed, "offline": offline,
                  "suishen_file": suishen.__file__, "results": results}))
"""


def _clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell that activated ``venv``, with nothing of ours in it."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("SUISHEN_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: list[str | Path], *, env: dict[str, str] | None = None, cwd: Path,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _must(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"{result.args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def sdk_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding only ``pip install suishen`` (no extras)."""
    base = tmp_path_factory.mktemp("sdk-install")
    tree = base / "tree"
    tree.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(source, tree / name)
    wheels = base / "wheels"
    _must(_run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                "--no-build-isolation", "--disable-pip-version-check", "-w", wheels, tree],
               cwd=base))
    (wheel,) = wheels.glob("suishen-*.whl")
    venv = base / "venv"
    _must(_run([sys.executable, "-m", "venv", venv], cwd=base))
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--quiet"]
    # The SDK's lock first (what a gate vendor pins), then the wheel *with* dependency
    # resolution: had its metadata asked for more than the lock holds, pip would fetch it
    # here and the assertions below would see it.
    _must(_run([*pip, "--require-hashes", "-r", ROOT / "requirements" / "sdk.txt"],
               env=_clean_env(venv), cwd=base, timeout=300))
    _must(_run([*pip, wheel], env=_clean_env(venv), cwd=base, timeout=300))
    return venv


def _golden_cases() -> list[dict[str, object]]:
    keys = json.loads((VECTORS / "keys.json").read_text())
    cases = []
    for path in sorted((VECTORS / "golden").glob("*.json")):
        vector = json.loads(path.read_text())
        cases.append({"code": vector["code"], "scene": vector["scene"], "now": vector["now"],
                      "direction": vector["direction"], "kid": vector["kid"],
                      "jwks": keys["jwks"][vector["jwks"]]})
    assert len(cases) >= 2  # one per algorithm
    return cases


def test_sdk_alone_has_no_server_stack_and_verifies_offline(sdk_venv: Path) -> None:
    cases = _golden_cases()
    payload = json.dumps([SERVER_MODULES, SERVER_DISTRIBUTIONS, cases])
    out = json.loads(_must(_run([sdk_venv / "bin" / "python", "-c", CHECK_SDK, payload],
                                env=_clean_env(sdk_venv), cwd=sdk_venv)).stdout)
    assert out["importable"] == []
    assert not set(out["installed"]) & set(SERVER_DISTRIBUTIONS), out["installed"]
    assert {"suishen", "cryptography", "cbor2"} <= set(out["installed"])
    # the installed copy, not this working tree
    assert Path(out["suishen_file"]).is_relative_to(sdk_venv)
    assert out["results"] == [[True, "ok", case["kid"]] for case in cases]
    assert out["offline"] == ["ok", "replayed"]  # the offline gate works with the SDK alone


def test_sdk_alone_command_line_verifies_offline(sdk_venv: Path, tmp_path: Path) -> None:
    env = _clean_env(sdk_venv)
    for case in _golden_cases():
        jwks = tmp_path / "jwks.json"
        jwks.write_text(json.dumps(case["jwks"]))
        now = case["now"]
        assert isinstance(now, int)
        result = _run(["suishen", "codes", "verify", "--jwks", jwks, "--scene", case["scene"],
                       "--at", rfc3339(now), case["code"]], env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        decision = json.loads(result.stdout)
        assert decision["valid"] is True
        assert decision["reason"] == "ok"
        assert decision["kid"] == case["kid"]
        # one minute past its lifetime and skew the same code is refused: exit 1
        late = _run(["suishen", "codes", "verify", "--jwks", jwks, "--scene", case["scene"],
                     "--at", rfc3339(now + 3600), case["code"]], env=env, cwd=tmp_path)
        assert late.returncode == 1, late.stderr
        assert json.loads(late.stdout)["reason"] == "expired"


@pytest.mark.parametrize(("command", "extra"), [
    (["serve"], "server"),
    (["migrate"], "server"),
])
def test_sdk_alone_server_commands_name_the_extra(sdk_venv: Path, tmp_path: Path,
                                                  command: list[str], extra: str) -> None:
    result = _run(["suishen", *command], env=_clean_env(sdk_venv), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("suishen: error: ")
    assert f"pip install 'suishen[{extra}]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sdk_alone_qr_image_names_the_extra(sdk_venv: Path, tmp_path: Path) -> None:
    env = _clean_env(sdk_venv)
    _must(_run(["suishen", "keys", "init", "--dir", tmp_path / "keys"], env=env, cwd=tmp_path))
    text = _must(_run(["suishen", "codes", "issue", "--dir", tmp_path / "keys",
                       "--sub", "00" * 10], env=env, cwd=tmp_path)).stdout
    assert text.startswith("SC1:")
    png = _run(["suishen", "codes", "issue", "--dir", tmp_path / "keys", "--sub", "00" * 10,
                "--format", "png", "--out", tmp_path / "code.png"], env=env, cwd=tmp_path)
    assert png.returncode == 1
    assert "Traceback" not in png.stderr
    assert "pip install 'suishen[qr]'" in png.stderr
    assert not (tmp_path / "code.png").exists()
