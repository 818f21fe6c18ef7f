"""Locker settings, the compartment and parcel store, allocation, claims and the keypad lockout."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.errors import ConfigError
from gateway.locker_banks import (
    Alarm,
    CodeLockout,
    CompartmentState,
    LockerBanks,
    ParcelState,
)
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.parcels import load_code_key
from gateway.settings import GatewaySettings, LockerBankSettings, ParcelRules
from gateway.store import SCHEMA_VERSION, Store
from tests.gateway.locker_site import T0, Clock, new_parcel
from trust import write_secret

BOARDS = [
    {"id": "b0", "bus": "line", "board": 0},
    {"id": "bank-a-0", "bus": "line", "board": 2},
    {"id": "b1", "bus": "line", "board": 1, "locks": 4},
]


def settings(tmp_path: Path, lockers: list[dict[str, Any]], **extra: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "id": "gw",
        "data_dir": tmp_path,
        "buses": [{"name": "line", "url": "socket://127.0.0.1:1"}],
        "lockboards": BOARDS,
        "lockers": lockers,
        "parcels": {"code_key_file": tmp_path / "code.key"},
    }
    values.update(extra)
    return GatewaySettings.model_validate(values)


def bank(bank_id: str = "A", *compartments: tuple[int, str, int, str]) -> dict[str, Any]:
    return {
        "id": bank_id,
        "name": f"Bank {bank_id}",
        "compartments": [
            {"no": no, "board": board, "lock": lock, "size": size}
            for no, board, lock, size in compartments
        ],
    }


# -- settings ---------------------------------------------------------------------------------


def test_a_valid_locker_configuration(tmp_path: Path) -> None:
    s = settings(
        tmp_path,
        [bank("A", (1, "b0", 1, "S"), (2, "b0", 2, "L")), bank("B", (1, "b1", 1, "mini"))],
    )
    assert [b.id for b in s.lockers] == ["A", "B"]
    assert s.locker_bank("B") == s.lockers[1]
    assert s.locker_bank("C") is None
    assert s.parcels == ParcelRules(code_key_file=tmp_path / "code.key")
    assert (s.parcels.free_h, s.parcels.fee_cap_cents, s.parcels.retention_h) == (12, 300, 72)


@pytest.mark.parametrize(
    ("lockers", "message"),
    [
        ([bank("A", (1, "b0", 1, "S"), (1, "b0", 2, "S"))], "unique within a bank"),
        ([bank("A", (1, "b0", 1, "S")), bank("B", (2, "b0", 1, "S"))], "used twice"),
        ([bank("A", (1, "b0", 1, "S")), bank("A", (2, "b0", 2, "S"))], "bank ids must be unique"),
        ([bank("A", (1, "b9", 1, "S"))], "not configured"),
        ([bank("A", (1, "b1", 5, "S"))], "has 4 locks"),
        ([bank("A", (1, "b0", 17, "S"))], "less than or equal to 16"),
        ([bank("A", (0, "b0", 1, "S"))], "greater than or equal to 1"),
        ([bank("A", (1, "b0", 1, "XL"))], "mini"),
        ([bank("A b", (1, "b0", 1, "S"))], "locker bank id"),
        ([bank("A")], "at least 1 item"),
        ([{**bank("A", (1, "b0", 1, "S")), "terminal": "term/a"}], "terminal"),
        ([{**bank("A", (1, "b0", 1, "S")), "name": ""}], "at least 1 character"),
        ([{**bank("A", (1, "b0", 1, "S")), "layout": "4x4"}], "Extra inputs"),
    ],
)
def test_invalid_locker_configurations_are_refused(
    tmp_path: Path, lockers: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(tmp_path, lockers)


def test_the_code_key_is_required_with_lockers(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="code_key_file is required"):
        settings(tmp_path, [bank("A", (1, "b0", 1, "S"))], parcels={})
    assert settings(tmp_path, [], parcels={}).lockers == ()


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"code_digits": 5}, "greater than or equal to 6"),
        ({"code_digits": 9}, "less than or equal to 8"),
        ({"fee_period_h": 0}, "greater than or equal to 1"),
        ({"code_lockout_s": 600, "code_lockout_max_s": 300}, "must not be below"),
        ({"fee_cents": 1}, "Extra inputs"),
    ],
)
def test_invalid_parcel_rules_are_refused(rules: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ParcelRules.model_validate(rules)


def test_the_code_key_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "code.key"
    with pytest.raises(ConfigError, match="missing"):
        load_code_key(path)
    write_secret(path, b"short")
    with pytest.raises(ConfigError, match="32 bytes"):
        load_code_key(path)
    key = os.urandom(32)
    write_secret(path, key)
    assert load_code_key(path) == key
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="too open"):
        load_code_key(path)


# -- the store --------------------------------------------------------------------------------


class Banks:
    """A LockerBanks on a temporary store, reopened with other settings on demand."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "gw.db"
        self.clock = Clock()
        self.store = Store(self.path, "gw")
        self.outbox = Outbox(self.store, clock=self.clock, metrics=GatewayMetrics())

    def open(self, banks: list[LockerBankSettings]) -> LockerBanks:
        lockers = LockerBanks(banks, self.store, self.outbox, self.clock)
        lockers.load()
        return lockers

    def events(self, type_: str) -> list[dict[str, Any]]:
        return [e.data for e in self.outbox.pending(1000) if e.type == type_]


