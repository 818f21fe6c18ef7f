"""The gateway daemon: wires store, outbox, links, doors, buses, lockers, commands, uplink, health.

``Gateway(settings).run()`` runs until cancelled; tests and the demo use it in-process::

    async with Gateway(settings) as gw:
        await gw.ready.wait()          # both links connected, subscriptions in place
        ... gw.http_port ...

Start-up order matters: the store opens (and refuses a foreign or newer database), commands left
unfinished by an earlier run are failed (never finished late), ``gateway.started`` is outboxed,
then the links connect and the supervised tasks start. Stopping cancels every task (a command
under way ends ``failed``/``interrupted``), announces offline on both links, and closes links,
HTTP server and database, leaving no task, thread or socket behind.

With locker banks configured (``settings.lockers``, docs/parcels.md) the site code key is read
before the store opens (refused if missing, not 32 bytes or readable by others), the compartment
rows are seeded from the settings, and the parcel side runs: :class:`~gateway.parcels.Parcels`
over the lock boards of :class:`~gateway.buses.Buses`, the board watch (supervised task
``locker-watch``), the five ``parcel.*`` command handlers (their targets: the bank ids) and the
banks' terminals on the site link (:class:`~gateway.terminal.TerminalService`, a worker task per
terminal). The site link's inbox is shared: terminal topics go to the terminals, the rest to the
door driver. Without banks, ``parcel.*`` commands are refused ``unsupported_action``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
from typing import Any

import structlog

from cloud_sync.protocol import ACTION_SPECS, GatewayTopics, Message, MqttLink
from gateway.buses import Buses
from gateway.command_log import CommandLog
from gateway.commands import CommandHandler, CommandReceiver, MeterRead
from gateway.doors import DoorDriver
from gateway.errors import ConfigError
from gateway.health import HealthServer, lockers_report
from gateway.locker_banks import LockerBanks
from gateway.locker_watch import LockerWatch
from gateway.metrics import GatewayMetrics
from gateway.outbox import Outbox
from gateway.parcel_commands import PARCEL_ACTIONS, ParcelCommands
from gateway.parcels import Parcels, load_code_key
from gateway.presence import Presence
from gateway.replay import ReplayGuard
from gateway.settings import BrokerSettings, GatewaySettings
from gateway.store import Store
from gateway.supervisor import Supervisor
from gateway.terminal import TerminalService
from gateway.uplink import Uplink
from trust import KeyFileError, SafeClock, VerifyKey

__all__ = ["GATEWAY_STARTED", "VERSION", "Gateway"]

log = structlog.get_logger(__name__)

GATEWAY_STARTED = "gateway.started"
try:
    VERSION = importlib.metadata.version("courtyard")
except importlib.metadata.PackageNotFoundError:  # running from a source tree without metadata
    VERSION = "0.0.0"

#: Accepted command records are kept this long (the per-key seq keeps guarding after that).
_COMMAND_RETENTION_MS = 30 * 24 * 3600 * 1000
#: The actions every gateway executes (each has a handler in ``_run``); with locker banks
#: configured, :data:`~gateway.parcel_commands.PARCEL_ACTIONS` too.
_ACTIONS = ("door.unlock", "meter.read")


def _load_keys(settings: GatewaySettings) -> dict[str, VerifyKey]:
    keys: dict[str, VerifyKey] = {}
    for path in settings.cloud_keys:
        try:
            key = VerifyKey.load(path)
        except KeyFileError as exc:
            raise ConfigError("cloud_keys", exc.reason) from exc
        keys[key.kid] = key
    return keys


def _actions(settings: GatewaySettings) -> tuple[str, ...]:
    """The actions this gateway executes: the parcel actions only when it has locker banks."""
    return _ACTIONS + (PARCEL_ACTIONS if settings.lockers else ())


def _targets(settings: GatewaySettings) -> dict[str, list[str]]:
    """For each action this gateway executes, the configured ids its commands may name.

    By the kind of target the protocol says the action names (``ActionSpec.target``): a
    ``door.unlock`` names a door, a ``meter.read`` a meter, a ``parcel.*`` a locker bank. No
    meters configured: no meter targets.
    """
    ids = {
        "door": [d.id for d in settings.doors],
        "meter": [m.id for m in settings.meters],
        "locker_bank": [b.id for b in settings.lockers],
    }
    return {action: ids[ACTION_SPECS[action].target] for action in _actions(settings)}


def _link(broker: BrokerSettings, client_id: str, presence_topic: str, **kw: Any) -> MqttLink:
    return MqttLink(
        broker.host,
        broker.port,
        broker.client_id or client_id,
        username=broker.username,
        password=broker.password.get_secret_value() if broker.password else None,
        protocol=broker.protocol,
        clean=False,
        will=Presence.will(presence_topic),
        **kw,
    )


class Gateway:
    """One gateway, runnable in-process (``run``) or as an async context manager."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.topics = GatewayTopics(settings.id, settings.topic_root)
        self.metrics = GatewayMetrics()
        self.ready = asyncio.Event()
        self.http_port: int | None = None
        self.supervisor = Supervisor()
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._presences: list[Presence] = []
        self._cloud: MqttLink | None = None
        self._site: MqttLink | None = None
        self._outbox: Outbox | None = None
        self._commands: CommandLog | None = None
        self._driver: DoorDriver | None = None
        self._buses: Buses | None = None
        self._banks: LockerBanks | None = None
        self._parcels: Parcels | None = None
        self._terminals: TerminalService | None = None

    # -- what tests and the health endpoint may look at ----------------------------------------

    @property
    def outbox(self) -> Outbox:
        """The outbox (available once started)."""
        if self._outbox is None:
            raise RuntimeError("the gateway is not running")
        return self._outbox

    @property
    def commands(self) -> CommandLog:
        """The local command records (available once started)."""
        if self._commands is None:
            raise RuntimeError("the gateway is not running")
        return self._commands

    @property
    def buses(self) -> Buses:
        """The RS-485 buses, meter reader and lockers (available once started)."""
        if self._buses is None:
            raise RuntimeError("the gateway is not running")
        return self._buses

    @property
    def parcels(self) -> Parcels:
        """The parcel flows (available once started, with locker banks configured)."""
        if self._parcels is None:
            raise RuntimeError("the gateway is not running, or has no locker banks")
        return self._parcels

    @property
    def locker_banks(self) -> LockerBanks:
        """The compartments and parcels as stored (once started, with locker banks)."""
        if self._banks is None:
            raise RuntimeError("the gateway is not running, or has no locker banks")
        return self._banks

    @property
    def terminals(self) -> TerminalService:
        """The banks' terminals (once started, with locker banks configured)."""
        if self._terminals is None:
            raise RuntimeError("the gateway is not running, or has no locker banks")
        return self._terminals

    @property
    def site_presence_topic(self) -> str:
        """Where the gateway announces itself on the site broker."""
        return f"{self.settings.site.prefix}/gateway/{self.settings.id}/status"

    def health(self) -> dict[str, Any]:
        """The /healthz document."""
        cloud_up = self._cloud is not None and self._cloud.connected
        site_up = self._site is not None and self._site.connected
        tasks = self.supervisor.states()
        ok = cloud_up and site_up and all(state == "running" for state in tasks.values())
        buses = self._buses
        ok = ok and not (buses is not None and buses.degraded)
        report: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "gateway": self.settings.id,
            "version": VERSION,
            "cloud_link": "up" if cloud_up else "down",
            "site_link": "up" if site_up else "down",
            "outbox_pending": self._outbox.depth if self._outbox else None,
            "tasks": tasks,
            "doors": self._driver.doors() if self._driver else {},
        }
        if self.settings.buses:
            report["buses"] = buses.health() if buses is not None else {}
        if self.settings.lockers:
            banks, terminals = self._banks, self._terminals
            report["lockers"] = (
                lockers_report(banks, terminals.health() if terminals else None)
                if banks is not None
                else {}
            )
            if terminals is not None:
                report["terminal_messages"] = dict(terminals.counters)
        return report

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Run in the background; returns once the store is open and HTTP is listening."""
        if self._task is not None:
            raise RuntimeError("a Gateway can be started once")
        self._task = asyncio.create_task(self.run(), name=f"gateway:{self.settings.id}")
        started = asyncio.create_task(self._started.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await started
        if self._task.done():
            self._task.result()  # raises what stopped the start-up
            raise RuntimeError("the gateway stopped during start-up")

    async def stop(self) -> None:
        """Stop cleanly and wait until everything is closed."""
        self._stop.set()
        if self._task is not None:
            await self._task

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run(self) -> None:
        """Run until :meth:`stop` (or cancellation)."""
        s = self.settings
        keys = _load_keys(s)
        code_key = None
        if s.lockers:
            assert s.parcels.code_key_file is not None  # the settings require it with lockers
            code_key = load_code_key(s.parcels.code_key_file)
        s.data_dir.mkdir(parents=True, exist_ok=True)
        clock = SafeClock(s.data_dir / "clock")
        store = Store(s.data_dir / "gateway.db", s.id)
        try:
            await self._run(store, clock, keys, code_key)
        finally:
            clock.flush()
            store.close()
            self._started.set()  # unblock start() if start-up failed
            log.info("gateway.stopped", gateway=s.id)

    async def _run(
        self,
        store: Store,
        clock: SafeClock,
        keys: dict[str, VerifyKey],
        code_key: bytes | None,
    ) -> None:
        s = self.settings
        outbox = self._outbox = Outbox(store, clock=clock.now_ms, metrics=self.metrics)
        commands = self._commands = CommandLog(store, outbox, clock.now_ms, self.metrics)
        guard = ReplayGuard(store, keys, s.id, _targets(s))
        commands.fail_unfinished()
        guard.prune(clock.now_ms() - _COMMAND_RETENTION_MS)
        with store.transaction() as tx:
            outbox.append(tx, GATEWAY_STARTED, {"version": VERSION})

        cloud = self._cloud = _link(
            s.cloud, f"courtyard-gw-{s.id}", self.topics.up_status, manual_ack=True
        )
        site = self._site = _link(
            s.site, f"courtyard-gw-{s.id}-site", self.site_presence_topic, manual_ack=True
        )
        driver = self._driver = DoorDriver(
            s.doors, s.site.prefix, site, store, outbox, commands, self.metrics
        )
        uplink = Uplink(cloud, self.topics, outbox, s.uplink, self.metrics)
        buses = self._buses = Buses(s, store, outbox, self.metrics)
        handlers: dict[str, CommandHandler] = {
            "door.unlock": driver.unlock,
            "meter.read": MeterRead(buses.meters, commands, clock.now_ms),
        }
        watch: LockerWatch | None = None
        terminals: TerminalService | None = None
        if code_key is not None:
            banks = self._banks = LockerBanks(s.lockers, store, outbox, clock.now_ms)
            kept = banks.load()
            if kept:
                log.warning("lockers.unconfigured_with_parcels", compartments=kept)
            parcels = self._parcels = Parcels(s.parcels, banks, buses.lockers, code_key)
            watch = LockerWatch(s.parcels, banks, parcels, buses.lockers)
            handlers.update(ParcelCommands(parcels, commands).handlers())
            terminals = self._terminals = TerminalService(
                s.lockers, s.site.prefix, site, parcels, keys, s.id, clock.now_ms, self.metrics
            )
        receiver = CommandReceiver(
            cloud,
            store,
            outbox,
            guard,
            commands,
            handlers,
            clock.now_ms,
            self.metrics,
            self.supervisor.spawn,
        )
        cloud.subscribe(self.topics.down_ack, qos=1)
        cloud.subscribe(self.topics.down_cmd, qos=1)
        driver.subscribe()
        if terminals is not None:
            terminals.subscribe()
        self.metrics.watch_link("cloud", lambda: cloud.connects)
        self.metrics.watch_link("site", lambda: site.connects)
        self.metrics.watch_task_restarts(self.supervisor.restarts)

        cloud_presence = Presence(
            "cloud",
            cloud,
            self.topics.up_status,
            self._presence_changed,
            uplink.on_link_up,
        )
        site_presence = Presence("site", site, self.site_presence_topic, self._presence_changed)
        self._presences = [cloud_presence, site_presence]

        async def cloud_inbox() -> None:
            while True:
                message = await cloud.get()
                if message.topic == self.topics.down_cmd:
                    receiver.handle(message)
                else:
                    if message.topic == self.topics.down_ack:
                        uplink.on_ack(message)
                    cloud.ack(message)

        def site_message(message: Message) -> None:
            if terminals is not None and terminals.handles(message.topic):
                terminals.handle(message)
            else:
                driver.handle(message)

        async def site_inbox() -> None:
            while True:
                site_message(await site.get())

        sup = self.supervisor
        sup.add("uplink", uplink.run)
        sup.add("cloud-inbox", cloud_inbox)
        sup.add("site-inbox", site_inbox)
        sup.add("cloud-presence", cloud_presence.run)
        sup.add("site-presence", site_presence.run)
        for name, factory in buses.tasks():
            sup.add(name, factory)
        if watch is not None:
            sup.add("locker-watch", watch.run)
        if terminals is not None:
            for name, factory in terminals.tasks():
                sup.add(name, factory)

        http = HealthServer(s.http, self.health, self.metrics)
        await cloud.start()
        await site.start()
        try:
            await http.start()
            self.http_port = http.port
            log.info(
                "gateway.started",
                gateway=s.id,
                http_port=http.port,
                doors=len(s.doors),
                locker_banks=len(s.lockers),
            )
            self._started.set()
            await sup.run(self._stop)
        finally:
            self.ready.clear()
            for presence in self._presences:
                await presence.announce_offline()
            await buses.close()
            await cloud.stop()
            await site.stop()
            if http.port is not None:
                await http.stop()

    def _presence_changed(self) -> None:
        if self._presences and all(p.ready for p in self._presences):
            self.ready.set()
        else:
            self.ready.clear()
