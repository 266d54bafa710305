"""Element locks against the real Redis: a busy element is left to its holder, a working holder keeps its lock,
and a dead holder's lock frees itself."""

from __future__ import annotations

import time
import uuid

import pytest

from core.redis import new_redis_client
from mitigation.services import network


@pytest.fixture
def names() -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"router:locktest-{run}-a", f"router:locktest-{run}-b"]


def test_an_element_another_job_holds_is_left_out_and_the_rest_are_held(names: list[str]) -> None:
    with network.element_locks(names[:1], required=True) as first:
        assert first == {names[0]}
        with network.element_locks(names, required=True, wait_s=0.2) as second:
            assert second == {names[1]}
    with network.element_locks(names, required=True, wait_s=0.2) as after:
        assert after == set(names)


def test_a_holder_at_work_keeps_its_lock_past_its_time_to_live(names: list[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "LOCK_TTL_S", 1)
    client = new_redis_client()
    with network.element_locks(names[:1], required=True) as held:
        assert held == {names[0]}
        time.sleep(2.5)  # a long push: two and a half times the lock's time to live
        assert client.exists(f"sluice:lock:{names[0]}"), "the lock was renewed while its holder worked"
        with network.element_locks(names[:1], required=True, wait_s=0.2) as other:
            assert other == set()
    assert not client.exists(f"sluice:lock:{names[0]}"), "released at the end"


def test_a_dead_holders_lock_frees_itself(names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "LOCK_TTL_S", 1)
    # A worker killed mid-push: it took the lock and will never release or renew it.
    assert new_redis_client().lock(f"sluice:lock:{names[0]}", timeout=1).acquire(blocking=False)
    with network.element_locks(names[:1], required=True, wait_s=5) as held:
        assert held == {names[0]}
