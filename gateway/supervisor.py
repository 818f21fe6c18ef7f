"""Supervision: every long-lived task of the gateway runs in one TaskGroup and is restarted.

A supervised task that raises is logged with its traceback, marked ``restarting`` (visible in
``/healthz``), and started again after an exponential back-off with jitter — jitter so that tasks
that failed together (a dead broker) do not retry in lock-step. A task that then stays up for
``healthy_after`` seconds earns back the shortest back-off. A task that returns is restarted too:
long-lived means forever.

Short-lived work (one unlock) is :meth:`Supervisor.spawn`-ed into the same group; it is not
restarted, and an exception from it is logged and contained so it can never take the group down.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

__all__ = ["Supervisor"]

log = structlog.get_logger(__name__)

Factory = Callable[[], Awaitable[None]]


class Supervisor:
    """Runs named long-lived tasks, restarting them with back-off, in one TaskGroup."""

    def __init__(
        self,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 30.0,
        healthy_after: float = 30.0,
    ) -> None:
        self._min, self._max = min_backoff, max_backoff
        self._healthy_after = healthy_after
        self._factories: dict[str, Factory] = {}
        self._states: dict[str, str] = {}
        self._restarts: dict[str, int] = {}
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, name: str, factory: Factory) -> None:
        """Supervise ``factory()`` under ``name`` (before or while :meth:`run` runs)."""
        if name in self._factories:
            raise ValueError(f"task {name!r} is already supervised")
        self._factories[name] = factory
        self._states[name] = "pending"
        self._restarts[name] = 0
        if self._group is not None:
            self._start(name, factory)

    def states(self) -> dict[str, str]:
        """Each supervised task's state: pending, running, restarting or stopped."""
        return dict(self._states)

    def restarts(self) -> dict[str, int]:
        """How many times each supervised task was restarted."""
        return dict(self._restarts)

    def spawn(self, name: str, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a one-off coroutine in the group; its failure is logged, not propagated."""
        if self._group is None:
            coro.close()
            raise RuntimeError("the supervisor is not running")
        self._track(self._group.create_task(self._contain(name, coro), name=name))

    async def run(self, stop: asyncio.Event) -> None:
        """Run every task until ``stop`` is set, then cancel them all and wait for them."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for name, factory in self._factories.items():
                self._start(name, factory)
            try:
                await stop.wait()
            finally:
                self._group = None
                for task in list(self._tasks):
                    task.cancel()
        for name in self._states:
            self._states[name] = "stopped"

    def _start(self, name: str, factory: Factory) -> None:
        assert self._group is not None
        self._track(self._group.create_task(self._keep(name, factory), name=name))

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _keep(self, name: str, factory: Factory) -> None:
        loop = asyncio.get_running_loop()
        backoff = self._min
        while True:
            self._states[name] = "running"
            started = loop.time()
            try:
                await factory()
                log.warning("task.returned", task=name)
            except Exception:
                log.exception("task.crashed", task=name)
            if loop.time() - started >= self._healthy_after:
                backoff = self._min
            self._states[name] = "restarting"
            self._restarts[name] += 1
            delay = random.uniform(backoff / 2, backoff)
            log.info("task.restarting", task=name, in_s=round(delay, 3))
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self._max)

    @staticmethod
    async def _contain(name: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except Exception:
            log.exception("task.failed", task=name)
