"""The Modbus RTU and CJ/T 188 drivers through the bus owner, against simulated lines.

Each test puts the codec packages' own simulated meters (:class:`devices.modbus.ModbusMeter`,
:class:`devices.cjt188.WaterMeter`) on a paced :class:`devices.serialbus.BusServer` and reads them
through ``socket://`` with the gateway's :class:`~gateway.bus.BusOwner` and
:class:`~gateway.meters.MeterReader`, so framing, hunting through noise, acceptance and statistics
are those of a real read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal

import pytest
from pydantic import ValidationError

from devices import cjt188, modbus
from devices.cjt188 import DiOrder, MeterType, ValveState, WaterMeter
from devices.modbus import sdm120_meter, sdm630_meter, water_meter
from devices.serialbus import BusDevice, BusServer, Fault, RequestFramer
from gateway.bus_errors import DeviceReplyError, NoReplyError
from gateway.drivers import LINE_RULES, Cjt188Driver, ModbusDriver, bus_gap_s, meter_driver
from gateway.errors import ConfigError
from gateway.settings import BusSettings, MeterSettings
from tests.gateway.bus_line import WAIT_S, Line, wait_stats
from tests.gateway.bus_sim import FAST_BAUD, bus_settings

WATER_A, WATER_B, WATER_C = "00000000000012", "20240000000345", "99000000000001"


@contextmanager
def serve(framer: RequestFramer, devices: Sequence[BusDevice]) -> Iterator[BusServer]:
    """A paced simulated line of one protocol, stopped (crash re-raised) afterwards."""
    server = BusServer(
        framer, devices, baud=FAST_BAUD, char_bits=11, pace=True, turnaround_ms=2.0, seed=7
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def meter(id_: str, protocol: str, address: str, **options: object) -> MeterSettings:
    values = ("volume_m3", "valve") if protocol == "cjt188" else ("energy_kwh",)
    return MeterSettings.model_validate(
        {"id": id_, "bus": "line-a", "protocol": protocol, "address": address, "interval_s": 0}
        | {"values": values}
        | options
    )


FAULTS = (Fault.GARBAGE_BEFORE, Fault.GARBAGE_AFTER, Fault.GARBAGE_INSIDE, Fault.BAD_CHECKSUM)


# --- Modbus RTU -----------------------------------------------------------------------------


def modbus_line() -> tuple[list[BusDevice], list[MeterSettings]]:
    devices: list[BusDevice] = [
        sdm120_meter(1, power_w=0, energy_kwh=Decimal("1240.25")),
        sdm630_meter(2, power_w=3000, energy_kwh=Decimal("500.5")),
        water_meter(3, flow_m3h=Decimal("1.5"), total_m3=Decimal("12.345")),
        water_meter(4, total_m3=Decimal("7"), valve_closed=True),
    ]
    energy = ("energy_kwh", "voltage_v", "current_a", "power_kw")
    water = ("volume_m3", "flow_m3h", "valve")
    settings = [
        meter("sdm120", "modbus", "1", model="sdm120", values=energy),
        meter("sdm630", "modbus", "2", model="sdm630", values=energy),
        meter("water-open", "modbus", "3", model="water", values=water),
        meter("water-shut", "modbus", "4", model="water", values=water),
    ]
    return devices, settings


async def test_modbus_meters_are_read_through_noise(lines: Callable[..., Line]) -> None:
    devices, settings = modbus_line()
    with serve(modbus.RequestFramer(), devices) as server:
        line = lines(bus_settings(server.url, retries=2))
        reader = line.reader(settings)

        clean = await reader.read_now("sdm120")
        noisy = []
        for fault in FAULTS:
            # Garbage that starts like unit 1's FC04 reply of two registers.
            server.inject("modbus:1", fault, count=1, garbage=b"\x01\x04\x04\x00")
            noisy.append(await reader.read_now("sdm120"))
        sdm630 = await reader.read_now("sdm630")
        flowing = await reader.read_now("water-open")
        shut = await reader.read_now("water-shut")

        expected = {
            "energy_kwh": Decimal("1240.25"),
            "voltage_v": Decimal("229.8"),
            "current_a": Decimal("0"),
            "power_kw": Decimal("0"),
        }
        assert clean.values == expected
        assert [r.values for r in noisy] == [expected] * len(FAULTS)
        assert clean.event_data()["values"] == {
            "energy_kwh": "1240.25",
            "voltage_v": "229.8",
            "current_a": "0",
            "power_kw": "0",
        }
        assert sdm630.values["voltage_v"] == Decimal("230")
        assert sdm630.values["current_a"] == Decimal("4.348")
        assert sdm630.values["power_kw"] == Decimal("3")
        energy = sdm630.values["energy_kwh"]
        assert isinstance(energy, Decimal)
        assert Decimal("500.5") <= energy < Decimal("500.6")  # 3 kW for a few seconds
        assert flowing.values["flow_m3h"] == Decimal("1.5")
        assert flowing.values["valve"] == "open"
        volume = flowing.values["volume_m3"]
        assert isinstance(volume, Decimal)
        assert Decimal("12.345") <= volume < Decimal("12.36")
        assert shut.values == {
            "volume_m3": Decimal("7"),
            "flow_m3h": Decimal("0"),
            "valve": "closed",
        }
        # The litre counter keeps its resolution on the wire: 7.000 m³.
        assert shut.event_data()["values"] == {
            "volume_m3": "7.000",
            "flow_m3h": "0",
            "valve": "closed",
        }

        stats = line.owner.device("sdm120")
        assert stats.requests == 4 * 5 + 2  # four blocks per read, two damaged replies retried
        assert stats.timeouts == 2
        assert stats.checksum_errors >= 2
        assert stats.garbage_bytes > 0
        assert stats.failures == 0
        assert line.owner.device("sdm630").garbage_bytes == 0  # a clean line reads clean
        assert server.stats.overlaps == 0


async def test_an_absent_modbus_unit_is_silent_and_fails(lines: Callable[..., Line]) -> None:
    devices, _ = modbus_line()
    with serve(modbus.RequestFramer(), devices) as server:
        line = lines(bus_settings(server.url, retries=0, offline_after=1))
        reader = line.reader([meter("ghost", "modbus", "9", model="water", values=("valve",))])

        with pytest.raises(NoReplyError):
            await reader.read_now("ghost")

        assert line.owner.device("ghost").online is False
        assert line.readings == []


def test_modbus_plans_the_fewest_blocks_and_refuses_what_the_map_lacks() -> None:
    driver = meter_driver(
        meter("w", "modbus", "3", model="water", values=("volume_m3", "flow_m3h"))
    )
    assert isinstance(driver, ModbusDriver)
    (plan,) = driver.plan()  # registers 0..3 are neighbours: one FC04 read
    assert plan.request.data[:6] == bytes([3, 0x04, 0, 0, 0, 4])
    with pytest.raises(ConfigError, match="cannot read"):
        ModbusDriver(meter("e", "modbus", "1", model="sdm120", values=("volume_m3",)))


# --- CJ/T 188 -------------------------------------------------------------------------------


def cjt188_line() -> list[BusDevice]:
    return [
        WaterMeter(WATER_A, total_m3=Decimal("123.45"), flow_m3h=0),
        WaterMeter(
            WATER_B,
            meter_type=MeterType.GAS,
            di_order=DiOrder.LOW_FIRST,
            total_m3=Decimal("0.07"),
            valve=ValveState.CLOSED,
        ),
        WaterMeter(WATER_C, total_m3=Decimal("5"), valve=ValveState.ABNORMAL),
    ]


async def test_cjt188_meters_are_read_through_noise(lines: Callable[..., Line]) -> None:
    with serve(cjt188.RequestFramer(), cjt188_line()) as server:
        line = lines(bus_settings(server.url, retries=2))
        reader = line.reader(
            [
                meter("wa", "cjt188", WATER_A, values=("volume_m3", "valve")),
                meter(
                    "wb",
                    "cjt188",
                    WATER_B,
                    meter_type="gas",
                    di_order="low_first",
                    values=("volume_m3", "valve"),
                ),
                meter("wc", "cjt188", WATER_C, values=("valve",)),
            ]
        )

        clean = await reader.read_now("wa")
        assert line.owner.device("wa").garbage_bytes == 0  # the FE FE preamble is not noise
        noisy = []
        for fault in FAULTS:
            # Garbage with a 68H start, a plausible type and preamble bytes.
            server.inject(f"cjt188:{WATER_A}", fault, count=1, garbage=b"\x68\x10\x12\xfe\x68")
            noisy.append(await reader.read_now("wa"))
        b = await reader.read_now("wb")
        c = await reader.read_now("wc")

        expected = {"volume_m3": Decimal("123.45"), "valve": "open"}
        assert clean.values == expected
        assert [r.values for r in noisy] == [expected] * len(FAULTS)
        assert clean.event_data()["values"] == {"volume_m3": "123.45", "valve": "open"}
        assert b.values == {"volume_m3": Decimal("0.07"), "valve": "closed"}
        assert c.values == {"valve": "fault"}

        stats = line.owner.device("wa")
        assert stats.requests == 1 + 4 + 2  # one 901F per read, two damaged replies retried
        assert stats.timeouts == 2
        assert stats.checksum_errors >= 2
        assert stats.garbage_bytes > 0
        assert stats.failures == 0
        assert server.stats.overlaps == 0


async def test_a_cjt188_meter_asked_in_the_wrong_di_order_refuses_but_is_there(
    lines: Callable[..., Line],
) -> None:
    with serve(cjt188.RequestFramer(), cjt188_line()) as server:
        line = lines(bus_settings(server.url, retries=0))
        # Meter B wants 1F 90; asked 90 1F it sends an error reply.
        reader = line.reader([meter("wb", "cjt188", WATER_B, meter_type="gas")])

        with pytest.raises(DeviceReplyError):
            await reader.read_now("wb")

        assert line.owner.device("wb").online is True
        assert line.readings == []
        assert server.stats.overlaps == 0


def test_cjt188_driver_sends_preamble_and_the_configured_di_order() -> None:
    driver = meter_driver(meter("w", "cjt188", WATER_B, meter_type="gas", di_order="low_first"))
    assert isinstance(driver, Cjt188Driver)
    (plan,) = driver.plan()
    data = plan.request.data
    assert data[:3] == b"\xfe\xfe\x68"
    assert data[3] == MeterType.GAS
    assert data[4:11] == bytes.fromhex("45030000002420")  # low byte first
    assert data[13:15] == b"\x1f\x90"
    with pytest.raises(ConfigError, match="cannot read"):
        Cjt188Driver(meter("w", "cjt188", WATER_A, values=("flow_m3h",)))


# --- both: offline and online -----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["modbus", "cjt188"])
async def test_a_vanished_meter_goes_offline_and_back_online_once(
    lines: Callable[..., Line], protocol: str
) -> None:
    framer: RequestFramer
    if protocol == "modbus":
        devices, settings = modbus_line()
        devices, settings = devices[2:], settings[2:]  # the two water meters
        framer, gone, device = modbus.RequestFramer(), "modbus:3", "water-open"
    else:
        devices = cjt188_line()
        settings = [meter("wa", "cjt188", WATER_A), meter("wc", "cjt188", WATER_C)]
        framer, gone, device = cjt188.RequestFramer(), f"cjt188:{WATER_A}", "wa"
    with serve(framer, devices) as server:
        line = lines(bus_settings(server.url, timeout_ms=60, retries=0))
        reader = line.reader(settings)
        schedule = asyncio.create_task(reader.run("line-a"))
        try:
            await wait_stats(server, lambda s: s.devices[gone].replies >= 2)
            server.inject(gone, Fault.VANISH, duration_s=0.6)
            async with asyncio.timeout(WAIT_S):
                while (device, False) not in line.transitions:
                    await wait_stats(server, lambda s, n=server.stats.requests: s.requests > n)
                assert line.owner.device(device).online is False
                while line.transitions.count((device, True)) < 2:
                    await wait_stats(server, lambda s, n=server.stats.requests: s.requests > n)
        finally:
            schedule.cancel()
            with pytest.raises(asyncio.CancelledError):
                await schedule

        mine = [online for name, online in line.transitions if name == device]
        assert mine == [True, False, True]
        assert line.owner.device(device).failures >= 2
        others = [m.id for m in settings if m.id != device]
        assert all(line.owner.device(m).failures == 0 for m in others)
        assert server.stats.overlaps == 0


# --- settings and gaps ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"protocol": "modbus", "address": "0", "model": "sdm120"}, "1..247"),
        ({"protocol": "modbus", "address": "248", "model": "sdm120"}, "1..247"),
        ({"protocol": "modbus", "address": "01", "model": "sdm120"}, "1..247"),
        ({"protocol": "modbus", "address": "1"}, "needs model"),
        ({"protocol": "modbus", "address": "1", "model": "sdm999"}, "model"),
        ({"protocol": "cjt188", "address": "1234567890123"}, "14 digits"),
        ({"protocol": "cjt188", "address": "AAAAAAAAAAAAAA"}, "14 digits"),
        ({"protocol": "cjt188", "address": WATER_A, "model": "water"}, "Modbus meters only"),
        ({"protocol": "cjt188", "address": WATER_A, "meter_type": "heat"}, "meter_type"),
        ({"protocol": "dlt645", "address": "000000000001", "di_order": "low_first"}, "CJ/T 188"),
    ],
)
def test_meter_settings_refuse_addresses_and_options_of_another_protocol(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        MeterSettings.model_validate({"id": "m", "bus": "b", **options})


def test_bus_gaps_follow_the_protocols_on_the_bus() -> None:
    def bus(baud: int, parity: str) -> BusSettings:
        return BusSettings(name="b", url="loop://", baud=baud, parity=parity)  # type: ignore[arg-type]

    assert bus_gap_s(bus(9600, "N"), ["modbus"]) == pytest.approx(3.5 * 10 / 9600)
    assert bus_gap_s(bus(2400, "N"), ["modbus"]) == pytest.approx(3.5 * 10 / 2400)
    assert bus_gap_s(bus(115_200, "N"), ["modbus"]) == pytest.approx(0.00175)
    assert bus_gap_s(bus(2400, "E"), ["cjt188"]) == pytest.approx(2 * 11 / 2400)
    assert bus_gap_s(bus(2400, "E"), ["cjt188", "modbus"]) == pytest.approx(3.5 * 11 / 2400)
    assert (LINE_RULES["modbus"].baud, LINE_RULES["modbus"].parity) == (9600, "N")
    assert (LINE_RULES["cjt188"].baud, LINE_RULES["cjt188"].parity) == (2400, "E")
