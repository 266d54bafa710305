"""Convergence: make every network element carry exactly the desired routes held in PostgreSQL.

Apply, verify, withdraw and reconcile are this one path. The desired state is computed from the database (live
mitigations' desired actions, nothing while the kill switch is on), then pushed to all affected elements or to
none: every router stages a commit confirmed, the speaker announces (new routes before withdrawals, so a move
between centers never leaves a gap), and only when all succeeded and the speaker shows the routes are the routers
confirmed. Any failure rolls the routers back and restores the speaker's previous routes.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import redis
from django.db import transaction
from django.utils import timezone

from core.actors import ENGINE, Actor
from core.audit import record_audit
from core.events import publish
from core.redis import new_redis_client
from devices.drivers.base import ConfigDriver, DeviceIntent, DriverError, FlowSpecRule, LockError, UnicastRoute
from devices.drivers.bgp import ExaBgpSpeaker
from devices.models import BgpSpeaker, BgpSpeakerNeighbor, Router, UpstreamPeer
from devices.services import driver_for, speaker_client
from mitigation.choices import (
    ActionKindChoices,
    ActionStatusChoices,
    AttackStatusChoices,
    DeploymentStateChoices,
    MitigationStateChoices,
)
from mitigation.models import Action, ControlSwitch, Deployment, Mitigation
from mitigation.routes import Route, route_from_spec, without_neighbors
from mitigation.services.planning import mitigation_event
from tenants.notifications import notify_on_commit

logger = logging.getLogger(__name__)

# Mitigations whose actions the network should carry.
CARRIED_STATES = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE)
EDGE_TARGET = "edge"
CONFIRM_MINUTES = 2
LOCK_TIMEOUT_S = 120
LOCK_WAIT_S = 60


@dataclass
class DesiredState:
    """What each element should carry, and which actions went where (for the Deployment records)."""

    speakers: dict[int, tuple[BgpSpeaker, set[Route]]] = field(default_factory=dict)
    routers: dict[int, tuple[Router, DeviceIntent]] = field(default_factory=dict)
    placements: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    applying: list[int] = field(default_factory=list)
    withdrawing: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class ConvergeReport:
    changed_elements: tuple[str, ...]
    activated: int
    ended: int
    diffs: dict[str, str]


class ConvergeError(Exception):
    """Convergence failed; every element was put back as it was. `transient` says whether a retry may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def _family(route: Route) -> str:
    kind = "flow" if isinstance(route, FlowSpecRule) else "unicast"
    return f"ipv{route.family} {kind}"


def _neighbors_for(
    route: Route, targets: list[str], neighbors: list[BgpSpeakerNeighbor], peer_routers: dict[int, int]
) -> tuple[str, ...]:
    """The speaker sessions that should carry the route.

    `edge` goes to every session that is not an upstream's own. `peer:<id>` goes to that upstream's own session,
    or to the session of the edge router the upstream is attached to (which exports it with its communities).
    """
    family = _family(route)
    peers = {int(t.split(":", 1)[1]) for t in targets if t.startswith("peer:")}
    routers = {peer_routers[p] for p in peers if p in peer_routers}
    chosen = []
    for neighbor in neighbors:
        if family not in neighbor.families:
            continue
        edge = EDGE_TARGET in targets and neighbor.upstream_id is None
        if edge or neighbor.upstream_id in peers or (neighbor.upstream_id is None and neighbor.router_id in routers):
            chosen.append(str(neighbor.peer_address))
    return tuple(sorted(chosen))


