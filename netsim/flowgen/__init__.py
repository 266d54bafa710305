"""Flow export traffic generator: scenarios of background traffic and attacks, as sFlow v5, NetFlow v5/v9, IPFIX.

Usable as a library (datagrams in memory, for tests and benchmarks) and from the command line
(`python -m netsim.flowgen`), which only ever sends to loopback addresses.
"""

from netsim.flowgen.encoders import IpfixEncoder, NetFlow5Encoder, NetFlow9Encoder, SflowEncoder, encoder_for
from netsim.flowgen.records import FlowRecord, expected_tuples, records_to_array
from netsim.flowgen.scenarios import SCENARIOS, Scenario, to_records
from netsim.flowgen.stream import generate, parse_target, send

__all__ = [
    "SCENARIOS",
    "FlowRecord",
    "IpfixEncoder",
    "NetFlow5Encoder",
    "NetFlow9Encoder",
    "Scenario",
    "SflowEncoder",
    "encoder_for",
    "expected_tuples",
    "generate",
    "parse_target",
    "records_to_array",
    "send",
    "to_records",
]
