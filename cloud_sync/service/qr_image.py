"""Render a signed token (pickup QR, courier pass) as a QR code PNG, with OpenCV's encoder.

Settings (see docs/qr-codes.md for why):

- error correction level **M** (15 % of codewords recoverable), byte mode. The code is shown on a
  phone screen or a printout to a locker camera; M keeps the symbol at version 12-13 (65-69
  modules) for a typical token where Q needs version 15-16, so each module is larger in the
  camera's frame, which matters more for a 640×480 camera than Q's extra redundancy;
- :data:`DEFAULT_MODULE_PX` pixels per module (nearest-neighbour scaling, so modules stay crisp);
- a white quiet zone of :data:`QUIET_ZONE_MODULES` modules on every side, as ISO/IEC 18004 asks.
  ``cv2.QRCodeEncoder`` returns one pixel per module with a border that is not the standard quiet
  zone (none in some builds, two modules in 5.0), so the symbol is cropped to its own extent first
  and the quiet zone added here.

The PNG is 1-bit greyscale; a typical token renders to about 600×600 px in well under 2 KiB.
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


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TOKEN_CHARS:
        raise ValueError(f"QR text must be 1-{MAX_TOKEN_CHARS} characters")
    if not (text.isascii() and text.isprintable()):
        raise ValueError("QR text must be printable ASCII (a token is)")


def qr_matrix(text: str) -> np.ndarray:
    """The bare symbol: one ``uint8`` per module (0 dark, 255 light), no quiet zone."""
    _check_text(text)
    params = cv2.QRCodeEncoder.Params()
    params.correction_level = cv2.QRCODE_ENCODER_CORRECT_LEVEL_M
    params.mode = cv2.QRCODE_ENCODER_MODE_BYTE
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
    return np.where(symbol < 128, 0, 255).astype(np.uint8)


def render_qr_png(text: str, module_px: int = DEFAULT_MODULE_PX) -> bytes:
    """A PNG of ``text`` as a QR code: ``module_px`` pixels per module, 4-module quiet zone."""
    if isinstance(module_px, bool) or not isinstance(module_px, int):
        raise ValueError("module_px must be an integer")
    if not 1 <= module_px <= MAX_MODULE_PX:
        raise ValueError(f"module_px must be 1..{MAX_MODULE_PX}")
    symbol = qr_matrix(text)
    q = QUIET_ZONE_MODULES
    framed = cv2.copyMakeBorder(symbol, q, q, q, q, cv2.BORDER_CONSTANT, value=255)
    scaled = cv2.resize(framed, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode(
        ".png", scaled, [cv2.IMWRITE_PNG_BILEVEL, 1, cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return png.tobytes()
