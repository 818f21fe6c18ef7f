"""The gateway's QR scanner on camera-like frames of real signed tokens.

Done-when of the parcel-locker issue: "The QR tests decode camera-like images — blur, rotation,
perspective warp, noise — of codes made by a different QR library than the one production encodes
with." Codes here are made by ``segno`` (production renders with OpenCV's encoder), at the same
error correction level (M), then photographed synthetically: a 640×480 grey frame, the code on a
white card at an offset, rotated and tilted by one homography (rendered at 2× and area-averaged
down, as a sensor integrates light), low contrast and a lighting gradient, Gaussian blur, sensor
noise, and JPEG compression. Every frame in the envelope must decode to the exact token text, and
that text must verify. docs/qr-codes.md lists the envelope and the measured limits beyond it.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.protocol import (
    CourierPass,
    PickupToken,
    Token,
    sign_token,
    verify_token,
)
from cloud_sync.protocol.tokens import MAX_ACCOUNT_ID
from cloud_sync.service.qr_image import render_qr_png
from gateway.qr_scan import MAX_IMAGE_BYTES, MAX_SIDE, QrScanError, decode_qr, image_size
from trust import SigningKey

NOW = 1_800_000_000_000
DAY = 86_400_000
GATEWAY = "gw-00017"
KEY = SigningKey.generate()  # fresh each run: the envelope must hold for any signature bytes
KEYS = {KEY.kid: KEY.verify_key}
#: A pinned key for the beyond-the-envelope cases, so their frames are identical on every run.
PINNED = SigningKey(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
BACKGROUND = 118
W, H = 640, 480


def pickup_token(key: SigningKey = KEY, parcel: str = "5f0c" * 8) -> str:
    body = PickupToken(parcel, GATEWAY, "A", NOW, NOW + 14 * DAY, key.kid)
    return sign_token(key, body)


def segno_symbol(text: str) -> np.ndarray:
    """The code as made by segno: one pixel per module, its 4-module quiet zone, 0/255."""
    qr = segno.make_qr(text, error="m", mode="byte", boost_error=False)
    dark = np.array(list(qr.matrix_iter(scale=1, border=4)), dtype=bool)
    return np.where(dark, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Camera:
    """How the code appears in a 640×480 frame; every field is one kind of distortion."""

    side: float = 300.0  # px, the whole white card (symbol and quiet zone) before tilting
    center: tuple[float, float] = (330.0, 230.0)
    angle: float = 0.0  # degrees, in the image plane
    pitch: float = 0.0  # top edge foreshortened: far/near edge length ratio is 1 - pitch
    yaw: float = 0.0  # right edge foreshortened the same way
    contrast: float = 1.0  # 1 = full black to white
    lighting: float = 0.0  # brightness falls by this fraction from the right to the left edge
    blur: int = 0  # Gaussian kernel size (odd), 0 = none
    noise: float = 0.0  # sensor noise, standard deviation in grey levels
    jpeg: int | None = None  # JPEG quality, None = lossless PNG
    seed: int = 0


def photograph(symbol: np.ndarray, cam: Camera) -> bytes:
    """Encoded bytes of a camera frame showing ``symbol`` as ``cam`` says."""
    src_px = 8
    card = cv2.resize(symbol, None, fx=src_px, fy=src_px, interpolation=cv2.INTER_NEAREST)
    s = float(card.shape[0])
    half = cam.side / 2
    corners = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half
    corners[0:2, 0] *= 1 - cam.pitch  # top edge shorter and a little lower: receding
    corners[0:2, 1] *= 1 - cam.pitch / 2
    corners[1:3, 1] *= 1 - cam.yaw
    corners[1:3, 0] *= 1 - cam.yaw / 2
    a = math.radians(cam.angle)
    rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (corners @ rotation.T + np.array(cam.center)) * 2  # rendered at 2×, then area-averaged
    src = np.array([[0, 0], [s, 0], [s, s], [0, s]], dtype=np.float32)
    homography = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    big = cv2.warpPerspective(
        card, homography, (2 * W, 2 * H), flags=cv2.INTER_LINEAR, borderValue=BACKGROUND
    )
    img = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA).astype(np.float64)
    img = 128 + (img - 128) * cam.contrast
    img *= np.linspace(1 - cam.lighting, 1.0, W)[None, :]
    if cam.blur:
        img = cv2.GaussianBlur(img, (cam.blur, cam.blur), 0)
    if cam.noise:
        img += np.random.default_rng(cam.seed).normal(0, cam.noise, img.shape)
    frame = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if cam.jpeg is None:
        ok, buf = cv2.imencode(".png", frame)
    else:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg])
    assert ok
    return buf.tobytes()


# The envelope: each case decoded 30 of 30 random tokens when it was chosen (docs/qr-codes.md).
ENVELOPE = {
    "upright": Camera(),
    "offset_top_left": Camera(center=(170, 160)),
    "offset_bottom_right": Camera(center=(465, 318)),
    "rotated_15": Camera(angle=15),
    "rotated_30": Camera(angle=30),
    "rotated_45": Camera(angle=45),
    "rotated_90": Camera(angle=90),
    "rotated_170": Camera(angle=170),
    "blur_3": Camera(blur=3),
    "blur_5": Camera(blur=5),
    "blur_7": Camera(blur=7),
    "pitch_0.2": Camera(pitch=0.2),
    "pitch_0.3": Camera(pitch=0.3),
    "yaw_0.3": Camera(yaw=0.3),
    "pitch_and_yaw_0.2": Camera(pitch=0.2, yaw=0.2),
    "noise_10": Camera(noise=10),
    "noise_20": Camera(noise=20),
    "low_contrast": Camera(contrast=0.45),
    "uneven_lighting": Camera(contrast=0.6, lighting=0.5),
    "jpeg_60": Camera(jpeg=60),
    "small_180px": Camera(side=180),
    "small_150px": Camera(side=150),
    "handheld": Camera(angle=30, pitch=0.2, blur=5, noise=8, jpeg=60),
    "dim_and_tilted": Camera(
        angle=170, yaw=0.25, blur=3, noise=12, contrast=0.6, lighting=0.4, jpeg=60
    ),
}


@pytest.mark.parametrize("cam", ENVELOPE.values(), ids=ENVELOPE.keys())
def test_camera_frames_in_the_envelope_decode_and_verify(cam: Camera) -> None:
    token = pickup_token()
    frame = photograph(segno_symbol(token), cam)
    assert decode_qr(frame) == [token]
    body = verify_token(token, KEYS, GATEWAY, NOW + 1)
    assert isinstance(body, PickupToken)
    assert body.bank == "A"


# Beyond the envelope: measured to fail with every pass (0 of 20 random tokens). The frames are
# fixed (pinned key), so these stay deterministic; they show the failure is a clean "nothing
# decoded". If a newer OpenCV reads one, move it into the envelope and update docs/qr-codes.md.
BEYOND = {
    "pitch_and_yaw_0.3": Camera(pitch=0.3, yaw=0.3),
    "pitch_0.4": Camera(pitch=0.4),
    "blur_11": Camera(blur=11),
    "everything_at_once": Camera(
        angle=45, pitch=0.3, yaw=0.2, blur=7, noise=10, contrast=0.5, lighting=0.5, jpeg=60
    ),
}


@pytest.mark.parametrize("cam", BEYOND.values(), ids=BEYOND.keys())
def test_frames_beyond_the_envelope_decode_to_nothing_cleanly(cam: Camera) -> None:
    frame = photograph(segno_symbol(pickup_token(PINNED)), cam)
    assert decode_qr(frame) == []


def test_a_frame_without_a_code_is_nothing() -> None:
    blank = np.full((H, W), BACKGROUND, np.uint8)
    ok, png = cv2.imencode(".png", blank)
    assert ok
    assert decode_qr(png.tobytes()) == []


def test_production_rendering_decodes_and_verifies() -> None:
    """The cloud's own PNG (OpenCV's encoder) through the gateway's scanner, as is and on camera."""
    token = pickup_token()
    png = render_qr_png(token)
    assert decode_qr(png) == [token]
    symbol = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    module = 8
    symbol = cv2.resize(symbol, None, fx=1 / module, fy=1 / module, interpolation=cv2.INTER_AREA)
    assert decode_qr(photograph(symbol, ENVELOPE["handheld"])) == [token]


