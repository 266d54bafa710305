"""The global assignment: every attack gets one option so that the plan's total cost is low and no center is
planned beyond its headroom while any feasible assignment exists.

A generalised assignment with a convex load-balance term is NP-hard, so this is a heuristic: a greedy pass
(largest demand first, each attack taking its cheapest option that still fits), then local search with single
moves and ejection chains (move a smaller attack away to make room for one stuck in a worse option), within a
time budget. The benchmark checks it against an exact ILP on small instances.
"""

from __future__ import annotations

import time

import numpy as np

from mitigation.engine.problem import Problem

_EPS = 1e-9


class _State:
    """Loads and assignment during the search, as plain lists: indexing numpy per element is slower here."""

    def __init__(self, problem: Problem) -> None:
        f = problem.facts
        self.problem = problem
        self.n_c = problem.n_centers
        self.cost: list[list[float]] = problem.cost.tolist()
        self.order: list[list[int]] = np.argsort(problem.cost, axis=1, kind="stable").tolist()
        self.g: list[float] = problem.gbps.tolist()
        self.p: list[float] = problem.mpps.tolist()
        self.head_g: list[float] = f.head_g.tolist()
        self.head_p: list[float] = f.head_p.tolist()
        self.base_g: list[float] = f.base_g.tolist()
        self.base_p: list[float] = f.base_p.tolist()
        self.cap_g: list[float] = f.cap_g.tolist()
        self.cap_p: list[float] = f.cap_p.tolist()
        self.hot_u = problem.settings.hot_utilisation
        self.scale = 100.0 * problem.settings.hot_weight
        self.added_g = [0.0] * self.n_c
        self.added_p = [0.0] * self.n_c
        self.members: list[set[int]] = [set() for _ in range(self.n_c)]
        self.assignment = [problem.none] * len(self.g)

    def hot(self, c: int, add_g: float, add_p: float) -> float:
        """The load-balance penalty of center c at the given added load (same formula as Problem.hot)."""
        bg, bp, cg, cp, h = self.base_g[c], self.base_p[c], self.cap_g[c], self.cap_p[c], self.hot_u
        return self.scale * (max(0.0, (bg + add_g) / cg - h) - max(0.0, bg / cg - h)
                             + max(0.0, (bp + add_p) / cp - h) - max(0.0, bp / cp - h))

    def fits(self, c: int, add_g: float, add_p: float) -> bool:
        return add_g <= self.head_g[c] + _EPS and add_p <= self.head_p[c] + _EPS

    def marginal_in(self, a: int, o: int) -> float:
        """Cost of putting attack a (currently nowhere) on option o, inf when it does not fit."""
        if o >= self.n_c:
            return self.cost[a][o]
        ng, np_ = self.added_g[o] + self.g[a], self.added_p[o] + self.p[a]
        if not self.fits(o, ng, np_):
            return float("inf")
        return self.cost[a][o] + self.hot(o, ng, np_) - self.hot(o, self.added_g[o], self.added_p[o])

    def contribution(self, a: int) -> float:
        """What attack a adds to the total where it is now (its cost and its share of the hot penalty)."""
        o = self.assignment[a]
        if o >= self.n_c:
            return self.cost[a][o]
        return self.cost[a][o] + self.hot(o, self.added_g[o], self.added_p[o]) - self.hot(
            o, self.added_g[o] - self.g[a], self.added_p[o] - self.p[a])

    def place(self, a: int, o: int) -> float:
        """Move attack a to option o and return the change of the total cost (capacity is the caller's job)."""
        old = self.assignment[a]
        delta = self.cost[a][o] - self.cost[a][old]
        if old < self.n_c:
            g, p = self.added_g[old], self.added_p[old]
            self.added_g[old] = g - self.g[a]
            self.added_p[old] = p - self.p[a]
            delta += self.hot(old, g - self.g[a], p - self.p[a]) - self.hot(old, g, p)
            self.members[old].discard(a)
        self.assignment[a] = o
        if o < self.n_c:
            g, p = self.added_g[o], self.added_p[o]
            self.added_g[o] = g + self.g[a]
            self.added_p[o] = p + self.p[a]
            delta += self.hot(o, g + self.g[a], p + self.p[a]) - self.hot(o, g, p)
            self.members[o].add(a)
        return delta


