"""The mitigation pages tell the story: the verdict, the timeline, the traffic graph, the rule counters and the
centers compared, on the SOC console and (in the customer's words) in the customer portal; the SOC's rule hits page
lists never-matching rules and receivers near their FlowSpec limits."""

from __future__ import annotations

import datetime
import json

import pytest
from django.utils import timezone

from devices.models import Router, ScrubbingCenter
from mitigation.models import (
    Action,
    CenterPrefixSample,
    Decision,
    Deployment,
    Mitigation,
    RuleCounterSample,
    SignalRecord,
    Verdict,
)
from tests.portal.test_customer_pages import client_as, make_mitigation
from tests.support.world import World

pytestmark = pytest.mark.django_db

SUMMARY = "FlowSpec dropped 38.2 of 40 Gbps; 1.8 Gbps still reaches 203.0.113.10"
RULE = {"type": "flowspec", "destination": "203.0.113.10/32", "action": "discard", "protocols": [[17, 17]]}


def storied_mitigation(world: World) -> Mitigation:
    """An active FlowSpec mitigation with signals, a compared-centers decision, counters on a router, a center
    report and a partial verdict, as the services would leave them."""
    now = timezone.now().replace(microsecond=0)
    start = now - datetime.timedelta(minutes=10)
    mitigation = make_mitigation(world.acme, state="active")
    Mitigation.objects.filter(pk=mitigation.pk).update(
        activated_at=start + datetime.timedelta(minutes=1), verdict="partial", verdict_summary=SUMMARY,
        verdict_at=now, last_error="degraded: mx-lon-1 unreachable since 14:02")
    mitigation.attack.started_at = start
    mitigation.attack.save()
    for minute, phase in ((0, "start"), (5, "update")):
        signal = SignalRecord.objects.create(attack=mitigation.attack, phase=phase, detector="collector",
                                             vectors=["udp_flood"], bps=40_000_000_000, pps=1, actor="tests")
        SignalRecord.objects.filter(pk=signal.pk).update(received_at=start + datetime.timedelta(minutes=minute))
    fra = ScrubbingCenter.objects.create(slug="fra-page", name="Frankfurt", capacity_gbps=400, capacity_mpps=200)
    Decision.objects.create(mitigation=mitigation, level="flowspec", reason="FlowSpec at the edge. Hidden detail",
                            inputs={"candidates": [
                                {"center": fra.pk, "name": "Frankfurt", "status": 0, "stale": False,
                                 "headroom_gbps": 123.4, "headroom_mpps": 50.0, "latency_ms": 12.0,
                                 "threshold_ms": 40.0, "cost": 9.5},
                                {"center": fra.pk + 1000, "name": "Sydney", "status": 6, "stale": False,
                                 "headroom_gbps": 300.0, "headroom_mpps": 90.0, "latency_ms": 280.0,
                                 "threshold_ms": 40.0, "cost": None}],
                                "option_costs": {"flowspec": 2.0, "rtbh": 50.0, "none": 100.0}})
    action = Action.objects.create(mitigation=mitigation, kind="flowspec", spec=RULE, route_key="story-rule",
                                   targets=["edge"], reason="drop udp")
    Deployment.objects.create(action=action, element="router:mx-fra-1", state="present")
    for seconds, size in ((-20, 0), (-10, 47_750_000_000)):
        RuleCounterSample.objects.create(action=action, element="router:mx-fra-1",
                                         at=now + datetime.timedelta(seconds=seconds), packets=size // 1000,
                                         bytes=size, dropped_packets=size // 1000, dropped_bytes=size)
    CenterPrefixSample.objects.create(center=fra, mitigation=mitigation, prefix="203.0.113.0/24", at=now,
                                      received_bps=3, dropped_bps=2, clean_bps=1)
    Verdict.objects.create(mitigation=mitigation, at=now, outcome="partial", level="flowspec",
                           attack_bps=1_800_000_000, dropped_bps=38_200_000_000, scrubbed_bps=0,
                           threshold_bps=1_000_000_000, summary=SUMMARY, evidence={"routers": ["mx-fra-1"]})
    mitigation.refresh_from_db()
    return mitigation


def test_the_soc_page_tells_the_whole_story(world: World) -> None:
    mitigation = storied_mitigation(world)
    body = client_as("public", "viewer").get(f"/soc/mitigations/{mitigation.pk}/").content.decode()
    for text in ('<span class="badge partial" id="verdict-badge">Partial</span>', SUMMARY, "38.2 Gbps",
                 "first signal", "FlowSpec present", "verdict: Partial", 'id="story-series"',
                 "dst 203.0.113.10/32 proto 17 → discard", "router:mx-fra-1", "38.2 Gbps · 4.8 Mpps",
                 "123.4 Gbps", "Sydney", "latency over the tenant&#x27;s threshold", "chosen" , "All inputs"):
        assert text in body, text
    series = json.loads(body.split('id="story-series" type="application/json">')[1].split("</script>")[0])
    dropped = next(s for s in series["series"] if s["key"] == "dropped")["values"]
    assert 38_200_000_000 in dropped and None in dropped, "the graph has the drop, and gaps where nothing was read"
    assert series["markers"][0]["label"] == "mitigation active"


def test_the_live_part_alone_is_the_verdict_graph_and_counters(world: World) -> None:
    mitigation = storied_mitigation(world)
    Mitigation.objects.filter(pk=mitigation.pk).update(verdict="effective", verdict_summary="All of it dropped")
    body = client_as("public", "viewer").get(f"/soc/mitigations/{mitigation.pk}/?part=live").content.decode()
    assert '<span class="badge effective" id="verdict-badge">Effective</span>' in body
    assert "All of it dropped" in body and 'id="story-series"' in body and "router:mx-fra-1" in body
    assert "<html" not in body and "Timeline" not in body


def test_the_customer_page_tells_it_without_the_providers_internals(world: World) -> None:
    mitigation = storied_mitigation(world)
    body = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/").content.decode()
    for text in ('<span class="badge partial" id="verdict-badge">Partial</span>', SUMMARY, "first signal",
                 "carried on the provider&#x27;s network", "verdict: Partial", 'id="story-series"',
                 "dst 203.0.113.10/32 proto 17 → discard", "38.2 Gbps · 4.8 Mpps", "Frankfurt", "Sydney",
                 "latency over your threshold", "chosen", "12 ms"):
        assert text in body, text
    for hidden in ("mx-fra-1", "mx-lon-1", "123.4", "Hidden detail", "Evidence", "All inputs"):
        assert hidden not in body, hidden
    live = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/?part=live").content.decode()
    assert SUMMARY in live and "mx-fra-1" not in live


def test_a_mitigation_without_verdict_or_figures_still_renders(world: World) -> None:
    mitigation = make_mitigation(world.acme)
    soc = client_as("public", "viewer").get(f"/soc/mitigations/{mitigation.pk}/").content.decode()
    customer = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/").content.decode()
    for body in (soc, customer):
        assert "Not judged yet" in body and "No traffic figures recorded yet." in body
    assert "No center comparison recorded" in soc and "No center comparison recorded" in customer


@pytest.mark.parametrize("role", ["viewer", "admin"])
def test_another_tenants_mitigation_is_a_404(world: World, role: str) -> None:
    mitigation = storied_mitigation(world)
    client = client_as("globex", role)
    assert client.get(f"/mitigations/{mitigation.pk}/").status_code == 404
    assert client.get(f"/mitigations/{mitigation.pk}/?part=live").status_code == 404


def test_the_reports_carry_the_latest_verdict(world: World) -> None:
    mitigation = storied_mitigation(world)
    csv = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/report.csv").content.decode()
    assert "verdict" in csv and SUMMARY in csv
    pdf = client_as("acme", "viewer").get(f"/mitigations/{mitigation.pk}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")


def test_the_rule_hits_page_lists_a_never_matching_rule_and_a_router_near_its_limit(world: World) -> None:
    mitigation = make_mitigation(world.acme, state="active")
    action = Action.objects.create(mitigation=mitigation, kind="flowspec", spec={**RULE, "destination_ports": [[9, 9]]},
                                   route_key="silent-rule", targets=["edge"], reason="drop udp/9")
    Action.objects.filter(pk=action.pk).update(created_at=timezone.now() - datetime.timedelta(hours=1))
    RuleCounterSample.objects.create(action=action, element="router:mx-hits", packets=0, bytes=0)
    Router.objects.create(name="mx-hits", vendor="juniper", platform="junos", mgmt_host="192.0.2.30", username="u",
                          flowspec_rule_limit=1)
    Deployment.objects.create(action=action, element="router:mx-hits", state="present")
    client = client_as("public", "viewer")
    body = client.get("/soc/rule-hits/").content.decode()
    assert f'href="/soc/mitigations/{mitigation.pk}/"' in body
    assert "dst 203.0.113.10/32 proto 17 dport 9 → discard" in body
    assert "mx-hits" in body and "near its limit" in body
    assert 'href="/soc/rule-hits/"' in client.get("/").content.decode(), "linked from the SOC navigation"
    assert client_as("public", None).get("/soc/rule-hits/").status_code == 302
    assert client_as("acme", "admin").get("/soc/rule-hits/").status_code == 404