def test_colour_and_16_bit_images_are_read() -> None:
    token = pickup_token()
    frame = cv2.imdecode(
        np.frombuffer(photograph(segno_symbol(token), Camera(angle=15)), np.uint8),
        cv2.IMREAD_GRAYSCALE,
    )
    bgr = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGRA)
    wide = frame.astype(np.uint16) * 257
    for ext, img in ((".jpg", bgr), (".png", bgra), (".png", wide)):
        ok, buf = cv2.imencode(ext, img)
        assert ok
        assert decode_qr(buf.tobytes()) == [token], ext


# --- random token contents through segno and a light camera ---------------------------------

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,24}", fullmatch=True)
bodies = st.one_of(
    st.builds(
        lambda p, gw, bank, life: PickupToken(p, gw, bank, NOW, NOW + life, KEY.kid),
        st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
        ids,
        ids,
        st.integers(1, 14 * DAY),
    ),
    st.builds(
        lambda a, co, gw, life: CourierPass(a, co, gw, NOW, NOW + life, KEY.kid),
        st.integers(1, MAX_ACCOUNT_ID),
        st.text(st.characters(codec="utf-8", categories=("L", "N", "Zs")), min_size=1, max_size=40)
        .map(str.strip)
        .filter(lambda s: bool(s) and s.isprintable()),
        ids,
        st.integers(1, DAY),
    ),
)


