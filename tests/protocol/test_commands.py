from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.protocol import (
    ACTION_SPECS,
    ACTIONS,
    TERMINAL,
    ActionSpec,
    CommandBody,
    CommandRefused,
    CommandStatus,
    RefusalReason,
    SyncProtocolError,
    check_args,
    sign_command,
    verify_command,
)
from trust import SigningKey

NOW = 1_800_000_000_000
KEY = SigningKey.generate()
KEYS = {KEY.kid: KEY.verify_key}


def body(**over: object) -> CommandBody:
    fields: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "gateway": "gw-1",
        "target": "b1-main",
        "action": "door.unlock",
        "seq": 1,
        "issued_at": NOW,
        "expires_at": NOW + 30_000,
        "kid": KEY.kid,
        "actor": "account:7",
        "args": {"pulse_ms": 3000},
    }
    fields.update(over)
    return CommandBody(**fields)  # type: ignore[arg-type]


def refused(data: bytes, gateway: str = "gw-1", now: int = NOW) -> RefusalReason:
    with pytest.raises(CommandRefused) as info:
        verify_command(data, KEYS, gateway, now)
    return info.value.reason


def test_round_trip() -> None:
    b = body()
    assert verify_command(sign_command(KEY, b), KEYS, "gw-1", NOW + 1) == b


def test_every_check_refuses_with_its_reason() -> None:
    good = sign_command(KEY, body())
    outer = json.loads(good)
    tampered = json.dumps({"b": outer["b"].replace("b1-main", "b2-main"), "s": outer["s"]})
    assert refused(tampered.encode()) is RefusalReason.BAD_SIGNATURE
    assert refused(good, gateway="gw-2") is RefusalReason.WRONG_GATEWAY
    assert refused(good, now=NOW + 30_000) is RefusalReason.EXPIRED
    assert refused(good, now=NOW - 60_000) is RefusalReason.NOT_YET_VALID
    other = SigningKey.generate()
    stranger = sign_command(other, body(kid=other.kid))
    assert refused(stranger) is RefusalReason.UNKNOWN_KEY
    assert refused(b"{}") is RefusalReason.MALFORMED
    assert refused(b"x" * 5000) is RefusalReason.MALFORMED
    assert refused(sign_command(KEY, body(action="door.hold_open"))) is (
        RefusalReason.UNSUPPORTED_ACTION
    )


def test_meter_read_is_a_known_action() -> None:
    b = body(action="meter.read", target="m1", args={})
    assert verify_command(sign_command(KEY, b), KEYS, "gw-1", NOW + 1) == b


def test_every_action_names_its_target_kind_and_terminal_outcomes() -> None:
    parcel_actions = {
        "parcel.deposit",
        "parcel.reopen",
        "parcel.pickup",
        "parcel.retrieve",
        "parcel.cancel",
    }
    assert frozenset(ACTION_SPECS) == ACTIONS == {"door.unlock", "meter.read"} | parcel_actions
    assert ACTION_SPECS["door.unlock"].target == "door"
    assert ACTION_SPECS["meter.read"].target == "meter"
    assert {ACTION_SPECS[a].target for a in parcel_actions} == {"locker_bank"}
    assert ACTION_SPECS["parcel.cancel"].outcomes == {CommandStatus.COMPLETED}
    assert ACTION_SPECS["meter.read"].outcomes == {CommandStatus.COMPLETED}
    for spec in ACTION_SPECS.values():
        assert spec.outcomes <= TERMINAL
        assert CommandStatus.FAILED not in spec.outcomes
    with pytest.raises(ValueError, match="terminal"):
        ActionSpec("door.hold_open", "door", frozenset({CommandStatus.ACKNOWLEDGED}))
    with pytest.raises(TypeError):
        ACTION_SPECS["door.hold_open"] = ACTION_SPECS["door.unlock"]  # type: ignore[index]


def test_args_are_bounded() -> None:
    assert check_args({"pulse_ms": 3000, "code": "x"}) == {"pulse_ms": 3000, "code": "x"}
    for bad in (
        [("pulse_ms", 1)],
        {f"a{i}": i for i in range(17)},
        {"bad name": 1},
        {"flag": True},
        {"ratio": 0.5},
        {"text": "x" * 257},
    ):
        with pytest.raises(SyncProtocolError):
            check_args(bad)


def test_signer_refuses_long_lifetimes() -> None:
    with pytest.raises(ValueError, match="at most"):
        sign_command(KEY, body(expires_at=NOW + 61_000))


def test_refusal_carries_command_id_when_known() -> None:
    b = body()
    with pytest.raises(CommandRefused) as info:
        verify_command(sign_command(KEY, b), KEYS, "gw-9", NOW)
    assert info.value.command_id == b.id


@given(st.binary(max_size=600))
def test_random_bytes_are_refused_never_crash(data: bytes) -> None:
    with pytest.raises(CommandRefused):
        verify_command(data, KEYS, "gw-1", NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["b", "s", "x"]), json_values, max_size=3))
def test_random_json_is_refused_never_crash(obj: dict[str, object]) -> None:
    with pytest.raises(CommandRefused):
        verify_command(json.dumps(obj).encode(), KEYS, "gw-1", NOW)