def bank_settings(*compartments: tuple[int, str, int, str]) -> LockerBankSettings:
    return LockerBankSettings.model_validate(bank("A", *compartments))


def test_the_store_migrates_to_the_locker_schema(tmp_path: Path) -> None:
    with Store(tmp_path / "gw.db", "gw") as store:
        assert SCHEMA_VERSION >= 2
        tables = {row[0] for row in store.query("SELECT name FROM sqlite_master")}
        assert {"compartments", "parcels", "code_failures", "code_lockouts"} <= tables


def test_compartments_are_seeded_and_follow_the_settings(tmp_path: Path) -> None:
    db = Banks(tmp_path)
    banks = db.open([bank_settings((1, "b0", 1, "S"), (2, "b0", 2, "S"), (3, "b0", 3, "M"))])
    assert [(c.no, c.state) for c in banks.compartments("A")] == [
        (1, "free"),
        (2, "free"),
        (3, "free"),
    ]
    # A parcel in no 2; then no 2 and no 3 are removed from the settings, no 1 rewired, no 4 new.
    parcel = new_parcel()
    with db.store.transaction() as tx:
        c = banks.get_compartment(tx, ("A", 2))
        banks.set_compartment(tx, c, CompartmentState.OCCUPIED, parcel)
        banks.insert_parcel(
            tx,
            id=parcel,
            bank="A",
            compartment=2,
            size="S",
            unit="1-101",
            deposit_via="terminal",
            state=ParcelState.OCCUPIED.value,
        )
    banks = db.open([bank_settings((1, "b1", 4, "L"), (4, "b0", 4, "S"))])

    rows = {c.no: c for c in banks.compartments("A")}
    assert sorted(rows) == [1, 2, 4]
    assert (rows[1].board, rows[1].lock, rows[1].size) == ("b1", 4, "L")
    assert rows[2].state == "out_of_service"
    assert rows[2].reason == "unconfigured"
    assert rows[2].parcel == parcel
    assert rows[4].state == "free"
    assert db.events("locker.state") == [
        {"bank": "A", "compartment": 2, "state": "out_of_service", "reason": "unconfigured"}
    ]
    # An unconfigured compartment is never allocated, nor read by the watch.
    with db.store.transaction() as tx:
        assert banks.allocate(tx, "A", "S") is not None
        assert banks.allocate(tx, "A", "S").no == 4  # type: ignore[union-attr]
    assert [c.no for c in banks.on_board("b0")] == [4]
    # Loading again changes nothing.
    db.open([bank_settings((1, "b1", 4, "L"), (4, "b0", 4, "S"))])
    assert len(db.events("locker.state")) == 1


