from __future__ import annotations

import contextlib
import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.protocol import Ack, Event, EventBatch, SyncProtocolError, coalesce_ranges


def ev(seq: int, **data: object) -> Event:
    return Event(id=uuid.uuid4().hex, seq=seq, ts=1_800_000_000_000, type="door.event", data=data)


def test_batch_round_trip_is_byte_stable() -> None:
    batch = EventBatch("gw-1", (ev(1, door="b1-main"), ev(2, door="b1-main", kind="door_opened")))
    wire = batch.encode()
    assert EventBatch.decode(wire) == batch
    assert EventBatch.decode(wire).encode() == wire


def test_batch_rejects_disorder_and_bad_fields() -> None:
    with pytest.raises(SyncProtocolError, match="ascend"):
        EventBatch("gw-1", (ev(2), ev(1)))
    with pytest.raises(SyncProtocolError):
        EventBatch("gw 1", (ev(1),))
    bad = json.dumps({"v": 1, "gw": "gw-1", "events": [{"id": "x", "seq": 1}]}).encode()
    with pytest.raises(SyncProtocolError):
        EventBatch.decode(bad)
    floaty = b'{"v":1,"gw":"gw-1","events":[{"id":"%s","seq":1.5}]}' % uuid.uuid4().hex.encode()
    with pytest.raises(SyncProtocolError, match="float"):
        EventBatch.decode(floaty)
    with pytest.raises(SyncProtocolError, match="duplicate"):
        EventBatch.decode(b'{"v":1,"v":1}')


def test_ack_ranges() -> None:
    assert coalesce_ranges([5, 1, 2, 3, 7, 8, 2]) == ((1, 3), (5, 5), (7, 8))
    ack = Ack(coalesce_ranges([1, 2, 3, 7]))
    assert Ack.decode(ack.encode()) == ack
    assert ack.covers(2)
    assert ack.covers(7)
    assert not ack.covers(4)
    with pytest.raises(SyncProtocolError):
        Ack(((3, 1),))


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=200))
def test_coalesce_covers_exactly_the_input(seqs: list[int]) -> None:
    ack = Ack(coalesce_ranges(seqs))
    covered = {s for lo, hi in ack.ranges for s in range(lo, hi + 1)}
    assert covered == set(seqs)


@given(st.binary(max_size=300))
def test_decoders_raise_only_protocol_errors(data: bytes) -> None:
    for decode in (EventBatch.decode, Ack.decode):
        with contextlib.suppress(SyncProtocolError):
            decode(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["id", "seq", "ts", "type", "data"]), json_values))
def test_event_objects_of_any_shape_raise_only_protocol_errors(obj: dict[str, object]) -> None:
    with contextlib.suppress(SyncProtocolError):
        Event.from_obj(obj)
