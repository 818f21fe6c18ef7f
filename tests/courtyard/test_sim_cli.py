"""``courtyard sim dlt645`` serves meters a real master can read through ``socket://``."""

from __future__ import annotations

import signal
import subprocess
import sys
from decimal import Decimal

import serial

from devices.dlt645 import Address, Decoder, ReadReply, ReadRequest, encode


def test_sim_dlt645_serves_readable_meters() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "courtyard", "sim", "dlt645", "--meters", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        header = proc.stdout.readline()
        assert header.startswith("serving 3 devices on socket://127.0.0.1:"), header
        url = header.split(" on ", 1)[1].split(" ", 1)[0]
        addresses = [proc.stdout.readline().strip() for _ in range(3)]
        assert addresses == ["000000000001", "000000000002", "000000000003"]
        port = serial.serial_for_url(url, timeout=2)
        try:
            port.write(encode(ReadRequest(Address(addresses[1]), 0x00010000), preamble=4))
            decoder = Decoder()
            frames: list[object] = []
            while not frames:
                chunk = port.read(64)
                assert chunk, "no reply from the simulated meter"
                frames = list(decoder.feed(chunk))
        finally:
            port.close()
        (reply,) = frames
        assert isinstance(reply, ReadReply)
        assert reply.di == 0x00010000
        assert isinstance(reply.value, Decimal)
        assert reply.value >= Decimal("1074.00")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
        if proc.stdout is not None:
            proc.stdout.close()
