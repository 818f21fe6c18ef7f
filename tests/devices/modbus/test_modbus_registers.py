"""Register maps as data: value layouts, the shipped maps, read planning and reply decoding."""

from __future__ import annotations

import itertools
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from devices.modbus import (
    MAPS,
    SDM120,
    SDM630,
    WATER_METER,
    DataType,
    ExceptionReply,
    ExceptionReplyError,
    FunctionCode,
    ModbusError,
    ReadBlock,
    ReadReply,
    RegisterEntry,
    RegisterMap,
    RegisterValueError,
    WordOrder,
    WriteSingleReply,
    plan_reads,
)

HOLDING = FunctionCode.READ_HOLDING_REGISTERS
INPUT = FunctionCode.READ_INPUT_REGISTERS
PYMODBUS_TYPES = {
    DataType.UINT16: ModbusClientMixin.DATATYPE.UINT16,
    DataType.INT16: ModbusClientMixin.DATATYPE.INT16,
    DataType.UINT32: ModbusClientMixin.DATATYPE.UINT32,
    DataType.INT32: ModbusClientMixin.DATATYPE.INT32,
    DataType.FLOAT32: ModbusClientMixin.DATATYPE.FLOAT32,
}


def entry(
    data_type: DataType,
    *,
    address: int = 0,
    scale: str = "1",
    word_order: WordOrder = WordOrder.HIGH_FIRST,
    name: str = "value",
    function: FunctionCode = INPUT,
) -> RegisterEntry:
    return RegisterEntry(
        name=name,
        function=function,
        address=address,
        data_type=data_type,
        scale=Decimal(scale),
        word_order=word_order,
    )


# --- value layouts ----------------------------------------------------------------------------


def test_float32_reads_as_the_shortest_decimal() -> None:
    volts = entry(DataType.FLOAT32)
    assert volts.decode((0x4365, 0xCCCD)) == Decimal("229.8")
    assert volts.decode((0x449B, 0x0800)) == Decimal("1240.25")
    assert volts.encode(Decimal("229.8")) == (0x4365, 0xCCCD)
    assert str(volts.decode(volts.encode(100))) == "100"  # not 1E+2
    assert volts.decode((0x7FC0, 0x0000)).is_nan()
    assert volts.decode((0xFF80, 0x0000)) == Decimal("-Infinity")


def test_scaled_integers_are_exact() -> None:
    litres = entry(DataType.UINT32, scale="0.001")
    assert litres.decode((0x0012, 0xD687)) == Decimal("1234.567")
    assert litres.encode(Decimal("1234.567")) == (0x0012, 0xD687)
    celsius = entry(DataType.INT16, scale="0.01")
    assert celsius.decode((0xFF38,)) == Decimal("-2.00")
    assert celsius.encode(Decimal("-2")) == (0xFF38,)


def test_low_word_first() -> None:
    cdab = entry(DataType.FLOAT32, word_order=WordOrder.LOW_FIRST)
    assert cdab.encode(Decimal("229.8")) == (0xCCCD, 0x4365)
    assert cdab.decode((0xCCCD, 0x4365)) == Decimal("229.8")
    counter = entry(DataType.INT32, word_order=WordOrder.LOW_FIRST)
    assert counter.decode((0xFFFE, 0xFFFF)) == -2


@pytest.mark.parametrize(
    ("data_type", "value"),
    [
        (DataType.UINT16, 65536),
        (DataType.UINT16, -1),
        (DataType.INT16, 32768),
        (DataType.UINT32, 2**32),
        (DataType.INT32, -(2**31) - 1),
        (DataType.FLOAT32, Decimal("1e39")),
        (DataType.UINT16, Decimal("NaN")),
    ],
)
def test_values_that_do_not_fit(data_type: DataType, value: Decimal | int) -> None:
    with pytest.raises(RegisterValueError) as caught:
        entry(data_type).encode(value)
    assert caught.value.name == "value"
    assert isinstance(caught.value, ValueError)


def test_decode_wants_the_right_number_of_registers() -> None:
    with pytest.raises(RegisterValueError):
        entry(DataType.FLOAT32).decode((1,))


@given(
    st.sampled_from(list(DataType)),
    st.sampled_from(list(WordOrder)),
    st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
    st.sampled_from(["1", "0.1", "0.001", "10"]),
)
def test_registers_round_trip_through_a_value(
    data_type: DataType, order: WordOrder, words: list[int], scale: str
) -> None:
    value_entry = entry(data_type, word_order=order, scale=scale)
    registers = tuple(words[: data_type.registers])
    value = value_entry.decode(registers)
    if data_type is DataType.FLOAT32 and not value.is_finite():
        return  # NaN payloads are not preserved, and need not be
    assert value_entry.encode(value) == registers


