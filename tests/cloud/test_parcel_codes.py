"""Pickup codes and QR tokens in the cloud: the cross-side contract with the gateway.

The gateway chooses a code with :func:`choose_code` under its site code key (read from the key
file the cloud wrote at provisioning) and reports only ``code_n``; the cloud must recompute the
very same code from its master key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sync.protocol.pickup_code import (
    choose_code,
    code_index,
    derive_code,
    derive_site_code_key,
)
from cloud_sync.protocol.tokens import (
    PICKUP_MAX_LIFETIME_MS,
    PickupToken,
    TokenRefusal,
    TokenRefused,
    verify_token,
)
from cloud_sync.service.keys import PARCEL_CODE_KEY_FILE, CloudKeys
from cloud_sync.service.parcel_codes import NoPickupCode, pickup_code, pickup_token
from cloud_sync.service.tables import Parcel
from gateway.parcels import load_code_key
from trust import write_secret

T0 = 1_795_830_550_000
DAY = 24 * 3_600_000


@dataclass(frozen=True)
class P:
    id: str
    gateway_id: str
    code_n: int | None


def test_the_cloud_recomputes_the_code_the_gateway_chose(tmp_path: Path) -> None:
    keys = CloudKeys.load_or_create(tmp_path / "cloud")
    # Provisioning writes the gateway's derived key to its key directory; the gateway reads it.
    gw_key_file = tmp_path / "gateway" / "parcel-code.key"
    gw_key_file.parent.mkdir(mode=0o700)
    write_secret(gw_key_file, keys.gateway_code_key("gw-7f3a"))
    gateway_key = load_code_key(gw_key_file)  # exactly as the gateway reads it at start-up
    taken: set[str] = set()
    for digits in (6, 7, 8):
        for _ in range(40):
            parcel = uuid.uuid4().hex
            n, code, index = choose_code(gateway_key, parcel, "A", taken, digits)
            taken.add(index)
            cloud = pickup_code(keys, P(parcel, "gw-7f3a", n), digits)
            assert cloud == code
            assert len(cloud) == digits
            assert code_index(gateway_key, "A", cloud) == index


def test_a_taken_code_moves_n_and_the_cloud_follows(tmp_path: Path) -> None:
    keys = CloudKeys.load_or_create(tmp_path / "cloud")
    key = keys.gateway_code_key("gw-1")
    parcel = uuid.uuid4().hex
    first = code_index(key, "A", derive_code(key, parcel, 0))
    second = code_index(key, "A", derive_code(key, parcel, 1))
    n, code, _ = choose_code(key, parcel, "A", {first, second})
    assert n == 2
    assert pickup_code(keys, P(parcel, "gw-1", 2)) == code
    assert pickup_code(keys, P(parcel, "gw-1", 0)) != code


def test_the_code_depends_on_the_master_key_and_the_gateway(tmp_path: Path) -> None:
    keys = CloudKeys.load_or_create(tmp_path / "cloud")
    parcel = uuid.uuid4().hex
    master = (tmp_path / "cloud" / PARCEL_CODE_KEY_FILE).read_bytes()
    assert pickup_code(keys, P(parcel, "gw-1", 0)) == derive_code(
        derive_site_code_key(master, "gw-1"), parcel, 0
    )
    other = CloudKeys.load_or_create(tmp_path / "other-cloud")
    codes = {
        pickup_code(keys, P(parcel, "gw-1", 0)),
        pickup_code(keys, P(parcel, "gw-2", 0)),
        pickup_code(other, P(parcel, "gw-1", 0)),
    }
    assert len(codes) == 3  # (equal by chance with probability ~3e-8)


def test_a_parcel_row_works_and_without_code_n_there_is_no_code(cloud_keys: CloudKeys) -> None:
    row = Parcel(
        id=uuid.uuid4().hex,
        site_id=1,
        gateway_id="gw-1",
        bank_id=1,
        size="M",
        unit_label="1-101",
        state="waiting",
        code_n=4,
        created_at=T0,
        updated_at=T0,
    )
    assert pickup_code(cloud_keys, row) == derive_code(
        cloud_keys.gateway_code_key("gw-1"), row.id, 4
    )
    row.code_n = None
    with pytest.raises(NoPickupCode):
        pickup_code(cloud_keys, row)
    with pytest.raises(ValueError, match="digits"):
        pickup_code(cloud_keys, P(row.id, "gw-1", 0), digits=5)
    with pytest.raises(ValueError, match="gateway id"):
        pickup_code(cloud_keys, P(row.id, "gw/1", 0))
    with pytest.raises(ValueError, match="parcel"):
        pickup_code(cloud_keys, P("not-a-parcel", "gw-1", 0))


def test_a_pickup_token_verifies_at_the_gateway(cloud_keys: CloudKeys) -> None:
    parcel = uuid.uuid4().hex
    text = pickup_token(cloud_keys, P(parcel, "gw-1", 0), "A", T0)
    verify_keys = {cloud_keys.signing.kid: cloud_keys.signing.verify_key}
    token = verify_token(text, verify_keys, "gw-1", T0 + DAY)
    assert token == PickupToken(
        parcel=parcel,
        gateway="gw-1",
        bank="A",
        issued_at=T0,
        expires_at=T0 + PICKUP_MAX_LIFETIME_MS,
        kid=cloud_keys.signing.kid,
    )
    with pytest.raises(TokenRefused) as refused:
        verify_token(text, verify_keys, "gw-2", T0 + DAY)
    assert refused.value.reason is TokenRefusal.WRONG_GATEWAY
    with pytest.raises(TokenRefused) as refused:
        verify_token(text, verify_keys, "gw-1", T0 + PICKUP_MAX_LIFETIME_MS)
    assert refused.value.reason is TokenRefusal.EXPIRED


def test_a_pickup_tokens_lifetime_is_capped(cloud_keys: CloudKeys) -> None:
    parcel = P(uuid.uuid4().hex, "gw-1", None)  # a token needs no code
    verify_keys = {cloud_keys.signing.kid: cloud_keys.signing.verify_key}
    short = pickup_token(cloud_keys, parcel, "A", T0, lifetime_ms=DAY)
    assert verify_token(short, verify_keys, "gw-1", T0).expires_at == T0 + DAY
    long = pickup_token(cloud_keys, parcel, "A", T0, lifetime_ms=30 * DAY)
    assert verify_token(long, verify_keys, "gw-1", T0).expires_at == T0 + 14 * DAY
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="lifetime"):
            pickup_token(cloud_keys, parcel, "A", T0, lifetime_ms=bad)
    with pytest.raises(ValueError, match="bank"):
        pickup_token(cloud_keys, parcel, "A B", T0)
    with pytest.raises(ValueError, match="parcel"):
        pickup_token(cloud_keys, P("x", "gw-1", None), "A", T0)
