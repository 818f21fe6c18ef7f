"""A simulated DL/T 645 meter: registers that advance with time, a prepaid wallet, a relay.

`Dlt645Meter` is a `devices.serialbus.BusDevice`: the bus hands it each request frame and the
current :func:`time.monotonic`, and it returns its reply bytes or ``None``. It does no I/O and
keeps no thread; it advances its registers to ``now`` on every request (and on `advance`).

What it models:

* reads (11H) of every identifier in `identifiers.IDENTIFIERS_2007` that fits its configuration,
  1997 reads (01H) of the 1997 table, read address (13H), writes (14H/04H) of the clock and the
  alarm limits behind a password, broadcast time sync (08H), follow-up frames (12H) for replies
  longer than `max_reply_data`, and relay control (1CH) with its validity deadline;
* energy that grows by power × elapsed time (times `speed`), into the tariff in force;
* for a prepaid (money-type) meter, a balance that shrinks by energy × price, with local control
  that trips the relay when the balance reaches zero, and `recharge` to top it up;
* the reply a real meter gives to everything else: ERR bit1 for an identifier it does not hold,
  bit2 for a wrong password, bit0 for anything it cannot do; silence for a broadcast, for another
  meter's address, and for a corrupted frame.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from devices.dlt645.address import Address
from devices.dlt645.codec import encode, from_envelope
from devices.dlt645.control import REPLY, Function, function_of
from devices.dlt645.envelope import MAX_DATA, unpack
from devices.dlt645.errors import Dlt645Error, Reason
from devices.dlt645.frames import (
    ErrorFlags,
    ErrorReply,
    FollowUpReply,
    Frame,
    RawFrame,
    ReadAddressReply,
    ReadAddressRequest,
    ReadFollowUp,
    ReadReply,
    ReadRequest,
    RelayControl,
    RelayReply,
    TimeSync,
    WriteReply,
    WriteRequest,
)
from devices.dlt645.identifiers import Standard, encode_value, lookup
from devices.dlt645.relay import BUTTON, Relay, apply
from devices.dlt645.values import MeterType, StatusWord3, Value

__all__ = ["DEFAULT_PASSWORD", "Dlt645Meter"]

DEFAULT_PASSWORD = "02123456"  # noqa: S105 - a simulated meter's documented factory default
"""The simulator's password unless told otherwise: level 02, code 123456 (not a secret)."""

_SECONDS_PER_HOUR = Decimal(3600)
_Reading = Callable[[], Value]


def _down(value: Decimal, step: str = "0.01") -> Decimal:
    """Truncate as a meter's register does: it never shows energy not yet consumed."""
    return value.quantize(Decimal(step), rounding=ROUND_DOWN)


def _round(value: Decimal, step: str) -> Decimal:
    return value.quantize(Decimal(step), rounding=ROUND_HALF_EVEN)