def _greedy_order(problem: Problem) -> list[int]:
    """Attacks with the most to lose first (their fallback is RTBH or nothing), largest first within that.

    The loss is the regret between the cheapest center and the cheapest option without one, bucketed by order
    of magnitude so that size decides among attacks facing the same fallback.
    """
    n_c = problem.n_centers
    best_center = problem.cost[:, :n_c].min(axis=1, initial=np.inf)
    best_other = problem.cost[:, n_c:].min(axis=1)
    with np.errstate(invalid="ignore"):
        regret = np.where(np.isfinite(best_center), best_other - best_center, 0.0)
    bucket = np.floor(np.log10(np.maximum(np.nan_to_num(regret, posinf=1e12), 1.0)))
    size = problem.gbps / max(float(problem.facts.head_g.mean()) if n_c else 1.0, 1e-9)
    size = size + problem.mpps / max(float(problem.facts.head_p.mean()) if n_c else 1.0, 1e-9)
    order: list[int] = np.lexsort((-size, -bucket)).tolist()
    return order


def _greedy(state: _State, order: list[int]) -> None:
    """Each attack in turn (in `order`) takes its cheapest option that still fits."""
    for a in order:
        best, best_o = float("inf"), state.problem.none
        for o in state.order[a]:
            base = state.cost[a][o]
            if base >= best:
                break
            m = state.marginal_in(a, o)
            if m < best:
                best, best_o = m, o
        state.place(a, best_o)


def _single_moves(state: _State, deadline: float) -> bool:
    """Move attacks one at a time while that lowers the total; True when anything moved."""
    improved = False
    for a in range(len(state.g)):
        if time.perf_counter() > deadline:
            break
        cur = state.assignment[a]
        here = state.contribution(a)
        for o in state.order[a]:
            if state.cost[a][o] >= here - _EPS:
                break
            if o == cur:
                continue
            if state.marginal_in(a, o) < here - 1e-7:
                state.place(a, o)
                improved = True
                break
    return improved


def _pair_delta(state: _State, a: int, c: int, b: int, ob: int) -> float:
    """Total change if a moves to center c and b (now at c) moves to ob; inf when a center would overflow."""
    moves = ((a, c), (b, ob))
    touched = {x for x in (c, ob, state.assignment[a]) if x < state.n_c}
    new_g = {x: state.added_g[x] for x in touched}
    new_p = {x: state.added_p[x] for x in touched}
    delta = 0.0
    for attack, target in moves:
        old = state.assignment[attack]
        delta += state.cost[attack][target] - state.cost[attack][old]
        if old < state.n_c:
            new_g[old] -= state.g[attack]
            new_p[old] -= state.p[attack]
        if target < state.n_c:
            new_g[target] += state.g[attack]
            new_p[target] += state.p[attack]
    for x in new_g:
        if not state.fits(x, new_g[x], new_p[x]):
            return float("inf")
        delta += state.hot(x, new_g[x], new_p[x]) - state.hot(x, state.added_g[x], state.added_p[x])
    return delta


def _ejections(state: _State, deadline: float, tries: int = 6) -> bool:
    """Free room at a better center by moving one attack there to its next option; True when anything moved."""
    improved = False
    for a in range(len(state.g)):
        here = state.contribution(a)
        for c in state.order[a]:
            if state.cost[a][c] >= here - _EPS:
                break
            if c >= state.n_c or c == state.assignment[a]:
                continue
            if time.perf_counter() > deadline:
                return improved
            best, best_move = -1e-7, None
            for b in list(state.members[c]):
                for ob in state.order[b][:tries]:
                    if ob == c or state.cost[b][ob] == float("inf"):
                        continue
                    delta = _pair_delta(state, a, c, b, ob)
                    if delta < best:
                        best, best_move = delta, (b, ob)
            if best_move is not None:
                state.place(best_move[0], best_move[1])
                state.place(a, c)
                improved = True
                break
    return improved


