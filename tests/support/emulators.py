"""The one way a test module gets its emulated Junos router: `emulator = emulator_fixture(...)`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from netsim.junos import JunosEmulator


def emulator_fixture(hostname: str, username: str, password: str) -> Callable[[], Iterator[JunosEmulator]]:
    """A module-scoped fixture running one emulator with these facts and credentials on a port of its own."""

    @pytest.fixture(scope="module")
    def emulator() -> Iterator[JunosEmulator]:
        with JunosEmulator(hostname=hostname, username=username, password=password) as running:
            yield running

    return emulator
