"""The replay guard and the verifier behind it, on a real SQLite file (no broker needed)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync.protocol import (
    SIGNING_DOMAIN,
    CommandBody,
    CommandRefused,
    CommandStatus,
    RefusalReason,
)
from gateway import CommandLog, GatewayMetrics, Outbox, ReplayGuard, Store
from tests.gateway.harness import CommandSigner, now_ms
from trust import SigningKey

GW = "gw-replay"
DOORS = ["door-1", "door-2"]
METERS = ["m1", "m2"]
TARGETS = {"door.unlock": DOORS, "meter.read": METERS}


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def signer(key: SigningKey) -> CommandSigner:
    return CommandSigner(key, GW)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "gateway.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    with Store(db, GW) as s:
        yield s


def guard_for(
    store: Store, key: SigningKey, targets: dict[str, list[str]] | None = None
) -> ReplayGuard:
    """A guard trusting ``key``, for ``targets`` (by default: doors and meters)."""
    return ReplayGuard(store, {key.kid: key.verify_key}, GW, targets or TARGETS)


def admit(guard: ReplayGuard, store: Store, payload: bytes) -> CommandBody:
    """Verify and accept ``payload`` the way the command receiver does."""
    now = now_ms()
    body = guard.verify(payload, now)
    with store.transaction() as tx:
        guard.accept(tx, body, now)
    return body


def refusal(guard: ReplayGuard, store: Store, payload: bytes) -> RefusalReason:
    with pytest.raises(CommandRefused) as info:
        admit(guard, store, payload)
    return info.value.reason


def test_accepted_command_is_recorded_with_its_seq(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    body = admit(guard, store, signer.unlock("door-1", seq=7)[1])

    state = guard.state(key.kid)
    assert state is not None
    assert state.last_seq == 7
    assert store.query("SELECT id, status, door FROM commands") == [(body.id, "sent", "door-1")]


def test_same_bytes_twice_are_replayed(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    _, payload = signer.unlock("door-1")
    admit(guard, store, payload)

    assert refusal(guard, store, payload) is RefusalReason.REPLAYED


def test_lower_or_equal_seq_is_out_of_sequence(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    admit(guard, store, signer.unlock("door-1", seq=10)[1])

    assert refusal(guard, store, signer.unlock("door-1", seq=9)[1]) is RefusalReason.OUT_OF_SEQUENCE
    assert refusal(guard, store, signer.unlock("door-2", seq=10)[1]) is (
        RefusalReason.OUT_OF_SEQUENCE
    )
    admit(guard, store, signer.unlock("door-2", seq=11)[1])
    state = guard.state(key.kid)
    assert state is not None
    assert state.last_seq == 11


def test_seq_is_tracked_per_signing_key(store: Store, key: SigningKey) -> None:
    other = SigningKey.generate()
    keys = {key.kid: key.verify_key, other.kid: other.verify_key}
    guard = ReplayGuard(store, keys, GW, TARGETS)
    admit(guard, store, CommandSigner(key, GW).unlock("door-1", seq=50)[1])

    admit(guard, store, CommandSigner(other, GW).unlock("door-1", seq=1)[1])


def test_unknown_target_is_refused_and_does_not_consume_the_seq(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    assert refusal(guard, store, signer.unlock("door-99", seq=5)[1]) is (
        RefusalReason.UNKNOWN_TARGET
    )

    assert guard.state(key.kid) is None
    admit(guard, store, signer.unlock("door-1", seq=5)[1])


def test_meter_read_is_accepted_for_a_meter_and_recorded_like_an_unlock(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    body = admit(guard, store, signer.unlock("m1", action="meter.read", seq=3)[1])

    assert store.query("SELECT id, action, status, door FROM commands") == [
        (body.id, "meter.read", "sent", "m1")
    ]
    assert refusal(guard, store, signer.sign(body)) is RefusalReason.REPLAYED


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("meter.read", "door-1"),  # a door is no meter
        ("meter.read", "m99"),  # not configured
        ("door.unlock", "m1"),  # a meter is no door
    ],
)
def test_a_target_the_action_does_not_apply_to_is_unknown(
    store: Store, key: SigningKey, signer: CommandSigner, action: str, target: str
) -> None:
    guard = guard_for(store, key)
    assert refusal(guard, store, signer.unlock(target, action=action, seq=5)[1]) is (
        RefusalReason.UNKNOWN_TARGET
    )

    assert guard.state(key.kid) is None
    assert store.query("SELECT count(*) FROM commands") == [(0,)]


def test_a_gateway_without_meters_has_no_meter_targets(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key, {"door.unlock": DOORS, "meter.read": []})

    assert refusal(guard, store, signer.unlock("m1", action="meter.read")[1]) is (
        RefusalReason.UNKNOWN_TARGET
    )


def test_an_action_without_a_handler_is_unsupported_and_keeps_the_seq(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key, {"door.unlock": DOORS})
    assert guard.actions == {"door.unlock"}

    assert refusal(guard, store, signer.unlock("m1", action="meter.read", seq=5)[1]) is (
        RefusalReason.UNSUPPORTED_ACTION
    )
    assert guard.state(key.kid) is None
    admit(guard, store, signer.unlock("door-1", seq=5)[1])


def test_replay_state_survives_reopening_the_database(
    db: Path, key: SigningKey, signer: CommandSigner
) -> None:
    _, first = signer.unlock("door-1", seq=3)
    with Store(db, GW) as store:
        admit(guard_for(store, key), store, first)

    with Store(db, GW) as store:
        guard = guard_for(store, key)
        assert refusal(guard, store, first) is RefusalReason.REPLAYED
        assert refusal(guard, store, signer.unlock("door-1", seq=2)[1]) is (
            RefusalReason.OUT_OF_SEQUENCE
        )
        admit(guard, store, signer.unlock("door-1", seq=4)[1])


def test_pruned_records_stay_refused_by_their_seq(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    body = signer.body("door-1", issued_at=now_ms())
    payload = signer.sign(body)
    admit(guard, store, payload)
    with store.transaction() as tx:
        tx.execute("UPDATE commands SET status = 'opened' WHERE id = ?", (body.id,))

    assert guard.prune(body.expires_at + 1) == 1
    assert refusal(guard, store, payload) is RefusalReason.OUT_OF_SEQUENCE


# -- the stateless checks, as the guard runs them --------------------------------------------


def test_tampered_byte_is_a_bad_signature(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    body = signer.body("door-1", args={"pulse_ms": 3000})
    payload = signer.sign(body)
    tampered = payload.replace(b"3000", b"9000")
    assert tampered != payload

    assert refusal(guard_for(store, key), store, tampered) is RefusalReason.BAD_SIGNATURE


def test_command_for_another_gateway_is_refused(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    payload = signer.unlock("door-1", gateway="gw-elsewhere")[1]

    assert refusal(guard_for(store, key), store, payload) is RefusalReason.WRONG_GATEWAY


def test_expired_command_is_refused(store: Store, key: SigningKey, signer: CommandSigner) -> None:
    payload = signer.unlock("door-1", issued_at=now_ms() - 45_000, lifetime_ms=30_000)[1]

    assert refusal(guard_for(store, key), store, payload) is RefusalReason.EXPIRED


def test_unknown_key_is_refused(store: Store, key: SigningKey) -> None:
    stranger = CommandSigner(SigningKey.generate(), GW)

    assert refusal(guard_for(store, key), store, stranger.unlock("door-1")[1]) is (
        RefusalReason.UNKNOWN_KEY
    )


def test_lifetime_over_sixty_seconds_is_refused(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    # sign_command will not make such a command, so sign the body by hand, as a rogue signer would.
    body = signer.body("door-1", lifetime_ms=61_000)
    text = json.dumps(body.to_obj(), sort_keys=True, separators=(",", ":"))
    sig = base64.urlsafe_b64encode(key.sign(SIGNING_DOMAIN, text.encode())).rstrip(b"=").decode()
    payload = json.dumps({"b": text, "s": sig}).encode()

    assert refusal(guard_for(store, key), store, payload) is RefusalReason.LIFETIME_TOO_LONG


def test_refused_commands_leave_no_record(
    store: Store, key: SigningKey, signer: CommandSigner
) -> None:
    guard = guard_for(store, key)
    refusal(guard, store, signer.unlock("door-1", issued_at=now_ms() - 45_000)[1])
    refusal(guard, store, signer.unlock("door-99")[1])

    assert store.query("SELECT count(*) FROM commands") == [(0,)]
    assert guard.state(key.kid) is None


# -- commands left unfinished by a crash --------------------------------------------------------


def test_unfinished_commands_fail_at_restart_and_report_it(
    db: Path, key: SigningKey, signer: CommandSigner
) -> None:
    with Store(db, GW) as store:
        body = admit(guard_for(store, key), store, signer.unlock("door-1")[1])
    # The process died here: accepted and committed, outcome unknown.

    with Store(db, GW) as store:
        outbox = Outbox(store)
        log = CommandLog(store, outbox, now_ms, GatewayMetrics())
        assert log.fail_unfinished() == [body.id]
        assert log.status(body.id) is CommandStatus.FAILED
        assert log.reason(body.id) == "interrupted"
        [event] = outbox.pending(10)
        assert event.type == "command.status"
        assert event.data == {"command": body.id, "status": "failed", "reason": "interrupted"}
        assert log.fail_unfinished() == []


def test_an_interrupted_meter_read_fails_at_restart_too(
    db: Path, key: SigningKey, signer: CommandSigner
) -> None:
    with Store(db, GW) as store:
        body = admit(guard_for(store, key), store, signer.unlock("m2", action="meter.read")[1])
        CommandLog(store, Outbox(store), now_ms, GatewayMetrics()).advance(
            body.id, CommandStatus.ACKNOWLEDGED
        )
    # The process died while the meter was being read.

    with Store(db, GW) as store:
        outbox = Outbox(store)
        log = CommandLog(store, outbox, now_ms, GatewayMetrics())
        assert log.fail_unfinished() == [body.id]
        assert (log.status(body.id), log.reason(body.id)) == (CommandStatus.FAILED, "interrupted")
        assert [e.data for e in outbox.pending(10)][-1] == {
            "command": body.id,
            "status": "failed",
            "reason": "interrupted",
        }
