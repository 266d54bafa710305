"""Inventory models, encrypted credentials, the network snapshot and tenant latencies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.actors import Actor
from core.crypto import MASK, decrypt, encrypt
from core.errors import ValidationProblem
from core.models import AuditEvent
from devices import health
from devices.drivers.junos import JunosDriver
from devices.drivers.napalm_driver import NapalmDriver
from devices.health import set_maintenance
from devices.models import (
    BgpSpeaker,
    Router,
    ScrubbingCenter,
    TenantLatency,
    UpstreamPeer,
    validate_asn_nn,
)
from devices.selectors import tenant_latencies
from devices.services import driver_for
from mitigation.snapshot import NEVER_REPORTED_AGE_S, network_snapshot
from tests.support.world import World

pytestmark = pytest.mark.django_db


def make_center(slug: str = "fra", **fields: object) -> ScrubbingCenter:
    values: dict[str, object] = {"name": slug.upper(), "capacity_gbps": 400, "capacity_mpps": 300,
                                 "route_target": "65010:100", "routing_instance": "SCRUB-" + slug.upper(),
                                 "diversion_next_hop_v4": "192.0.2.10"}
    values.update(fields)
    return ScrubbingCenter.objects.create(slug=slug, **values)


def make_router(name: str = "edge-1", **fields: object) -> Router:
    values: dict[str, object] = {"vendor": "juniper", "platform": "junos", "mgmt_host": "127.0.0.1",
                                 "username": "sluice", "password": "very-secret-pw"}
    values.update(fields)
    return Router.objects.create(name=name, **values)


def test_router_password_is_ciphertext_in_the_database() -> None:
    router = make_router()
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM devices_router WHERE id = %s", [router.pk])
        stored = cursor.fetchone()[0]
    assert "very-secret-pw" not in stored
    assert stored.startswith("gAAAAA")
    assert Router.objects.get(pk=router.pk).password == "very-secret-pw"


def test_router_repr_and_str_never_show_the_password() -> None:
    router = make_router()
    assert "very-secret-pw" not in repr(router)
    assert "very-secret-pw" not in str(router)


def test_encryption_round_trips_and_differs_each_time() -> None:
    assert decrypt(encrypt("x")) == "x"
    assert encrypt("x") != encrypt("x")
    assert MASK == "••••"


def test_key_from_settings_is_used(settings: object) -> None:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    settings.SLUICE_CREDENTIALS_KEY = key  # type: ignore[attr-defined]
    token = encrypt("pw")
    assert Fernet(key.encode()).decrypt(token.encode()) == b"pw"


def test_uses_pyez_and_driver_choice() -> None:
    junos = make_router()
    eos = make_router("edge-2", vendor="arista", platform="eos")
    assert junos.uses_pyez and not eos.uses_pyez
    assert isinstance(driver_for(junos), JunosDriver)
    assert isinstance(driver_for(eos), NapalmDriver)


@pytest.mark.parametrize("value", ["65000:1", "1299:999", "4200000000:1", "1:4200000000"])
def test_asn_nn_accepts(value: str) -> None:
    validate_asn_nn(value)


@pytest.mark.parametrize("value", ["", "65000", "a:b", "65000:1:2", "4200000000:70000", "99999999999:1"])
def test_asn_nn_refuses(value: str) -> None:
    with pytest.raises(ValidationError):
        validate_asn_nn(value)


def test_center_staleness_follows_its_interval() -> None:
    center = make_center(telemetry_interval_s=30)
    assert center.is_stale and center.load_age_s is None
    center.load_updated_at = timezone.now() - timedelta(seconds=5)
    assert not center.is_stale
    center.load_updated_at = timezone.now() - timedelta(seconds=31)
    assert center.is_stale


def test_speaker_workdir_is_under_the_data_dir(settings: object) -> None:
    speaker = BgpSpeaker(name="speaker-1", router_id="127.0.0.1", local_as=65010, local_address="127.0.0.1")
    assert speaker.workdir == settings.SLUICE_DATA_DIR / "speakers" / "speaker-1"  # type: ignore[attr-defined]


def test_snapshot_reports_state_and_staleness_in_a_fixed_number_of_queries() -> None:
    now = timezone.now()
    fresh = make_center("fra", load_gbps=100, load_mpps=10, load_updated_at=now - timedelta(seconds=10))
    old = make_center("ams", load_updated_at=now - timedelta(seconds=120), healthy=False)
    never = make_center("lon", diversion_next_hop_v4=None, route_target="", routing_instance="")
    router = make_router()
    up = UpstreamPeer.objects.create(
        name="fra-telia", isp="Arelion", asn=1299, router=router, center=fresh, neighbor_address="198.51.100.1",
        capacity_gbps=100, utilisation=0.4, session_state="established", telemetry_updated_at=now,
        blackhole_community="1299:999", flowspec_accepted=True, flowspec_rule_limit=100)
    down = UpstreamPeer.objects.create(
        name="ams-ntt", isp="NTT", asn=2914, router=router, center=old, neighbor_address="198.51.100.9",
        capacity_gbps=100, session_state="idle")
    with CaptureQueriesContext(connection) as queries:
        snapshot = network_snapshot(now)
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(selects) == 4  # centers, upstreams, routers and element health, however many rows
    centers = {c.id: c for c in snapshot.centers}
    assert not centers[fresh.pk].stale and centers[fresh.pk].data_age_s == pytest.approx(10, abs=1)
    assert centers[fresh.pk].load_gbps == 100 and centers[fresh.pk].redirect_target == "65010:100"
    assert centers[fresh.pk].vrf == "SCRUB-FRA" and centers[fresh.pk].next_hop_v4 == "192.0.2.10"
    assert centers[old.pk].stale and not centers[old.pk].healthy
    assert centers[never.pk].stale and centers[never.pk].data_age_s == NEVER_REPORTED_AGE_S
    assert centers[never.pk].next_hop_v4 is None and centers[never.pk].redirect_target is None
    peers = {p.id: p for p in snapshot.peers}
    assert peers[up.pk].session_up and not peers[up.pk].stale and peers[up.pk].utilisation == 0.4
    assert peers[up.pk].blackhole_community == "1299:999" and peers[up.pk].flowspec_rule_limit == 100
    assert not peers[down.pk].session_up and peers[down.pk].stale
    assert peers[down.pk].prepend_community is None


def test_tenant_latencies_by_ids(world: World) -> None:
    fra, ams = make_center("fra"), make_center("ams")
    TenantLatency.objects.create(tenant=world.acme, center=fra, latency_ms=12)
    TenantLatency.objects.create(tenant=world.acme, center=ams, latency_ms=18)
    TenantLatency.objects.create(tenant=world.globex, center=fra, latency_ms=9)
    assert tenant_latencies() == {world.acme.pk: {fra.pk: 12.0, ams.pk: 18.0}, world.globex.pk: {fra.pk: 9.0}}


def test_routers_out_of_service_take_what_stands_behind_them_out_of_the_plan() -> None:
    now = timezone.now()
    fra = make_center("fra", load_gbps=100, load_mpps=10, load_updated_at=now)
    router = make_router()
    router.center = fra
    router.save()
    peer = UpstreamPeer.objects.create(
        name="fra-telia", isp="Arelion", asn=1299, router=router, center=fra, neighbor_address="198.51.100.1",
        capacity_gbps=100, session_state="established", telemetry_updated_at=now)
    snapshot = network_snapshot(now)
    assert snapshot.centers[0].healthy and snapshot.peers[0].session_up
    operator = Actor("user", "soc")
    with pytest.raises(ValidationProblem):
        set_maintenance(f"router:{router.name}", on=True, reason=" ", acting_user=operator)
    set_maintenance(f"router:{router.name}", on=True, reason="line card swap", acting_user=operator)
    assert health.due([f"router:{router.name}"]) == set(), "not pushed to while in maintenance"
    snapshot = network_snapshot(now)
    assert not snapshot.centers[0].healthy and not snapshot.peers[0].session_up
    assert AuditEvent.objects.filter(action="element.maintenance.on", reason="line card swap").exists()
    set_maintenance(f"router:{router.name}", on=False, reason="swap done", acting_user=operator)
    assert network_snapshot(now).peers[0].session_up and peer.pk == snapshot.peers[0].id
