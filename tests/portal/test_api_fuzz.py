"""Every operation of the API, at a tenant's domain and at the provider's, answers fuzzed input without a 5xx.

Schemathesis generates requests from the OpenAPI schema each domain serves at /api/v1/schema/ and sends them to
the project's WSGI application in this process, so that every example runs inside a savepoint that is rolled back:
fuzzed writes (tokens, users, prefixes, signals, the kill switch) never reach the committed world the rest of the
session shares, and nothing is queued for a worker (on_commit never fires). The only check is not_a_server_error:
4xx answers to nonsense are the API doing its job.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, connection, transaction
from django_tenants.utils import schema_context
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.openapi import from_dict, from_wsgi

from core.accounts.models import ApiToken, User
from tests.support.world import World

pytestmark = pytest.mark.django_db

# A bound that keeps the whole file within ~3 minutes on two shared cores, yet reaches every operation.
EXAMPLES_PER_OPERATION = 8
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)
SCOPES = ["read", "write", "signals"]


@pytest.fixture
def _keep_test_connection() -> Iterator[None]:
    """Requests here run inside the test's transaction: Django must not close the connection after each one.

    Django's own test Client disconnects the same handlers; schemathesis calls the WSGI handler directly.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _token_for(schema_name: str, username: str) -> str:
    with schema_context(schema_name):
        key, prefix, digest = ApiToken.generate_key()
        ApiToken.objects.create(user=User.objects.get(username=username), name="fuzz", key_prefix=prefix,
                                key_hash=digest, scopes=SCOPES)
    return key


def _schema_at(host: str) -> Any:
    schema = from_wsgi("/api/v1/schema/", get_wsgi_application(), headers={"Host": host})
    connection.set_schema_to_public()
    return schema


@pytest.fixture
def tenant_token(world: World) -> str:
    """A token of acme's admin with every scope, so that fuzzing reaches past authorisation."""
    return _token_for(world.acme.schema_name, "admin")


@pytest.fixture
def provider_token(world: World) -> str:
    """A token of the SOC operator with every scope."""
    return _token_for("public", "soc")


@pytest.fixture
def tenant_api(world: World, _keep_test_connection: None) -> Any:
    """Acme's API: the customer endpoints and the tenant-scoped mitigation endpoints."""
    return _schema_at("acme.localhost")


@pytest.fixture
def provider_api(world: World, _keep_test_connection: None) -> Any:
    """The provider's API: tenants, inventory, signals, every tenant's mitigations.

    Generated from the public urlconf rather than fetched: the schema served at the provider's domain describes
    the tenant urlconf (see test_the_provider_domain_serves_the_provider_schema), which would leave the provider's
    own operations unfuzzed.
    """
    generated = SchemaGenerator(urlconf=django_settings.PUBLIC_SCHEMA_URLCONF).get_schema(request=None, public=True)
    schema = from_dict(json.loads(OpenApiJsonRenderer().render(generated)))
    schema.app = get_wsgi_application()
    return schema


tenant_schema = schemathesis.pytest.from_fixture("tenant_api")
provider_schema = schemathesis.pytest.from_fixture("provider_api")


def call_in_savepoint(case: schemathesis.Case, host: str, token: str) -> None:
    """One example, rolled back whatever it did; the Host header picks the domain's tenant and urlconf."""
    headers = {"Host": host, "Authorization": f"Token {token}"}
    with transaction.atomic():
        response = case.call(headers=headers)
        transaction.set_rollback(True)
    connection.set_schema_to_public()
    case.validate_response(response, checks=[not_a_server_error], headers=headers)


@tenant_schema.parametrize()
@FUZZ_SETTINGS
def test_tenant_api_never_answers_a_server_error(case: schemathesis.Case, tenant_token: str) -> None:
    call_in_savepoint(case, "acme.localhost", tenant_token)


@provider_schema.parametrize()
@FUZZ_SETTINGS
def test_provider_api_never_answers_a_server_error(case: schemathesis.Case, provider_token: str) -> None:
    call_in_savepoint(case, "localhost", provider_token)


def test_the_provider_domain_serves_the_provider_schema(world: World, _keep_test_connection: None) -> None:
    paths = set(_schema_at("localhost").raw_schema["paths"])
    assert "/api/v1/tenants/" in paths and "/api/v1/centers/" in paths
    assert "/api/v1/profile/" not in paths
