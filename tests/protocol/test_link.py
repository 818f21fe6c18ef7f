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
