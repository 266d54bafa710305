"""Routers' SSH host keys: recorded on first contact, verified by the real PyEZ/ncclient and NAPALM, a changed key
refused until an operator confirms it. An impostor is a second Junos emulator with another key on the same port."""

from __future__ import annotations

from collections.abc import Iterator

import paramiko
import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from devices.drivers import junos as junos_module
from devices.drivers import napalm_driver as napalm_module
from devices.drivers.base import ConnectError, HostKeyError
from devices.drivers.hostkeys import fingerprint
from devices.drivers.junos import JunosDriver
from devices.drivers.napalm_driver import NapalmDriver
from devices.models import Router
from devices.services import driver_for
from netsim.junos import JunosEmulator

pytestmark = pytest.mark.django_db


@pytest.fixture
def genuine() -> Iterator[JunosEmulator]:
    with JunosEmulator(hostname="edge1", username="sluice", password="secret") as running:
        yield running


def impostor_on(port: int) -> JunosEmulator:
    """Another router (or a man in the middle) answering on the same address with its own key."""
    return JunosEmulator(hostname="evil", username="sluice", password="secret", port=port,
                         host_key=paramiko.ECDSAKey.generate()).start()


def router_for(emulator: JunosEmulator) -> Router:
    return Router.objects.create(name="edge1", vendor="juniper", platform="junos", mgmt_host="127.0.0.1",
                                 mgmt_port=emulator.port, username="sluice", password="secret")


def neighbors_of(router: Router) -> dict:
    """One session through the inventory's driver, as the engine and the pollers open them."""
    with driver_for(router, timeout=10) as driver:
        return driver.get_bgp_neighbors()


def test_first_contact_records_the_key_with_an_audit_row_and_sessions_verify_it(genuine: JunosEmulator) -> None:
    router = router_for(genuine)
    assert router.ssh_host_key == ""
    assert neighbors_of(router) == {}
    router.refresh_from_db()
    assert router.ssh_host_key == genuine.public_key
    row = AuditEvent.objects.get(action="router.host_key.record", object_id=str(router.pk))
    assert row.diff["fingerprint"] == fingerprint(genuine.public_key)
    assert neighbors_of(router) == {}
    assert AuditEvent.objects.filter(action="router.host_key.record").count() == 1


def test_a_changed_key_is_refused_until_an_operator_confirms_it(genuine: JunosEmulator) -> None:
    router = router_for(genuine)
    neighbors_of(router)
    port = genuine.port
    genuine.stop()
    impostor = impostor_on(port)
    try:
        for _ in range(2):
            with pytest.raises(HostKeyError) as refused:
                neighbors_of(router)
            assert refused.value.presented == impostor.public_key and not refused.value.transient
        router.refresh_from_db()
        assert router.ssh_host_key == genuine.public_key, "the recorded key stays"
        assert router.ssh_host_key_offered == impostor.public_key
        mismatches = AuditEvent.objects.filter(action="router.host_key.mismatch", object_id=str(router.pk))
        assert mismatches.count() == 1, "one audit row per offered key, not per attempt"
        assert mismatches.get().diff == {"recorded": fingerprint(genuine.public_key),
                                         "offered": fingerprint(impostor.public_key)}

        with pytest.raises(CommandError, match=fingerprint(impostor.public_key).replace("+", r"\+")):
            call_command("confirm_host_key", "edge1")
        with pytest.raises(CommandError, match="not"):
            call_command("confirm_host_key", "edge1", "--fingerprint", fingerprint(genuine.public_key))
        with pytest.raises(HostKeyError):
            neighbors_of(router)
        call_command("confirm_host_key", "edge1", "--fingerprint", fingerprint(impostor.public_key))
        router.refresh_from_db()
        assert (router.ssh_host_key, router.ssh_host_key_offered) == (impostor.public_key, "")
        assert AuditEvent.objects.filter(action="router.host_key.confirm", object_id=str(router.pk)).exists()
        assert neighbors_of(router) == {}
    finally:
        impostor.stop()


@pytest.mark.parametrize("make", [
    lambda port, key: JunosDriver("127.0.0.1", port, "sluice", "secret", timeout=10, host_key=key),
    lambda port, key: NapalmDriver("junos", "127.0.0.1", port, "sluice", "secret", timeout=10, host_key=key),
], ids=["pyez", "napalm"])
def test_the_drivers_refuse_another_key_and_so_do_the_libraries_themselves(
    genuine: JunosEmulator, make: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = genuine.public_key
    with make(genuine.port, key) as driver:  # type: ignore[operator]
        assert driver.get_bgp_neighbors() == {}
    port = genuine.port
    genuine.stop()
    impostor = impostor_on(port)
    try:
        with pytest.raises(HostKeyError):
            make(port, key).open()  # type: ignore[operator]
        # Without Sluice's own handshake check, ncclient's hostkey_verify (fed through ssh_config) still refuses.
        def accept_without_looking(host: str, port: int, expected: str, **kwargs: object) -> str:
            return expected

        monkeypatch.setattr(junos_module, "check_host_key", accept_without_looking)
        monkeypatch.setattr(napalm_module, "check_host_key", accept_without_looking)
        with pytest.raises(ConnectError):
            make(port, key).open()  # type: ignore[operator]
        with make(port, impostor.public_key) as driver:  # type: ignore[operator]
            assert driver.get_bgp_neighbors() == {}
    finally:
        impostor.stop()
