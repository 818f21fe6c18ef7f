"""The supervisor: crashing tasks come back, one-off failures stay contained."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from gateway import Supervisor


async def run_until(sup: Supervisor, condition: asyncio.Event) -> None:
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(sup.run(stop))
        await asyncio.wait_for(condition.wait(), 5)
        stop.set()


async def test_a_crashing_task_is_restarted_and_its_state_is_visible() -> None:
    sup = Supervisor(min_backoff=0.001, max_backoff=0.004)
    crashes = 0
    steady = asyncio.Event()
    seen: dict[str, object] = {}

    async def flaky() -> None:
        nonlocal crashes
        if crashes < 3:
            crashes += 1
            raise RuntimeError(f"crash {crashes}")
        seen["states"], seen["restarts"] = sup.states(), sup.restarts()
        steady.set()
        await asyncio.Event().wait()

    sup.add("flaky", flaky)
    with capture_logs() as logs:
        await run_until(sup, steady)

    assert seen == {"states": {"flaky": "running"}, "restarts": {"flaky": 3}}
    assert sup.states() == {"flaky": "stopped"}
    crashed = [e for e in logs if e["event"] == "task.crashed"]
    assert [e["task"] for e in crashed] == ["flaky"] * 3
    assert all(e["log_level"] == "error" for e in crashed)


async def test_a_task_that_returns_is_started_again() -> None:
    sup = Supervisor(min_backoff=0.001, max_backoff=0.002)
    runs = 0
    thrice = asyncio.Event()

    async def short() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            thrice.set()

    sup.add("short", short)
    await run_until(sup, thrice)

    assert runs >= 3
    assert sup.restarts()["short"] >= 2


async def test_a_failing_one_off_task_does_not_take_the_group_down() -> None:
    sup = Supervisor()
    steady = asyncio.Event()
    finished = asyncio.Event()

    async def forever() -> None:
        steady.set()
        await asyncio.Event().wait()

    async def broken() -> None:
        raise ValueError("one unlock went wrong")

    async def fine() -> None:
        finished.set()

    sup.add("forever", forever)
    stop = asyncio.Event()
    with capture_logs() as logs:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sup.run(stop))
            await asyncio.wait_for(steady.wait(), 5)
            sup.spawn("broken", broken())
            sup.spawn("fine", fine())
            await asyncio.wait_for(finished.wait(), 5)
            assert sup.states() == {"forever": "running"}
            stop.set()

    assert [e["task"] for e in logs if e["event"] == "task.failed"] == ["broken"]


async def test_spawn_outside_a_running_supervisor_is_refused() -> None:
    async def nothing() -> None:
        return None

    with pytest.raises(RuntimeError):
        Supervisor().spawn("x", nothing())


def test_a_name_is_supervised_once() -> None:
    async def nothing() -> None:
        return None

    sup = Supervisor()
    sup.add("x", nothing)
    with pytest.raises(ValueError, match="already"):
        sup.add("x", nothing)
