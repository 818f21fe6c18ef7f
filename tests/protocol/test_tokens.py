"""Signed QR tokens: round trips, one refusal reason per check, canonical text, domain separation,
and fuzzing that nothing but TokenRefused ever escapes verify_token."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloud_sync.protocol import (
    MAX_TOKEN_CHARS,
    TOKEN_DOMAIN,
    CommandBody,
    CommandRefused,
    CourierPass,
    PickupToken,
    RefusalReason,
    SyncProtocolError,
    TokenRefusal,
    TokenRefused,
    sign_command,
    sign_token,
    verify_command,
    verify_token,
)
from cloud_sync.protocol.commands import SIGNING_DOMAIN
from cloud_sync.protocol.tokens import (
    COURIER_MAX_LIFETIME_MS,
    MAX_ACCOUNT_ID,
    PICKUP_MAX_LIFETIME_MS,
    TOKEN_CLOCK_SKEW_MS,
)
from cloud_sync.protocol.wire import encode
from trust import SignatureError, SigningKey

NOW = 1_800_000_000_000
DAY = 86_400_000
KEY = SigningKey.generate()
KEYS = {KEY.kid: KEY.verify_key}
PARCEL = "0123456789abcdef0123456789abcdef"


def pickup(**over: object) -> PickupToken:
    fields: dict[str, object] = {
        "parcel": PARCEL,
        "gateway": "gw-1",
        "bank": "A",
        "issued_at": NOW,
        "expires_at": NOW + 7 * DAY,
        "kid": KEY.kid,
    }
    fields.update(over)
    return PickupToken(**fields)  # type: ignore[arg-type]


def courier(**over: object) -> CourierPass:
    fields: dict[str, object] = {
        "account": 42,
        "company": "SF Express",
        "gateway": "gw-1",
        "issued_at": NOW,
        "expires_at": NOW + DAY // 2,
        "kid": KEY.kid,
    }
    fields.update(over)
    return CourierPass(**fields)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge(body: bytes, key: SigningKey = KEY, domain: str = TOKEN_DOMAIN) -> str:
    """A token over arbitrary body bytes, signed for real: what a buggy or hostile signer sends."""
    return f"CY1.{b64(body)}.{b64(key.sign(domain, body))}"


def forge_obj(obj: dict[str, Any]) -> str:
    return forge(encode(obj))


def refused(text: str | bytes, gateway: str = "gw-1", now: int = NOW) -> TokenRefusal:
    with pytest.raises(TokenRefused) as info:
        verify_token(text, KEYS, gateway, now)
    return info.value.reason


# --- round trips and the format -------------------------------------------------------------


def test_pickup_round_trip() -> None:
    body = pickup()
    text = sign_token(KEY, body)
    assert text.startswith("CY1.")
    assert text.isascii()
    assert len(text) <= MAX_TOKEN_CHARS
    assert verify_token(text, KEYS, "gw-1", NOW + 1) == body
    assert verify_token(text.encode("ascii"), KEYS, "gw-1", NOW + 1) == body


def test_courier_round_trip_with_non_ascii_company() -> None:
    body = courier(company="顺丰速运 SF")
    assert verify_token(sign_token(KEY, body), KEYS, "gw-1", NOW) == body


def test_body_is_the_documented_canonical_json() -> None:
    text = sign_token(KEY, pickup())
    body = base64.urlsafe_b64decode(text.split(".")[1] + "==")
    assert body == (
        b'{"bank":"A","exp":%d,"gw":"gw-1","iat":%d,"kid":"%s","p":"%s","t":"pickup","v":1}'
        % (NOW + 7 * DAY, NOW, KEY.kid.encode(), PARCEL.encode())
    )
    courier_body = json.loads(
        base64.urlsafe_b64decode(sign_token(KEY, courier()).split(".")[1] + "==")
    )
    assert set(courier_body) == {"a", "co", "exp", "gw", "iat", "kid", "t", "v"}
    assert courier_body["t"] == "courier"
    assert courier_body["v"] == 1


def test_signing_is_deterministic_so_one_body_has_one_text() -> None:
    assert sign_token(KEY, pickup()) == sign_token(KEY, pickup())


def test_largest_pickup_token_fits() -> None:
    body = pickup(gateway="g" * 64, bank="b" * 64, issued_at=(1 << 62), expires_at=(1 << 62) + 1)
    assert len(sign_token(KEY, body)) <= MAX_TOKEN_CHARS


# --- every check, with its reason ------------------------------------------------------------


def test_every_check_refuses_with_its_reason() -> None:
    good = sign_token(KEY, pickup())
    body_b64, sig_b64 = good.split(".")[1:]
    tampered_body = encode({**pickup().to_obj(), "bank": "B"})
    assert refused(f"CY1.{b64(tampered_body)}.{sig_b64}") is TokenRefusal.BAD_SIGNATURE
    assert refused(good, gateway="gw-2") is TokenRefusal.WRONG_GATEWAY
    assert refused(good, now=NOW + 7 * DAY) is TokenRefusal.EXPIRED
    assert refused(good, now=NOW - TOKEN_CLOCK_SKEW_MS - 1) is TokenRefusal.NOT_YET_VALID
    other = SigningKey.generate()
    assert refused(sign_token(other, pickup(kid=other.kid))) is TokenRefusal.UNKNOWN_KEY
    assert refused("CY1..") is TokenRefusal.MALFORMED
    assert refused("") is TokenRefusal.MALFORMED
    assert refused(good + "x" * (MAX_TOKEN_CHARS - len(good) + 1)) is TokenRefusal.MALFORMED
    assert refused(f"CY2.{body_b64}.{sig_b64}") is TokenRefusal.MALFORMED
    assert refused(forge_obj({**pickup().to_obj(), "t": "visitor"})) is (
        TokenRefusal.UNSUPPORTED_TYPE
    )
    long_life = {**pickup().to_obj(), "exp": NOW + PICKUP_MAX_LIFETIME_MS + 1}
    assert refused(forge_obj(long_life)) is TokenRefusal.LIFETIME_TOO_LONG
    long_pass = {**courier().to_obj(), "exp": NOW + COURIER_MAX_LIFETIME_MS + 1}
    assert refused(forge_obj(long_pass)) is TokenRefusal.LIFETIME_TOO_LONG
    backwards = {**pickup().to_obj(), "exp": NOW}
    assert refused(forge_obj(backwards)) is TokenRefusal.LIFETIME_TOO_LONG


def test_window_edges() -> None:
    text = sign_token(KEY, pickup(expires_at=NOW + 1000))
    assert verify_token(text, KEYS, "gw-1", NOW - TOKEN_CLOCK_SKEW_MS)  # a lagging gateway clock
    assert verify_token(text, KEYS, "gw-1", NOW + 999)
    assert refused(text, now=NOW + 1000) is TokenRefusal.EXPIRED
    assert refused(text, now=NOW - TOKEN_CLOCK_SKEW_MS - 1) is TokenRefusal.NOT_YET_VALID


def test_the_longest_lifetimes_are_accepted() -> None:
    p = pickup(expires_at=NOW + PICKUP_MAX_LIFETIME_MS)
    c = courier(expires_at=NOW + COURIER_MAX_LIFETIME_MS)
    assert verify_token(sign_token(KEY, p), KEYS, "gw-1", NOW) == p
    assert verify_token(sign_token(KEY, c), KEYS, "gw-1", NOW) == c


def test_the_signature_is_checked_before_the_body_is_interpreted() -> None:
    """A body that is nonsense but unsigned is a bad signature, not a malformed body."""
    junk = encode({"kid": KEY.kid, "t": "pickup", "p": "not a parcel", "v": 99})
    sig = b64(SigningKey.generate().sign(TOKEN_DOMAIN, junk))
    assert refused(f"CY1.{b64(junk)}.{sig}") is TokenRefusal.BAD_SIGNATURE


@pytest.mark.parametrize(
    "obj",
    [
        {**pickup().to_obj(), "v": 2},
        {**pickup().to_obj(), "p": PARCEL.upper()},
        {**pickup().to_obj(), "bank": "A B"},
        {**pickup().to_obj(), "iat": -1},
        {**pickup().to_obj(), "iat": True},
        {**pickup().to_obj(), "extra": 1},
        {k: v for k, v in pickup().to_obj().items() if k != "bank"},
        {**courier().to_obj(), "a": 0},
        {**courier().to_obj(), "a": MAX_ACCOUNT_ID + 1},
        {**courier().to_obj(), "a": "42"},
        {**courier().to_obj(), "co": ""},
        {**courier().to_obj(), "co": "x" * 65},
        {**courier().to_obj(), "co": "SF\nExpress"},
        {**courier().to_obj(), "p": PARCEL},
    ],
    ids=lambda o: ",".join(f"{k}={v!r}"[:24] for k, v in o.items() if k in {"v", "extra"}) or "x",
)
def test_signed_but_invalid_bodies_are_malformed(obj: dict[str, Any]) -> None:
    assert refused(forge_obj(obj)) is TokenRefusal.MALFORMED


def test_non_canonical_json_is_malformed_even_when_signed() -> None:
    spaced = json.dumps(pickup().to_obj(), sort_keys=True).encode()  # ", " and ": " separators
    assert refused(forge(spaced)) is TokenRefusal.MALFORMED
    unsorted = json.dumps(pickup().to_obj(), separators=(",", ":")).encode()
    assert refused(forge(unsorted)) is TokenRefusal.MALFORMED
    escaped = encode(courier(company="顺丰").to_obj()).replace("顺".encode(), b"\\u987a")
    assert refused(forge(escaped)) is TokenRefusal.MALFORMED


def test_non_canonical_base64_is_malformed() -> None:
    good = sign_token(KEY, pickup())
    prefix, body_b64, sig_b64 = good.split(".")
    assert refused(f"{prefix}.{body_b64}=.{sig_b64}") is TokenRefusal.MALFORMED
    # Same 64 signature bytes, different text: the last character's two spare bits set.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig_b64[-1])
    twin = sig_b64[:-1] + alphabet[last ^ 0b0001]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(sig_b64 + "==")
    assert refused(f"{prefix}.{body_b64}.{twin}") is TokenRefusal.MALFORMED
    assert refused(f"{prefix}.{body_b64}.{sig_b64.replace(sig_b64[5], '+', 1)}") is (
        TokenRefusal.MALFORMED
    )


def test_non_ascii_and_odd_types_are_malformed() -> None:
    good = sign_token(KEY, pickup())
    assert refused(good[:-1] + "é") is TokenRefusal.MALFORMED
    assert refused(good.encode() + b"\xff") is TokenRefusal.MALFORMED
    assert refused(None) is TokenRefusal.MALFORMED  # type: ignore[arg-type]
    assert refused(12345) is TokenRefusal.MALFORMED  # type: ignore[arg-type]


# --- the signer ---------------------------------------------------------------------------


def test_signer_refuses_what_the_verifier_would() -> None:
    with pytest.raises(ValueError, match="kid"):
        sign_token(KEY, pickup(kid=SigningKey.generate().kid))
    with pytest.raises(ValueError, match="at most"):
        sign_token(KEY, pickup(expires_at=NOW + PICKUP_MAX_LIFETIME_MS + 1))
    with pytest.raises(ValueError, match="at most"):
        sign_token(KEY, courier(expires_at=NOW + COURIER_MAX_LIFETIME_MS + 1))
    with pytest.raises(ValueError, match="at most"):
        sign_token(KEY, pickup(expires_at=NOW))
    with pytest.raises(ValueError, match="over 512"):
        sign_token(KEY, courier(gateway="g" * 64, company="顺" * 64, account=MAX_ACCOUNT_ID))


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        (pickup, "parcel", "xyz"),
        (pickup, "gateway", ""),
        (pickup, "bank", "b" * 65),
        (pickup, "kid", "ABCDEF0123456789"),
        (courier, "account", True),
        (courier, "company", "\x00"),
        (courier, "expires_at", 1 << 63),
    ],
)
def test_bodies_are_valid_by_construction(make: Any, field: str, value: object) -> None:
    with pytest.raises(SyncProtocolError):
        make(**{field: value})


# --- domain separation ----------------------------------------------------------------------


def test_a_command_signature_never_passes_as_a_token() -> None:
    cmd = CommandBody(
        id=uuid.uuid4().hex,
        gateway="gw-1",
        target="A",
        action="door.unlock",
        seq=1,
        issued_at=NOW,
        expires_at=NOW + 30_000,
        kid=KEY.kid,
        actor="account:7",
        args={"pulse_ms": 3000},
    )
    wire = json.loads(sign_command(KEY, cmd))
    cmd_body, cmd_sig = wire["b"].encode(), wire["s"]
    assert refused(f"CY1.{b64(cmd_body)}.{cmd_sig}") is TokenRefusal.BAD_SIGNATURE
    # Even a token-shaped body signed under the command domain is refused as a token.
    body = encode(pickup().to_obj())
    assert refused(forge(body, domain=SIGNING_DOMAIN)) is TokenRefusal.BAD_SIGNATURE
    with pytest.raises(SignatureError):
        KEY.verify_key.verify(TOKEN_DOMAIN, cmd_body, base64.urlsafe_b64decode(cmd_sig + "=="))


def test_a_token_signature_never_passes_as_a_command() -> None:
    _prefix, body_b64, sig_b64 = sign_token(KEY, pickup()).split(".")
    body = base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4)).decode()
    with pytest.raises(CommandRefused) as info:
        verify_command(json.dumps({"b": body, "s": sig_b64}).encode(), KEYS, "gw-1", NOW)
    assert info.value.reason is RefusalReason.BAD_SIGNATURE
    # And a command-shaped body signed under the token domain is no command either.
    cmd_obj = {
        "v": 1,
        "id": uuid.uuid4().hex,
        "gw": "gw-1",
        "target": "A",
        "action": "door.unlock",
        "args": {},
        "seq": 1,
        "iat": NOW,
        "exp": NOW + 30_000,
        "kid": KEY.kid,
        "actor": "account:7",
    }
    text = encode(cmd_obj).decode()
    sig = b64(KEY.sign(TOKEN_DOMAIN, text.encode()))
    with pytest.raises(CommandRefused) as info:
        verify_command(json.dumps({"b": text, "s": sig}).encode(), KEYS, "gw-1", NOW)
    assert info.value.reason is RefusalReason.BAD_SIGNATURE


# --- properties and fuzzing -----------------------------------------------------------------

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
times = st.integers(0, (1 << 62))
pickups = st.builds(
    lambda p, gw, bank, iat, life: PickupToken(p, gw, bank, iat, iat + life, KEY.kid),
    st.from_regex(r"[0-9a-f]{32}", fullmatch=True),
    ids,
    ids,
    times,
    st.integers(1, PICKUP_MAX_LIFETIME_MS),
)
couriers = st.builds(
    lambda a, co, gw, iat, life: CourierPass(a, co, gw, iat, iat + life, KEY.kid),
    st.integers(1, MAX_ACCOUNT_ID),
    st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
        min_size=1,
        max_size=64,
    ).filter(str.isprintable),
    ids,
    times,
    st.integers(1, COURIER_MAX_LIFETIME_MS),
)


@settings(max_examples=200)
@given(st.one_of(pickups, couriers))
def test_any_valid_body_round_trips_or_is_refused_as_too_big(
    body: PickupToken | CourierPass,
) -> None:
    if len(f"CY1.{b64(encode(body.to_obj()))}.") + 86 > MAX_TOKEN_CHARS:
        with pytest.raises(ValueError, match="over 512"):
            sign_token(KEY, body)
        return
    text = sign_token(KEY, body)
    assert len(text) <= MAX_TOKEN_CHARS
    assert text.isascii()
    assert verify_token(text, KEYS, body.gateway, body.issued_at) == body


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=600), st.binary(max_size=600)))
def test_random_input_is_only_ever_refused(data: str | bytes) -> None:
    with pytest.raises(TokenRefused):
        verify_token(data, KEYS, "gw-1", NOW)


b64_text = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=400)


@settings(max_examples=300)
@given(b64_text, b64_text, st.sampled_from(["CY1", "CY1.", "", "cy1"]))
def test_token_shaped_garbage_is_only_ever_refused(body: str, sig: str, prefix: str) -> None:
    with pytest.raises(TokenRefused):
        verify_token(f"{prefix}.{body}.{sig}", KEYS, "gw-1", NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.sampled_from([1, 2, "1", None]),
            "t": st.sampled_from(["pickup", "courier", "visitor", 1]),
            "p": st.sampled_from([PARCEL, "zz"]) | json_values,
            "gw": st.sampled_from(["gw-1", "gw-2"]) | json_values,
            "bank": st.sampled_from(["A"]) | json_values,
            "a": st.integers() | json_values,
            "co": st.text(max_size=70) | json_values,
            "iat": st.integers(NOW - DAY, NOW + DAY) | json_values,
            "exp": st.integers(NOW - DAY, NOW + 30 * DAY) | json_values,
        },
    ).map(lambda d: {**d, "kid": KEY.kid}),
    st.dictionaries(st.text(max_size=4), json_values, max_size=2),
)
def test_authentic_bodies_of_any_shape_verify_or_are_refused(
    obj: dict[str, Any], extra: dict[str, Any]
) -> None:
    """Signed by the real key, so parsing after the signature is what is under test."""
    text = forge_obj({**extra, **obj})
    assume(len(text) <= MAX_TOKEN_CHARS)
    try:
        token = verify_token(text, KEYS, "gw-1", NOW)
    except TokenRefused:
        return
    assert encode(token.to_obj()) == encode({**extra, **obj})


GOOD = sign_token(KEY, pickup())


@settings(max_examples=300)
@given(st.integers(0, len(GOOD) - 1), st.characters(codec="ascii") | st.characters())
def test_every_single_character_change_is_refused(at: int, char: str) -> None:
    assume(GOOD[at] != char)
    with pytest.raises(TokenRefused):
        verify_token(GOOD[:at] + char + GOOD[at + 1 :], KEYS, "gw-1", NOW)


@settings(max_examples=100)
@given(st.integers(0, len(GOOD) - 1), st.integers(1, 8))
def test_truncations_and_deletions_are_refused(at: int, n: int) -> None:
    with pytest.raises(TokenRefused):
        verify_token(GOOD[:at] + GOOD[at + n :], KEYS, "gw-1", NOW)