def desired_state() -> DesiredState:
    """Read the desired network from the database in a handful of queries."""
    state = DesiredState()
    speakers = list(BgpSpeaker.objects.filter(enabled=True).prefetch_related("neighbors"))
    routers = list(Router.objects.filter(enabled=True, role="edge").order_by("name"))
    flow_by_bgp = {
        n.router_id for s in speakers for n in s.neighbors.all() if n.router_id and any("flow" in f for f in n.families)
    }
    rows = Mitigation.objects.filter(state__in=[*CARRIED_STATES, MitigationStateChoices.WITHDRAWING])
    for mitigation_id, mitigation_state in rows.values_list("id", "state"):
        target = state.withdrawing if mitigation_state == MitigationStateChoices.WITHDRAWING else state.applying
        if mitigation_state != MitigationStateChoices.ACTIVE:
            target.append(mitigation_id)
    actions: list[Action] = []
    if not ControlSwitch.current().panic:
        actions = list(
            Action.objects.filter(status=ActionStatusChoices.DESIRED, mitigation__state__in=CARRIED_STATES)
        )
    peer_routers = dict(UpstreamPeer.objects.values_list("id", "router_id"))
    for speaker in speakers:
        state.speakers[speaker.pk] = (speaker, set())
    flow_rules: list[tuple[Action, FlowSpecRule]] = []
    diversions: list[tuple[Action, UnicastRoute]] = []
    for action in actions:
        route = route_from_spec(action.spec)
        for speaker in speakers:
            placed = _speaker_route(action, route, speaker, peer_routers)
            if placed is not None:
                state.speakers[speaker.pk][1].add(placed)
                state.placements[action.pk].add(f"speaker:{speaker.name}")
        if isinstance(route, FlowSpecRule) and EDGE_TARGET in action.targets:
            flow_rules.append((action, route))
        elif isinstance(route, UnicastRoute) and action.kind == ActionKindChoices.DIVERSION:
            diversions.append((action, route))
    for router in routers:
        rules = [] if router.pk in flow_by_bgp else flow_rules
        intent = DeviceIntent(
            flow_rules=tuple(sorted({without_neighbors(r) for _, r in rules}, key=lambda r: r.name)),  # type: ignore[misc]
            diversions=tuple(sorted({_static(r) for _, r in diversions}, key=lambda r: r.prefix)),
        )
        state.routers[router.pk] = (router, intent)
        for action, _ in [*rules, *diversions]:
            state.placements[action.pk].add(f"router:{router.name}")
    return state


def _speaker_route(action: Action, route: Route, speaker: BgpSpeaker, peer_routers: dict[int, int]) -> Route | None:
    """The route as this speaker announces it (with its chosen sessions), or None when no session should carry it."""
    chosen = _neighbors_for(route, action.targets, list(speaker.neighbors.all()), peer_routers)
    return dataclasses.replace(route, neighbors=chosen) if chosen else None


def verified_routes(speaker: BgpSpeaker) -> set[Route]:
    """What the speaker carried after the last convergence that succeeded: its present Deployments.

    A failed convergence puts the speaker back to exactly this, whoever announced what in between.
    """
    peer_routers = dict(UpstreamPeer.objects.values_list("id", "router_id"))
    actions = Action.objects.filter(
        deployments__element=f"speaker:{speaker.name}", deployments__state=DeploymentStateChoices.PRESENT
    )
    routes = (_speaker_route(action, route_from_spec(action.spec), speaker, peer_routers) for action in actions)
    return {route for route in routes if route is not None}


def _static(route: UnicastRoute) -> UnicastRoute:
    """A diversion as a router holds it: a static route to the center's next hop, no BGP attributes."""
    return UnicastRoute(prefix=route.prefix, next_hop=route.next_hop)


@contextmanager
def element_locks(names: list[str], *, required: bool) -> Iterator[None]:
    """Per-element Redis locks with timeouts, taken in a fixed order so two jobs never deadlock.

    When Redis cannot be reached and the caller does not require locks (the kill switch), proceed without them.
    """
    with ExitStack() as stack:
        try:
            client = new_redis_client(socket_connect_timeout=2, socket_timeout=5)
            for name in sorted(names):
                lock = client.lock(f"sluice:lock:{name}", timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_WAIT_S)
                if not lock.acquire():
                    raise LockError(f"{name} is busy with another job")
                stack.callback(_release, lock)
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if required:
                raise ConvergeError(f"cannot take element locks: {error}", transient=True) from error
            logger.warning("converging without element locks: %s", error)
        yield


def _release(lock: redis.lock.Lock) -> None:
    try:
        lock.release()
    except (redis.RedisError, OSError):
        logger.warning("lock %s expired before release", lock.name)


