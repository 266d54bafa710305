"""load_network: create, update, idempotent re-run, dry run, and refusals that name the entry and change nothing."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from core.models import AuditEvent
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, ScrubbingCenter, TenantLatency, UpstreamPeer
from tests.support.world import World

pytestmark = pytest.mark.django_db
DEMO = Path(__file__).resolve().parents[2] / "netsim" / "demo-network.yaml"
MODELS = (ScrubbingCenter, Router, UpstreamPeer, BgpSpeaker, BgpSpeakerNeighbor, TenantLatency)


def demo() -> dict:
    return yaml.safe_load(DEMO.read_text())


def run(tmp_path: Path, data: dict | str, *flags: str) -> str:
    path = tmp_path / "network.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    out = StringIO()
    call_command("load_network", str(path), *flags, stdout=out)
    return out.getvalue()


def counts() -> tuple[int, ...]:
    return tuple(model.objects.count() for model in MODELS)


def test_demo_file_creates_everything_then_changes_nothing(world: World, tmp_path: Path) -> None:
    out = run(tmp_path, demo())
    assert counts() == (3, 2, 5, 1, 2, 6)
    assert "create router edge-fra-1" in out and "sluice-demo" not in out
    assert Router.objects.get(name="edge-fra-1").password == "sluice-demo"
    assert UpstreamPeer.objects.get(name="fra-telia").communities == {"lower-local-pref": "1299:50"}
    assert TenantLatency.objects.get(tenant=world.acme, center__slug="fra").latency_ms == 12
    neighbor = BgpSpeakerNeighbor.objects.get(peer_address="127.0.10.1")
    assert neighbor.router.name == "edge-fra-1" and neighbor.port == 1179 and "ipv4 flow" in neighbor.families
    audits = AuditEvent.objects.filter(action="network.load")
    assert audits.count() == 1 and "sluice-demo" not in str(audits.get().diff)
    assert run(tmp_path, demo()).strip() == "no changes"
    assert AuditEvent.objects.filter(action="network.load").count() == 1


def test_update_shows_old_and_new(world: World, tmp_path: Path) -> None:
    run(tmp_path, demo())
    data = demo()
    data["routers"][0]["mgmt_port"] = 18311
    data["routers"][0]["password"] = "rotated-password"
    data["centers"][1]["capacity_gbps"] = 500
    out = run(tmp_path, data)
    assert "update router edge-fra-1: mgmt_port 18301 -> 18311, password •••• -> ••••" in out
    assert "update center ams: capacity_gbps 400.0 -> 500.0" in out
    assert "rotated-password" not in out
    router = Router.objects.get(name="edge-fra-1")
    assert (router.mgmt_port, router.password) == (18311, "rotated-password")


def test_dry_run_prints_and_changes_nothing(world: World, tmp_path: Path) -> None:
    out = run(tmp_path, demo(), "--dry-run")
    assert "create center fra" in out and "would apply 19 change(s)" in out
    assert counts() == (0, 0, 0, 0, 0, 0)
    run(tmp_path, demo())
    data = demo()
    data["upstreams"][0]["capacity_gbps"] = 10
    out = run(tmp_path, data, "--dry-run")
    assert "update upstream fra-telia: capacity_gbps 100.0 -> 10.0" in out
    assert UpstreamPeer.objects.get(name="fra-telia").capacity_gbps == 100


def test_neighbors_and_latencies_follow_their_entry_and_prune_deletes(world: World, tmp_path: Path) -> None:
    run(tmp_path, demo())
    data = demo()
    data["speakers"][0]["neighbors"].pop()
    data["latencies"]["acme"].pop("lon")
    data["upstreams"] = [u for u in data["upstreams"] if u["name"] != "lon-gtt"]
    out = run(tmp_path, data)
    assert "delete speaker neighbor speaker-1/127.0.10.2" in out and "delete tenant latency acme/lon" in out
    assert UpstreamPeer.objects.filter(name="lon-gtt").exists()
    out = run(tmp_path, data, "--prune")
    assert out.strip().splitlines()[0] == "delete upstream lon-gtt"
    assert not UpstreamPeer.objects.filter(name="lon-gtt").exists()


def test_credentials_from_the_environment(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_FRA_PASSWORD", "from-the-env")
    data = demo()
    data["routers"][0]["password"] = "env:EDGE_FRA_PASSWORD"
    run(tmp_path, data)
    assert Router.objects.get(name="edge-fra-1").password == "from-the-env"


def _set(data: dict, path: tuple, value: object) -> None:
    target = data
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value


INVALID = [
    (("routers", 0, "mgmt_port"), 70000, "routers[edge-fra-1].mgmt_port: must be 1..65535"),
    (("routers", 0, "mgmt_port"), "ssh", "routers[edge-fra-1].mgmt_port: must be a whole number"),
    (("routers", 0, "vendor"), "huawei", "routers[edge-fra-1].vendor:"),
    (("routers", 0, "center"), "nyc", "routers[edge-fra-1].center: no center 'nyc'"),
    (("routers", 0, "password"), "env:SLUICE_TEST_UNSET_VAR", "routers[edge-fra-1].password: environment variable"),
    (("routers", 0, "username"), KeyError, "routers[edge-fra-1].username: is required"),
    (("routers", 0, "colour"), "blue", "routers[edge-fra-1].colour: unknown field"),
    (("centers", 0, "capacity_gbps"), -1, "centers[fra].capacity_gbps: must be >= 0"),
    (("centers", 0, "route_target"), "65010", "centers[fra].route_target:"),
    (("centers", 0, "diversion_next_hop_v4"), "2001:db8::1", "centers[fra].diversion_next_hop_v4:"),
    (("centers", 0, "slug"), "Not A Slug", "centers[Not A Slug].slug:"),
    (("upstreams", 0, "blackhole_community"), "1299-999", "upstreams[fra-telia].blackhole_community:"),
    (("upstreams", 0, "communities"), {"x": "bad"}, "upstreams[fra-telia].communities.x:"),
    (("upstreams", 0, "asn"), 0, "upstreams[fra-telia].asn: must be 1..4294967295"),
    (("upstreams", 0, "router"), "edge-nyc-1", "upstreams[fra-telia].router: no router 'edge-nyc-1'"),
    (("upstreams", 0, "neighbor_address"), "300.1.1.1", "upstreams[fra-telia].neighbor_address:"),
    (("upstreams", 0, "flowspec_accepted"), "yes please", "upstreams[fra-telia].flowspec_accepted: must be a boolean"),
    (("speakers", 0, "router_id"), "::1", "speakers[speaker-1].router_id:"),
    (("speakers", 0, "neighbors", 0, "port"), 0, "speakers[speaker-1].neighbors[127.0.10.1].port: must be 1..65535"),
    (("speakers", 0, "neighbors", 0, "families"), ["ipv4 bogus"], "speakers[speaker-1].neighbors[127.0.10.1].families"),
    (("speakers", 0, "neighbors", 0, "router"), "nope", "speakers[speaker-1].neighbors[127.0.10.1].router: no router"),
    (("latencies", "acme", "fra"), "fast", "latencies[acme].fra: must be a number"),
    (("latencies", "acme", "nyc"), 5, "latencies[acme].nyc: no center 'nyc'"),
    (("latencies", "initech"), {"fra": 5}, "latencies[initech]: no tenant 'initech'"),
    (("surprise",), [], "surprise: unknown section"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID, ids=[m.split(":")[0] + "-" + str(v)[:12]
                                                                      for _, v, m in INVALID])
def test_invalid_entry_is_named_and_nothing_changes(world: World, tmp_path: Path, path: tuple, value: object,
                                                    message: str) -> None:
    run(tmp_path, demo())
    before = counts()
    snapshot = list(Router.objects.values_list("name", "mgmt_port", "center_id"))
    data = demo()
    data["routers"][1]["mgmt_port"] = 18399  # a valid change in the same file must not be applied either
    _set(data, path, value)
    with pytest.raises(CommandError) as refused:
        run(tmp_path, data)
    assert message in str(refused.value)
    assert "nothing changed" in str(refused.value)
    assert counts() == before
    assert list(Router.objects.values_list("name", "mgmt_port", "center_id")) == snapshot


def test_duplicate_names_and_bad_yaml_are_refused(world: World, tmp_path: Path) -> None:
    data = demo()
    data["routers"].append(dict(data["routers"][0]))
    with pytest.raises(CommandError, match=r"routers\[edge-fra-1\].name: 'edge-fra-1' appears twice"):
        run(tmp_path, data)
    with pytest.raises(CommandError, match="not valid YAML"):
        run(tmp_path, "centers: [unclosed")
    assert counts() == (0, 0, 0, 0, 0, 0)
