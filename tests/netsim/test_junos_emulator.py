"""The Junos emulator, driven by the real PyEZ and ncclient over SSH: what a router must do for Sluice's drivers."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jnpr.junos import Device
from jnpr.junos.exception import (
    CommitError,
    ConfigLoadError,
    ConnectAuthError,
    ConnectRefusedError,
    LockError,
    RpcTimeoutError,
)
from jnpr.junos.utils.config import Config
from lxml import etree
from ncclient import manager

from netsim.junos import JunosEmulator
from netsim.polling import wait_for
from tests.support.emulators import emulator_fixture

ROOT = Path(__file__).resolve().parents[2]
BASE = "set system host-name edge1\nset protocols bgp group upstream neighbor 192.0.2.1 peer-as 65001\n"
FLOW_SET = (
    "set routing-options flow route sluice-a match destination 203.0.113.7/32\n"
    "set routing-options flow route sluice-a match protocol [ tcp udp ]\n"
    "set routing-options flow route sluice-a then discard\n"
)
FLOW_TEXT = """
routing-options {
    flow {
        route sluice-a {
            match {
                destination 203.0.113.7/32;
                protocol [ udp tcp ];
            }
            then {
                discard;
            }
        }
    }
}
"""
FLOW_XML = """<configuration><routing-options><flow><route><name>sluice-a</name>
<match><destination>203.0.113.7/32</destination><protocol>tcp</protocol><protocol>udp</protocol></match>
<then><discard/></then></route></flow></routing-options></configuration>"""



emulator = emulator_fixture(hostname="edge1", username="sluice", password="secret")


@pytest.fixture
def router(emulator: JunosEmulator) -> JunosEmulator:
    emulator.reset(BASE)
    return emulator


@pytest.fixture
def device(router: JunosEmulator) -> Iterator[Device]:
    dev = Device("127.0.0.1", port=router.port, user="sluice", passwd="secret", gather_facts=False,
                 look_for_keys=False, allow_agent=False)
    dev.open()
    dev.timeout = 10
    yield dev
    if dev.connected:
        dev.close()


def test_facts_answer_pyez_and_gather_facts_false_sends_nothing(router: JunosEmulator) -> None:
    with Device("127.0.0.1", port=router.port, user="sluice", passwd="secret", look_for_keys=False) as dev:
        dev.facts_refresh(exception_on_failure=True)
        assert dev.facts["hostname"] == "edge1"
        assert dev.facts["model"] == "MX960"
        assert dev.facts["version"] == "21.4R3.15"
        assert dev.facts["vc_capable"] is False
        assert dev.uptime and dev.uptime > 0


@pytest.mark.parametrize(("content", "fmt"), [(FLOW_SET, "set"), (FLOW_TEXT, "text"), (FLOW_XML, "xml")])
def test_set_text_and_xml_loads_give_the_same_canonical_statements(
    router: JunosEmulator, device: Device, content: str, fmt: str
) -> None:
    cu = Config(device)
    cu.lock()
    cu.load(content, format=fmt, merge=True)
    diff = cu.diff()
    assert diff is not None and "[edit]" in diff and "+    routing-options {" in diff
    cu.commit()
    cu.unlock()
    assert "set routing-options flow route sluice-a match protocol tcp" in router.committed_set()
    assert "set routing-options flow route sluice-a then discard" in router.committed_set()
    assert "set system host-name edge1" in router.committed_set()


def test_get_configuration_filters_and_formats(router: JunosEmulator, device: Device) -> None:
    router.load_committed(BASE + FLOW_SET)
    flt = etree.XML("<configuration><routing-options><flow/></routing-options></configuration>")
    xml = device.rpc.get_config(filter_xml=flt, options={"database": "committed"})
    assert xml.findtext("routing-options/flow/route/name") == "sluice-a"
    assert xml.find("system") is None
    text = device.rpc.get_config(filter_xml=flt, options={"database": "committed", "format": "text"})
    assert "route sluice-a {" in text.text and "protocol [ tcp udp ];" in text.text
    statements = device.rpc.get_config(options={"database": "committed", "format": "set"})
    assert statements.text.splitlines() == router.committed_set()


def test_replace_action_honours_replace_tags(router: JunosEmulator, device: Device) -> None:
    router.load_committed(BASE + FLOW_SET)
    cu = Config(device)
    cu.load("routing-options { flow { replace: route sluice-a { match { destination 203.0.113.8/32; } "
            "then { discard; } } } }", format="text")
    cu.commit()
    assert "set routing-options flow route sluice-a match destination 203.0.113.8/32" in router.committed_set()
    assert not any("match protocol" in line for line in router.committed_set())


def test_delete_statements_prune_empty_containers(router: JunosEmulator, device: Device) -> None:
    router.load_committed(BASE + FLOW_SET)
    cu = Config(device)
    cu.load("delete routing-options flow route sluice-a", format="set")
    cu.commit()
    assert not any(line.startswith("set routing-options") for line in router.committed_set())


def test_syntax_errors_are_load_errors(router: JunosEmulator, device: Device) -> None:
    cu = Config(device)
    with pytest.raises(ConfigLoadError, match="syntax error"):
        cu.load("set bogus-hierarchy foo", format="set")
    with pytest.raises(ConfigLoadError, match="invalid prefix"):
        cu.load("set routing-options flow route sluice-x match destination 10.0.0.1/8", format="set")
    assert router.candidate_set() == router.committed_set()


def test_lock_is_exclusive_per_session_and_goes_with_the_session(router: JunosEmulator, device: Device) -> None:
    cu = Config(device)
    cu.lock()
    cu.load(FLOW_SET, format="set")
    with Device("127.0.0.1", port=router.port, user="sluice", passwd="secret", gather_facts=False) as other:
        with pytest.raises(LockError, match="locked by"):
            Config(other).lock()
        with pytest.raises(ConfigLoadError, match="locked by"):
            Config(other).load("set system domain-name example.net", format="set")
    assert router.lock_holder() == "sluice"
    device.close()
    assert wait_for(lambda: router.lock_holder() is None)
    assert router.candidate_set() == router.committed_set()


def test_lock_held_by_another_user(router: JunosEmulator, device: Device) -> None:
    router.hold_lock("alice")
    with pytest.raises(LockError, match="alice"):
        Config(device).lock()
    router.release_lock()
    Config(device).lock()


def test_rfc_lock_unlock_and_discard_changes(router: JunosEmulator) -> None:
    with manager.connect(host="127.0.0.1", port=router.port, username="sluice", password="secret",
                         hostkey_verify=False, look_for_keys=False, allow_agent=False,
                         device_params={"name": "junos"}) as session:
        session.lock("candidate")
        assert router.lock_holder() == "sluice"
        session.load_configuration(action="set", config=["set system domain-name example.net"])
        assert "set system domain-name example.net" in router.candidate_set()
        session.discard_changes()
        assert router.candidate_set() == router.committed_set()
        session.unlock("candidate")
        assert router.lock_holder() is None


def test_commit_confirmed_rolls_back_unless_confirmed(router: JunosEmulator, device: Device) -> None:
    before = router.committed_set()
    cu = Config(device)
    cu.load(FLOW_SET, format="set")
    cu.commit(confirm=2)
    assert router.commit_pending()
    router.advance(60)
    assert router.commit_pending() and "set routing-options flow route sluice-a then discard" in router.committed_set()
    router.advance(61)
    assert not router.commit_pending()
    assert router.committed_set() == before

    cu.load(FLOW_SET, format="set")
    cu.commit(confirm=1)
    cu.commit()
    router.advance(3600)
    assert "set routing-options flow route sluice-a then discard" in router.committed_set()


def test_rollback_history(router: JunosEmulator, device: Device) -> None:
    cu = Config(device)
    cu.load(FLOW_SET, format="set")
    cu.commit(comment="add flow route")
    cu.rollback(1)
    assert "-    routing-options {" in (cu.diff() or "")
    cu.commit()
    assert not any("sluice-a" in line for line in router.committed_set())
    info = device.rpc.get_rollback_information(rollback="0", compare="1")
    assert "sluice-a" in etree.tostring(info).decode()
    history = device.rpc.get_commit_information()
    assert history.findtext("commit-history[2]/log") == "add flow route"


def test_commit_check_runs_validation_hooks(router: JunosEmulator, device: Device) -> None:
    router.add_validator(lambda lines: "flow routes are frozen" if any("flow" in line for line in lines) else None)
    cu = Config(device)
    cu.load(FLOW_SET, format="set")
    with pytest.raises(CommitError, match="flow routes are frozen"):
        cu.commit_check()
    with pytest.raises(CommitError, match="flow routes are frozen"):
        cu.commit()
    assert not any("sluice-a" in line for line in router.committed_set())


def test_flow_route_without_then_fails_commit_check(router: JunosEmulator, device: Device) -> None:
    cu = Config(device)
    cu.load("set routing-options flow route sluice-b match destination 203.0.113.9/32", format="set")
    with pytest.raises(CommitError, match="Missing mandatory statement"):
        cu.commit_check()


def test_injected_faults(router: JunosEmulator, device: Device) -> None:
    cu = Config(device)
    cu.load(FLOW_SET, format="set")
    router.set_commit_error("mgd: commit failed on purpose")
    with pytest.raises(CommitError, match="on purpose"):
        cu.commit()
    router.set_commit_error(None)
    router.refuse_login()
    with pytest.raises(ConnectAuthError):
        Device("127.0.0.1", port=router.port, user="sluice", passwd="secret", gather_facts=False).open()
    router.refuse_login(False)
    with pytest.raises(ConnectAuthError):
        Device("127.0.0.1", port=router.port, user="sluice", passwd="wrong", gather_facts=False).open()


def test_refused_connections_and_hung_rpcs(router: JunosEmulator) -> None:
    port = router.port
    router.refuse_connections()
    with pytest.raises(ConnectRefusedError):
        Device("127.0.0.1", port=port, user="sluice", passwd="secret", gather_facts=False).open()
    router.refuse_connections(False)
    assert router.port == port
    hung = Device("127.0.0.1", port=port, user="sluice", passwd="secret", gather_facts=False).open()
    hung.timeout = 1
    router.hang_on("lock-configuration")
    with pytest.raises(RpcTimeoutError):
        hung.rpc.lock_configuration()
    assert router.lock_holder() is None, "a hung RPC applies nothing"
    router.clear_faults()
    hung.close()
    with Device("127.0.0.1", port=port, user="sluice", passwd="secret", gather_facts=False) as device:
        Config(device).lock()
        assert router.lock_holder() is not None


def test_command_line_runs_routers_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "r1.conf"
    process = subprocess.Popen(
        [sys.executable, "-m", "netsim.junos", "--port", "0", "--hostname", "cli1", "--user", "u", "--password",
         "p", "--state-file", str(state)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = int(line.rsplit(":", 1)[1])
        with Device("127.0.0.1", port=port, user="u", passwd="p", gather_facts=False) as dev:
            cu = Config(dev)
            cu.load(FLOW_SET, format="set")
            cu.commit()
        assert "sluice-a" in state.read_text()
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_demo_router_keeps_its_host_key_across_restarts(tmp_path: Path) -> None:
    """Sluice verifies routers' host keys: an emulated router that changed its key at each restart would be refused."""
    from netsim.demo import emulators_for

    network = {"routers": [{"name": "edge-x", "mgmt_host": "127.0.0.1", "mgmt_port": 830, "password": "p"}]}
    first = emulators_for(network, tmp_path)[0].host_key
    again = emulators_for(network, tmp_path)[0].host_key
    assert first is not None and again is not None
    assert first.get_fingerprint() == again.get_fingerprint()
    assert (tmp_path / "edge-x.key").exists()