def test_allocation_takes_the_smallest_free_number_on_an_answering_board(tmp_path: Path) -> None:
    db = Banks(tmp_path)
    banks = db.open(
        [bank_settings((3, "b0", 1, "S"), (1, "b1", 1, "S"), (2, "b0", 2, "S"), (4, "b0", 3, "M"))]
    )
    with db.store.transaction() as tx:
        assert banks.allocate(tx, "A", "S").no == 1  # type: ignore[union-attr]
        assert banks.allocate(tx, "A", "L") is None
    banks.mark_board("b1", True)  # first heard of: no alarm
    assert db.events("gateway.alarm") == []
    banks.mark_board("b1", False)
    banks.mark_board("b1", False)
    assert db.events("gateway.alarm") == [{"kind": "lockboard_offline", "bank": "A", "board": "b1"}]
    with db.store.transaction() as tx:
        first = banks.allocate(tx, "A", "S")
        assert first is not None
        assert first.no == 2
        banks.set_compartment(tx, first, CompartmentState.RESERVED, new_parcel())
        assert banks.allocate(tx, "A", "S").no == 3  # type: ignore[union-attr]
        assert banks.allocate(tx, "A", "S", skip_offline=False).no == 1  # type: ignore[union-attr]


def test_a_claim_succeeds_once(tmp_path: Path) -> None:
    db = Banks(tmp_path)
    banks = db.open([bank_settings((1, "b0", 1, "S"))])
    parcel = new_parcel()
    with db.store.transaction() as tx:
        banks.insert_parcel(
            tx,
            id=parcel,
            bank="A",
            compartment=1,
            size="S",
            unit="1-101",
            deposit_via="command",
            state="occupied",
        )
    claims = []
    for _ in range(3):
        with db.store.transaction() as tx:
            claims.append(
                banks.move_parcel(
                    tx, parcel, frozenset({ParcelState.OCCUPIED}), ParcelState.OPENING
                )
            )
    assert claims == [True, False, False]
    with db.store.transaction() as tx, pytest.raises(ValueError, match="unknown parcel fields"):
        banks.move_parcel(
            tx, parcel, frozenset({ParcelState.OPENING}), ParcelState.OCCUPIED, code="1"
        )


def test_out_of_service_stays_until_an_engineer_returns_it(tmp_path: Path) -> None:
    db = Banks(tmp_path)
    banks = db.open([bank_settings((1, "b0", 1, "S"))])
    with db.store.transaction() as tx:
        c = banks.get_compartment(tx, ("A", 1))
        banks.take_out_of_service(tx, c, Alarm.FORCED, "forced")
    with db.store.transaction() as tx:
        c = banks.get_compartment(tx, ("A", 1))
        banks.take_out_of_service(tx, c, Alarm.FORCED, "forced")  # once only
        banks.set_compartment(tx, c, CompartmentState.FREE, None)
    assert banks.compartment("A", 1).state == "out_of_service"  # type: ignore[union-attr]
    assert len(db.events("gateway.alarm")) == 1
    assert banks.return_to_service("A", 1) == "free"
    assert banks.return_to_service("A", 1) == "free"
    assert db.events("locker.state") == [
        {"bank": "A", "compartment": 1, "state": "out_of_service", "reason": "forced"},
        {"bank": "A", "compartment": 1, "state": "free"},
    ]


def test_the_keypad_lockout(tmp_path: Path) -> None:
    store = Store(tmp_path / "gw.db", "gw")
    lockout = CodeLockout(attempts=3, window_ms=1000, lockout_ms=100, max_ms=350)
    now = T0

    def fail() -> int | None:
        with store.transaction() as tx:
            return lockout.failed(tx, "A", now)

    def locked() -> int | None:
        with store.transaction() as tx:
            return lockout.locked_until(tx, "A", now)

    assert [fail(), fail()] == [None, None]
    now += 1000  # the first two fall out of the window
    assert [fail(), fail(), locked()] == [None, None, None]
    assert fail() == now + 100
    assert locked() == now + 100
    now += 100
    assert locked() is None
    lengths = []
    for _ in range(4):
        fail(), fail()
        until = fail()
        assert until is not None
        lengths.append(until - now)
        now = until
    assert lengths == [200, 350, 350, 350]  # doubling, capped
    with store.transaction() as tx:
        assert lockout.locked_until(tx, "B", now) is None  # per bank
        lockout.succeeded(tx, "A")
    fail(), fail()
    assert fail() == now + 100  # the doubling starts over
    store.close()


def test_the_documented_configuration_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    """docs/parcels.md's TOML example loads, and its ``[parcels]`` values are the defaults."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "parcels.md").read_text()
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    values = tomllib.loads(example)
    s = settings(tmp_path, values["lockers"], parcels=values["parcels"])
    assert s.lockers[0].terminal == "term-a"
    assert s.parcels == ParcelRules(code_key_file=s.parcels.code_key_file)
