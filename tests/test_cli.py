"""The ``suishen`` command line: keys and codes commands, exit statuses, one-line errors.

Most tests run ``main([...])`` in process and read stdout/stderr through ``capsys``; a
few run the installed console script to check what a shell sees (exit statuses, no
traceback, no FastAPI import at start). The commands read the real clock, so the tests
judge times relative to what the commands print rather than pinning them.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from suishen.app import cli
from suishen.app.cli import main
from suishen.app.keydir import KEK_ENV, KeyDirectory
from suishen.codecs import sc1
from suishen.keys.algorithms import Alg
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import DEFAULT_ALG, KeySet
from suishen.timefmt import parse_rfc3339

HANDLE = "00112233445566778899"
KEK_A = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
KEK_B = base64.urlsafe_b64encode(bytes(range(1, 33))).decode()  # padded: also accepted
SUISHEN_SCRIPT = Path(sys.executable).with_name("suishen")


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def assert_one_line_error(result: Result, status: int, *fragments: str) -> None:
    assert result.status == status, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("suishen: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SUISHEN_"):
            monkeypatch.delenv(name)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):
    def run(*args: str) -> Result:
        capsys.readouterr()
        status = main(list(args))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run


@pytest.fixture
def keydir(tmp_path: Path, run) -> Path:
    """A key directory initialised with a development KEK in DIR/kek."""
    path = tmp_path / "keys"
    assert run("keys", "init", "--dir", str(path)).status == 0
    return path


@pytest.fixture
def jwks_file(keydir: Path, run, tmp_path: Path) -> Path:
    result = run("keys", "jwks", "--dir", str(keydir))
    assert result.status == 0
    path = tmp_path / "jwks.json"
    path.write_text(result.out)
    return path


def issue(run, keydir: Path, *extra: str) -> str:
    result = run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE, *extra)
    assert result.status == 0, result
    return result.out.strip()


def listed(run, keydir: Path) -> list[dict]:
    result = run("keys", "list", "--dir", str(keydir), "--json")
    assert result.status == 0, result
    return result.json()["keys"]


# --- keys init ------------------------------------------------------------------------
def test_init_creates_a_private_directory_with_a_development_kek(tmp_path: Path, run) -> None:
    path = tmp_path / "new" / "keys"
    result = run("keys", "init", "--dir", str(path))
    assert result.status == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert stat.S_IMODE((path / "keyset.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((path / "kek").stat().st_mode) == 0o600
    assert "WARNING" in result.err and "DEVELOPMENT" in result.err
    assert KEK_ENV in result.err
    assert sorted(p.name for p in path.iterdir()) == ["kek", "keyset.json"]  # no temp files
    keys = listed(run, path)
    assert len(keys) == 1
    assert keys[0]["status"] == "active"
    assert keys[0]["alg"] == DEFAULT_ALG.value == "ES256"
    assert keys[0]["kid"] in result.out


def test_init_with_kek_from_the_environment_writes_no_kek_file(
    tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEK_ENV, KEK_A)
    result = run("keys", "init", "--dir", str(tmp_path / "k"), "--alg", "EdDSA")
    assert result.status == 0
    assert result.err == ""
    assert not (tmp_path / "k" / "kek").exists()
    assert listed(run, tmp_path / "k")[0]["alg"] == "EdDSA"


def test_init_refuses_to_overwrite_a_key_set(keydir: Path, run) -> None:
    before = (keydir / "keyset.json").read_bytes()
    result = run("keys", "init", "--dir", str(keydir))
    assert_one_line_error(result, 1, "already exists")
    assert (keydir / "keyset.json").read_bytes() == before


def test_init_rejects_an_unknown_algorithm(tmp_path: Path, run) -> None:
    result = run("keys", "init", "--dir", str(tmp_path / "k"), "--alg", "none")
    assert_one_line_error(result, 2, "--alg")
    assert not (tmp_path / "k").exists()


def test_private_key_material_never_appears_in_clear(keydir: Path) -> None:
    directory = KeyDirectory(keydir)
    keyset = directory.require()
    kek = directory.kek().kek
    issuer = keyset.issuer(kek)
    secrets = [issuer.signer.private.raw, issuer.blinding, keyset.pairwise_secret(kek)]
    text = (keydir / "keyset.json").read_text()
    raw = (keydir / "keyset.json").read_bytes()
    for secret in secrets:
        assert secret not in raw
        for form in (
            secret.hex(),
            secret.hex().upper(),
            base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode().rstrip("="),
            base64.b64encode(secret).decode().rstrip("="),
        ):
            assert form not in text
    assert (keydir / "kek").read_text().strip() not in text


# --- keys list / rotate / revoke / jwks --------------------------------------------------
def test_list_prints_a_table(keydir: Path, run) -> None:
    result = run("keys", "list", "--dir", str(keydir))
    assert result.status == 0
    header, *rows = result.out.strip().splitlines()
    assert header.split() == ["KID", "ALG", "STATUS", "NOT_BEFORE", "NOT_AFTER"]
    assert len(rows) == 1
    kid, alg, status, not_before, not_after = rows[0].split()
    assert kid == listed(run, keydir)[0]["kid"]
    assert (alg, status, not_after) == ("ES256", "active", "-")
    parse_rfc3339(not_before)


def test_list_shows_expired_keys(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEK_ENV, KEK_A)
    kek = KeyEncryptionKey.from_text(KEK_A)
    long_ago = 1_600_000_000
    keyset = KeySet.create(kek, now=long_ago).rotate(kek, now=long_ago + 10, overlap_seconds=90)
    KeyDirectory(tmp_path / "k").save(keyset)
    result = run("keys", "list", "--dir", str(tmp_path / "k"))
    assert result.status == 0
    statuses = [line.split()[2] for line in result.out.strip().splitlines()[1:]]
    assert statuses == ["expired", "active"]


def test_rotate_keeps_the_old_key_for_ttl_plus_skew(keydir: Path, run) -> None:
    old = listed(run, keydir)[0]
    result = run("keys", "rotate", "--dir", str(keydir))
    assert result.status == 0
    retired, new = listed(run, keydir)
    assert retired["kid"] == old["kid"] and retired["status"] == "retired"
    assert new["status"] == "active" and new["alg"] == old["alg"]
    overlap = parse_rfc3339(retired["not_after"]) - parse_rfc3339(new["not_before"])
    assert overlap == 60 + 30


def test_rotate_overlap_from_environment_and_option(
    keydir: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUISHEN_CODE_TTL_SECONDS", "120")
    monkeypatch.setenv("SUISHEN_CLOCK_SKEW_SECONDS", "10")
    assert run("keys", "rotate", "--dir", str(keydir), "--alg", "EdDSA").status == 0
    first, second = listed(run, keydir)
    assert parse_rfc3339(first["not_after"]) - parse_rfc3339(second["not_before"]) == 130
    assert second["alg"] == "EdDSA"
    assert run("keys", "rotate", "--dir", str(keydir), "--overlap", "5").status == 0
    _, retired, active = listed(run, keydir)
    assert parse_rfc3339(retired["not_after"]) - parse_rfc3339(active["not_before"]) == 5
    assert active["alg"] == "EdDSA"


def test_rotate_rejects_a_bad_overlap_and_a_bad_environment(
    keydir: Path, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert_one_line_error(run("keys", "rotate", "--dir", str(keydir), "--overlap", "-1"), 2)
    monkeypatch.setenv("SUISHEN_CODE_TTL_SECONDS", "soon")
    assert_one_line_error(
        run("keys", "rotate", "--dir", str(keydir)), 2, "SUISHEN_CODE_TTL_SECONDS"
    )
    assert len(listed(run, keydir)) == 1


def test_revoke_stops_verification(keydir: Path, run, tmp_path: Path) -> None:
    code = issue(run, keydir)
    kid = listed(run, keydir)[0]["kid"]
    result = run("keys", "revoke", kid, "--dir", str(keydir))
    assert result.status == 0
    assert "active key" in result.err  # warned: nothing can be issued now
    assert listed(run, keydir)[0]["status"] == "revoked"
    jwks = tmp_path / "after.json"
    jwks.write_text(run("keys", "jwks", "--dir", str(keydir)).out)
    verdict = run("codes", "verify", "--jwks", str(jwks), code)
    assert verdict.status == 1
    assert verdict.json()["reason"] == "revoked"
    assert_one_line_error(
        run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE), 1, "no active key"
    )
    # A key set without an active key can be rotated back into service.
    assert run("keys", "rotate", "--dir", str(keydir)).status == 0
    assert [k["status"] for k in listed(run, keydir)] == ["revoked", "active"]


def test_revoke_an_unknown_kid(keydir: Path, run) -> None:
    assert_one_line_error(run("keys", "revoke", "ffff", "--dir", str(keydir)), 1, "ffff")


def test_jwks_is_public(keydir: Path, run) -> None:
    result = run("keys", "jwks", "--dir", str(keydir))
    assert result.status == 0
    (jwk,) = result.json()["keys"]
    assert {"kid", "alg", "use", "status", "kty", "crv", "x", "y"} <= jwk.keys()
    assert jwk["use"] == "sig" and jwk["status"] == "active"
    assert "d" not in jwk


# --- codes issue / verify ---------------------------------------------------------------
def test_issue_text_and_verify_valid(keydir: Path, jwks_file: Path, run) -> None:
    code = issue(run, keydir)
    assert code.startswith("SC1:") and len(code) <= 178
    result = run("codes", "verify", "--jwks", str(jwks_file), code)
    assert result.status == 0
    decision = result.json()
    assert decision["valid"] is True and decision["reason"] == "ok"
    assert decision["kid"] == listed(run, keydir)[0]["kid"]
    assert decision["kind"] == "personal"
    assert decision["scene"] == "library"
    expires = parse_rfc3339(decision["expires_at"])
    assert 0 < expires - parse_rfc3339(decision["verified_at"]) <= 60


def test_verify_expired_at_a_later_time(keydir: Path, jwks_file: Path, run) -> None:
    code = issue(run, keydir, "--ttl", "5")
    result = run("codes", "verify", "--jwks", str(jwks_file), "--at", "2099-01-01T00:00:00Z", code)
    assert result.status == 1
    decision = result.json()
    assert decision["valid"] is False and decision["reason"] == "expired"
    assert decision["verified_at"] == "2099-01-01T00:00:00Z"


def test_verify_garbage_is_malformed(jwks_file: Path, run) -> None:
    result = run("codes", "verify", "--jwks", str(jwks_file), "SC1:NOT*A*CODE")
    assert result.status == 1
    assert result.json() == {**result.json(), "valid": False, "reason": "malformed"}
    other = run("codes", "verify", "--jwks", str(jwks_file), "HC1:6BFOXN")
    assert other.status == 1 and other.json()["reason"] == "unsupported_version"


def test_verify_transit_scene_with_direction(keydir: Path, jwks_file: Path, run) -> None:
    code = issue(run, keydir)
    result = run(
        "codes", "verify", "--jwks", str(jwks_file), "--scene", "metro", "--direction", "out", code
    )
    assert result.status == 0 and result.json()["scene"] == "metro"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scene", "moon"], "moon"),
        (["--at", "yesterday"], "--at"),
        (["--at", "2026-11-22T14:00:00"], "--at"),  # no offset
        (["--direction", "up"], "--direction"),
    ],
)
def test_verify_usage_errors(jwks_file: Path, run, args: list[str], fragment: str) -> None:
    result = run("codes", "verify", "--jwks", str(jwks_file), *args, "SC1:ABC")
    assert_one_line_error(result, 2, fragment)
    assert result.out == ""


def test_verify_unreadable_jwks(tmp_path: Path, run) -> None:
    missing = run("codes", "verify", "--jwks", str(tmp_path / "none.json"), "SC1:ABC")
    assert_one_line_error(missing, 2, "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_one_line_error(run("codes", "verify", "--jwks", str(broken), "SC1:ABC"), 2)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"keys": [{"kty": "oct", "k": "AAAA", "kid": "00"}]}')
    assert_one_line_error(run("codes", "verify", "--jwks", str(wrong), "SC1:ABC"), 2)


def test_issue_ttl(keydir: Path, run) -> None:
    code = issue(run, keydir, "--ttl", "5")
    claims = run("codes", "inspect", code).json()["claims"]
    assert claims["exp"] - claims["iat"] == 5
    assert_one_line_error(
        run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE, "--ttl", "1"), 2, "--ttl"
    )


@pytest.mark.parametrize(
    "sub", ["0011223344556677889", "00112233445566778899aa", "zz112233445566778899", ""]
)
def test_issue_rejects_a_bad_handle(keydir: Path, run, sub: str) -> None:
    result = run("codes", "issue", "--dir", str(keydir), "--sub", sub)
    assert_one_line_error(result, 2, "--sub")
    assert result.out == ""


def test_issue_to_a_file(keydir: Path, run, tmp_path: Path) -> None:
    out = tmp_path / "code.txt"
    result = run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE, "--out", str(out))
    assert result.status == 0 and result.out == ""
    assert out.read_text().startswith("SC1:")


def test_issue_png_reads_back_and_verifies(
    keydir: Path, jwks_file: Path, run, tmp_path: Path
) -> None:
    # suishen.codecs.qr is part of the tree now; skip only if it were ever missing.
    pytest.importorskip("suishen.codecs.qr")
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    out = tmp_path / "code.png"
    result = run(
        "codes",
        "issue",
        "--dir",
        str(keydir),
        "--sub",
        HANDLE,
        "--format",
        "png",
        "--out",
        str(out),
    )
    assert result.status == 0
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (barcode,) = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert barcode.text.startswith("SC1:")
    verdict = run("codes", "verify", "--jwks", str(jwks_file), barcode.text)
    assert verdict.status == 0
    assert (
        run("codes", "inspect", barcode.text, "--dir", str(keydir)).json()["subject_handle"]
        == HANDLE
    )


def test_issue_svg_to_stdout_when_not_a_terminal(keydir: Path, run) -> None:
    pytest.importorskip("suishen.codecs.qr")
    result = run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE, "--format", "svg")
    assert result.status == 0
    assert result.out.startswith("<?xml") and "<svg" in result.out


def test_issue_image_refuses_a_terminal(keydir: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE, "--format", "png")
    assert_one_line_error(result, 2, "terminal")
    assert result.out == ""


# --- codes inspect ------------------------------------------------------------------------
def test_inspect_without_dir_shows_header_and_blinded_claims(keydir: Path, run) -> None:
    code = issue(run, keydir)
    result = run("codes", "inspect", code)
    assert result.status == 0
    body = result.json()
    assert body["verified"] is False
    assert "subject_handle" not in body
    assert body["header"] == {"alg": "ES256", "alg_cose": -7, "kid": listed(run, keydir)[0]["kid"]}
    claims = body["claims"]
    assert set(claims) == {
        "sub",
        "exp",
        "exp_rfc3339",
        "iat",
        "iat_rfc3339",
        "cti",
        "kind",
        "kind_name",
    }
    assert len(bytes.fromhex(claims["sub"])) == sc1.HANDLE_BYTES
    assert claims["sub"] != HANDLE  # blinded per code
    assert parse_rfc3339(claims["exp_rfc3339"]) == claims["exp"]
    assert claims["kind"] == 0 and claims["kind_name"] == "personal"


def test_inspect_with_dir_unblinds_the_subject(keydir: Path, run) -> None:
    first, second = issue(run, keydir), issue(run, keydir)
    one = run("codes", "inspect", first, "--dir", str(keydir)).json()
    two = run("codes", "inspect", second, "--dir", str(keydir)).json()
    assert one["subject_handle"] == two["subject_handle"] == HANDLE
    assert one["claims"]["sub"] != two["claims"]["sub"]


def test_inspect_with_dir_after_rotation_uses_the_signing_key(keydir: Path, run) -> None:
    code = issue(run, keydir)
    assert run("keys", "rotate", "--dir", str(keydir), "--alg", "EdDSA").status == 0
    assert run("codes", "inspect", code, "--dir", str(keydir)).json()["subject_handle"] == HANDLE


@pytest.mark.parametrize("code", ["garbage", "SC1:", "SC1:NOT*A*CODE", "SC1:" + "0" * 2000])
def test_inspect_malformed(run, code: str) -> None:
    result = run("codes", "inspect", code)
    assert_one_line_error(result, 1, "code")
    assert result.out == ""


def test_inspect_reads_stdin(keydir: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    code = issue(run, keydir)
    monkeypatch.setattr(sys, "stdin", io.StringIO(code + "\n"))
    assert run("codes", "inspect", "-").status == 0


# --- key-encryption key and key directory errors ----------------------------------------
def test_wrong_kek_is_one_line(tmp_path: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k"
    monkeypatch.setenv(KEK_ENV, KEK_A)
    assert run("keys", "init", "--dir", str(path)).status == 0
    code = issue(run, path)
    before = (path / "keyset.json").read_bytes()
    monkeypatch.setenv(KEK_ENV, KEK_B)
    for args in (
        ["codes", "issue", "--dir", str(path), "--sub", HANDLE],
        ["keys", "rotate", "--dir", str(path)],
        ["codes", "inspect", code, "--dir", str(path)],
    ):
        result = run(*args)
        assert_one_line_error(result, 1, "wrong key-encryption key", KEK_ENV)
        assert result.out == ""
    assert (path / "keyset.json").read_bytes() == before  # nothing sealed under KEK_B


def test_wrong_kek_in_the_kek_file(keydir: Path, run) -> None:
    (keydir / "kek").write_text(KEK_B + "\n")
    assert_one_line_error(
        run("keys", "rotate", "--dir", str(keydir)),
        1,
        "wrong key-encryption key",
        str(keydir / "kek"),
    )


def test_invalid_kek(keydir: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEK_ENV, "c2hvcnQ")
    assert_one_line_error(
        run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE), 1, KEK_ENV, "32 bytes"
    )


def test_missing_kek(keydir: Path, run) -> None:
    (keydir / "kek").unlink()
    assert_one_line_error(run("codes", "issue", "--dir", str(keydir), "--sub", HANDLE), 1, KEK_ENV)
    assert run("keys", "list", "--dir", str(keydir)).status == 0  # public: needs no KEK


@pytest.mark.parametrize(
    "args",
    [
        ["keys", "list"],
        ["keys", "jwks"],
        ["keys", "rotate"],
        ["keys", "revoke", "abcd"],
        ["codes", "issue", "--sub", HANDLE],
    ],
)
def test_missing_key_directory(tmp_path: Path, run, args: list[str]) -> None:
    result = run(*args, "--dir", str(tmp_path / "nowhere"))
    assert_one_line_error(result, 1, "does not exist", "keys init")
    assert not (tmp_path / "nowhere").exists()


def test_damaged_key_set(keydir: Path, run) -> None:
    (keydir / "keyset.json").write_text("{")
    assert_one_line_error(run("keys", "list", "--dir", str(keydir)), 1, "keyset.json")
    (keydir / "keyset.json").write_text('{"keys": 1}')
    assert_one_line_error(run("keys", "list", "--dir", str(keydir)), 1)


# --- command line shape -------------------------------------------------------------------
def test_usage_errors_are_one_line(run) -> None:
    # (`keys init` without --dir is no usage error any more: it names the service's set)
    assert_one_line_error(run("keys", "revoke"), 2, "KID")
    assert_one_line_error(run("keys", "list", "--key-set", "nope"), 2, "--key-set")
    assert_one_line_error(run("nonsense"), 2)
    assert_one_line_error(run("codes", "verify", "SC1:ABC"), 2, "--jwks")


def test_help_and_version(run) -> None:
    result = run("--help")
    assert result.status == 0 and "keys" in result.out and "codes" in result.out
    assert run("--version").status == 0
    bare = run()
    assert bare.status == 2 and "usage" in bare.err


def test_help_documents_the_defaults(run) -> None:
    assert "ES256" in run("keys", "init", "--help").out
    verify_help = run("codes", "verify", "--help").out
    assert "library" in verify_help and "re-scannable" in verify_help


def test_keyboard_interrupt_exits_130(keydir: Path, run, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_now", interrupted)
    assert run("keys", "list", "--dir", str(keydir)).status == 130


def test_keyset_written_by_the_cli_is_a_key_store(keydir: Path) -> None:
    directory = KeyDirectory(keydir)
    keyset = directory.require()
    kek = directory.kek().kek
    rotated = keyset.rotate(kek, now=1_800_000_000, overlap_seconds=90, alg=Alg.EDDSA)
    directory.save(rotated)
    assert directory.load() == rotated
    assert stat.S_IMODE((keydir / "keyset.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in keydir.iterdir()) == ["kek", "keyset.json"]
    assert KeyDirectory(keydir / "empty").load() is None


# --- the installed console script ----------------------------------------------------------
def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}
    return subprocess.run(
        [str(SUISHEN_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        check=False,
    )


@pytest.mark.skipif(not SUISHEN_SCRIPT.exists(), reason="console script not installed")
def test_console_script_exit_statuses(tmp_path: Path) -> None:
    keys = str(tmp_path / "keys")
    env_a = {KEK_ENV: KEK_A}
    init = _script("keys", "init", "--dir", keys, env=env_a)
    assert init.returncode == 0, init.stderr
    jwks = tmp_path / "jwks.json"
    jwks.write_text(_script("keys", "jwks", "--dir", keys).stdout)
    code = _script("codes", "issue", "--dir", keys, "--sub", HANDLE, env=env_a).stdout.strip()

    assert _script("codes", "verify", "--jwks", str(jwks), code).returncode == 0
    garbage = _script("codes", "verify", "--jwks", str(jwks), "SC1:NOT*A*CODE")
    assert garbage.returncode == 1 and json.loads(garbage.stdout)["reason"] == "malformed"
    scene = _script("codes", "verify", "--jwks", str(jwks), "--scene", "moon", code)
    assert scene.returncode == 2 and scene.stderr.startswith("suishen: error: ")

    wrong = _script("codes", "issue", "--dir", keys, "--sub", HANDLE, env={KEK_ENV: KEK_B})
    assert wrong.returncode == 1
    assert "Traceback" not in wrong.stderr
    assert wrong.stderr.count("\n") == 1 and "wrong key-encryption key" in wrong.stderr

    missing = _script("keys", "list", "--dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    twice = _script("keys", "init", "--dir", keys, env=env_a)
    assert twice.returncode == 1 and "already exists" in twice.stderr


def test_cli_import_does_not_load_the_web_stack() -> None:
    probe = (
        "import sys, suishen.app.cli; "
        "heavy = [m for m in ('fastapi', 'starlette', 'uvicorn', 'pydantic', 'qrcode', 'PIL') "
        "if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