def _stage(router: Router, intent: DeviceIntent) -> tuple[ConfigDriver, str, bool]:
    driver = driver_for(router)
    driver.open()
    try:
        result = driver.stage(intent, confirm_minutes=CONFIRM_MINUTES)
    except BaseException:
        driver.close()
        raise
    return driver, result.diff, result.commit_pending


def converge_network(*, acting_user: Actor = ENGINE, require_locks: bool = True) -> ConvergeReport:
    """Push the desired state to every element, all or none, then record deployments and lifecycle changes.

    Raises ConvergeError after putting every element back when any element fails. Side effects: device
    configuration commits, speaker announcements, Deployment rows, mitigation state changes, events and audit.
    """
    routers = [f"router:{n}" for n in Router.objects.filter(enabled=True, role="edge").values_list("name", flat=True)]
    speakers = [f"speaker:{n}" for n in BgpSpeaker.objects.filter(enabled=True).values_list("name", flat=True)]
    _announce_ahead(speakers, required=require_locks)
    with element_locks(routers, required=require_locks):
        # Read the desired state only once the locks are held: a run that waited pushes what is wanted now.
        desired = desired_state()
        diffs = _push(desired, speakers, required=require_locks)
    return _record(desired, diffs, acting_user)


def announce_ahead() -> None:
    """Announce new desired routes on every speaker now; called by planning as soon as its plan commits."""
    speakers = [f"speaker:{n}" for n in BgpSpeaker.objects.filter(enabled=True).values_list("name", flat=True)]
    try:
        _announce_ahead(speakers, required=True)
    except (ConvergeError, DriverError) as error:
        logger.warning("announcing ahead skipped: %s", error)


def _announce_ahead(speakers: list[str], *, required: bool) -> None:
    """Announce new desired routes on the speakers at once, without waiting for the routers' slower commits.

    Only additions: withdrawals wait for the full convergence, so a move between centers never leaves a gap. A
    failure of the full convergence puts the speakers back to their verified routes, which withdraws these again
    (all or none). Only the speakers' locks are held, and only for this, so a burst of attacks is announced while
    another job still commits the routers.
    """
    with element_locks(speakers, required=required):
        for speaker, routes in desired_state().speakers.values():
            try:
                client = speaker_client(speaker)
                new = routes - client.announced()
                if new:
                    client.apply(announce=sorted(new, key=repr))
            except DriverError as error:
                logger.warning("speaker:%s: announcing ahead failed (%s); the full convergence retries", speaker.name,
                               error)


def _push(desired: DesiredState, speakers: list[str], *, required: bool) -> dict[str, str]:
    staged: list[tuple[str, ConfigDriver]] = []
    restored: list[tuple[ExaBgpSpeaker, BgpSpeaker]] = []
    diffs: dict[str, str] = {}
    failures: list[tuple[str, BaseException]] = []
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(desired.routers)))) as pool, ExitStack() as held:
        futures = {
            f"router:{router.name}": pool.submit(_stage, router, intent)
            for router, intent in desired.routers.values()
        }
        held.enter_context(element_locks(speakers, required=required))
        for speaker, routes in desired.speakers.values():
            name = f"speaker:{speaker.name}"
            try:
                client = speaker_client(speaker)
                restored.append((client, speaker))
                added, removed = client.sync(routes)
                if not routes <= client.announced():
                    raise DriverError(f"{name} does not show every desired route after announcing")
                if added or removed:
                    diffs[name] = f"+{added} -{removed} routes"
            except DriverError as error:
                failures.append((name, error))
        held.close()  # the speakers are free for the next job's announcements while the routers commit
        for name, future in futures.items():
            try:
                driver, diff, pending = future.result()
            except DriverError as error:
                failures.append((name, error))
                continue
            staged.append((name, driver))
            if pending:
                diffs[name] = diff
    try:
        if failures:
            with element_locks(speakers, required=required):
                _undo(staged, restored)
            message = "; ".join(f"{name}: {error}" for name, error in failures)
            transient = all(getattr(error, "transient", False) for _, error in failures)
            raise ConvergeError(message, transient=transient)
        for _, driver in staged:
            driver.confirm()
    finally:
        for _, driver in staged:
            driver.close()
    return diffs


