"""The uplink against a fake cloud on the real broker: order, acks, resends, duplicates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud_sync.protocol import Event, GatewayTopics
from gateway import GatewayMetrics, Outbox, Store, UplinkSettings
from gateway.uplink import Uplink
from tests.conftest import BrokerInfo
from tests.gateway.harness import (
    TIMEOUT,
    FakeCloud,
    RestartableMosquitto,
    subscribed_link,
    unique,
)


@dataclass
class Rig:
    """An uplink with its store, outbox and link, running; and the fake cloud it talks to."""

    store: Store
    outbox: Outbox
    uplink: Uplink
    cloud: FakeCloud
    metrics: GatewayMetrics
    acked: asyncio.Condition

    async def drained(self) -> None:
        """Wait until the outbox is empty (re-checked after every ack the uplink applies)."""
        async with asyncio.timeout(TIMEOUT), self.acked:
            await self.acked.wait_for(lambda: self.outbox.depth == 0)

    def append(self, n: int) -> list[Event]:
        with self.store.transaction() as tx:
            return [self.outbox.append(tx, "door.event", {"n": i}) for i in range(n)]


@pytest.fixture
async def rig(
    broker: BrokerInfo, tmp_path: Path
) -> AsyncIterator[Callable[..., contextlib.AbstractAsyncContextManager[Rig]]]:
    @contextlib.asynccontextmanager
    async def build(
        *, auto_ack: bool = True, on: BrokerInfo = broker, **uplink: int
    ) -> AsyncIterator[Rig]:
        gw = unique("gw")
        topics = GatewayTopics(gw)
        metrics = GatewayMetrics()
        with Store(tmp_path / f"{gw}.db", gw) as store:
            outbox = Outbox(store, metrics=metrics)
            link, _ = await subscribed_link(on.host, on.port, on.protocol, [topics.down_ack])
            up = Uplink(link, topics, outbox, UplinkSettings(**uplink), metrics)
            cloud = FakeCloud(on.host, on.port, on.protocol, topics, auto_ack=auto_ack)

            acked = asyncio.Condition()

            async def acks() -> None:
                while True:
                    message = await link.get()
                    async with acked:
                        up.on_ack(message)
                        acked.notify_all()

            async with cloud, asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(up.run()), tg.create_task(acks())]
                try:
                    yield Rig(store, outbox, up, cloud, metrics, acked)
                finally:
                    for task in tasks:
                        task.cancel()
            await link.stop()

    return build


def sent_seqs(cloud: FakeCloud) -> list[int]:
    return [e.seq for batch in cloud.batches for e in batch.events]


async def test_batches_arrive_in_order_and_acks_empty_the_outbox(rig) -> None:  # type: ignore[no-untyped-def]
    async with rig(batch_events=10) as r:
        r.append(20)
        r.append(15)

        await r.cloud.wait_for(lambda c: len(c.events) == 35)
        await r.drained()

        assert sent_seqs(r.cloud) == list(range(1, 36))
        assert all(1 <= len(b.events) <= 10 for b in r.cloud.batches)
        assert r.outbox.pending(100) == []


async def test_unacknowledged_batches_are_sent_again(rig) -> None:  # type: ignore[no-untyped-def]
    async with rig(auto_ack=False, ack_timeout_ms=100) as r:
        events = r.append(3)

        await r.cloud.wait_for(lambda c: len(c.batches) >= 2)
        first, again = r.cloud.batches[0], r.cloud.batches[1]
        # The resend carries the very same events (same ids): the cloud can insert them once.
        assert first.events == again.events == tuple(events)
        assert r.outbox.depth == 3

        await r.cloud.ack([1, 2, 3])
        await r.drained()
        assert r.metrics.batch_resends._value.get() >= 1


async def test_duplicate_and_stray_acks_are_harmless(rig) -> None:  # type: ignore[no-untyped-def]
    async with rig(auto_ack=False) as r:
        r.append(4)
        await r.cloud.wait_for(lambda c: len(c.events) == 4)

        await r.cloud.ack([1, 2])
        await r.cloud.ack([1, 2])  # duplicate
        await r.cloud.ack([1000])  # never sent
        await r.cloud.publish(r.cloud.topics.down_ack, b"not an ack")
        await r.cloud.ack([3, 4])

        await r.drained()
        assert r.metrics.events_acked._value.get() == 4
        assert r.metrics.bad_messages.labels("cloud")._value.get() == 1


async def test_window_bounds_the_batches_in_flight(rig) -> None:  # type: ignore[no-untyped-def]
    async with rig(auto_ack=False, batch_events=5, window=2) as r:
        r.append(30)
        await r.cloud.wait_for(lambda c: len(c.batches) >= 2)
        assert r.uplink.in_flight == 2

        await r.cloud.ack([1, 2, 3, 4, 5])
        await r.cloud.wait_for(lambda c: len(c.batches) >= 3)

        # Had the window not held, all six batches would have been out long before this ack.
        assert [len(b.events) for b in r.cloud.batches] == [5, 5, 5]
        assert sent_seqs(r.cloud) == list(range(1, 16))


async def test_a_new_event_leaves_at_once(rig) -> None:  # type: ignore[no-untyped-def]
    # Event-driven, not polled: with a 10-minute retry timer, only the append can wake the sender.
    async with rig(ack_timeout_ms=600_000) as r:
        await r.cloud.wait_for(lambda c: True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        [event] = r.append(1)
        await r.cloud.wait_for(lambda c: event.id in c.events)
        assert loop.time() - started < 5  # a generous bound: the point is it did not wait 600 s


async def test_a_steady_trickle_of_acks_causes_no_resend(rig) -> None:  # type: ignore[no-untyped-def]
    # A slow pipe: the cloud acks one batch every 100 ms, so the last of a full window waits 800 ms
    # for its ack, twice the ack timeout, while acks never stop flowing. A batch's timer starts
    # when it becomes the oldest in flight, not when it was handed to the link, so none is resent.
    async with rig(auto_ack=False, batch_events=1, window=8, ack_timeout_ms=400) as r:
        r.append(16)
        for seq in range(1, 17):
            await r.cloud.wait_for(lambda c, seq=seq: seq in sent_seqs(c))
            await asyncio.sleep(0.1)
            await r.cloud.ack([seq])
        await r.drained()

        assert r.metrics.batch_resends._value.get() == 0
        assert sent_seqs(r.cloud) == list(range(1, 17))


async def test_the_oldest_batch_is_resent_while_later_ones_are_acked(rig) -> None:  # type: ignore[no-untyped-def]
    # Acks for later batches are no progress for the oldest: its timer keeps running while
    # fresh events come and go, and the whole range is sent again from its seq.
    async with rig(auto_ack=False, batch_events=1, window=4, ack_timeout_ms=200) as r:

        async def trickle() -> None:
            while True:
                r.append(1)
                await asyncio.sleep(0.05)

        async def ack_all_but_the_first() -> None:
            acked = {1}
            while True:
                fresh = await r.cloud.wait_for(lambda c, acked=acked: set(sent_seqs(c)) - acked)
                acked |= fresh
                await r.cloud.ack(sorted(fresh))

        tasks = [asyncio.create_task(trickle()), asyncio.create_task(ack_all_but_the_first())]
        try:
            await r.cloud.wait_for(lambda c: sent_seqs(c).count(1) >= 2)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert r.metrics.batch_resends._value.get() >= 1
        assert r.outbox.pending(1)[0].seq == 1


async def test_a_stalled_broker_is_handed_at_most_a_window_of_batches(  # type: ignore[no-untyped-def]
    rig, mosquitto: RestartableMosquitto
) -> None:
    # The broker stops answering (no PUBACK, no ack) but keeps the connection. The ack timeout
    # fires and the uplink goes back to resend, yet it gives the link no more batches while the
    # ones it has are unconfirmed; when the broker carries on, everything arrives.
    async with rig(on=mosquitto.info, batch_events=10, window=3, ack_timeout_ms=100) as r:
        mosquitto.pause()
        try:
            r.append(100)
            # Nothing to wait on but time: the first ack timeout, and five more had it kept going.
            await asyncio.sleep(0.6)
            assert r.metrics.batch_resends._value.get() >= 1
            assert r.metrics.batches_sent._value.get() == 3
        finally:
            mosquitto.resume()

        await r.drained()
        assert {e.seq for e in r.cloud.events.values()} == set(range(1, 101))
