"""Terminal tests against a real MQTT broker (the session's `broker`), one topic prefix per test.

`terminal_site` gives each test its own prefix, starts simulators and stand-in gateways for it,
and on the way out stops them and clears the retained states it left behind, because the shared
broker persists retained messages.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BrokerInfo
from tests.devices.terminal.terminal_mqtt import TerminalSite


@pytest.fixture
def terminal_site(broker: BrokerInfo) -> Iterator[TerminalSite]:
    """A fresh topic prefix on the broker, cleaned up after the test."""
    site = TerminalSite(broker.host, broker.port)
    try:
        yield site
    finally:
        site.close()