def _best_fitting(state: _State, b: int, banned: int) -> int | None:
    """The option of attack b (now nowhere) with the lowest marginal cost that fits, other than `banned`."""
    best, best_o = float("inf"), None
    for o in state.order[b]:
        if state.cost[b][o] >= best:
            break
        if o != banned:
            m = state.marginal_in(b, o)
            if m < best:
                best, best_o = m, o
    return best_o


def _undo(state: _State, journal: list[tuple[int, int]]) -> None:
    """Put attacks back where the journal says they were, latest move first."""
    for attack, option in reversed(journal):
        state.place(attack, option)


def _make_room(state: _State, a: int, c: int, journal: list[tuple[int, int]], depth: int = 1) -> float | None:
    """Eject attacks from center c (cheapest per freed capacity first) until a fits there, then move a in.

    An ejected attack takes its best option that fits; when that is no center at all and `depth` allows, room is
    made for it at one of its other centers the same way (a chain of two moves: large items, such as attacks that
    share a diversion prefix, often need it). Records every move in `journal` (attack, previous option). Returns
    the change of the total cost, or None (and nothing changed) when a cannot be made to fit.
    """
    journal.append((a, state.assignment[a]))
    delta = state.place(a, state.problem.none)

    def ratio(b: int) -> float:
        freed = state.g[b] / max(state.head_g[c], 1e-9) + state.p[b] / max(state.head_p[c], 1e-9)
        return state.cost[b][c] / max(freed, 1e-9)

    for b in sorted(state.members[c], key=ratio):
        if state.fits(c, state.added_g[c] + state.g[a], state.added_p[c] + state.p[a]):
            break
        journal.append((b, c))
        delta += state.place(b, state.problem.none)
        target = _best_fitting(state, b, c)
        if target is None:
            break
        if target >= state.n_c and depth > 0:
            nested = _room_elsewhere(state, b, c, depth - 1)
            if nested is not None:
                change, moves = nested
                delta += change
                journal.extend(moves)
                continue
        delta += state.place(b, target)
    if state.fits(c, state.added_g[c] + state.g[a], state.added_p[c] + state.p[a]):
        return delta + state.place(a, c)
    _undo(state, journal)
    return None


def _room_elsewhere(state: _State, b: int, banned: int, depth: int, centers_tried: int = 3) -> tuple[float, list[
    tuple[int, int]]] | None:
    """Make room for attack b (now nowhere) at one of its cheapest centers other than `banned`: (change, moves)."""
    tried = 0
    for c in state.order[b]:
        if tried >= centers_tried or state.cost[b][c] == float("inf"):
            break
        if c >= state.n_c or c == banned:
            continue
        tried += 1
        moves: list[tuple[int, int]] = []
        change = _make_room(state, b, c, moves, depth)
        if change is not None:
            return change, moves
    return None


def _relocations(state: _State, deadline: float, centers_tried: int = 4) -> bool:
    """For attacks kept from a cheaper center by capacity, try to make room there; True when anything moved."""
    improved = False
    for a in range(len(state.g)):
        here = state.contribution(a)
        tried = 0
        for c in state.order[a]:
            if state.cost[a][c] >= here - _EPS or tried >= centers_tried:
                break
            if c >= state.n_c or c == state.assignment[a]:
                continue
            if time.perf_counter() > deadline:
                return improved
            tried += 1
            journal: list[tuple[int, int]] = []
            delta = _make_room(state, a, c, journal)
            if delta is None:
                continue
            if delta < -1e-7:
                improved = True
                break
            _undo(state, journal)
    return improved


