"""Fixtures every test may use: the committed tenant world, tenant schemas, clients at a tenant's host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test import Client

from tests.support.world import World, build_world


@pytest.fixture(scope="session")
def world(django_db_setup: None, django_db_blocker: pytest.FixtureRequest) -> World:
    with django_db_blocker.unblock():
        return build_world()


@pytest.fixture(autouse=True)
def _public_schema_after_each_test() -> Iterator[None]:
    yield
    connection.set_schema_to_public()  # only resets the search path to use; no query is sent


@pytest.fixture
def client_for() -> object:
    """Make a Django test client that talks to a given host, as a browser at that domain would."""

    def make(host: str) -> Client:
        return Client(HTTP_HOST=host)

    return make
