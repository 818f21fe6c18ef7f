"""Find and decode QR codes in a camera frame (a locker terminal's ``frame`` event).

:func:`decode_qr` takes the encoded image bytes exactly as they came off the site broker, so it
treats them as hostile:

1. at most :data:`MAX_IMAGE_BYTES` bytes, and PNG or JPEG by their magic bytes (nothing else is
   handed to a decoder);
2. the width and height are read from the header (PNG ``IHDR``; JPEG's first ``SOFn`` segment)
   *before* decoding, and anything over :data:`MAX_SIDE` on a side is refused, so a small file
   cannot make the decoder allocate a huge bitmap;
3. ``cv2.imdecode`` to 8-bit greyscale, EXIF orientation ignored (QR detection does not care);
4. ``cv2.QRCodeDetectorAruco`` first, then ``cv2.QRCodeDetector`` on the same image; then, only if
   both read nothing and the frame is at most :data:`UPSCALE_MAX_SIDE` px, Aruco again on the
   frame enlarged 2× (small or soft modules), and on that after an unsharp mask (blur). Each pass
   earns its place in docs/qr-codes.md, measured on camera-like frames.

It returns the decoded texts, de-duplicated in the order found (usually one; an empty list means
no code could be read). Malformed input raises :class:`QrScanError` and nothing else; whether a
text is a valid token is for :func:`cloud_sync.protocol.tokens.verify_token` to say.

Decoding is CPU-bound (640×480 on the 2-core reference machine: ~17 ms when the first pass reads
the code, up to ~100-200 ms when the fallback passes run; see docs/qr-codes.md) and OpenCV releases
the GIL while it works: call it from a worker thread, ``await asyncio.to_thread(decode_qr, data)``,
never on the event loop. It keeps no state (each call builds its own detectors), so concurrent
calls are safe.
"""

from __future__ import annotations

import struct
from typing import Final

import cv2
import numpy as np

from gateway.errors import GatewayError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_SIDE",
    "QrScanError",
    "decode_qr",
    "decode_qr_passes",
    "image_size",
]

MAX_IMAGE_BYTES: Final = 512 * 1024
MAX_SIDE: Final = 2048
#: A frame smaller than this on a side cannot hold a readable version-1 code with a quiet zone.
MIN_SIDE: Final = 21
#: Frames whose longer side is at most this are also tried enlarged 2× when nothing was found.
UPSCALE_MAX_SIDE: Final = 1024

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Start-of-frame markers that carry the image size (not DHT C4, JPG C8, DAC CC).
_SOF_MARKERS = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
# Markers without a length field.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


class QrScanError(GatewayError):
    """The bytes are not an image this scanner accepts (too big, wrong format, corrupt)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"QR scan refused: {reason}")
        self.reason = reason


def _png_size(data: bytes) -> tuple[int, int]:
    # Signature, then the IHDR chunk: length 13, type, width, height (big-endian u32).
    if len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise QrScanError("PNG without an IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i < n:
        if data[i] != 0xFF:
            raise QrScanError("JPEG segment does not start with a marker")
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = data[i]
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            break
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            raise QrScanError("JPEG segment with a bad length")
        if marker in _SOF_MARKERS:
            if length < 7 or i + 7 > n:
                break
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length
    raise QrScanError("JPEG without a frame header")


def image_size(data: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from a PNG or JPEG header, without decoding the image."""
    if data.startswith(_PNG_MAGIC):
        return ("png", *_png_size(data))
    if data.startswith(_JPEG_MAGIC):
        return ("jpeg", *_jpeg_size(data))
    raise QrScanError("not a PNG or JPEG image")


def _check(data: bytes) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise QrScanError("image must be bytes")
    if len(data) > MAX_IMAGE_BYTES:
        raise QrScanError(f"image of {len(data)} bytes exceeds {MAX_IMAGE_BYTES}")
    _fmt, width, height = image_size(bytes(data))
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise QrScanError(f"image of {width}×{height} exceeds {MAX_SIDE}×{MAX_SIDE}")


def _decode_image(data: bytes) -> np.ndarray:
    _check(data)
    buf = np.frombuffer(bytes(data), dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise QrScanError("image does not decode") from exc
    if img is None or img.ndim != 2 or img.dtype != np.uint8:
        raise QrScanError("image does not decode")
    h, w = img.shape
    if w > MAX_SIDE or h > MAX_SIDE:  # the header lied; never reached with a sane decoder
        raise QrScanError(f"image of {w}×{h} exceeds {MAX_SIDE}×{MAX_SIDE}")
    return img


def _aruco(img: np.ndarray) -> list[str]:
    try:
        ok, texts, _points, _straight = cv2.QRCodeDetectorAruco().detectAndDecodeMulti(img)
    except cv2.error:
        return []
    return [t for t in texts if t] if ok else []


def _classic(img: np.ndarray) -> list[str]:
    try:
        text, _points, _straight = cv2.QRCodeDetector().detectAndDecode(img)
    except cv2.error:
        return []
    return [text] if text else []


def _enlarged(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)


def _sharpened(img: np.ndarray) -> np.ndarray:
    return cv2.addWeighted(img, 2.0, cv2.GaussianBlur(img, (0, 0), 2), -1.0, 0)


def _unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(texts))


def decode_qr_passes(image_bytes: bytes) -> tuple[list[str], str | None]:
    """Like :func:`decode_qr`, and also the name of the pass that read the codes (or ``None``).

    Passes, in order, stopping at the first that reads anything: ``aruco`` and ``classic`` on the
    frame as it is; then, for frames of at most :data:`UPSCALE_MAX_SIDE` px, ``aruco_2x`` on the
    frame enlarged 2× (bicubic) and ``aruco_2x_sharpened`` on that after an unsharp mask.
    """
    img = _decode_image(image_bytes)
    if min(img.shape) < MIN_SIDE:
        return [], None
    if found := _aruco(img):
        return _unique(found), "aruco"
    if found := _classic(img):
        return _unique(found), "classic"
    if max(img.shape) > UPSCALE_MAX_SIDE:
        return [], None
    big = _enlarged(img)
    if found := _aruco(big):
        return _unique(found), "aruco_2x"
    if found := _aruco(_sharpened(big)):
        return _unique(found), "aruco_2x_sharpened"
    return [], None


def decode_qr(image_bytes: bytes) -> list[str]:
    """The texts of the QR codes found in a PNG or JPEG image, de-duplicated, in order found.

    Raises :class:`QrScanError` for input that is too large, not PNG/JPEG, or corrupt; returns
    ``[]`` for a good image in which no code could be read. CPU-bound: run it in a worker thread.
    """
    return decode_qr_passes(image_bytes)[0]