def _search(problem: Problem, order: list[int], deadline: float) -> _State:
    """Greedy in `order`, then local search until nothing improves or the deadline."""
    state = _State(problem)
    _greedy(state, order)
    for _ in range(20):
        moved = _single_moves(state, deadline)
        moved = _ejections(state, deadline) or moved
        moved = _relocations(state, deadline) or moved
        if not moved or time.perf_counter() > deadline:
            break
    return state


def _rebuild(state: _State, stranded: int, deadline: float) -> bool:
    """Ruin and recreate around a stranded attack: empty the centers it could use and the centers their attacks
    could use, then put everything back largest first, each into its cheapest option that fits. Kept only when
    the total falls; True when it did.

    Packing large items (attacks that share a diversion prefix, say) sometimes needs several attacks to move at
    once, some of them to a worse option, which single moves and room-making chains do not find.
    """
    n_c, inf = state.n_c, float("inf")
    region = {c for c in range(n_c) if state.cost[stranded][c] < inf}
    for c in list(region):
        for b in state.members[c]:
            region.update(k for k in range(n_c) if state.cost[b][k] < inf)
    ruined = sorted({stranded, *(b for c in region for b in state.members[c])},
                    key=lambda b: -(state.g[b] / max(state.head_g[0], 1e-9) + state.p[b] / max(state.head_p[0], 1e-9)))
    journal = [(b, state.assignment[b]) for b in ruined]
    delta = sum(state.place(b, state.problem.none) for b in ruined)
    for b in ruined:
        if time.perf_counter() > deadline:
            break
        best, best_o = inf, state.problem.none
        for o in state.order[b]:
            if state.cost[b][o] >= best:
                break
            m = state.marginal_in(b, o)
            if m < best:
                best, best_o = m, o
        delta += state.place(b, best_o)
    if delta < -1e-7:
        return True
    _undo(state, journal)
    return False


def solve(problem: Problem) -> list[int]:
    """The chosen option of each attack (see Problem for the encoding).

    A second start, largest demand first, runs when the first leaves an attack without a center that some
    center could take on its own and time remains: packing large items first often finds room the
    regret-first order does not. The cheaper of the two plans wins, and each attack still stranded gets a
    ruin-and-recreate of the centers around it.
    """
    start = time.perf_counter()
    budget = problem.settings.search_budget_ms / 1000.0
    best = _search(problem, _greedy_order(problem), start + budget)
    if time.perf_counter() - start < budget / 2 and _stranded(best):
        other = _search(problem, _size_order(problem), start + budget)
        if problem.total_cost(other.assignment) < problem.total_cost(best.assignment) - 1e-7:
            best = other
    # Stranded attacks are the costliest outcome, so their repair may use a second budget.
    for a in _stranded(best):
        if time.perf_counter() - start > 2 * budget:
            break
        if _rebuild(best, a, start + 2 * budget):
            _single_moves(best, start + 2 * budget)
    return list(best.assignment)


def _stranded(state: _State) -> list[int]:
    """Attacks left in a worse option than a center that alone could take them, the costliest loss first."""
    loss = {}
    for a, o in enumerate(state.assignment):
        if o >= state.n_c:
            cheapest = min(state.cost[a][: state.n_c], default=float("inf"))
            if cheapest < state.cost[a][o]:
                loss[a] = state.cost[a][o] - cheapest
    return sorted(loss, key=lambda a: -loss[a])


def _size_order(problem: Problem) -> list[int]:
    """Largest demand first (relative to the average headroom)."""
    n_c = problem.n_centers
    size = problem.gbps / max(float(problem.facts.head_g.mean()) if n_c else 1.0, 1e-9)
    size = size + problem.mpps / max(float(problem.facts.head_p.mean()) if n_c else 1.0, 1e-9)
    order: list[int] = np.argsort(-size, kind="stable").tolist()
    return order