@given(
    st.sampled_from(list(DataType)),
    st.sampled_from(list(WordOrder)),
    st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
)
def test_values_agree_with_pymodbus(
    data_type: DataType, order: WordOrder, words: list[int]
) -> None:
    registers = words[: data_type.registers]
    ours = entry(data_type, word_order=order).decode(registers)
    theirs = ModbusClientMixin.convert_from_registers(
        registers,
        PYMODBUS_TYPES[data_type],
        word_order="big" if order is WordOrder.HIGH_FIRST else "little",
    )
    assert isinstance(theirs, int | float)
    if data_type is DataType.FLOAT32:
        if ours.is_nan():
            assert theirs != theirs
            return
        # Same float32: our shortest decimal rounds back to pymodbus's value.
        assert struct.pack(">f", float(ours)) == struct.pack(">f", theirs)
    else:
        assert ours == theirs


def test_entries_validate() -> None:
    with pytest.raises(ValueError, match="identifier"):
        entry(DataType.UINT16, name="not a name")
    with pytest.raises(ValueError, match="out of range"):
        entry(DataType.UINT32, address=0xFFFF)
    with pytest.raises(ValueError, match="scale"):
        entry(DataType.UINT16, scale="0")
    with pytest.raises(ValueError, match="table"):
        entry(DataType.UINT16, function=FunctionCode.WRITE_SINGLE_REGISTER)
    with pytest.raises(ValueError, match="writable"):
        RegisterEntry(name="x", function=INPUT, address=0, data_type=DataType.UINT16, writable=True)


def test_maps_refuse_overlaps_and_duplicate_names() -> None:
    with pytest.raises(ValueError, match="overlaps"):
        RegisterMap(
            "m", (entry(DataType.UINT32, name="a"), entry(DataType.UINT16, name="b", address=1))
        )
    with pytest.raises(ValueError, match="two entries"):
        RegisterMap(
            "m", (entry(DataType.UINT16, name="a"), entry(DataType.UINT16, name="a", address=5))
        )
    # The tables are separate address spaces.
    RegisterMap(
        "m",
        (entry(DataType.UINT16, name="a"), entry(DataType.UINT16, name="b", function=HOLDING)),
    )


# --- the shipped maps -------------------------------------------------------------------------


def test_eastron_maps_match_protocols_md() -> None:
    assert SDM120["voltage"].address == 0x0000
    assert SDM120["current"].address == 0x0006
    assert SDM120["active_power"].address == 0x000C
    assert SDM120["frequency"].address == 0x0046
    assert SDM120["import_active_energy"].address == 0x0048
    assert SDM120["total_active_energy"].address == 0x0156
    assert SDM120["total_active_energy"].unit == "kWh"
    assert SDM630["voltage_l3"].address == 0x0004
    assert SDM630["total_active_power"].address == 0x0034
    assert SDM630["total_power_demand"].address == 0x0054
    assert SDM630["total_active_energy"].address == 0x0156
    for meter_map in (SDM120, SDM630):
        for measured in meter_map:
            assert measured.data_type is DataType.FLOAT32
            assert measured.word_order is WordOrder.HIGH_FIRST
            assert measured.writable == (measured.function == HOLDING)


def test_water_meter_map() -> None:
    assert WATER_METER["cumulative_flow"].data_type is DataType.UINT32
    assert WATER_METER["cumulative_flow"].scale == Decimal("0.001")
    assert WATER_METER["cumulative_flow"].modulus == Decimal("4294967.296")
    assert WATER_METER["valve"].function == HOLDING
    assert WATER_METER["valve"].writable
    assert set(MAPS) == {"sdm120", "sdm630", "water"}


# --- planning ---------------------------------------------------------------------------------


def test_plan_for_one_value() -> None:
    (block,) = plan_reads(SDM120, ["voltage"])
    assert block.request(1) == block.request(1)
    assert (block.function, block.address, block.count) == (INPUT, 0x0000, 2)
    assert block.decode(ReadReply(1, INPUT, (0x4365, 0xCCCD))) == {"voltage": Decimal("229.8")}


