"""QR rendering (codecs/qr.py): PNG read back with zxing-cpp, SVG well-formed, versions
against the ISO/IEC 18004 capacity table, and typed errors."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image

from suishen.codecs import qr
from suishen.errors import CodecError
from suishen.keys.issuer import Issuer

SVG_NS = "{http://www.w3.org/2000/svg}"
# ISO/IEC 18004 Table 7: alphanumeric capacity at error-correction level M, versions 1-10.
ALNUM_CAPACITY_M = [20, 38, 61, 90, 122, 154, 178, 221, 262, 311]


@pytest.fixture(scope="module")
def code(issuer: Issuer, t0: int) -> str:
    return issuer.issue_personal(bytes(10), now=t0, ttl=60).text


def read_png(png: bytes) -> list[zxingcpp.Barcode]:
    # Gate scanners look for QR codes only; with every format enabled zxing-cpp
    # occasionally also "finds" a short ITF barcode inside the QR modules.
    return list(
        zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)
    )


def test_png_decodes_to_the_code_as_version_7(code: str) -> None:
    png = qr.render_png(code)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    (barcode,) = read_png(png)
    assert barcode.valid
    assert barcode.format == zxingcpp.BarcodeFormat.QRCode
    assert barcode.text == code
    assert barcode.symbology_identifier == "]Q1"  # model 2, no ECI
    assert barcode.ec_level == "M"
    assert barcode.extra["Version"] == "7"


def test_png_geometry(code: str) -> None:
    # Version 7 is 45 modules wide; 4 modules of quiet zone each side.
    image = Image.open(io.BytesIO(qr.render_png(code)))
    assert image.size == ((45 + 2 * 4) * 10,) * 2
    small = Image.open(io.BytesIO(qr.render_png(code, box_size=3, border=2)))
    assert small.size == ((45 + 2 * 2) * 3,) * 2
    # Quiet zone is white, the top-left finder pattern corner is black.
    gray = image.convert("L")
    assert gray.getpixel((0, 0)) == 255
    assert gray.getpixel((4 * 10 + 1, 4 * 10 + 1)) == 0


@pytest.mark.parametrize("level", ["L", "M", "Q", "H"])
def test_png_error_correction_levels(level: qr.ErrorCorrection, code: str) -> None:
    (barcode,) = read_png(qr.render_png(code, error_correction=level))
    assert barcode.text == code
    assert barcode.ec_level == level
    assert barcode.extra["Version"] == str(qr.qr_version(code, level))


def test_svg_is_a_standalone_svg_document(code: str) -> None:
    svg = qr.render_svg(code)
    assert svg.startswith(b"<?xml")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    assert root.get("viewBox") == "0 0 53 53"  # 45 modules + 2 * 4 quiet zone
    assert root.get("width") == "53mm"
    children = list(root)
    assert [c.tag for c in children] == [f"{SVG_NS}rect", f"{SVG_NS}path"]
    assert children[0].get("fill") == "white"
    assert children[1].get("d")


def test_svg_modules_match_the_png(code: str) -> None:
    """Rasterise the SVG path (unit squares "M x,y H.. V.. H.. z") and compare with the
    PNG's modules: both renderings carry the same symbol."""
    root = ET.fromstring(qr.render_svg(code, border=0))
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    dark = set()
    for part in (path.get("d") or "").split("z"):
        if part:
            x, y = part[1:].split("H")[0].split(",")
            dark.add((int(float(x)), int(float(y))))
    image = Image.open(io.BytesIO(qr.render_png(code, border=0, box_size=1))).convert("L")
    png_dark = {(x, y) for x in range(45) for y in range(45) if image.getpixel((x, y)) == 0}
    assert dark == png_dark


def test_version_matches_the_capacity_table() -> None:
    for version, capacity in enumerate(ALNUM_CAPACITY_M, start=1):
        assert qr.qr_version("A" * capacity) == version
        assert qr.qr_version("A" * (capacity + 1)) == version + 1


def test_version_is_alphanumeric_even_for_digit_runs() -> None:
    # A single alphanumeric segment: the version depends on the length only, even when
    # runs of digits would let an optimiser switch to numeric mode.
    text = "SC1:" + ("1234567890" * 18)[:174]
    assert qr.qr_version(text) == 7
    (barcode,) = read_png(qr.render_png(text))
    assert barcode.text == text


def test_an_all_zero_block_is_a_typed_error_or_renders() -> None:
    # qrcode 8.2 cannot compute Reed-Solomon for a data block of all zero bits
    # (python-qrcode#330, fixed upstream after 8.2): codecs/qr.py turns that into a
    # QRError rather than a bare ValueError. A newer qrcode renders it.
    text = "SC1:" + "0" * 174  # base45 of 116 zero bytes
    try:
        png = qr.render_png(text)
    except qr.QRError as exc:
        assert "python-qrcode#330" in str(exc)
    else:
        (barcode,) = read_png(png)
        assert barcode.text == text


def test_error_correction_orders_versions(code: str) -> None:
    versions = [qr.qr_version(code, level) for level in ("L", "M", "Q", "H")]
    assert versions == sorted(versions)
    assert versions[1] == 7


@pytest.mark.parametrize("text", ["sc1:abc", "SC1:A\u00e9", "SC1:A_B", "SC1:\n", "SC1:A=B"])
def test_text_outside_the_alphabet_is_refused(text: str) -> None:
    for call in (qr.qr_version, qr.render_png, qr.render_svg):
        with pytest.raises(qr.NotAlphanumeric):
            call(text)


@pytest.mark.parametrize("text", ["", None, b"SC1:AAA", 7])
def test_empty_or_non_text_is_refused(text: object) -> None:
    with pytest.raises(qr.NotAlphanumeric):
        qr.qr_version(text)  # type: ignore[arg-type]


def test_too_long_is_refused() -> None:
    # Version 40 alphanumeric capacities: L 4296, M 3391, Q 2420, H 1852.
    for length, level in ((4296, "L"), (3391, "M"), (2420, "Q"), (1852, "H")):
        assert qr.qr_version("A" * length, level) == 40  # type: ignore[arg-type]
    for length, level in ((4297, "L"), (3392, "M"), (2421, "Q"), (1853, "H"), (9999, "M")):
        with pytest.raises(qr.TooLongForQR):
            qr.qr_version("A" * length, level)  # type: ignore[arg-type]
    with pytest.raises(qr.TooLongForQR):
        qr.render_png("A" * 3392)


def test_errors_are_codec_errors() -> None:
    assert issubclass(qr.QRError, CodecError)
    assert issubclass(qr.NotAlphanumeric, qr.QRError)
    assert issubclass(qr.TooLongForQR, qr.QRError)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_correction": "X"},
        {"box_size": 0},
        {"box_size": -1},
        {"border": -1},
        {"box_size": 2.5},
        {"border": True},
    ],
)
def test_bad_rendering_options_are_value_errors(kwargs: dict[str, object], code: str) -> None:
    with pytest.raises(ValueError):
        qr.render_png(code, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        qr.render_svg(code, **kwargs)  # type: ignore[arg-type]


def test_rendering_is_deterministic(code: str) -> None:
    assert qr.render_png(code) == qr.render_png(code)
    assert qr.render_svg(code) == qr.render_svg(code)