@st.composite
def light_cameras(draw: st.DrawFn, modules: int) -> Camera:
    """A steady hand: any rotation, 3.2-4 px per module, mild blur and noise, maybe JPEG 80."""
    side = modules * draw(st.floats(3.2, 4.0))
    reach = side / math.sqrt(2) + 4  # the rotated card stays inside the frame
    return Camera(
        side=side,
        center=(draw(st.floats(reach, W - reach)), draw(st.floats(reach, H - reach))),
        angle=draw(st.floats(0, 360)),
        blur=draw(st.sampled_from([0, 3])),
        noise=draw(st.floats(0, 6)),
        jpeg=draw(st.sampled_from([None, 80])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies, st.data())
def test_random_tokens_survive_a_light_camera(body: Token, data: st.DataObject) -> None:
    try:
        token = sign_token(KEY, body)
    except ValueError:  # over 512 characters: never rendered
        return
    symbol = segno_symbol(token)
    cam = data.draw(light_cameras(symbol.shape[0]))
    assert decode_qr(photograph(symbol, cam)) == [token]
    assert verify_token(token, KEYS, body.gateway, NOW) == body


# --- hostile bytes ----------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _encoded(ext: str, width: int, height: int) -> bytes:
    ok, buf = cv2.imencode(ext, np.full((height, width), 255, np.uint8))
    assert ok
    return buf.tobytes()


def test_size_is_read_from_headers() -> None:
    assert image_size(_encoded(".png", 33, 17)) == ("png", 33, 17)
    assert image_size(_encoded(".jpg", 33, 17)) == ("jpeg", 33, 17)
    progressive = cv2.imencode(
        ".jpg", np.zeros((9, 70), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    assert image_size(progressive) == ("jpeg", 70, 9)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_encoded(".png", MAX_SIDE + 1, 4), id="png_too_wide"),
        pytest.param(_encoded(".jpg", 8, MAX_SIDE + 1), id="jpeg_too_tall"),
        pytest.param(_png_header_only(100_000, 100_000), id="png_bomb_header"),
        pytest.param(_png_header_only(0, 10), id="png_zero_width"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * (MAX_IMAGE_BYTES), id="over_512_KiB"),
        pytest.param(b"GIF89a" + b"\x00" * 64, id="gif"),
        pytest.param(b"BM" + b"\x00" * 64, id="bmp"),
        pytest.param(b"RIFF\x00\x00\x00\x00WEBPVP8 ", id="webp"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xd8\xff\xd9", id="jpeg_without_frame"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x01", id="jpeg_bad_segment_length"),
        pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", id="png_truncated_header"),
        pytest.param(_png_header_only(64, 64), id="png_without_pixels"),
    ],
)
def test_refused_bytes_raise_only_qr_scan_error(data: bytes) -> None:
    with pytest.raises(QrScanError):
        decode_qr(data)


def test_non_bytes_are_refused() -> None:
    with pytest.raises(QrScanError):
        decode_qr("not bytes")  # type: ignore[arg-type]


def test_the_largest_accepted_image_is_scanned() -> None:
    assert decode_qr(_encoded(".png", MAX_SIDE, MAX_SIDE)) == []
    assert decode_qr(_encoded(".png", 12, 12)) == []  # too small to hold a code


FRAME_PNG = photograph(segno_symbol(pickup_token(PINNED)), Camera(side=160, center=(200, 200)))
FRAME_JPEG = photograph(segno_symbol(pickup_token(PINNED)), Camera(angle=20, jpeg=70))


def _scan(data: bytes) -> None:
    try:
        out = decode_qr(data)
    except QrScanError:
        return
    assert isinstance(out, list)
    assert all(isinstance(t, str) for t in out)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_qr_scan_error(data: bytes) -> None:
    _scan(data)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]), st.binary(max_size=4096))
def test_random_bytes_behind_a_magic_number_raise_only_qr_scan_error(
    magic: bytes, rest: bytes
) -> None:
    _scan(magic + rest)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([FRAME_PNG, FRAME_JPEG]), st.floats(0, 1))
def test_truncated_frames_raise_only_qr_scan_error(frame: bytes, keep: float) -> None:
    _scan(frame[: int(len(frame) * keep)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([FRAME_PNG, FRAME_JPEG]),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
)
def test_corrupted_frames_raise_only_qr_scan_error(
    frame: bytes, edits: list[tuple[float, int]]
) -> None:
    data = bytearray(frame)
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    _scan(bytes(data))