def test_plan_joins_only_across_defined_registers() -> None:
    blocks = plan_reads(SDM120, ["frequency", "export_reactive_energy", "total_active_energy"])
    assert [(b.address, b.count) for b in blocks] == [(0x0046, 10), (0x0156, 2)]
    assert [e.name for e in blocks[0].entries] == ["frequency", "export_reactive_energy"]
    # Allowing gaps of undefined registers joins voltage and current (0x0002–0x0005 undefined).
    assert [
        (b.address, b.count) for b in plan_reads(SDM120, ["voltage", "current"], max_gap=4)
    ] == [(0x0000, 8)]


def test_plan_respects_the_block_size() -> None:
    blocks = plan_reads(SDM630, ["voltage_l1", "voltage_l3"], max_count=4)
    assert [(b.address, b.count) for b in blocks] == [(0, 2), (4, 2)]
    with pytest.raises(ValueError, match="max_count"):
        plan_reads(SDM630, max_count=126)


def test_plan_for_a_whole_map_reads_everything_once() -> None:
    for register_map in MAPS.values():
        blocks = plan_reads(register_map)
        names = [e.name for b in blocks for e in b.entries]
        assert sorted(names) == sorted(register_map.names)
        assert blocks[0].function == HOLDING  # settings first, then measurements


def test_plan_refuses_unknown_names() -> None:
    with pytest.raises(KeyError):
        plan_reads(SDM120, ["no_such_value"])


def _feasible(
    register_map: RegisterMap, run: list[RegisterEntry], max_gap: int, max_count: int
) -> bool:
    if run[-1].end - run[0].address > max_count:
        return False
    for a, b in itertools.pairwise(run):
        gap = 0
        for address in range(a.end, b.address):
            gap = 0 if register_map.at(a.function, address) else gap + 1
            if gap > max_gap:
                return False
    return True


def _fewest(
    register_map: RegisterMap, wanted: list[RegisterEntry], max_gap: int, max_count: int
) -> int:
    # Brute force over every way to cut the sorted entries of each table into runs.
    total = 0
    for function in (HOLDING, INPUT):
        items = sorted((e for e in wanted if e.function == function), key=lambda e: e.address)
        if not items:
            continue
        best = {0: 0}
        for end in range(1, len(items) + 1):
            best[end] = min(
                best[start] + 1
                for start in range(end)
                if _feasible(register_map, items[start:end], max_gap, max_count)
            )
        total += best[len(items)]
    return total


@given(
    st.sampled_from([SDM120, SDM630, WATER_METER]).flatmap(
        lambda m: st.tuples(st.just(m), st.sets(st.sampled_from(m.names), min_size=1))
    ),
    st.integers(0, 6),
    st.integers(2, 125),
)
def test_plan_is_as_small_as_brute_force(
    chosen: tuple[RegisterMap, set[str]], max_gap: int, max_count: int
) -> None:
    register_map, names = chosen
    blocks = plan_reads(register_map, names, max_gap=max_gap, max_count=max_count)
    assert sorted(e.name for b in blocks for e in b.entries) == sorted(names)
    for block in blocks:
        assert block.count <= max_count
        assert _feasible(register_map, list(block.entries), max_gap, max_count)
    assert len(blocks) == _fewest(
        register_map, [register_map[n] for n in names], max_gap, max_count
    )


# --- decoding replies -------------------------------------------------------------------------


def test_block_decodes_the_entries_inside() -> None:
    (block,) = plan_reads(WATER_METER, ["cumulative_flow", "water_temperature"], max_gap=0)
    assert (block.address, block.count) == (0, 7)
    values = (0x0012, 0xD687, 0x3F19, 0x999A, 0, 0, 0x060E)
    assert block.decode(ReadReply(1, INPUT, values)) == {
        "cumulative_flow": Decimal("1234.567"),
        "water_temperature": Decimal("15.50"),
    }


def test_block_decode_refuses_other_replies() -> None:
    (block,) = plan_reads(SDM120, ["voltage"])
    with pytest.raises(ExceptionReplyError) as refused:
        block.decode(ExceptionReply(1, 4, 2))
    assert (refused.value.unit, refused.value.function, refused.value.code) == (1, 4, 2)
    with pytest.raises(ModbusError):
        block.decode(ReadReply(1, INPUT, (1, 2, 3)))
    with pytest.raises(ModbusError):
        block.decode(ReadReply(1, HOLDING, (1, 2)))
    with pytest.raises(ModbusError):
        block.decode(WriteSingleReply(1, 0, 0))


def test_blocks_validate() -> None:
    with pytest.raises(ValueError, match="inside"):
        ReadBlock(INPUT, 2, 2, (SDM120["voltage"],))
    with pytest.raises(ValueError, match="1–125"):
        ReadBlock(INPUT, 0, 0, ())
