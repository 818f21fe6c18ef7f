"""The simulated meter, driven through bytes exactly as the bus drives it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from devices.dlt645 import (
    BROADCAST,
    WILDCARD,
    Address,
    Dlt645Meter,
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    MeterType,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    RelayAction,
    RelayControl,
    RelayReply,
    RemoteCommand,
    RequestFramer,
    Standard,
    StatusWord3,
    TimeSync,
    Value,
    WriteReply,
    WriteRequest,
    decode,
    encode,
)
from devices.serialbus import BusDevice

PLATE = "001500076004"
ADDRESS = Address(PLATE)
PASSWORD = "02123456"
START = dt.datetime(2026, 1, 1, 8, 0, 0)
LATER = dt.datetime(2026, 1, 2, 0, 0, 0)


class Master:
    """Sends frames to one meter through bytes, at a simulated monotonic time."""

    def __init__(self, meter: Dlt645Meter) -> None:
        self.meter = meter
        self.now = 1000.0

    def ask(self, frame: Frame, *, after: float = 0.0) -> Frame | None:
        self.now += after
        raw = self.meter.respond(encode(frame, preamble=4), self.now)
        return None if raw is None else decode(raw)

    def read(self, di: int, standard: Standard = Standard.V2007, *, after: float = 0.0) -> Value:
        reply = self.ask(ReadRequest(ADDRESS, di, standard), after=after)
        assert isinstance(reply, ReadReply), reply
        assert reply.address == ADDRESS
        return reply.value

    def relay(self, action: RelayAction, *, password: str = PASSWORD) -> Frame | None:
        return self.ask(RelayControl(ADDRESS, action, LATER, password))

    def status(self) -> StatusWord3:
        word = self.read(0x04000503)
        assert isinstance(word, StatusWord3)
        return word


def make(**options: Any) -> Master:
    meter = Dlt645Meter(PLATE, clock=START, **options)
    master = Master(meter)
    master.ask(ReadAddressRequest())  # anchors the meter's time at master.now
    return master


def test_it_is_a_bus_device() -> None:
    meter: BusDevice = Dlt645Meter(PLATE)
    assert meter.address == PLATE


def test_the_captured_exchange_byte_for_byte() -> None:
    meter = Dlt645Meter(PLATE, energy_kwh=Decimal("1234.56"))
    request = bytes.fromhex("68 04 60 07 00 15 00 68 11 04 33 33 34 33 32 16")
    reply = bytes.fromhex("68 04 60 07 00 15 00 68 91 08 33 33 34 33 89 67 45 33 1e 16")
    assert meter.respond(request, 0.0) == reply


def test_reads_every_common_identifier() -> None:
    master = make(energy_kwh=Decimal("1234.56"))
    assert master.read(0x00000000) == Decimal("1234.56")
    assert master.read(0x00010000) == Decimal("1234.56")
    assert master.read(0x00010100) == Decimal("1234.56")  # all of it in tariff 1 at start
    assert master.read(0x00010200) == Decimal("0.00")
    assert master.read(0x0001FF00) == (Decimal("1234.56"), Decimal("1234.56"), *[Decimal(0)] * 3)
    assert master.read(0x00020000) == Decimal("0.00")
    assert master.read(0x02010100) == Decimal("220.0")
    assert master.read(0x0201FF00) == (Decimal("220.0"),)
    assert master.read(0x02020100) == Decimal("5.000")
    assert master.read(0x02030000) == Decimal("1.1000")
    assert master.read(0x02060000) == Decimal("1.000")
    assert master.read(0x02800002) == Decimal("50.00")
    assert master.read(0x04000101) == START.date()
    assert master.read(0x04000102) == START.time()
    assert master.read(0x04000401) == PLATE
    assert master.read(0x04000402) == PLATE
    assert master.read(0x04000501) == 0
    assert master.status() == StatusWord3(0)


def test_unknown_identifier_is_d1_01_35() -> None:
    master = make()
    raw = master.meter.respond(encode(ReadRequest(ADDRESS, 0x00900200)), master.now)
    assert raw == bytes.fromhex("68 04 60 07 00 15 00 68 d1 01 35 57 16")
    assert master.ask(ReadRequest(ADDRESS, 0x02010200)) == ErrorReply(
        ADDRESS, 0x11, ErrorFlags.NO_DATA
    )  # phase B on a single-phase meter


def test_three_phase_meter() -> None:
    master = make(phases=3, power_kw=Decimal("3.3000"))
    assert master.read(0x0201FF00) == (Decimal("220.0"),) * 3
    assert master.read(0x02020300) == Decimal("5.000")
    assert master.read(0x0203FF00) == (Decimal("3.3000"), *(Decimal("1.1000"),) * 3)


def test_energy_grows_with_power_and_time() -> None:
    master = make(energy_kwh=Decimal("100.00"), power_kw=Decimal("2.0000"), tariff=3)
    assert master.read(0x00010000, after=1800) == Decimal("101.00")
    assert master.read(0x00010300) == Decimal("101.00")  # all in the tariff in force
    assert master.read(0x00010100) == Decimal("0.00")
    assert master.read(0x04000102) == dt.time(8, 30, 0)  # and the clock moved on


def test_speed_scales_metering_not_the_clock() -> None:
    master = make(power_kw=Decimal("1.0000"), speed=60.0)
    assert master.read(0x00010000, after=60) == Decimal("1.00")
    assert master.read(0x04000102) == dt.time(8, 1, 0)


def test_addressing() -> None:
    master = make()
    read = ReadRequest(Address("001500076005"), 0x00010000)
    assert master.ask(read) is None  # another meter's address: silence
    assert master.ask(ReadRequest(BROADCAST, 0x00010000)) is None  # broadcast: silence
    reply = master.ask(ReadRequest(Address("AAAA00076004"), 0x00010000))  # AA-padded
    assert isinstance(reply, ReadReply)
    assert reply.address == ADDRESS
    assert master.ask(ReadAddressRequest(WILDCARD)) == ReadAddressReply(ADDRESS)
    assert master.ask(ReadAddressRequest(Address("001500076005"))) is None


def test_silence_for_corrupt_frames_and_replies() -> None:
    master = make()
    good = encode(ReadRequest(ADDRESS, 0x00010000))
    assert master.meter.respond(good[:-2] + b"\x00\x16", master.now) is None
    assert master.meter.respond(good[:-1], master.now) is None
    reply = encode(ReadReply(ADDRESS, 0x00010000, bytes(4)))
    assert master.meter.respond(reply, master.now) is None


def test_undecodable_and_unsupported_requests_get_err_other() -> None:
    master = make()
    freeze = RawFrame(ADDRESS, 0x16, bytes.fromhex("99 99 99 99"))
    assert master.ask(freeze) == ErrorReply(ADDRESS, 0x16, ErrorFlags.OTHER)
    body = bytes.fromhex("68 04 60 07 00 15 00 68 11 03 33 33 34")  # a read with a 3-byte DI
    raw = master.meter.respond(body + bytes([sum(body) & 0xFF, 0x16]), master.now)
    assert raw is not None
    assert decode(raw) == ErrorReply(ADDRESS, 0x11, ErrorFlags.OTHER)


def test_broadcast_time_sync_sets_the_clock_and_gets_no_reply() -> None:
    master = make()
    when = dt.datetime(2025, 1, 2, 3, 4, 5)
    wire = encode(TimeSync(when), preamble=4)
    # Seconds first on the wire: 05 04 03 02 01 25.
    assert wire[14:20] == bytes(b + 0x33 for b in bytes.fromhex("05 04 03 02 01 25"))
    assert master.meter.respond(wire, master.now) is None
    assert master.meter.clock == when
    assert master.read(0x04000101) == when.date()
    assert master.read(0x04000102, after=10) == dt.time(3, 4, 15)


def test_a_broadcast_only_sets_the_clock() -> None:
    master = make()
    trip = RelayControl(BROADCAST, RelayAction.TRIP, LATER, PASSWORD)
    assert master.ask(trip) is None
    assert not master.status().relay_open  # a trip to every meter at once is not obeyed
    write = WriteRequest.of(BROADCAST, 0x04000102, dt.time(1, 2, 3), password=PASSWORD)
    assert master.ask(write) is None
    assert master.read(0x04000102) == START.time()


def test_writes_check_the_password() -> None:
    master = make(prepaid=True)
    write = WriteRequest.of(ADDRESS, 0x04000102, dt.time(12, 0, 0), password=PASSWORD)
    assert master.ask(write) == WriteReply(ADDRESS)
    assert master.read(0x04000102) == dt.time(12, 0, 0)
    write = WriteRequest.of(ADDRESS, 0x04000101, dt.date(2027, 6, 1), password=PASSWORD)
    assert master.ask(write) == WriteReply(ADDRESS)
    assert master.read(0x04000101) == dt.date(2027, 6, 1)
    limit = WriteRequest.of(ADDRESS, 0x04001002, Decimal("8.00"), password=PASSWORD)
    assert master.ask(limit) == WriteReply(ADDRESS)
    assert master.read(0x04001002) == Decimal("8.00")
    wrong = WriteRequest.of(ADDRESS, 0x04000102, dt.time(1, 0, 0), password="02654321")
    assert master.ask(wrong) == ErrorReply(ADDRESS, 0x14, ErrorFlags.UNAUTHORISED)
    assert master.read(0x04000102) == dt.time(12, 0, 0)
    read_only = WriteRequest.of(ADDRESS, 0x00010000, Decimal(0), password=PASSWORD)
    assert master.ask(read_only) == ErrorReply(ADDRESS, 0x14, ErrorFlags.UNAUTHORISED)
    unknown = WriteRequest(ADDRESS, 0x12345678, b"\x00", PASSWORD)
    assert master.ask(unknown) == ErrorReply(ADDRESS, 0x14, ErrorFlags.NO_DATA)
    bad_value = WriteRequest(ADDRESS, 0x04000102, bytes.fromhex("00 61 12"), PASSWORD)
    assert master.ask(bad_value) == ErrorReply(ADDRESS, 0x14, ErrorFlags.OTHER)


def test_1997_reads_and_writes() -> None:
    master = make(energy_kwh=Decimal("1234.56"))
    v97 = Standard.V1997
    assert master.read(0x9010, v97) == Decimal("1234.56")
    assert master.read(0x901F, v97)[:2] == (Decimal("1234.56"),) * 2  # type: ignore[index]
    assert master.read(0xB611, v97) == Decimal(220)
    assert master.read(0xB621, v97) == Decimal("5.00")
    assert master.read(0xB630, v97) == Decimal("1.1000")
    assert master.read(0xC010, v97) == START.date()
    assert master.ask(ReadRequest(ADDRESS, 0xB612, v97)) == ErrorReply(
        ADDRESS, 0x01, ErrorFlags.NO_DATA
    )
    write = WriteRequest.of(ADDRESS, 0xC011, dt.time(9, 0, 0), password=PASSWORD, standard=v97)
    assert master.ask(write) == WriteReply(ADDRESS, v97)
    assert master.read(0xC011, v97) == dt.time(9, 0, 0)


def test_long_replies_continue_in_follow_up_frames() -> None:
    master = make(energy_kwh=Decimal("1.00"), max_reply_data=17)
    first = master.ask(ReadRequest(ADDRESS, 0x0001FF00))
    assert isinstance(first, ReadReply)
    assert first.follows
    data, seq, follows = first.data, 0, True
    while follows:
        seq += 1
        part = master.ask(ReadFollowUp(ADDRESS, 0x0001FF00, seq))
        assert isinstance(part, FollowUpReply)
        assert part.seq == seq
        data, follows = data + part.data, part.follows
    assert seq == 1
    whole = ReadReply(ADDRESS, 0x0001FF00, data).value
    assert whole == (Decimal("1.00"), Decimal("1.00"), *[Decimal(0)] * 3)
    again = master.ask(ReadFollowUp(ADDRESS, 0x0001FF00, 1))
    assert again == ErrorReply(ADDRESS, 0x12, ErrorFlags.NO_DATA)


# --- relay and prepayment ------------------------------------------------------------------------


def test_trip_allow_close_button_close() -> None:
    master = make()
    assert master.relay(RelayAction.TRIP) == RelayReply(ADDRESS)
    status = master.status()
    assert status.relay_open
    assert status.relay_command_open
    assert master.read(0x02030000) == Decimal("0.0000")  # no load behind an open relay
    assert master.read(0x02020100) == Decimal("0.000")
    assert master.read(0x00010000, after=3600) == Decimal("0.00")
    assert master.relay(RelayAction.ALLOW_CLOSE) == RelayReply(ADDRESS)
    status = master.status()
    assert status.relay_open
    assert not status.relay_command_open
    master.meter.press_button()
    assert not master.status().relay_open
    master.relay(RelayAction.TRIP)
    assert master.relay(RelayAction.CLOSE) == RelayReply(ADDRESS)
    assert not master.status().relay_open
    assert master.meter.relay.remote is RemoteCommand.NONE


def test_keep_power_blocks_trips() -> None:
    master = make()
    master.relay(RelayAction.TRIP)
    assert master.relay(RelayAction.KEEP_POWER) == RelayReply(ADDRESS)
    status = master.status()
    assert status.keep_power
    assert not status.relay_open
    assert master.relay(RelayAction.TRIP) == ErrorReply(ADDRESS, 0x1C, ErrorFlags.OTHER)
    assert not master.status().relay_open
    master.relay(RelayAction.CANCEL_KEEP_POWER)
    assert master.relay(RelayAction.TRIP) == RelayReply(ADDRESS)
    assert master.status().relay_open


def test_relay_orders_need_the_password_and_a_live_deadline() -> None:
    master = make()
    wrong = master.relay(RelayAction.TRIP, password="02000000")
    assert wrong == ErrorReply(ADDRESS, 0x1C, ErrorFlags.UNAUTHORISED)
    expired = RelayControl(ADDRESS, RelayAction.TRIP, START - dt.timedelta(seconds=1), PASSWORD)
    assert master.ask(expired) == ErrorReply(ADDRESS, 0x1C, ErrorFlags.OTHER)
    assert not master.status().relay_open
    assert master.relay(RelayAction.ALARM) == RelayReply(ADDRESS)
    assert master.meter.relay.alarm
    master.relay(RelayAction.ALARM_OFF)
    assert not master.meter.relay.alarm


def test_a_ciphertext_relay_order_is_refused() -> None:
    master = make()
    wire = bytearray(encode(RelayControl(ADDRESS, RelayAction.TRIP, LATER, "98000000")))
    wire[18] = 0x77  # N1 is ciphertext
    wire[-2] = sum(wire[:-2]) & 0xFF
    raw = master.meter.respond(bytes(wire), master.now)
    assert raw is not None
    assert decode(raw) == ErrorReply(ADDRESS, 0x1C, ErrorFlags.OTHER)


def test_prepaid_countdown_trips_at_zero_and_recharge_restores() -> None:
    master = make(
        prepaid=True,
        balance=Decimal("10.00"),
        price=Decimal("0.5000"),
        power_kw=Decimal("1.0000"),
        alarm_limits=(Decimal("5.00"), Decimal("2.00")),
        purchase_count=3,
    )
    assert master.status().meter_type is MeterType.MONEY_PREPAID
    assert master.read(0x00900200) == Decimal("10.00")
    assert master.read(0x00900100) == Decimal("20.00")  # remaining energy at the price
    assert master.read(0x02800020) == Decimal("0.5000")
    assert master.read(0x03330201) == Decimal(3)
    # 16 h at 1 kW and 0.5 yuan/kWh: 8 yuan spent, 2 left, the pre-trip alarm is on.
    assert master.read(0x00900200, after=16 * 3600) == Decimal("2.00")
    assert master.status().pre_trip_alarm
    assert not master.status().relay_open
    # Four more hours use up the balance exactly; the relay opens at zero, not after.
    assert master.read(0x00900200, after=10 * 3600) == Decimal("0.00")
    assert master.read(0x00010000) == Decimal("20.00")
    assert master.read(0x00900201) == Decimal("0.00")
    status = master.status()
    assert status.relay_open
    assert not status.relay_command_open
    assert master.read(0x02030000) == Decimal("0.0000")
    master.meter.recharge(Decimal("50.00"))
    assert master.read(0x03330201) == Decimal(4)
    assert master.read(0x00900200) == Decimal("50.00")
    assert master.read(0x03330601) == Decimal("60.00")
    assert not master.status().relay_open


def test_keep_power_lets_a_prepaid_meter_run_into_overdraft() -> None:
    master = make(prepaid=True, balance=Decimal("1.00"), price=Decimal("1.0000"))
    master.relay(RelayAction.KEEP_POWER)
    assert master.read(0x00900200, after=3600) == Decimal("0.00")
    assert master.read(0x00900201) == Decimal("0.10")  # 1.1 kWh at 1 yuan: 0.10 overdrawn
    assert not master.status().relay_open
    master.relay(RelayAction.CANCEL_KEEP_POWER)
    assert master.status().relay_open  # credit control takes over again
    master.meter.recharge(Decimal("0.05"))
    assert master.status().relay_open  # still overdrawn
    master.meter.recharge(Decimal("1.00"))
    assert master.read(0x00900200) == Decimal("0.95")
    assert not master.status().relay_open


def test_without_local_control_the_balance_goes_negative_and_the_relay_stays() -> None:
    master = make(
        prepaid=True, local_control=False, balance=Decimal("1.00"), price=Decimal("1.0000")
    )
    assert master.read(0x00900201, after=3600) == Decimal("0.10")
    assert not master.status().relay_open
    assert master.meter.balance == Decimal("-0.10")


def test_non_prepaid_meters_hold_no_prepaid_identifiers() -> None:
    master = make()
    for di in (0x00900100, 0x00900200, 0x00900201, 0x03330201, 0x04001001, 0x02800020):
        assert master.ask(ReadRequest(ADDRESS, di)) == ErrorReply(ADDRESS, 0x11, ErrorFlags.NO_DATA)


def test_replies_carry_the_configured_preamble() -> None:
    meter = Dlt645Meter(PLATE, preamble=4)
    raw = meter.respond(encode(ReadAddressRequest()), 0.0)
    assert raw is not None
    assert raw.startswith(b"\xfe" * 4 + b"\x68")


def test_serves_a_byte_stream_through_the_request_framer() -> None:
    meters = [Dlt645Meter(f"0000000000{n:02}") for n in range(1, 4)]
    framer = RequestFramer()
    stream = b"".join(
        encode(ReadRequest(Address(m.address), 0x04000401), preamble=4) for m in meters
    )
    replies = [
        reply
        for request in framer.feed(b"\x00\x13" + stream)
        for m in meters
        if (reply := m.respond(request, 0.0)) is not None
    ]
    assert [decode(r).address.nameplate for r in replies] == [m.address for m in meters]


@pytest.mark.parametrize(
    "options",
    [
        {"tariff": 5},
        {"phases": 2},
        {"max_reply_data": 16},
        {"speed": -1.0},
        {"password": "0212345"},
        {"prepaid": True, "price": Decimal(0)},
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        Dlt645Meter(PLATE, **options)


def test_a_meter_address_is_twelve_digits() -> None:
    with pytest.raises(ValueError, match="12 digits"):
        Dlt645Meter("AAAA00076004")
