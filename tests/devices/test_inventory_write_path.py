"""One write path for the inventory: the network file and the REST API validate alike, audit alike, publish alike."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, call_command

from core.events import SEQUENCE_KEY, SOC_GROUP, backlog_since, flush_events, redis_client
from core.models import AuditEvent
from devices.models import Router, ScrubbingCenter, UpstreamPeer
from tests.devices.test_devices_api import api, token_for
from tests.support.world import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def soc_events() -> Callable[[], list[dict]]:
    """Reads the SOC's live events published since the test began."""
    start = int(redis_client().get(SEQUENCE_KEY) or 0)

    def read() -> list[dict]:
        flush_events()
        return [event for event in backlog_since(SOC_GROUP, start) if event["type"] == "inventory.changed"]

    return read


def base_file() -> dict:
    return {
        "centers": [{"slug": "fra", "name": "Frankfurt", "capacity_gbps": 400, "capacity_mpps": 300,
                     "diversion_next_hop_v4": "192.0.2.1"}],
        "routers": [{"name": "edge-fra-1", "vendor": "juniper", "platform": "junos", "center": "fra",
                     "mgmt_host": "127.0.0.1", "mgmt_port": 18301, "username": "sluice"}],
        "upstreams": [{"name": "fra-telia", "isp": "Telia", "asn": 1299, "router": "edge-fra-1", "center": "fra",
                       "neighbor_address": "192.0.2.9", "capacity_gbps": 100}],
    }


def load_file(tmp_path: Path, data: dict) -> None:
    path = tmp_path / "network.yaml"
    path.write_text(yaml.safe_dump(data))
    call_command("load_network", str(path))


def file_error(tmp_path: Path, section: str, changes: dict) -> str:
    data = base_file()
    data[section][0].update(changes)
    with pytest.raises(CommandError) as refused:
        load_file(tmp_path, data)
    return str(refused.value)


def api_error(path: str, body: dict) -> dict:
    client = api(key=token_for("inventory-admin", ["read", "write"]))
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    return response.json()


ROUTER = {"name": "edge-fra-2", "vendor": "juniper", "platform": "junos", "center": "fra", "mgmt_host": "127.0.0.1",
          "mgmt_port": 18302, "username": "sluice"}
UPSTREAM = {"name": "fra-gtt", "isp": "GTT", "asn": 3257, "router": "edge-fra-1", "center": "fra",
            "neighbor_address": "192.0.2.10", "capacity_gbps": 100}

SAME_REFUSALS = [
    ("routers", "/api/v1/routers/", ROUTER, {"mgmt_port": 70000}, "mgmt_port", "must be 1..65535"),
    ("routers", "/api/v1/routers/", ROUTER, {"mgmt_port": "ssh"}, "mgmt_port", "must be a whole number"),
    ("routers", "/api/v1/routers/", ROUTER, {"mgmt_port": True}, "mgmt_port", "must be a whole number, not a boolean"),
    ("routers", "/api/v1/routers/", ROUTER, {"colour": "blue"}, "colour", "unknown field"),
    ("upstreams", "/api/v1/upstreams/", UPSTREAM, {"asn": 0}, "asn", "must be 1..4294967295"),
    ("upstreams", "/api/v1/upstreams/", UPSTREAM, {"blackhole_community": "1299-999"}, "blackhole_community",
     "must read ASN:NN"),
    ("upstreams", "/api/v1/upstreams/", UPSTREAM, {"communities": {"x": "bad"}}, "communities", "must read ASN:NN"),
    ("centers", "/api/v1/centers/", {"slug": "ams", "name": "Amsterdam", "capacity_gbps": 1, "capacity_mpps": 1},
     {"capacity_gbps": -1}, "capacity_gbps", "must be >= 0"),
]


@pytest.mark.parametrize(("section", "path", "valid", "bad", "field", "message"), SAME_REFUSALS,
                         ids=[f"{row[0]}-{row[4]}-{row[3].get(row[4], 'x')}" for row in SAME_REFUSALS])
def test_the_file_and_the_api_refuse_alike(world: World, tmp_path: Path, section: str, path: str, valid: dict,
                                           bad: dict, field: str, message: str) -> None:
    load_file(tmp_path, base_file())
    before = (Router.objects.count(), UpstreamPeer.objects.count(), ScrubbingCenter.objects.count())
    audits = AuditEvent.objects.count()
    from_file = file_error(tmp_path, section, bad)
    from_api = json.dumps(api_error(path, {**valid, **bad}))
    assert message in from_file and f".{field}" in from_file
    assert message in from_api and field in from_api
    assert (Router.objects.count(), UpstreamPeer.objects.count(), ScrubbingCenter.objects.count()) == before
    assert AuditEvent.objects.count() == audits


def test_a_model_clean_rule_is_enforced_by_the_api(world: World, tmp_path: Path) -> None:
    load_file(tmp_path, base_file())
    errors = api_error("/api/v1/upstreams/", {**UPSTREAM, "communities": ["1299:50"]})
    assert errors["fields"] == {"communities": ["must be a mapping of name to ASN:NN"]}


def test_an_api_write_is_audited_once_with_its_diff_and_published(
    world: World, tmp_path: Path, soc_events: Callable[[], list[dict]], django_capture_on_commit_callbacks: Any,
) -> None:
    load_file(tmp_path, base_file())
    client = api(key=token_for("inventory-admin", ["read", "write"]))
    audits = AuditEvent.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
            created = client.post("/api/v1/routers/", data=json.dumps({**ROUTER, "password": "api-secret-pw"}),
                              content_type="application/json")
    assert created.status_code == 201, created.content
    row = AuditEvent.objects.order_by("-id").first()
    assert AuditEvent.objects.count() == audits + 1 and row.action == "inventory.create"
    change = row.diff["changes"][0]
    assert (change["kind"], change["key"]) == ("router", "edge-fra-2")
    assert change["fields"]["mgmt_port"] == ["None", "18302"] and "api-secret-pw" not in json.dumps(row.diff)
    router = Router.objects.get(name="edge-fra-2")
    with django_capture_on_commit_callbacks(execute=True):
        patched = client.patch(f"/api/v1/routers/{router.pk}/", data=json.dumps({"mgmt_port": 18303}),
                               content_type="application/json")
    assert patched.status_code == 200
    row = AuditEvent.objects.order_by("-id").first()
    assert row.action == "inventory.update" and row.diff["changes"][0]["fields"] == {"mgmt_port": ["18302", "18303"]}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/routers/{router.pk}/").status_code == 204
    assert AuditEvent.objects.order_by("-id").first().action == "inventory.delete"
    assert AuditEvent.objects.count() == audits + 3
    assert [event["data"]["changes"][0]["action"] for event in soc_events()] == ["create", "update", "delete"]


def test_the_network_file_publishes_the_same_event(
    world: World, tmp_path: Path, soc_events: Callable[[], list[dict]], django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        load_file(tmp_path, base_file())
    events = soc_events()
    assert len(events) == 1
    assert {"action": "create", "kind": "router", "key": "edge-fra-1"} in events[0]["data"]["changes"]
    assert AuditEvent.objects.filter(action="network.load").count() == 1
