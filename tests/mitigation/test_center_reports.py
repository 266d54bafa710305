"""A scrubbing center's report per diverted prefix: what it received, dropped and returned clean.

Through the real HTTP API with an appliance's telemetry token: a report is taken whole or not at all (load
included), only for prefixes diverted to that center now; operators and the owning tenant read the samples, a
foreign tenant finds nothing there.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from core.accounts.choices import UserRoleChoices
from core.accounts.models import User
from devices.drivers.base import FlowSpecRule, UnicastRoute
from devices.models import ScrubbingCenter
from mitigation.choices import MitigationStateChoices as S
from mitigation.models import Action, Attack, CenterPrefixSample, Mitigation
from mitigation.routes import route_key, route_to_spec
from mitigation.services import center_reports
from mitigation.services.retention import prune_history
from tenants.models import Tenant
from tests.devices.test_devices_api import api, token_for
from tests.support.world import World, signed_in

pytestmark = pytest.mark.django_db
GBPS = 1_000_000_000
PREFIX = "203.0.113.0/24"
LINE = {"prefix": PREFIX, "received_bps": 40 * GBPS, "dropped_bps": 38_200_000_000, "clean_bps": 1_800_000_000,
        "received_pps": 9_000_000, "dropped_pps": 8_800_000, "clean_pps": 200_000}


@pytest.fixture
def frankfurt(world: World) -> ScrubbingCenter:
    return ScrubbingCenter.objects.create(slug="fra", name="Frankfurt", capacity_gbps=400, capacity_mpps=300,
                                          diversion_next_hop_v4="192.0.2.10", diversion_next_hop_v6="2001:db8:ff::10")


@pytest.fixture
def amsterdam(world: World) -> ScrubbingCenter:
    return ScrubbingCenter.objects.create(slug="ams", name="Amsterdam", capacity_gbps=400, capacity_mpps=300,
                                          diversion_next_hop_v4="192.0.2.20")


@pytest.fixture
def appliance(world: World) -> Client:
    return api(key=token_for("appliance-fra", ["telemetry"], role=UserRoleChoices.OPERATOR))


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any], str | None]]:
    sent: list[tuple[str, dict[str, Any], str | None]] = []
    monkeypatch.setattr(center_reports, "publish",
                        lambda kind, data, *, tenant_schema: sent.append((kind, data, tenant_schema)))
    return sent


def diverted(tenant: Tenant, center: ScrubbingCenter, *, prefix: str = PREFIX, target: str = "203.0.113.10/32",
             state: str = S.ACTIVE, action_status: str = "desired") -> Mitigation:
    """A mitigation diverting `prefix` to `center`, as planning and convergence leave one."""
    attack = Attack.objects.create(tenant=tenant, target=target, vectors=["udp_flood"], bps=40 * GBPS, pps=9_000_000)
    mitigation = Mitigation.objects.create(attack=attack, tenant=tenant, state=state, level="diversion", center=center,
                                           reason=f"divert {prefix} to {center.name}")
    next_hop = center.diversion_next_hop_v6 if ":" in prefix else center.diversion_next_hop_v4
    route = UnicastRoute(prefix=prefix, next_hop=str(next_hop))
    Action.objects.create(mitigation=mitigation, kind="diversion", spec=route_to_spec(route), route_key=route_key(route),
                          targets=["speaker:s1"], status=action_status, reason="divert")
    return mitigation


def report(client: Client, prefixes: object, slug: str = "fra", **load: object) -> Any:
    body = {"load_gbps": 41.2, "load_mpps": 12.0, "healthy": True, **load, "prefixes": prefixes}
    return client.post(f"/api/v1/centers/{slug}/load/", data=json.dumps(body), content_type="application/json")


def fields_named(body: dict[str, Any]) -> set[str]:
    """Every field an error body names, as `prefixes[1].prefix`, whether a service or DRF found the fault."""
    if "field" in body:
        return {body["field"]}
    named: set[str] = set()

    def walk(path: str, errors: object) -> None:
        if isinstance(errors, dict):
            for key, value in errors.items():
                if key == "non_field_errors":
                    walk(path, value)
                    continue
                walk(f"{path}[{key}]" if str(key).isdigit() else f"{path}.{key}".lstrip("."), value)
        else:
            named.add(path)

    walk("", body.get("fields", {}))
    return named


def nothing_written(center: ScrubbingCenter) -> bool:
    center.refresh_from_db()
    return center.load_updated_at is None and not CenterPrefixSample.objects.exists()


def test_a_report_is_stored_with_the_load_and_published_to_the_soc_and_the_tenant(
    world: World, frankfurt: ScrubbingCenter, appliance: Client, events: list,
) -> None:
    mitigation = diverted(world.acme, frankfurt)
    response = report(appliance, [LINE, {"prefix": "2001:db8:100::/48", "received_bps": 10, "dropped_bps": 10,
                                         "clean_bps": 0}])
    # The second prefix is not diverted yet: nothing of the report may be kept.
    assert response.status_code == 400 and nothing_written(frankfurt)
    diverted(world.acme, frankfurt, prefix="2001:db8:100::/48", target="2001:db8:100::1/128")

    response = report(appliance, [LINE, {"prefix": "2001:db8:100::/48", "received_bps": 10, "dropped_bps": 10,
                                         "clean_bps": 0}])
    assert response.status_code == 200, response.content
    assert response.json()["slug"] == "fra" and response.json()["load_gbps"] == 41.2  # the center, as before
    frankfurt.refresh_from_db()
    assert (frankfurt.load_gbps, frankfurt.load_mpps, frankfurt.healthy) == (41.2, 12.0, True)
    sample = CenterPrefixSample.objects.get(mitigation=mitigation)
    assert (sample.center, str(sample.prefix), sample.received_bps, sample.dropped_bps, sample.clean_bps) == (
        frankfurt, PREFIX, 40 * GBPS, 38_200_000_000, 1_800_000_000)
    assert (sample.received_pps, sample.dropped_pps, sample.clean_pps) == (9_000_000, 8_800_000, 200_000)
    v6 = CenterPrefixSample.objects.exclude(mitigation=mitigation).get()
    assert (str(v6.prefix), v6.received_pps, v6.at) == ("2001:db8:100::/48", 0, frankfurt.load_updated_at)

    kind, data, tenant_schema = next(event for event in events if event[1]["mitigation"] == mitigation.pk)
    assert (kind, tenant_schema) == ("mitigation.center_report", world.acme.schema_name)
    assert {key: data[key] for key in ("center", "prefix", "dropped_bps", "clean_bps")} == {
        "center": "fra", "prefix": PREFIX, "dropped_bps": 38_200_000_000, "clean_bps": 1_800_000_000}


def test_the_load_alone_is_still_a_report(world: World, frankfurt: ScrubbingCenter, appliance: Client) -> None:
    response = appliance.post("/api/v1/centers/fra/load/", data=json.dumps({"load_gbps": 3, "load_mpps": 1}),
                              content_type="application/json")
    assert response.status_code == 200, response.content
    frankfurt.refresh_from_db()
    assert frankfurt.load_gbps == 3 and not CenterPrefixSample.objects.exists()


@pytest.mark.parametrize("situation", ["another center", "mitigation ended", "action retired", "not diverted at all"])
def test_a_prefix_not_diverted_to_the_center_is_refused_and_nothing_is_written(
    world: World, frankfurt: ScrubbingCenter, amsterdam: ScrubbingCenter, appliance: Client, events: list,
    situation: str,
) -> None:
    diverted(world.acme, frankfurt, prefix="203.0.113.0/25", target="203.0.113.1/32")  # a good line comes first
    if situation == "another center":
        diverted(world.acme, amsterdam)
    elif situation == "mitigation ended":
        diverted(world.acme, frankfurt, state=S.ENDED)
    elif situation == "action retired":
        diverted(world.acme, frankfurt, action_status="retired")
    response = report(appliance, [{**LINE, "prefix": "203.0.113.0/25"}, LINE])
    assert response.status_code == 400
    assert response.json() == {"field": "prefixes[1].prefix", "error": "203.0.113.0/24 is not diverted to Frankfurt"}
    assert nothing_written(frankfurt) and events == []


@pytest.mark.parametrize(("line", "field"), [
    ({**LINE, "received_bps": -1}, "prefixes[0].received_bps"),
    ({**LINE, "dropped_bps": "lots"}, "prefixes[0].dropped_bps"),
    ({**LINE, "clean_bps": 1.5}, "prefixes[0].clean_bps"),
    ({key: value for key, value in LINE.items() if key != "clean_bps"}, "prefixes[0].clean_bps"),
    ({**LINE, "dropped_pps": None}, "prefixes[0].dropped_pps"),
    ({**LINE, "prefix": "not-a-prefix"}, "prefixes[0].prefix"),
    ({**LINE, "prefix": "203.0.113.7/24"}, "prefixes[0].prefix"),
    ({**LINE, "dropped_bps": 39 * GBPS, "clean_bps": 2 * GBPS}, "prefixes[0].received_bps"),
    ({**LINE, "dropped_pps": 9_000_000, "clean_pps": 200_000}, "prefixes[0].received_pps"),
    ("203.0.113.0/24", "prefixes[0]"),
])
def test_malformed_figures_are_a_400_naming_the_field_and_nothing_is_written(
    world: World, frankfurt: ScrubbingCenter, appliance: Client, line: object, field: str,
) -> None:
    diverted(world.acme, frankfurt)
    response = report(appliance, [line])
    assert response.status_code == 400
    assert field in fields_named(response.json()), response.json()
    assert nothing_written(frankfurt)


def test_a_prefix_reported_twice_or_bad_load_writes_nothing(
    world: World, frankfurt: ScrubbingCenter, appliance: Client,
) -> None:
    diverted(world.acme, frankfurt)
    response = report(appliance, [LINE, {**LINE, "prefix": "203.0.113.0/24 "}])
    assert response.status_code == 400
    assert response.json()["field"] == "prefixes[1].prefix" and "twice" in response.json()["error"]
    assert report(appliance, "everything", slug="fra").status_code == 400
    response = report(appliance, [LINE], load_gbps=-2)
    assert response.status_code == 400 and "load_gbps" in fields_named(response.json())
    assert nothing_written(frankfurt)


def test_figures_within_the_tolerance_are_taken(world: World, frankfurt: ScrubbingCenter, appliance: Client) -> None:
    diverted(world.acme, frankfurt)
    overshoot = {**LINE, "received_bps": 100 * GBPS, "dropped_bps": 90 * GBPS, "clean_bps": 11 * GBPS}  # 1 % over
    assert report(appliance, [overshoot]).status_code == 200
    assert CenterPrefixSample.objects.get().clean_bps == 11 * GBPS


def test_two_mitigations_diverting_one_prefix_each_get_the_figures(
    world: World, frankfurt: ScrubbingCenter, appliance: Client,
) -> None:
    first = diverted(world.acme, frankfurt, target="203.0.113.10/32")
    second = diverted(world.acme, frankfurt, target="203.0.113.20/32", state=S.WITHDRAWING)
    assert report(appliance, [LINE]).status_code == 200
    assert sorted(CenterPrefixSample.objects.values_list("mitigation_id", flat=True)) == [first.pk, second.pk]


def test_a_flowspec_redirect_into_the_centers_instance_is_a_diversion_of_its_destination(
    world: World, frankfurt: ScrubbingCenter, appliance: Client,
) -> None:
    # Found live in the demo: when diverting the /24 would cover never-block space, the engine redirects the
    # target's attack traffic into the center's VRF instead; the center's reports on it were refused.
    attack = Attack.objects.create(tenant=world.acme, target="203.0.113.10/32", vectors=["syn_flood"], bps=60 * GBPS)
    mitigation = Mitigation.objects.create(attack=attack, tenant=world.acme, state=S.ACTIVE, level="diversion",
                                           center=frankfurt, reason="redirect to Frankfurt's VRF")
    line = {**LINE, "prefix": "203.0.113.10/32"}
    for action in ("discard", "redirect"):
        rule = FlowSpecRule(destination="203.0.113.10/32", protocols=((6, 6),), action=action,
                            redirect_target="65010:100" if action == "redirect" else None)
        Action.objects.create(mitigation=mitigation, kind="flowspec", spec=route_to_spec(rule),
                              route_key=route_key(rule), targets=["edge"], reason=action)
        response = report(appliance, [line])
        if action == "discard":
            assert response.status_code == 400 and nothing_written(frankfurt), "a discard sends nothing to a center"
    assert response.status_code == 200, response.content
    sample = CenterPrefixSample.objects.get(mitigation=mitigation)
    assert (str(sample.prefix), sample.dropped_bps) == ("203.0.113.10/32", 38_200_000_000)


def test_only_a_telemetry_token_may_report(world: World, frankfurt: ScrubbingCenter) -> None:
    diverted(world.acme, frankfurt)
    assert report(api(key=token_for("reader", ["read", "write"])), [LINE]).status_code == 403
    operator = signed_in(api(), User.objects.get(username="soc"))
    assert report(operator, [LINE]).status_code == 403
    assert report(api(), [LINE]).status_code in (401, 403)
    # A tenant's own telemetry token finds no such endpoint on its domain: reports are the provider's.
    tenant_key = token_for("acme-bot", ["telemetry"], schema=world.acme.schema_name, role=UserRoleChoices.ADMIN)
    assert report(api("acme.localhost", tenant_key), [LINE]).status_code == 404
    assert nothing_written(frankfurt)


def test_operators_and_the_owning_tenant_read_the_samples_a_foreign_tenant_finds_none(
    world: World, frankfurt: ScrubbingCenter, appliance: Client,
) -> None:
    mitigation = diverted(world.acme, frankfurt)
    assert report(appliance, [LINE]).status_code == 200
    assert report(appliance, [{**LINE, "dropped_bps": 39 * GBPS, "clean_bps": GBPS}]).status_code == 200
    path = f"/api/v1/mitigations/{mitigation.pk}/center-reports/"

    response = api(key=token_for("soc-reader", ["read"])).get(path)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 2
    newest = body["results"][0]
    assert (newest["center"], newest["prefix"], newest["dropped_bps"], newest["clean_bps"]) == (
        "fra", PREFIX, 39 * GBPS, GBPS)

    acme = api("acme.localhost", token_for("acme-reader", ["read"], schema=world.acme.schema_name,
                                           role=UserRoleChoices.VIEWER))
    assert acme.get(path).json()["count"] == 2

    globex = api("globex.localhost", token_for("globex-reader", ["read"], schema=world.globex.schema_name,
                                               role=UserRoleChoices.VIEWER))
    foreign, missing = globex.get(path), globex.get("/api/v1/mitigations/987654321/center-reports/")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()


def test_samples_older_than_the_retention_period_are_pruned(
    world: World, frankfurt: ScrubbingCenter, appliance: Client,
) -> None:
    diverted(world.acme, frankfurt)
    assert report(appliance, [LINE]).status_code == 200
    assert report(appliance, [LINE]).status_code == 200
    old = CenterPrefixSample.objects.order_by("id").first()
    assert old is not None
    CenterPrefixSample.objects.filter(pk=old.pk).update(at=timezone.now() - datetime.timedelta(days=400))
    assert prune_history()["center_samples"] == 1
    assert CenterPrefixSample.objects.count() == 1 and not CenterPrefixSample.objects.filter(pk=old.pk).exists()
