"""A stateful Junos NETCONF-over-SSH emulator that the real PyEZ and NAPALM drive unmodified.

Start one with `JunosEmulator(hostname=..., username=..., password=...).start()` or from the command line with
`python -m netsim.junos --port N --hostname H --user U --password P`.
"""

from netsim.junos.server import JunosEmulator
from netsim.junos.state import EmulatorClock

__all__ = ["EmulatorClock", "JunosEmulator"]
