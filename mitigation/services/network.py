"""Convergence: make every network element carry exactly the desired routes held in PostgreSQL.

Apply, verify, withdraw and reconcile are this one path. The desired state is computed from the database (live
mitigations' desired actions, nothing while the kill switch is on), then pushed to each element on its own: a
router stages a commit confirmed and confirms it only once it verified (all or none within that router); a speaker
syncs its announcements and shows them. One element's failure is marked on that element (devices.health, with
backoff) and never rolls back, delays or flaps another: the others reach the desired state and stay there, and
the failed one is retried until it converges, including removing what it should no longer carry.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import redis
from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.actors import ENGINE, Actor
from core.audit import record_audit
from core.events import publish
from core.redis import new_redis_client
from devices import health
from devices.drivers.base import (
    ConfigDriver,
    DeviceIntent,
    DriverError,
    DriverTimeoutError,
    FlowSpecRule,
    UnicastRoute,
)
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
from mitigation.services import states
from mitigation.services.gate import retire_unsafe
from mitigation.services.states import mitigation_event
from tenants.notifications import notify_on_commit

logger = logging.getLogger(__name__)

# Mitigations whose actions the network should carry.
CARRIED_STATES = (MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE)
EDGE_TARGET = "edge"
CONFIRM_MINUTES = 2
# An element lock lives this long unless its holder renews it (every third of it, while it works): short, so a
# worker killed mid-push holds its elements up for a few seconds, not for a push timeout.
LOCK_TTL_S = 4
# How long a convergence waits, in all, for elements another job holds before leaving them to that job.
LOCK_WAIT_S = 10


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
    failed: dict[str, str] = field(default_factory=dict)


class ConvergeError(Exception):
    """Convergence could not run at all (no element locks). `transient` says whether a retry may help."""

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


def desired_state(*, actions: list[int] | None = None, routers: bool = True) -> DesiredState:
    """Read the desired network from the database in a handful of queries.

    `actions` narrows it to those actions (what a planning run just added: their routes, checked by the same gate
    against everything else in use); `routers=False` leaves the routers' intents out (a speakers-only read).
    """
    state = DesiredState()
    speakers = list(BgpSpeaker.objects.filter(enabled=True).prefetch_related("neighbors"))
    edge_routers = list(Router.objects.filter(enabled=True, role="edge").order_by("name")) if routers else []
    flow_by_bgp = {
        n.router_id for s in speakers for n in s.neighbors.all() if n.router_id and any("flow" in f for f in n.families)
    }
    rows = Mitigation.objects.filter(state__in=[*CARRIED_STATES, MitigationStateChoices.WITHDRAWING])
    for mitigation_id, mitigation_state in rows.values_list("id", "state"):
        target = state.withdrawing if mitigation_state == MitigationStateChoices.WITHDRAWING else state.applying
        if mitigation_state != MitigationStateChoices.ACTIVE:
            target.append(mitigation_id)
    carried: list[Action] = []
    if not ControlSwitch.current().panic:
        wanted = Action.objects.filter(status=ActionStatusChoices.DESIRED, mitigation__state__in=CARRIED_STATES)
        if actions is not None:
            wanted = wanted.filter(pk__in=actions)
        # Safety once more, now: what no longer passes is retired here and so withdrawn by this very push.
        carried = retire_unsafe(list(wanted.select_related("mitigation__tenant")), among_others=actions is not None)
    peer_routers = dict(UpstreamPeer.objects.values_list("id", "router_id"))
    for speaker in speakers:
        state.speakers[speaker.pk] = (speaker, set())
    flow_rules: list[tuple[Action, FlowSpecRule]] = []
    diversions: list[tuple[Action, UnicastRoute]] = []
    for action in carried:
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
    for router in edge_routers:
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


def _static(route: UnicastRoute) -> UnicastRoute:
    """A diversion as a router holds it: a static route to the center's next hop, no BGP attributes."""
    return UnicastRoute(prefix=route.prefix, next_hop=route.next_hop)


