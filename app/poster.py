"""Printable venue posters (``GET /v1/venues/{venue_id}/code``): the venue code's QR
large, the venue's name under it, as PNG or SVG.

* **PNG** (Pillow): the QR at :data:`BOX_PIXELS` pixels per module (version 5 is 37
  modules, with the 4-module quiet zone 45: 900 px wide), a white band under it with the
  name centred in a CJK-capable font, shrunk to fit the width. The font is the first of
  :data:`FONT_CANDIDATES` present (WenQuanYi Micro Hei is what ``.ci/run`` installs;
  a Debian ``fonts-wqy-microhei`` or ``fonts-noto-cjk`` package provides one in an
  image); without any, Pillow's built-in font is used and Chinese names do not render
  (logged once).
* **SVG**: the QR's own SVG (:func:`suishen.codecs.qr.render_svg`, modules as one path)
  in a taller ``viewBox`` with the name as a ``<text>`` element (the viewer's fonts
  render it, so any script works), escaped by the XML serialiser.

The name is printable text already (the API's rule, :mod:`suishen.app.text`). Pure
apart from reading the font file; the last :data:`POSTER_CACHE_SIZE` posters of each
format are memoised (an anonymous endpoint must not draw on every request).
"""

from __future__ import annotations

import functools
import io
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw, ImageFont

from suishen.codecs import qr

log = logging.getLogger("suishen.poster")

BOX_PIXELS = 20
# Posters are public and a PNG takes tens of milliseconds to draw: the latest ones are
# kept (a code and a name never change together; a revoked venue's poster is refused
# before this is reached).
POSTER_CACHE_SIZE = 256
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)
SVG_FONTS = "WenQuanYi Micro Hei, Noto Sans CJK SC, PingFang SC, Microsoft YaHei, sans-serif"
_SVG_NS = "http://www.w3.org/2000/svg"


@functools.cache
def _font_path() -> str | None:
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    log.warning("no CJK font found for venue posters; names may not render")
    return None


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = _font_path()
    if path is None:
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(path, size=size)


@functools.lru_cache(maxsize=POSTER_CACHE_SIZE)
def poster_png(code: str, name: str) -> bytes:
    """The poster as PNG bytes: the QR of ``code``, ``name`` centred under it."""
    qr_image = Image.open(io.BytesIO(qr.render_png(code, box_size=BOX_PIXELS))).convert("L")
    width = qr_image.width
    margin = 4 * BOX_PIXELS  # the quiet zone's width
    size = 3 * BOX_PIXELS
    draw_probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    font = _font(size)
    while size > 12 and draw_probe.textlength(name, font=font) > width - 2 * margin:
        size -= 4
        font = _font(size)
    band = size * 2
    poster = Image.new("L", (width, qr_image.height + band), 255)
    poster.paste(qr_image, (0, 0))
    draw = ImageDraw.Draw(poster)
    draw.text((width / 2, qr_image.height + band / 2 - BOX_PIXELS), name, fill=0, font=font,
              anchor="mm")
    buffer = io.BytesIO()
    poster.save(buffer, format="PNG")
    return buffer.getvalue()


@functools.lru_cache(maxsize=POSTER_CACHE_SIZE)
def poster_svg(code: str, name: str) -> bytes:
    """The poster as a standalone SVG document (UTF-8 bytes)."""
    document = qr.render_svg(code).decode("utf-8")
    root = ET.fromstring(document)  # noqa: S314 - our own renderer's output
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    band = width * 0.18
    total = height + band
    # Em widths: about 1 for CJK and other wide characters, 0.6 for Latin letters.
    ems = sum(1.0 if ord(c) >= 0x2E80 else 0.6 for c in name) or 1.0
    font_size = min(band * 0.45, (width - 8) / ems)
    head_end = document.index(">", document.index("<svg")) + 1
    head = (f'<svg xmlns="{_SVG_NS}" version="1.1" width="{width * 2:g}mm" '
            f'height="{total * 2:g}mm" viewBox="0 0 {width:g} {total:g}">')
    body = document[head_end:document.rindex("</svg>")].replace(
        'width="100%" height="100%"', f'width="{width:g}" height="{total:g}"')
    text = (f'<text x="{width / 2:g}" y="{height + band * 0.35:g}" text-anchor="middle" '
            f'dominant-baseline="middle" font-size="{font_size:.3g}" '
            f"font-family={quoteattr(SVG_FONTS)} "
            f'fill="black">{escape(name)}</text>')
    out = "<?xml version='1.0' encoding='UTF-8'?>\n" + head + body + text + "</svg>"
    ET.fromstring(out)  # noqa: S314 - never emit a document that does not parse
    return out.encode("utf-8")