def _undo(staged: list[tuple[str, ConfigDriver]], restored: list[tuple[ExaBgpSpeaker, BgpSpeaker]]) -> None:
    for name, driver in staged:
        try:
            driver.abort()
        except DriverError as error:
            # The commit confirmed rolls back by itself on the router when it is never confirmed.
            logger.error("%s: abort failed (%s); its commit confirmed will roll back by itself", name, error)
    if ControlSwitch.current().panic:
        return  # never announce anything again while the kill switch is on, not even to restore
    for client, speaker in restored:
        try:
            client.sync(verified_routes(speaker))
        except DriverError as error:
            logger.error("speaker:%s could not be restored: %s", speaker.name, error)


def _record(desired: DesiredState, diffs: dict[str, str], acting_user: Actor) -> ConvergeReport:
    now = timezone.now()
    with transaction.atomic():
        Deployment.objects.bulk_create(
            [
                Deployment(action_id=action_id, element=element, state=DeploymentStateChoices.PRESENT, verified_at=now)
                for action_id, elements in desired.placements.items()
                for element in elements
            ],
            update_conflicts=True,
            unique_fields=["action", "element"],
            update_fields=["state", "verified_at", "detail"],
        )
        Deployment.objects.filter(state=DeploymentStateChoices.PRESENT).exclude(
            action_id__in=list(desired.placements)
        ).update(state=DeploymentStateChoices.ABSENT, verified_at=now)
        activated = _transition(desired.applying, MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE, now)
        ended = _transition(desired.withdrawing, MitigationStateChoices.WITHDRAWING, MitigationStateChoices.ENDED, now)
        if diffs:
            record_audit(acting_user, "network.converge", reason="desired state pushed", diff=diffs)
            publish("network.converged", {"elements": sorted(diffs)}, tenant_schema=None)
    return ConvergeReport(tuple(sorted(diffs)), activated, ended, diffs)


def _transition(ids: list[int], source: str, target: str, now: datetime.datetime) -> int:
    mitigations = list(
        Mitigation.objects.select_for_update().select_related("attack", "tenant").filter(pk__in=ids, state=source)
    )
    for mitigation in mitigations:
        mitigation.state = target
        if target == MitigationStateChoices.ACTIVE:
            mitigation.activated_at = mitigation.activated_at or now
            mitigation.last_error = ""
        else:
            mitigation.ended_at = now
            Action.objects.filter(mitigation=mitigation, status=ActionStatusChoices.DESIRED).update(
                status=ActionStatusChoices.RETIRED, retired_at=now
            )
            attack = mitigation.attack
            if attack.status == AttackStatusChoices.ACTIVE:
                attack.status, attack.ended_at = AttackStatusChoices.ENDED, now
                attack.save(update_fields=["status", "ended_at"])
        mitigation.save()
        event = "mitigation.active" if target == MitigationStateChoices.ACTIVE else "mitigation.ended"
        publish(event, mitigation_event(mitigation), tenant_schema=mitigation.tenant.schema_name)
        notify_on_commit(mitigation.tenant, "mitigation_active" if target == MitigationStateChoices.ACTIVE
                         else "mitigation_ended", mitigation_event(mitigation))
    return len(mitigations)


def record_convergence_failure(error: ConvergeError, *, final: bool) -> None:
    """Note a failed convergence on the mitigations waiting for it; after the last retry they are failed."""
    with transaction.atomic():
        waiting = Mitigation.objects.select_related("attack", "tenant").filter(state=MitigationStateChoices.APPLYING)
        for mitigation in waiting:
            mitigation.last_error = str(error)
            if final and not error.transient:
                mitigation.state = MitigationStateChoices.FAILED
            mitigation.save(update_fields=["last_error", "state", "updated_at"])
            publish("mitigation.error", {**mitigation_event(mitigation), "error": str(error)},
                    tenant_schema=mitigation.tenant.schema_name)
