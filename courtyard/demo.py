"""``courtyard demo``: a living community on this machine, needing only the package."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

from courtyard.community import Community
from courtyard.embedded_broker import EmbeddedBroker

__all__ = ["run_demo"]


async def run_demo(*, data_dir: Path, http_port: int, mqtt_port: int = 0) -> None:
    """Start broker, cloud, gateway and simulated doors; print where to go; run until Ctrl-C."""
    broker = EmbeddedBroker(port=mqtt_port or None).start()
    community = Community(
        data_dir,
        broker_host=broker.host,
        broker_port=broker.port,
        broker_protocol="3.1.1",
        http_port=http_port,
        rs485=True,
        meter_interval_s=15.0,
        attended_lockers=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await community.start()
        _announce(community, broker)
        await stop.wait()
    finally:
        await community.stop()
        broker.stop()


def _announce(community: Community, broker: EmbeddedBroker) -> None:
    on_bus: dict[str, list[str]] = {}
    lockers: list[str] = []
    if community.gateway is not None:
        settings = community.gateway.settings
        placed = [(m.bus, m.id) for m in settings.meters]
        placed += [(b.bus, b.id) for b in settings.lockboards]
        for bus_name, device_id in placed:
            on_bus.setdefault(bus_name, []).append(device_id)
        prefix = settings.site.prefix
        for bank in settings.lockers:
            boards = ", ".join(sorted({c.board for c in bank.compartments}))
            lockers.append(
                f"  Locker bank {bank.id} ({bank.name}): {len(bank.compartments)} compartments"
                f" on {boards}"
            )
            if bank.terminal is not None:
                lockers.append(
                    f"    terminal {bank.terminal} (simulated); type codes at it yourself:"
                    f" courtyard sim terminal --device {bank.terminal} --prefix {prefix}"
                    f" --port {broker.port}"
                )
    lines = [
        "",
        f"Courtyard demo is running: {community.url}/",
        f"  couriers deposit parcels at {community.url}/courier",
        f"  MQTT broker (embedded, MQTT 3.1.1): 127.0.0.1:{broker.port}",
        f"  data, databases and keys: {community.data_dir}",
        f"  demo logins (generated passwords): {community.accounts_file}",
        *(
            f"  RS-485 line {name}: {bus.url} ({', '.join(on_bus.get(name, []))})"
            for name, bus in community.buses.items()
        ),
        *lockers,
        "",
    ]
    for a in community.accounts:
        where = f"unit {a.unit}" if a.unit else a.role
        lines.append(f"  {a.login:<10} {a.password:<20} {a.role:<9} {where}")
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)  # the demo's one screen of instructions
