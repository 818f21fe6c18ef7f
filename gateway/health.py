"""The gateway's local HTTP endpoint: ``GET /healthz`` (JSON) and ``GET /metrics`` (Prometheus).

It binds loopback by default and exposes no personal data and no actions, only how the gateway is
doing. ``/healthz`` answers 200 with ``"status": "ok"`` when both links are up and every supervised
task runs, and 503 with ``"status": "degraded"`` otherwise, so a watchdog or load balancer can act
on the status code alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.locker_banks import CompartmentState, LockerBanks
from gateway.metrics import CONTENT_TYPE, GatewayMetrics
from gateway.settings import HttpSettings

__all__ = ["HealthServer", "lockers_report", "make_app"]

Report = Callable[[], dict[str, Any]]

_REPORT: web.AppKey[Report] = web.AppKey("report")
_METRICS = web.AppKey("metrics", GatewayMetrics)


def lockers_report(
    banks: LockerBanks, terminals: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``lockers`` section of /healthz: per bank, its compartments by state, its boards
    (``online``, ``offline``, or ``unknown`` before the first read) and its terminal, if any.

    No parcel, unit or code appears here: only counts and device states.
    """
    names = {True: "online", False: "offline", None: "unknown"}
    report: dict[str, Any] = {}
    for bank_id in banks.bank_ids():
        bank = banks.bank(bank_id)
        assert bank is not None
        states = {state.value: 0 for state in CompartmentState}
        for c in banks.compartments(bank_id):
            states[c.state.value] += 1
        boards = sorted({c.board for c in bank.compartments})
        entry: dict[str, Any] = {
            "compartments": states,
            "boards": {board: names[banks.board_online(board)] for board in boards},
        }
        if bank.terminal is not None:
            terminal = (terminals or {}).get(bank.terminal)
            entry["terminal"] = {"device": bank.terminal, **(terminal or {"state": "unknown"})}
        report[bank_id] = entry
    return report


async def _healthz(request: web.Request) -> web.Response:
    report = request.app[_REPORT]()
    status = 200 if report.get("status") == "ok" else 503
    return web.json_response(report, status=status)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def make_app(report: Report, metrics: GatewayMetrics) -> web.Application:
    """The health application: ``report()`` gives the /healthz document."""
    app = web.Application(client_max_size=1024)
    app[_REPORT] = report
    app[_METRICS] = metrics
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    return app


class HealthServer:
    """Serves :func:`make_app` on ``settings.host:settings.port`` (port 0: a free one)."""

    def __init__(self, settings: HttpSettings, report: Report, metrics: GatewayMetrics) -> None:
        self._settings = settings
        self._runner = web.AppRunner(make_app(report, metrics), access_log=None)
        self.port: int | None = None

    async def start(self) -> None:
        """Bind and serve."""
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.host, self._settings.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop serving and close the socket."""
        await self._runner.cleanup()
