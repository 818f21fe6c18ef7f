"""Render a signed token (pickup QR, courier pass) as a QR code PNG, with OpenCV's encoder.

Settings (see docs/qr-codes.md for the measurements behind them):

- error correction level **M** (15 % of codewords recoverable). The code is shown on a phone
  screen or a printout to a 640×480 locker camera; M keeps a typical token at version 12-13
  (65-69 modules) where Q needs version 15-16, and larger modules decoded better in every
  distortion measured than Q's extra redundancy did;
- the encoder's **automatic mode** (it splits the text into numeric/alphanumeric/byte segments).
  Not ``QRCODE_ENCODER_MODE_BYTE``: in OpenCV 5.0.0 forced byte mode writes a corrupt symbol for
  many texts made only of QR-alphanumeric characters (too small a version; OpenCV misreads it,
  zxing-cpp cannot read it at all). Tokens always hold lower-case letters, so they
  never hit it, but nothing here relies on that;
- :data:`DEFAULT_MODULE_PX` pixels per module (nearest-neighbour scaling, so modules stay crisp);
- a white quiet zone of :data:`QUIET_ZONE_MODULES` modules on every side, as ISO/IEC 18004 asks.
  ``cv2.QRCodeEncoder`` returns one pixel per module with a border that is not the standard quiet
  zone (two modules in 5.0.0), so the symbol is cropped to its own extent and the zone added here.

Every symbol is read back with ``cv2.QRCodeDetectorAruco`` (at 4 px/module, ~7 ms) before it is
returned, so an encoder fault is an error here, never a code handed to a resident that no locker
can read. The PNG is 1-bit greyscale; a typical token renders to 584×584 px in about 1.3 KiB.
"""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

from cloud_sync.protocol.tokens import MAX_TOKEN_CHARS

__all__ = [
    "DEFAULT_MODULE_PX",
    "ERROR_CORRECTION",
    "MAX_MODULE_PX",
    "QUIET_ZONE_MODULES",
    "qr_matrix",
    "render_qr_png",
]

#: The error correction level, by name (``cv2.QRCODE_ENCODER_CORRECT_LEVEL_M``).
ERROR_CORRECTION: Final = "M"
QUIET_ZONE_MODULES: Final = 4
DEFAULT_MODULE_PX: Final = 8
MAX_MODULE_PX: Final = 32
# Scale of the read-back check: 0 misreads in 1,500 random texts at 4 px, 150 at 3 px.
_CHECK_MODULE_PX: Final = 4


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TOKEN_CHARS:
        raise ValueError(f"QR text must be 1-{MAX_TOKEN_CHARS} characters")
    if not (text.isascii() and text.isprintable()):
        raise ValueError("QR text must be printable ASCII (a token is)")


def qr_matrix(text: str) -> np.ndarray:
    """The bare symbol: one ``uint8`` per module (0 dark, 255 light), no quiet zone.

    Raises :class:`ValueError` for text that is not 1-512 printable ASCII characters, and
    :class:`RuntimeError` if the encoder fails or writes a symbol that does not read back.
    """
    _check_text(text)
    params = cv2.QRCodeEncoder.Params()
    params.correction_level = cv2.QRCODE_ENCODER_CORRECT_LEVEL_M
    params.mode = cv2.QRCODE_ENCODER_MODE_AUTO
    raw = cv2.QRCodeEncoder.create(params).encode(text)
    if raw is None or raw.ndim != 2 or raw.size == 0:
        raise RuntimeError("the QR encoder returned no image")
    dark = raw < 128
    rows = np.flatnonzero(dark.any(axis=1))
    cols = np.flatnonzero(dark.any(axis=0))
    if rows.size == 0:
        raise RuntimeError("the QR encoder returned a blank image")
    # Finder patterns sit in three corners, so the dark extent is exactly the symbol.
    symbol = raw[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    size = symbol.shape[0]
    if symbol.shape != (size, size) or (size - 17) % 4 or not 21 <= size <= 177:
        raise RuntimeError(f"the QR encoder returned a {symbol.shape} symbol")
    symbol = np.where(symbol < 128, 0, 255).astype(np.uint8)
    _check_reads_back(symbol, text)
    return symbol


def _framed(symbol: np.ndarray, module_px: int) -> np.ndarray:
    q = QUIET_ZONE_MODULES
    framed = cv2.copyMakeBorder(symbol, q, q, q, q, cv2.BORDER_CONSTANT, value=255)
    return cv2.resize(framed, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def _check_reads_back(symbol: np.ndarray, text: str) -> None:
    """Raise unless OpenCV's own detector reads ``text`` from ``symbol``."""
    try:
        read, _points, _straight = cv2.QRCodeDetectorAruco().detectAndDecode(
            _framed(symbol, _CHECK_MODULE_PX)
        )
    except cv2.error as exc:
        raise RuntimeError("the QR encoder wrote a symbol that does not decode") from exc
    if read != text:
        raise RuntimeError("the QR encoder wrote a symbol that decodes to other text")


def render_qr_png(text: str, module_px: int = DEFAULT_MODULE_PX) -> bytes:
    """A PNG of ``text`` as a QR code: ``module_px`` pixels per module, 4-module quiet zone."""
    if isinstance(module_px, bool) or not isinstance(module_px, int):
        raise ValueError("module_px must be an integer")
    if not 1 <= module_px <= MAX_MODULE_PX:
        raise ValueError(f"module_px must be 1..{MAX_MODULE_PX}")
    scaled = _framed(qr_matrix(text), module_px)
    ok, png = cv2.imencode(
        ".png", scaled, [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
