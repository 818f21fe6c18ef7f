"""QR rendering with OpenCV's encoder, read back by OpenCV and by zxing-cpp (independent)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.protocol import MAX_TOKEN_CHARS, CourierPass, PickupToken, sign_token
from cloud_sync.service.qr_image import (
    DEFAULT_MODULE_PX,
    ERROR_CORRECTION,
    MAX_MODULE_PX,
    QUIET_ZONE_MODULES,
    _check_reads_back,
    qr_matrix,
    render_qr_png,
)
from trust import SigningKey

NOW = 1_800_000_000_000
KEY = SigningKey.generate()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def pickup_token() -> str:
    return sign_token(
        KEY, PickupToken("ab" * 16, "gw-00017", "A", NOW, NOW + 14 * 86_400_000, KEY.kid)
    )


def longest_token() -> str:
    body = CourierPass((1 << 53) - 1, "顺" * 31 + "x" * 33, "g" * 64, NOW, NOW + 1, KEY.kid)
    text = sign_token(KEY, body)
    assert len(text) > 500
    return text


def load(png: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    return img


def cv2_reads(img: np.ndarray) -> str:
    text, _points, _straight = cv2.QRCodeDetectorAruco().detectAndDecode(img)
    return text


def zxing_reads(img: np.ndarray) -> list[tuple[str, str]]:
    # QR only: zxing also "finds" short Codabar/ITF codes in some QR module patterns.
    found = zxingcpp.read_barcodes(img, formats=zxingcpp.BarcodeFormat.QRCode)
    return [(r.text, r.ec_level) for r in found]


@pytest.mark.parametrize("make", [pickup_token, longest_token], ids=["pickup", "longest"])
def test_renders_a_png_both_decoders_read(make: object) -> None:
    token = make()  # type: ignore[operator]
    png = render_qr_png(token)
    assert png.startswith(PNG_MAGIC)
    img = load(png)
    assert cv2_reads(img) == token
    assert zxing_reads(img) == [(token, ERROR_CORRECTION)]


def test_geometry_scale_and_quiet_zone() -> None:
    token = pickup_token()
    symbol = qr_matrix(token)
    modules = symbol.shape[0]
    assert symbol.shape == (modules, modules)
    assert (modules - 17) % 4 == 0  # a real QR version: 21, 25, ... 177
    assert set(np.unique(symbol)) == {0, 255}
    finder = symbol[:7, :7] == 0  # top-left finder pattern: dark ring, light ring, dark 3×3
    assert finder[0].all()
    assert finder[:, 0].all()
    assert finder[2:5, 2:5].all()
    assert not finder[1, 1:6].any()
    for px in (1, DEFAULT_MODULE_PX, MAX_MODULE_PX):
        img = load(render_qr_png(token, px))
        side = (modules + 2 * QUIET_ZONE_MODULES) * px
        assert img.shape == (side, side)
        q = QUIET_ZONE_MODULES * px
        border = np.concatenate(
            [img[:q].ravel(), img[-q:].ravel(), img[:, :q].ravel(), img[:, -q:].ravel()]
        )
        assert (border == 255).all()
        assert (img[q : q + px, q : q + px] == 0).all()  # the finder's corner starts right there
        inner = img[q:-q, q:-q]
        expected = cv2.resize(symbol, None, fx=px, fy=px, interpolation=cv2.INTER_NEAREST)
        assert np.array_equal(inner, expected)


def test_typical_token_is_small() -> None:
    png = render_qr_png(pickup_token())
    assert len(png) < 4096
    assert qr_matrix(pickup_token()).shape[0] <= 73  # version 14 at most for a typical token


@pytest.mark.parametrize(
    "text",
    ["", "x" * (MAX_TOKEN_CHARS + 1), "CY1.é", "CY1.\n", "\x00", b"CY1.abc", None],
    ids=["empty", "too_long", "non_ascii", "newline", "nul", "bytes", "none"],
)
def test_input_is_bounded(text: object) -> None:
    with pytest.raises(ValueError, match="QR text"):
        render_qr_png(text)  # type: ignore[arg-type]


@pytest.mark.parametrize("px", [0, -1, MAX_MODULE_PX + 1, True, 2.5])
def test_scale_is_bounded(px: object) -> None:
    with pytest.raises(ValueError, match="module_px"):
        render_qr_png("CY1.abc", px)  # type: ignore[arg-type]


PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(PRINTABLE, min_size=1, max_size=512),
        # What OpenCV 5.0.0's forced byte mode got wrong: digits and upper case only.
        st.text("0123456789", min_size=1, max_size=512),
        st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 $%*+-./:", min_size=1, max_size=512),
    )
)
def test_any_printable_ascii_round_trips(text: str) -> None:
    img = load(render_qr_png(text, 4))
    assert cv2_reads(img) == text
    assert zxing_reads(img) == [(text, ERROR_CORRECTION)]


@pytest.mark.parametrize(
    "text", ["0" * 16, "1" * 15, "A" * 15, "123456789012345", "7" * 94, "CY1." + "Z9" * 200]
)
def test_texts_forced_byte_mode_corrupted_are_rendered_correctly(text: str) -> None:
    img = load(render_qr_png(text))
    assert cv2_reads(img) == text
    assert zxing_reads(img) == [(text, ERROR_CORRECTION)]


def test_a_symbol_that_does_not_read_back_is_an_error() -> None:
    symbol = qr_matrix(pickup_token()).copy()
    n = symbol.shape[0]
    symbol[n // 2 - 6 : n // 2 + 6, 9 : n - 9] ^= 255  # wipe a band of data modules
    with pytest.raises(RuntimeError, match="symbol"):
        _check_reads_back(symbol, pickup_token())
