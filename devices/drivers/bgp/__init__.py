"""BGP speaker driver: Sluice's own ExaBGP, supervised by ExaBgpProcess and driven through ExaBgpSpeaker."""

from devices.drivers.bgp.client import ExaBgpSpeaker
from devices.drivers.bgp.config import FAMILIES, BgpNeighborConfig, SpeakerSettings, set_hold
from devices.drivers.bgp.process import ExaBgpProcess

__all__ = ["FAMILIES", "BgpNeighborConfig", "ExaBgpProcess", "ExaBgpSpeaker", "SpeakerSettings", "set_hold"]
