"""No injected configuration: hostile strings never reach a speaker's configuration or a router's candidate.

Each hostile string tries to close its statement and open another (quotes, braces, `;`, line breaks, a `process`
that would run a program, a `set system` that would add a login). They are refused where they enter (model
validation, the network file) and again where they are rendered (the drivers), and what renders is only the
intended lines: checked on the rendered text and on a Junos emulator's candidate through the real PyEZ.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError

from devices.drivers.base import DeviceIntent, FlowSpecRule, RenderError, UnicastRoute
from devices.drivers.bgp import commands
from devices.drivers.bgp.config import BgpNeighborConfig, SpeakerSettings, render_exabgp_config
from devices.drivers.junos import JunosDriver, render_statements
from devices.models import BgpSpeakerNeighbor, ScrubbingCenter, validate_asn_nn
from netsim.junos import JunosEmulator
from tests.devices.test_network_file import demo, run

HOSTILE = [
    'edge"; } process evil { run /bin/sh -c "touch /tmp/pwned"; } neighbor 10.0.0.1 { description "x',
    "edge\nprocess evil {\n run /bin/sh;\n}",
    "edge; peer-as 666",
    "edge } neighbor 127.0.0.9 {",
    "edge\\",
    "edge # comment",
    "edge\n",
    "edge\r\nset system login user evil class super-user",
]
HOSTILE_NAMES = ["SLUICE\n", "SLUICE; set system services telnet", 'SLUICE" ', "SLUICE{", "SLUICE set system x",
                 "SLUICE\nset system services telnet", ""]
HOSTILE_COMMUNITIES = ["65000:1\n", "65000:1 ] community [ 1:1", "65000:1; set system services telnet",
                       "65000:1\nannounce route 0.0.0.0/0 next-hop self", "\uff16\uff15\uff10\uff10\uff10:1"]  # full-width digits


@pytest.mark.parametrize("text", HOSTILE)
def test_model_validation_refuses_hostile_descriptions(text: str) -> None:
    neighbor = BgpSpeakerNeighbor(peer_address="127.0.0.2", peer_as=65001, families=["ipv4 unicast"],
                                  description=text)
    with pytest.raises(ValidationError) as refused:
        neighbor.full_clean(exclude=["speaker"])
    assert "description" in refused.value.message_dict


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n])
def test_model_validation_refuses_hostile_instance_names_and_communities(name: str) -> None:
    center = ScrubbingCenter(slug="fra", name="Frankfurt", capacity_gbps=1, capacity_mpps=1, routing_instance=name)
    with pytest.raises(ValidationError) as refused:
        center.full_clean(validate_unique=False)
    assert "routing_instance" in refused.value.message_dict
    for community in HOSTILE_COMMUNITIES:
        with pytest.raises(ValidationError):
            validate_asn_nn(community)


@pytest.mark.django_db
def test_the_network_file_refuses_a_hostile_description(world: object, tmp_path: Path) -> None:
    data = demo()
    speaker = next(s for s in data["speakers"] if s.get("neighbors"))
    speaker["neighbors"][0]["description"] = HOSTILE[0]
    with pytest.raises(CommandError, match="description"):
        run(tmp_path, data)
    assert not BgpSpeakerNeighbor.objects.filter(description__contains="process").exists()


def speaker_settings(description: str = "") -> SpeakerSettings:
    return SpeakerSettings(router_id="127.0.0.1", local_as=65000, local_address="127.0.0.1", neighbors=(
        BgpNeighborConfig(peer_address="127.0.0.2", peer_as=65001, description=description),))


def forced(settings: SpeakerSettings, description: str) -> SpeakerSettings:
    """Settings whose description skipped validation (a hand-edited speaker.json): the renderer must still refuse."""
    neighbor = settings.neighbors[0]
    object.__setattr__(neighbor, "description", description)
    return settings


@pytest.mark.parametrize("text", HOSTILE)
def test_the_speaker_configuration_refuses_hostile_descriptions(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        BgpNeighborConfig(peer_address="127.0.0.2", peer_as=65001, description=text)
    with pytest.raises(RenderError):
        render_exabgp_config(forced(speaker_settings(), text), tmp_path)


def test_a_description_renders_as_exactly_one_line(tmp_path: Path) -> None:
    """Words of the grammar inside an allowed description stay text: one line more than without it."""
    plain = render_exabgp_config(speaker_settings(), tmp_path).splitlines()
    described = render_exabgp_config(speaker_settings("process run neighbor (edge-1) peer-as 666"),
                                      tmp_path).splitlines()
    extra = [line for line in described if line not in plain]
    assert extra == ['  description "process run neighbor (edge-1) peer-as 666";']
    assert len(described) == len(plain) + 1
    assert sum(line.startswith("process ") for line in described) == 1


def test_the_speaker_refuses_a_workdir_that_would_break_out_of_its_statement(tmp_path: Path) -> None:
    with pytest.raises(RenderError):
        render_exabgp_config(speaker_settings(), tmp_path / "x; } process evil { run /bin/sh")


@pytest.mark.parametrize("community", HOSTILE_COMMUNITIES)
def test_speaker_commands_refuse_hostile_communities(community: str) -> None:
    route = UnicastRoute("203.0.113.0/24", "192.0.2.1", communities=(community,))
    with pytest.raises(RenderError):
        commands.announce_command(route, 65000)


def test_speaker_commands_refuse_hostile_neighbors_flags_and_numbers() -> None:
    route = UnicastRoute("203.0.113.0/24", "192.0.2.1", neighbors=("127.0.0.2\nannounce route 0.0.0.0/0 next-hop self",))
    with pytest.raises(RenderError):
        commands.announce_command(route, 65000, route.neighbors)
    with pytest.raises(RenderError):
        commands.withdraw_command(route, route.neighbors)
    rule = FlowSpecRule(destination="203.0.113.10/32", action="discard", tcp_flags=("syn",))
    object.__setattr__(rule, "tcp_flags", ("syn ] \nannounce route 0.0.0.0/0 next-hop self",))
    with pytest.raises(RenderError):
        commands.announce_command(rule, 65000)
    for field, value in (("protocols", (("6 ]", "6"),)), ("rate_bps", "1\nx"), ("dscp", "8\n")):
        hostile = FlowSpecRule(destination="203.0.113.10/32", action="rate-limit" if field == "rate_bps" else
                               "mark" if field == "dscp" else "discard", rate_bps=1 if field == "rate_bps" else None,
                               dscp=8 if field == "dscp" else None)
        object.__setattr__(hostile, field, value)
        with pytest.raises(RenderError):
            commands.announce_command(hostile, 65000)
    good = commands.announce_command(UnicastRoute("203.0.113.0/24", "192.0.2.1", communities=("65000:1",),
                                                  neighbors=("127.0.0.2",)), 65000, ("127.0.0.2",))
    assert good == "neighbor 127.0.0.2 announce route 203.0.113.0/24 next-hop 192.0.2.1 community [ 65000:1 ]"
    assert "\n" not in good


GOOD_INTENT = DeviceIntent(
    flow_rules=(FlowSpecRule(destination="203.0.113.10/32", action="discard", protocols=((17, 17),)),),
    diversions=(UnicastRoute("203.0.113.0/24", "192.0.2.50", communities=("65000:100",)),),
)


def hostile_intents() -> Iterator[DeviceIntent]:
    for name in HOSTILE_NAMES:
        yield dataclasses.replace(GOOD_INTENT, routing_instance=name)
    for community in HOSTILE_COMMUNITIES:
        route = UnicastRoute("203.0.113.0/24", "192.0.2.50", communities=(community,))
        yield dataclasses.replace(GOOD_INTENT, diversions=(route,))
    rule = FlowSpecRule(destination="203.0.113.11/32", action="redirect", redirect_target="65000:1")
    object.__setattr__(rule, "redirect_target", "65000:1\nset system services telnet")
    yield dataclasses.replace(GOOD_INTENT, flow_rules=(rule,))
    flagged = FlowSpecRule(destination="203.0.113.12/32", action="discard", fragments=("is-fragment",))
    object.__setattr__(flagged, "fragments", ("is-fragment\nset system services telnet",))
    yield dataclasses.replace(GOOD_INTENT, flow_rules=(flagged,))


def test_junos_rendering_refuses_every_hostile_value() -> None:
    for intent in hostile_intents():
        with pytest.raises(RenderError):
            render_statements(intent)
    lines = render_statements(GOOD_INTENT)
    assert all(line.startswith(("set routing-options flow route sluice-", "set routing-instances SLUICE-DIVERT "))
               for line in lines)


@pytest.fixture(scope="module")
def emulator() -> Iterator[JunosEmulator]:
    with JunosEmulator(hostname="edge1", username="sluice", password="secret") as running:
        yield running


def test_a_hostile_intent_never_reaches_the_router(emulator: JunosEmulator) -> None:
    emulator.reset("set system host-name edge1\n")
    before = emulator.committed_set()
    with JunosDriver("127.0.0.1", emulator.port, "sluice", "secret", timeout=10) as driver:
        for intent in hostile_intents():
            with pytest.raises(RenderError):
                driver.stage(intent, confirm_minutes=1)
            with pytest.raises(RenderError):
                driver.dry_run(intent)
        assert emulator.candidate_set() == before and emulator.committed_set() == before
        driver.stage(GOOD_INTENT, confirm_minutes=1)
        driver.confirm()
    added = sorted(set(emulator.committed_set()) - set(before))
    assert added == render_statements(GOOD_INTENT), "the intended lines and nothing else"
    assert not [line for line in emulator.committed_set() if "system services" in line or "login" in line]