@contextmanager
def element_locks(names: list[str], *, required: bool, wait_s: float = LOCK_WAIT_S) -> Iterator[set[str]]:
    """Per-element Redis locks, taken in a fixed order; yields the names held.

    An element whose lock another job holds beyond `wait_s` (in all) is left out rather than waited for: that job is
    converging it, and the next cycle brings it to whatever is wanted then. Held locks are renewed by a background
    thread every third of their time to live, so a long push keeps its lock, and a holder that died (a worker
    killed mid-push) frees its elements within LOCK_TTL_S. When Redis cannot be reached and the caller does not
    require locks (the kill switch), every element is treated as held.
    """
    with ExitStack() as stack:
        held: set[str] = set()
        try:
            client = new_redis_client(socket_connect_timeout=2, socket_timeout=5)
            deadline = time.monotonic() + wait_s
            locks = []
            for name in sorted(names):
                lock = client.lock(f"sluice:lock:{name}", timeout=LOCK_TTL_S, thread_local=False,
                                   blocking_timeout=max(0.01, deadline - time.monotonic()))
                if not lock.acquire():
                    logger.info("%s is busy with another job; left to it this cycle", name)
                    continue
                stack.callback(_release, lock)
                locks.append(lock)
                held.add(name)
            stack.enter_context(_renewed(locks))
        except (redis.ConnectionError, redis.TimeoutError) as error:
            if required:
                raise ConvergeError(f"cannot take element locks: {error}", transient=True) from error
            logger.warning("converging without element locks: %s", error)
            held = set(names)
        yield held


@contextmanager
def _renewed(locks: list[redis.lock.Lock]) -> Iterator[None]:
    """Keep `locks` alive while the block runs (their holder is working), and stop renewing them when it ends."""
    if not locks:
        yield
        return
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LOCK_TTL_S / 3):
            for lock in locks:
                try:
                    lock.reacquire()
                except (redis.RedisError, OSError) as error:
                    logger.warning("could not renew %s: %s", lock.name, error)

    thread = threading.Thread(target=renew, name="element-lock-renewal", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


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
    """Push the desired state to every element that is due, each on its own, then record what each carries.

    Elements in backoff after a failure are skipped until their retry time. Raises ConvergeError only when the
    element locks cannot be taken at all. Side effects: device commits, speaker announcements, element health,
    Deployment rows, mitigation state changes, events and audit.
    """
    all_routers = [f"router:{n}" for n in Router.objects.filter(enabled=True, role="edge").values_list("name", flat=True)]
    speakers = [f"speaker:{n}" for n in BgpSpeaker.objects.filter(enabled=True).values_list("name", flat=True)]
    _announce_ahead(speakers, required=require_locks)
    routers = sorted(health.due(all_routers))  # may probe unreachable routers: after the speakers announced
    with element_locks(routers, required=require_locks) as held:
        # Read the desired state only once the locks are held: a run that waited pushes what is wanted now.
        desired = desired_state()
        outcome = _push(desired, speakers, held, required=require_locks)
    outcome.busy.update(name for name in routers if name not in held)
    outcome.skipped.update(name for name in all_routers if name not in routers)
    return _record(desired, outcome, acting_user)


def announce_ahead(actions: list[int] | None = None) -> None:
    """Announce new desired routes on every speaker now; called by planning as soon as its plan commits.

    `actions`: only these actions' routes (the ones a plan just added), so the cost follows the change, not the
    number of live mitigations.
    """
    if actions is not None and not actions:
        return
    speakers = [f"speaker:{n}" for n in BgpSpeaker.objects.filter(enabled=True).values_list("name", flat=True)]
    try:
        _announce_ahead(speakers, required=True, actions=actions)
    except (ConvergeError, DriverError) as error:
        logger.warning("announcing ahead skipped: %s", error)


def _announce_ahead(speakers: list[str], *, required: bool, actions: list[int] | None = None) -> None:
    """Announce new desired routes on the speakers at once, without waiting for the routers' slower commits.

    Only additions: withdrawals wait for the full convergence, so a move between centers never leaves a gap. What
    is announced here stays announced whatever a router does (no announce/withdraw cycles while a router is
    broken). Only the speakers' locks are held, and only for this, so a burst of attacks is announced while another
    job still commits the routers.
    """
    with element_locks(speakers, required=required, wait_s=2) as held:
        for speaker, routes in desired_state(actions=actions, routers=False).speakers.values():
            if f"speaker:{speaker.name}" not in held:
                continue
            try:
                client = speaker_client(speaker)
                new = routes - client.announced()
                if new:
                    client.apply(announce=sorted(new, key=repr))
            except DriverError as error:
                logger.warning("speaker:%s: announcing ahead failed (%s); the full convergence retries", speaker.name,
                               error)


@dataclass
class PushOutcome:
    """What each element did with its push: changed (with its diff), failed (with the error), skipped (in backoff),
    or busy (another job held it: neither converged nor broken, its deployments stay as they were)."""

    diffs: dict[str, str] = field(default_factory=dict)
    ok: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)


