"""QoS 1 publishes on one MQTT link, one at a time, each held until the broker's PUBACK.

Why: :meth:`MqttLink.publish` holds the link's lock while it calls paho's ``publish``, which takes
paho's outgoing-message mutex; paho's network thread holds that mutex while it reports a PUBACK,
and the link's PUBACK handler takes the link's lock. Two QoS 1 publishes in flight on one link
can therefore deadlock the event loop against the network thread (seen here under load: the
event loop blocked inside ``publish`` while the network thread waited in ``_on_publish``). With at
most one QoS 1 message outstanding, no PUBACK can arrive while a publish is being issued, so the
inversion cannot happen.

The slot is released when the broker answers (or the link stops), not when a caller gives up
waiting: a caller's timeout must not let a second publish start while the first one's PUBACK may
still arrive. QoS 0 publishes (door pulses) need no slot and do not go through here.

Remove this once ``MqttLink.publish`` no longer calls into paho under its own lock.
"""

from __future__ import annotations

import asyncio

from cloud_sync.protocol import MqttLink

__all__ = ["Publisher"]


class Publisher:
    """Issues QoS 1 publishes on ``link`` strictly one after another."""

    def __init__(self, link: MqttLink) -> None:
        self._link = link
        self._slot = asyncio.Lock()

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, wait: float | None = None
    ) -> None:
        """Publish at QoS 1 and wait up to ``wait`` seconds for the PUBACK.

        ``wait`` covers waiting for the slot too. Raises ``TimeoutError`` when that takes longer
        (a message already issued stays in flight and keeps the slot), or
        :class:`~cloud_sync.protocol.LinkError` from the link.
        """
        async with asyncio.timeout(wait):
            await self._slot.acquire()
            # No await between acquiring and handing the release to the task: nothing can cancel
            # us in between and leave the slot taken.
            task = asyncio.ensure_future(self._link.publish(topic, payload, 1, retain))
            task.add_done_callback(self._release)
            await asyncio.shield(task)

    def _release(self, task: asyncio.Future[None]) -> None:
        self._slot.release()
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned failure is not reported as lost
