from __future__ import annotations

import asyncio
import uuid

from cloud_sync.protocol import MqttLink, Will


async def test_publish_and_receive_through_the_broker(broker) -> None:  # type: ignore[no-untyped-def]
    root = f"t-{uuid.uuid4().hex[:8]}"
    watcher = MqttLink(broker.host, broker.port, f"w-{root}", protocol=broker.protocol)
    sender = MqttLink(
        broker.host,
        broker.port,
        f"s-{root}",
        protocol=broker.protocol,
        will=Will(f"{root}/status", b"offline"),
        manual_ack=True,
    )
    await watcher.start()
    await sender.start()
    await watcher.wait_connected(5)
    await sender.wait_connected(5)
    watcher.subscribe(f"{root}/#")
    # a round trip through the broker proves the subscription is live before we rely on it
    while True:
        await watcher.publish(f"{root}/probe", b"p")
        try:
            msg = await asyncio.wait_for(watcher.get(), 0.5)
            break
        except TimeoutError:
            continue
    assert msg.topic == f"{root}/probe"
    await sender.publish(f"{root}/data", b"payload", qos=1)
    got = await asyncio.wait_for(watcher.get(), 5)
    assert (got.topic, got.payload, got.qos) == (f"{root}/data", b"payload", 1)
    await watcher.stop()
    await sender.stop()


async def _live(link: MqttLink, topic: str) -> None:
    """Wait until ``link``'s subscription to ``topic`` delivers (a round trip, no sleeping)."""
    while True:
        await link.publish(topic, b"probe")
        try:
            await asyncio.wait_for(link.get(), 0.5)
            return
        except TimeoutError:
            continue


async def test_many_concurrent_publishes_all_complete(broker) -> None:  # type: ignore[no-untyped-def]
    # Regression: holding our lock while calling paho deadlocked against paho's PUBACK callback.
    root = f"t-{uuid.uuid4().hex[:8]}"
    link = MqttLink(broker.host, broker.port, f"p-{root}", protocol=broker.protocol)
    await link.start()
    await link.wait_connected(5)
    link.subscribe(f"{root}/#")
    await _live(link, f"{root}/probe")
    async with asyncio.timeout(30):
        await asyncio.gather(
            *(link.publish(f"{root}/n", str(i).encode(), qos=i % 2) for i in range(2000))
        )
        for i in range(500):
            link.publish_nowait(f"{root}/w", str(i).encode())
        await link.publish(f"{root}/last", b"end")
        got = []
        while len(got) < 2501:
            got.append(await link.get())
    assert {m.topic for m in got} == {f"{root}/n", f"{root}/w", f"{root}/last"}
    assert len(link._pending) == 0
    assert len(link._early) == 0
    await link.stop()


async def test_persistent_session_receives_what_was_sent_while_away(broker) -> None:  # type: ignore[no-untyped-def]
    if broker.kind == "embedded":
        # amqtt with anonymous clients does not queue for offline sessions (amqtt PR #248).
        return
    root = f"t-{uuid.uuid4().hex[:8]}"
    client_id = f"persist-{root}"
    first = MqttLink(broker.host, broker.port, client_id, protocol=broker.protocol, clean=False)
    await first.start()
    await first.wait_connected(5)
    first.subscribe(f"{root}/#")
    await _live(first, f"{root}/probe")
    await first.stop()
    sender = MqttLink(broker.host, broker.port, f"s-{root}", protocol=broker.protocol)
    await sender.start()
    await sender.wait_connected(5)
    await sender.publish(f"{root}/queued", b"while-away", qos=1)
    await sender.stop()
    again = MqttLink(broker.host, broker.port, client_id, protocol=broker.protocol, clean=False)
    await again.start()
    msg = await asyncio.wait_for(again.get(), 10)
    assert (msg.topic, msg.payload) == (f"{root}/queued", b"while-away")
    await again.stop()
