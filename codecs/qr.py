"""QR rendering of code texts (PNG and SVG), and the QR version a text needs.

Choices, and why:

* **One alphanumeric segment, always.** SC1 texts use only the 45-character QR
  alphanumeric alphabet (base45 was designed for exactly that), which packs two
  characters into 11 bits instead of two bytes. The text is handed to ``qrcode`` as a
  single :class:`qrcode.util.QRData` in ``MODE_ALPHA_NUM``: left to itself,
  ``QRCode.add_data(str)`` would run its segment optimiser and may cut the text into
  several segments (each with its own header), and a text with a stray lower-case letter
  would silently fall back to byte mode and need a much larger symbol. With one segment
  the version is a function of the length alone: the SPEC's budget ("178 characters fit
  version 7 at level M") holds for every code, not just for most of them. Text outside
  the alphabet is refused with :class:`NotAlphanumeric` instead of being encoded in
  another mode.
* **Error correction M by default.** The SPEC's size budget is stated at level M: it
  survives about 15 % damage (cracked phone screens, glare) while keeping the personal
  code at version 7 (45×45 modules).
* **Quiet zone of 4 modules by default**, the minimum ISO/IEC 18004 asks for; gate
  scanners find the symbol faster with it. Callers that place the image on a white
  background of their own may pass a smaller ``border``.
* **PNG through Pillow** (``qrcode``'s ``PilImage``): black on white, 1 bit per pixel,
  ``box_size`` pixels per module (10 by default: 530×530 px for a version-7 code).
* **SVG through** ``qrcode``'s ``SvgPathFillImage``: a standalone document (XML
  declaration, ``svg`` root in the SVG namespace, ``viewBox``) with the dark modules as
  one ``<path>`` and a white background rectangle, so that the code stays readable when
  an app shows it on a dark theme. Sizes are in millimetres, ``box_size / 10`` mm per
  module (``qrcode``'s convention); the ``viewBox`` lets it scale freely.

Errors: text that cannot be put in a QR code raises a :class:`QRError` (a
:class:`~suishen.errors.CodecError`), including the one case the pinned ``qrcode`` 8.2
cannot render (a run of zeros long enough to fill a whole Reed-Solomon block, upstream
issue python-qrcode#330; impossible for a signed code). Out-of-range rendering options
(``box_size``, ``border``, an unknown error-correction level) are programming errors and
raise :class:`ValueError`. Pure and synchronous: no I/O, the images are returned as bytes.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import qrcode
import qrcode.constants
import qrcode.exceptions
import qrcode.image.pil
import qrcode.image.svg
import qrcode.util

from suishen.codecs.base45 import ALPHABET
from suishen.errors import CodecError

ErrorCorrection = Literal["L", "M", "Q", "H"]

DEFAULT_ERROR_CORRECTION: ErrorCorrection = "M"
DEFAULT_BORDER = 4
DEFAULT_BOX_SIZE = 10
MAX_VERSION = 40

_LEVELS: dict[str, int] = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
_ALPHANUMERIC = frozenset(ALPHABET)

__all__ = [
    "DEFAULT_BORDER",
    "DEFAULT_BOX_SIZE",
    "DEFAULT_ERROR_CORRECTION",
    "ErrorCorrection",
    "NotAlphanumeric",
    "QRError",
    "TooLongForQR",
    "qr_version",
    "render_png",
    "render_svg",
]


class QRError(CodecError):
    """The text cannot be put in a QR code as this module encodes it."""


class NotAlphanumeric(QRError):
    """The text is empty, not a string, or has characters outside the QR alphanumeric
    alphabet (``0-9 A-Z``, space and ``$%*+-./:``)."""


class TooLongForQR(QRError):
    """The text does not fit the largest QR symbol (version 40) at the requested level."""


def qr_version(text: str, error_correction: ErrorCorrection = DEFAULT_ERROR_CORRECTION) -> int:
    """The smallest QR version (1-40) that holds ``text`` in one alphanumeric segment at
    ``error_correction``. Raises :class:`QRError` for text that cannot be encoded."""
    return int(_fitted(text, error_correction).version)


def render_png(
    text: str,
    *,
    error_correction: ErrorCorrection = DEFAULT_ERROR_CORRECTION,
    border: int = DEFAULT_BORDER,
    box_size: int = DEFAULT_BOX_SIZE,
) -> bytes:
    """A PNG image (bytes) of the QR code for ``text``: ``box_size`` pixels per module,
    a quiet zone of ``border`` modules, black on white."""
    image = _image(text, error_correction, border, box_size, qrcode.image.pil.PilImage)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_svg(
    text: str,
    *,
    error_correction: ErrorCorrection = DEFAULT_ERROR_CORRECTION,
    border: int = DEFAULT_BORDER,
    box_size: int = DEFAULT_BOX_SIZE,
) -> bytes:
    """A standalone SVG document (UTF-8 bytes with an XML declaration) of the QR code for
    ``text``: ``box_size / 10`` mm per module, a quiet zone of ``border`` modules, dark
    modules as one path on a white background."""
    image = _image(text, error_correction, border, box_size, qrcode.image.svg.SvgPathFillImage)
    buffer = io.BytesIO()
    image.save(buffer)
    return buffer.getvalue()


def _check_text(text: object) -> str:
    if not isinstance(text, str):
        raise NotAlphanumeric("a QR code text must be a string")
    if not text:
        raise NotAlphanumeric("nothing to encode: the text is empty")
    outside = set(text) - _ALPHANUMERIC
    if outside:
        shown = "".join(sorted(outside))[:8]
        raise NotAlphanumeric(
            f"text has characters outside the QR alphanumeric alphabet: {shown!r}"
        )
    return text


def _fitted(text: str, error_correction: ErrorCorrection, **options: int) -> Any:
    """A ``qrcode.QRCode`` holding ``text`` as one alphanumeric segment, version fitted."""
    checked = _check_text(text)
    if error_correction not in _LEVELS:
        raise ValueError(f"error correction must be one of L, M, Q, H, not {error_correction!r}")
    code = qrcode.QRCode(version=None, error_correction=_LEVELS[error_correction], **options)
    code.add_data(qrcode.util.QRData(checked.encode("ascii"), mode=qrcode.util.MODE_ALPHA_NUM))
    try:
        version = code.best_fit()
    except (qrcode.exceptions.DataOverflowError, ValueError):
        # qrcode raises DataOverflowError, or ValueError("Invalid version (was 41 ...)")
        # when the overflow shows up while it re-fits for longer length fields.
        raise TooLongForQR(
            f"{len(checked)} alphanumeric characters do not fit QR version {MAX_VERSION} "
            f"at level {error_correction}"
        ) from None
    if not 1 <= version <= MAX_VERSION:  # pragma: no cover - qrcode raises above
        raise TooLongForQR(f"qrcode chose version {version}")
    return code


def _image(
    text: str, error_correction: ErrorCorrection, border: int, box_size: int, factory: type
) -> Any:
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError("border is a number of modules, 0 or more")
    if isinstance(box_size, bool) or not isinstance(box_size, int) or box_size < 1:
        raise ValueError("box_size is a number of pixels per module, 1 or more")
    code = _fitted(text, error_correction, border=border, box_size=box_size)
    try:
        code.make(fit=False)
    except ValueError as exc:
        # qrcode 8.2's Reed-Solomon division fails with "glog(0)" on a data block that is
        # all zero bits (lincolnloop/python-qrcode#330, fixed after 8.2). Only long runs
        # of "0" produce one; a signed code cannot (its blocks hold random signature and
        # blinded-subject bytes), but arbitrary text can, so say so with a typed error.
        raise QRError(
            "qrcode cannot encode this text (a Reed-Solomon block of all zeros, "
            "python-qrcode#330)"
        ) from exc
    return code.make_image(image_factory=factory)