def _push(desired: DesiredState, speakers: list[str], due: set[str], *, required: bool) -> PushOutcome:
    """Each element on its own: routers stage and confirm in parallel, speakers sync; failures stay local."""
    outcome = PushOutcome()
    targets = [(router, intent) for router, intent in desired.routers.values() if f"router:{router.name}" in due]
    timeout = float(settings.SLUICE_PUSH_TIMEOUT_S)
    # Not a `with` block: leaving one waits for every thread, and a router that hangs must not hold the others.
    pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(targets))))
    try:
        futures = {f"router:{router.name}": pool.submit(_in_pool_thread, _apply_router, router, intent)
                   for router, intent in targets}
        deadline = time.monotonic() + timeout
        with element_locks(speakers, required=required) as held:
            # The speakers' routes are read again under their locks: a plan committed since this run read the
            # desired state has already been announced ahead (under the same locks), and syncing to the older
            # reading would withdraw it and announce it again a moment later (a flap, found by bench/chaos.py).
            for speaker, routes in (desired_state(routers=False).speakers if held else desired.speakers).values():
                name = f"speaker:{speaker.name}"
                if name not in held:
                    outcome.busy.add(name)
                    continue
                try:
                    client = speaker_client(speaker)
                    added, removed = client.sync(routes)
                    if not routes <= client.announced():
                        raise DriverError(f"{name} does not show every desired route after announcing")
                except DriverError as error:
                    _failed(outcome, name, error)
                    continue
                _succeeded(outcome, name, f"+{added} -{removed} routes" if added or removed else "")
        for name, future in futures.items():
            try:
                diff = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                # Its thread goes on alone: it rolls back (or, if the router wakes, confirms what was wanted then);
                # either way the next cycle converges it, and the router's own lock keeps pushes from crossing.
                _failed(outcome, name, DriverTimeoutError(f"{name} did not finish its push within {timeout:g} s"))
                continue
            except DriverError as error:
                _failed(outcome, name, error)
                continue
            _succeeded(outcome, name, diff)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    health.record_push_successes(outcome.ok)
    return outcome


def _in_pool_thread(work: Callable[..., str], *args: object) -> str:
    """Run `work` on a pool thread and give back the database connection it may have taken (its pool is bounded)."""
    try:
        return work(*args)
    finally:
        db_connection.close()


def _apply_router(router: Router, intent: DeviceIntent) -> str:
    """Stage, verify and confirm one router (all or none on that router); its diff, empty when nothing changed.

    A failure before the confirmation leaves the router as it was: the driver aborts what it staged, and an
    unconfirmed commit confirmed rolls back on the router by itself if even the abort cannot reach it.
    """
    driver, diff, pending = _stage(router, intent)
    try:
        try:
            driver.confirm()
        except DriverError:
            try:
                driver.abort()
            except DriverError as error:
                logger.error("router:%s: abort failed (%s); its commit confirmed rolls back by itself",
                             router.name, error)
            raise
    finally:
        driver.close()
    return diff if pending else ""


def _succeeded(outcome: PushOutcome, name: str, diff: str) -> None:
    outcome.ok.add(name)
    if diff:
        outcome.diffs[name] = diff


def _failed(outcome: PushOutcome, name: str, error: DriverError) -> None:
    outcome.failed[name] = str(error)
    row = health.record_push_failure(name, error)
    logger.warning("%s failed its push (%s); retried from %s, the other elements go on", name, error,
                   row.next_retry_at)


def _record(desired: DesiredState, outcome: PushOutcome, acting_user: Actor) -> ConvergeReport:
    """Deployments as each element now really carries them; lifecycle changes the healthy elements allow.

    Rows of an element that failed or was skipped are left as they were: they still say what it carries, so
    recovery (and `sluice_panic --status`) knows what to remove there.
    """
    now = timezone.now()
    converged = outcome.ok
    with transaction.atomic():
        Deployment.objects.bulk_create(
            [
                Deployment(action_id=action_id, element=element, state=DeploymentStateChoices.PRESENT, verified_at=now)
                for action_id, elements in desired.placements.items()
                for element in elements if element in converged
            ],
            update_conflicts=True,
            unique_fields=["action", "element"],
            update_fields=["state", "verified_at", "detail"],
        )
        present = Deployment.objects.filter(state=DeploymentStateChoices.PRESENT, element__in=converged)
        stale = [pk for pk, action_id, element in present.values_list("pk", "action_id", "element")
                 if element not in desired.placements.get(action_id, ())]
        Deployment.objects.filter(pk__in=stale).update(state=DeploymentStateChoices.ABSENT, verified_at=now)
        broken = {**outcome.failed, **{name: "skipped until its retry time" for name in outcome.skipped}}
        applying = _carried(desired, converged)
        activated = _transition(applying, MitigationStateChoices.APPLYING, MitigationStateChoices.ACTIVE, now)
        ended = _transition(desired.withdrawing, MitigationStateChoices.WITHDRAWING, MitigationStateChoices.ENDED, now)
        _note_degraded(desired, broken)
        if outcome.diffs:
            record_audit(acting_user, "network.converge", reason="desired state pushed", diff=outcome.diffs)
            publish("network.converged", {"elements": sorted(outcome.diffs)}, tenant_schema=None)
    return ConvergeReport(tuple(sorted(outcome.diffs)), activated, ended, outcome.diffs,
                          failed=dict(sorted(broken.items())))


