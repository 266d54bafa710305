"""Fixtures every test may use: the committed tenant world, tenant schemas, clients at a tenant's host."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from tests.support.world import World, build_world


@pytest.fixture(scope="session")
def django_db_setup(
    request: pytest.FixtureRequest,
    django_test_environment: None,
    django_db_blocker: Any,
    django_db_keepdb: bool,
    django_db_createdb: bool,
    django_db_modify_db_settings: None,
) -> Iterator[None]:
    """pytest-django's setup, except that the test database is always made.

    pytest-django makes it only when some collected test carries the django_db mark; tests that cross process
    boundaries (real workers and servers) commit on purpose and carry no mark, and would otherwise run against the
    development database.
    """
    from django.test.utils import setup_databases, teardown_databases

    verbosity = request.config.option.verbose
    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=verbosity, interactive=False, aliases={"default"},
            keepdb=django_db_keepdb and not django_db_createdb,
        )
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            _end_other_sessions()
            teardown_databases(config, verbosity=verbosity)


def _end_other_sessions() -> None:
    """Sessions left by helper threads and child processes of the tests would keep the test database alive."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def world(django_db_setup: None, django_db_blocker: Any) -> World:
    with django_db_blocker.unblock():
        assert connection.settings_dict["NAME"].startswith("test_"), "tests must never touch a real database"
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