class Dlt645Meter:
    """One simulated meter (single- or three-phase, optionally money-prepaid).

    `address` is the nameplate number, as on the bus's statistics. Quantities are `Decimal`:
    `energy_kwh` (forward active, all in `tariff` 1-4 at start), `voltage` V, `current` A,
    `power_kw` (the load while the relay is closed), `power_factor`, `frequency` Hz. A prepaid
    meter starts with `balance` yuan, `price` yuan/kWh, `alarm_limits` (limit 1, limit 2) and
    `purchase_count`; with `local_control` it trips itself when the balance reaches zero. `speed`
    scales metering time (not the clock) so a demo shows energy moving; `clock` is the meter's
    calendar time at the first request. Replies carry `preamble` ``FE`` bytes; replies longer than
    `max_reply_data` data bytes continue in follow-up frames.
    """

    checksum_offset = -2
    """Where a reply keeps its checksum (before the final 16), for the bus's bad-checksum fault."""

    def __init__(
        self,
        address: str,
        *,
        prepaid: bool = False,
        local_control: bool = True,
        password: str = DEFAULT_PASSWORD,
        energy_kwh: Decimal = Decimal("0"),
        tariff: int = 1,
        voltage: Decimal = Decimal("220.0"),
        current: Decimal = Decimal("5.000"),
        power_kw: Decimal = Decimal("1.1000"),
        power_factor: Decimal = Decimal("1.000"),
        frequency: Decimal = Decimal("50.00"),
        phases: int = 1,
        balance: Decimal = Decimal("100.00"),
        price: Decimal = Decimal("0.4883"),
        alarm_limits: tuple[Decimal, Decimal] = (Decimal("20.00"), Decimal("5.00")),
        purchase_count: int = 1,
        clock: dt.datetime = dt.datetime(2026, 1, 1),
        speed: float = 1.0,
        preamble: int = 0,
        max_reply_data: int = MAX_DATA,
    ) -> None:
        self._address = Address(address)
        if not address.isdigit():
            raise Dlt645Error(Reason.BAD_ADDRESS, f"{address!r}: a meter's address is 12 digits")
        if not 1 <= tariff <= 4 or phases not in (1, 3) or speed < 0:
            raise ValueError("tariff must be 1-4, phases 1 or 3, speed not negative")
        if not 17 <= max_reply_data <= MAX_DATA:
            raise ValueError(f"max_reply_data must be 17-{MAX_DATA}")
        if len(password) != 8 or not all(c in "0123456789ABCDEF" for c in password):
            raise ValueError(
                f"password must be 8 upper-case hex digits (PA P0 P1 P2), not {password!r}"
            )
        if prepaid and price <= 0:
            raise ValueError("a prepaid meter's price must be positive")
        self.address = address
        self.prepaid = prepaid
        self.local_control = local_control
        self.password = password
        self.voltage, self.current, self.power_kw = voltage, current, power_kw
        self.power_factor, self.frequency = power_factor, frequency
        self.phases, self.tariff, self.speed = phases, tariff, speed
        self.price = price
        self.alarm_limits = alarm_limits
        self.purchase_count = purchase_count
        self.purchased_total = balance
        self.preamble = preamble
        self.max_reply_data = max_reply_data
        self._energy = [Decimal(0)] * 4
        self._energy[tariff - 1] = Decimal(energy_kwh)
        self._balance = Decimal(balance)
        self._clock = clock
        self._relay = Relay()
        self._last: float | None = None
        self._pending: dict[int, list[bytes]] = {}
        # The bus thread answers requests while a test or the CLI recharges or presses the button.
        self._lock = threading.RLock()
        self._settle()
        self._readings = self._readings_2007()
        self._readings_97 = self._readings_1997()

    # --- the outside world ---------------------------------------------------------------------

    @property
    def meter_address(self) -> Address:
        """The meter's address."""
        return self._address

    @property
    def energy_kwh(self) -> Decimal:
        """Forward active energy, total, as the register shows it (to 0.01 kWh)."""
        with self._lock:
            return self._total()

    @property
    def balance(self) -> Decimal:
        """The prepaid balance in yuan, to the cent (negative while overdrawn)."""
        with self._lock:
            return _down(self._balance)

    @property
    def clock(self) -> dt.datetime:
        """The meter's calendar clock."""
        with self._lock:
            return self._clock

    @property
    def relay(self) -> Relay:
        """The relay's state."""
        with self._lock:
            return self._relay

    @property
    def status_word_3(self) -> StatusWord3:
        """Run status word 3 as the meter would report it now."""
        with self._lock:
            return self._status_3()

    def advance(self, now: float) -> None:
        """Bring registers and clock forward to `now` (:func:`time.monotonic` seconds)."""
        with self._lock:
            if self._last is not None and now > self._last:
                self._run(now - self._last)
            if self._last is None or now > self._last:
                self._last = now

    def recharge(self, amount: Decimal) -> None:
        """A purchase (what 03H 070102FF does with the utility's keys): top up the balance."""
        if amount <= 0:
            raise ValueError("a recharge must be positive")
        with self._lock:
            self._balance += amount
            self.purchase_count += 1
            self.purchased_total += amount
            self._settle()

    def press_button(self) -> None:
        """The customer presses the meter's button: closes the relay after "allow close"."""
        with self._lock:
            self._relay = apply(self._relay, BUTTON) or self._relay
            self._settle()

    def respond(self, request: bytes, now: float) -> bytes | None:
        """The reply to one request frame, or ``None`` for silence (`devices.serialbus`)."""
        try:
            envelope = unpack(request)
        except Dlt645Error:
            return None  # a corrupted frame: a real meter ignores it and the master times out
        heard = envelope.address.is_broadcast or envelope.address.reaches(self._address)
        if envelope.control & REPLY or not heard:
            return None
        with self._lock:
            self.advance(now)
            try:
                frame = from_envelope(envelope)
            except Dlt645Error:
                reply: Frame | None = self._error(function_of(envelope.control), ErrorFlags.OTHER)
            else:
                if envelope.address.is_broadcast:
                    # A broadcast may set the clock, nothing else: a trip or a write sent to every
                    # meter at once is a master's mistake, not an order.
                    if isinstance(frame, TimeSync):
                        self._clock = frame.when
                    return None
                reply = self._answer(frame)
        return None if reply is None else encode(reply, preamble=self.preamble)

    # --- time ----------------------------------------------------------------------------------

    def _run(self, seconds: float) -> None:
        self._clock += dt.timedelta(seconds=seconds)
        if not self._relay.closed:
            return
        kwh = self.power_kw * Decimal(seconds * self.speed) / _SECONDS_PER_HOUR
        if self._credit_controlled and self.price > 0:
            # Stop where the credit runs out: local control trips at exactly zero.
            kwh = min(kwh, max(self._balance, Decimal(0)) / self.price)
        self._energy[self.tariff - 1] += kwh
        if self.prepaid:
            self._balance -= kwh * self.price
        self._settle()

    @property
    def _credit_controlled(self) -> bool:
        return self.prepaid and self.local_control and not self._relay.keep_power

    def _settle(self) -> None:
        """Re-derive the relay's credit input after anything that moves the balance."""
        exhausted = self.prepaid and self.local_control and self._balance <= 0
        if exhausted != self._relay.credit_exhausted:
            self._relay = Relay(
                self._relay.remote, self._relay.keep_power, self._relay.alarm, exhausted
            )

    def _status_3(self) -> StatusWord3:
        pre_trip = self.prepaid and 0 < self._balance <= self.alarm_limits[1]
        return StatusWord3.of(
            relay_open=not self._relay.closed,
            relay_command_open=self._relay.commanded_open,
            pre_trip_alarm=pre_trip,
            meter_type=MeterType.MONEY_PREPAID if self.prepaid else MeterType.NON_PREPAID,
            keep_power=self._relay.keep_power,
        )

    # --- registers -----------------------------------------------------------------------------

    def _load(self, value: Decimal) -> Decimal:
        return value if self._relay.closed else value * 0

    def _per_phase_power(self) -> Decimal:
        return _round(self._load(self.power_kw) / self.phases, "0.0001")

    def _readings_2007(self) -> dict[int, _Reading]:
        tariffs = {
            0x00010000 | n << 8: (lambda n=n: _down(self._energy[n - 1])) for n in range(1, 5)
        }
        phases = range(1, self.phases + 1)
        readings: dict[int, _Reading] = {
            0x00000000: lambda: self._total(),
            0x00010000: lambda: self._total(),
            **tariffs,
            0x0001FF00: lambda: (self._total(), *(_down(e) for e in self._energy)),
            0x00020000: lambda: Decimal("0.00"),
            0x0201FF00: lambda: tuple(self.voltage for _ in phases),
            0x0202FF00: lambda: tuple(self._load(self.current) for _ in phases),
            0x02030000: lambda: self._load(self.power_kw),
            0x0203FF00: lambda: (
                self._load(self.power_kw),
                *(self._per_phase_power() for _ in phases),
            ),
            0x02060000: lambda: self.power_factor,
            0x0206FF00: lambda: tuple(self.power_factor for _ in range(len(phases) + 1)),
            0x02800002: lambda: self.frequency,
            0x04000101: lambda: self._clock.date(),
            0x04000102: lambda: self._clock.time().replace(microsecond=0),
            0x04000401: lambda: self.address,
            0x04000402: lambda: self.address,
            0x04000503: lambda: self._status_3(),
        }
        for n in phases:
            readings[0x02010000 | n << 8] = lambda: self.voltage
            readings[0x02020000 | n << 8] = lambda: self._load(self.current)
            readings[0x02030000 | n << 8] = self._per_phase_power
            readings[0x02060000 | n << 8] = lambda: self.power_factor
        for n in (1, 2, 4, 5, 6, 7):
            readings[0x04000500 | n] = lambda: 0
        if self.prepaid:
            readings |= {
                0x00900100: lambda: _down(max(self._balance, Decimal(0)) / self.price),
                0x00900101: lambda: Decimal("0.00"),
                0x00900200: lambda: _down(max(self._balance, Decimal(0))),
                0x00900201: lambda: _down(max(-self._balance, Decimal(0))),
                0x03330201: lambda: Decimal(self.purchase_count),
                0x03330601: lambda: _down(self.purchased_total),
                0x02800020: lambda: self.price,
                0x04001001: lambda: self.alarm_limits[0],
                0x04001002: lambda: self.alarm_limits[1],
            }
        return readings

    def _readings_1997(self) -> dict[int, _Reading]:
        return {
            0x9010: lambda: self._total(),
            0x901F: lambda: (self._total(), *(_down(e) for e in self._energy)),
            0xB611: lambda: _round(self.voltage, "1"),
            0xB621: lambda: _round(self._load(self.current), "0.01"),
            0xB630: lambda: self._load(self.power_kw),
            0xC010: lambda: self._clock.date(),
            0xC011: lambda: self._clock.time().replace(microsecond=0),
        }

    def _total(self) -> Decimal:
        return _down(sum(self._energy, Decimal(0)))

    # --- requests ------------------------------------------------------------------------------

    def _error(self, function: int, errors: ErrorFlags) -> ErrorReply:
        return ErrorReply(self._address, function, errors)

    def _answer(self, frame: Frame) -> Frame | None:
        match frame:
            case ReadRequest():
                return self._read(frame)
            case ReadFollowUp():
                return self._follow_up(frame)
            case ReadAddressRequest():
                return ReadAddressReply(self._address)
            case WriteRequest():
                return self._write(frame)
            case TimeSync(when):
                self._clock = when
                return None
            case RelayControl():
                return self._relay_control(frame)
            case RawFrame(control=control):
                # A function the meter does not carry out (freeze, baud rate, 03H security, ...).
                return self._error(function_of(control), ErrorFlags.OTHER)
        return None  # replies never reach here: respond() drops frames with D7 set

    def _read(self, frame: ReadRequest) -> Frame:
        function = Function.READ if frame.standard is Standard.V2007 else Function.READ_1997
        table = self._readings if frame.standard is Standard.V2007 else self._readings_97
        reading = table.get(frame.di)
        if reading is None or frame.extra:
            return self._error(function, ErrorFlags.NO_DATA)
        data = encode_value(frame.di, reading(), frame.standard)
        room = self.max_reply_data - frame.standard.di_size
        if len(data) <= room or frame.standard is Standard.V1997:
            return ReadReply(self._address, frame.di, data, frame.standard)
        rest = self.max_reply_data - 5
        self._pending[frame.di] = [data[i : i + rest] for i in range(room, len(data), rest)]
        return ReadReply(self._address, frame.di, data[:room], frame.standard, follows=True)

    def _follow_up(self, frame: ReadFollowUp) -> Frame:
        parts = self._pending.get(frame.di, [])
        if frame.standard is Standard.V1997 or not 1 <= frame.seq <= len(parts):
            function = (
                Function.FOLLOW_UP if frame.standard is Standard.V2007 else Function.FOLLOW_UP_1997
            )
            return self._error(function, ErrorFlags.NO_DATA)
        follows = frame.seq < len(parts)
        if not follows:
            del self._pending[frame.di]
        return FollowUpReply(
            self._address, frame.di, parts[frame.seq - 1], frame.seq, follows=follows
        )

    def _write(self, frame: WriteRequest) -> Frame:
        function = Function.WRITE if frame.standard is Standard.V2007 else Function.WRITE_1997
        if frame.password != self.password:
            return self._error(function, ErrorFlags.UNAUTHORISED)
        setter = self._writers(frame.standard).get(frame.di)
        if setter is None:
            try:
                lookup(frame.di, frame.standard)
            except Dlt645Error:
                return self._error(function, ErrorFlags.NO_DATA)
            return self._error(function, ErrorFlags.UNAUTHORISED)
        try:
            setter(frame.value)
        except (Dlt645Error, ValueError):
            return self._error(function, ErrorFlags.OTHER)
        return WriteReply(self._address, frame.standard)

    def _writers(self, standard: Standard) -> dict[int, Callable[[Any], None]]:
        date_di, time_di = (
            (0x04000101, 0x04000102) if standard is Standard.V2007 else (0xC010, 0xC011)
        )
        writers: dict[int, Callable[[Any], None]] = {
            date_di: lambda d: self._set_clock(dt.datetime.combine(d, self._clock.time())),
            time_di: lambda t: self._set_clock(dt.datetime.combine(self._clock.date(), t)),
        }
        if self.prepaid and standard is Standard.V2007:
            writers[0x04001001] = lambda v: self._set_limits((v, self.alarm_limits[1]))
            writers[0x04001002] = lambda v: self._set_limits((self.alarm_limits[0], v))
        return writers

    def _set_clock(self, when: dt.datetime) -> None:
        self._clock = when

    def _set_limits(self, limits: tuple[Decimal, Decimal]) -> None:
        self.alarm_limits = limits

    def _relay_control(self, frame: RelayControl) -> Frame:
        if frame.password != self.password:
            return self._error(Function.RELAY, ErrorFlags.UNAUTHORISED)
        if frame.deadline < self._clock:
            return self._error(Function.RELAY, ErrorFlags.OTHER)  # the order has expired
        relay = apply(self._relay, frame.action)
        if relay is None:
            return self._error(Function.RELAY, ErrorFlags.OTHER)  # keep-power refuses a trip
        self._relay = relay
        self._settle()
        return RelayReply(self._address)