def _carried(desired: DesiredState, converged: set[str]) -> list[int]:
    """The applying mitigations whose every desired action is on at least one element that converged."""
    missing: set[int] = set()
    actions = Action.objects.filter(mitigation_id__in=desired.applying, status=ActionStatusChoices.DESIRED)
    for action_id, mitigation_id in actions.values_list("id", "mitigation_id"):
        if not desired.placements.get(action_id, set()) & converged:
            missing.add(mitigation_id)
    return [pk for pk in desired.applying if pk not in missing]


def _note_degraded(desired: DesiredState, broken: dict[str, str]) -> None:
    """Say on each live mitigation which of its elements it runs without ("active, degraded: ...")."""
    by_mitigation: dict[int, set[str]] = defaultdict(set)
    placed_on_broken = [pk for pk, elements in desired.placements.items() if elements & broken.keys()]
    for action_id, mitigation_id in Action.objects.filter(id__in=placed_on_broken).values_list("id", "mitigation_id"):
        by_mitigation[mitigation_id].update(e for e in desired.placements[action_id] if e in broken)
    # Only the mitigations whose note may change: those missing an element now, and those that said so before.
    live = Mitigation.objects.filter(state__in=CARRIED_STATES).filter(
        Q(pk__in=list(by_mitigation)) | Q(last_error__startswith="degraded: ")).select_related("tenant")
    health_rows = health.health_of(broken) if by_mitigation else {}
    for mitigation in live:
        missing = sorted(by_mitigation.get(mitigation.pk, ()))
        note = ""
        if missing:
            parts = []
            for element in missing:
                row = health_rows.get(element)
                since = timezone.localtime(row.since).strftime("%H:%M") if row else "now"
                parts.append(f"{element.split(':', 1)[1]} {row.state if row else 'failed'} since {since}")
            note = "degraded: " + ", ".join(parts)
        if mitigation.last_error != note and (note or mitigation.last_error.startswith("degraded: ")):
            mitigation.last_error = note
            mitigation.save(update_fields=["last_error", "updated_at"])
            publish("mitigation.degraded" if note else "mitigation.restored",
                    {**mitigation_event(mitigation), "detail": note}, tenant_schema=mitigation.tenant.schema_name)


def _transition(ids: list[int], source: str, target: str, now: datetime.datetime) -> int:
    """Mitigations still in `source` (a withdraw may have moved one meanwhile) moved to `target` by the network."""
    changes = states.Transitions(ENGINE, now)
    mitigations = states.locked(ids, state=source)
    for mitigation in mitigations:
        changes.move(mitigation, target, action="mitigation.converged",
                     reason="the network carries it" if target == MitigationStateChoices.ACTIVE
                     else "the network no longer carries it")
        if target == MitigationStateChoices.ACTIVE:
            mitigation.last_error = ""
        else:
            Action.objects.filter(mitigation=mitigation, status=ActionStatusChoices.DESIRED).update(
                status=ActionStatusChoices.RETIRED, retired_at=now
            )
            attack = mitigation.attack
            if attack.status == AttackStatusChoices.ACTIVE:
                attack.status, attack.ended_at = AttackStatusChoices.ENDED, now
                attack.save(update_fields=["status", "ended_at"])
        mitigation.save()
        notify_on_commit(mitigation.tenant, "mitigation_active" if target == MitigationStateChoices.ACTIVE
                         else "mitigation_ended", mitigation_event(mitigation))
    changes.record()
    return len(mitigations)


def record_convergence_failure(error: ConvergeError, *, final: bool) -> None:
    """Note a failed convergence on the mitigations waiting for it; after the last retry they are failed."""
    with transaction.atomic():
        changes = states.Transitions(ENGINE)
        for mitigation in states.locked(state=MitigationStateChoices.APPLYING):
            mitigation.last_error = str(error)
            if final and not error.transient:
                changes.move(mitigation, MitigationStateChoices.FAILED, action="mitigation.failed", reason=str(error))
            mitigation.save(update_fields=["last_error", "state", "ended_at", "updated_at"])
            publish("mitigation.error", {**mitigation_event(mitigation), "error": str(error)},
                    tenant_schema=mitigation.tenant.schema_name)
        changes.record()
