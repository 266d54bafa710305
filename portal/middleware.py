"""ASGI middleware that does for websockets what django-tenants' TenantMainMiddleware does for HTTP.

It resolves the tenant from the Host header and the user from the session cookie, both inside that tenant's
schema and inside one synchronous call: Channels runs sync database code on a shared thread, so setting a schema
in one call and querying in another could interleave with another connection's tenant.
"""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.utils.crypto import constant_time_compare
from django_tenants.utils import remove_www, schema_context

from core.accounts.sessions import idle_expired
from core.accounts.two_factor import session_passed_second_factor
from tenants.models import Domain, Tenant

Scope = dict[str, Any]


def host_from_scope(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return remove_www(value.decode("latin-1").split(":")[0].lower())
    return ""


def session_key_from_scope(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookie = SimpleCookie()
            cookie.load(value.decode("latin-1"))
            morsel = cookie.get(settings.SESSION_COOKIE_NAME)
            return morsel.value if morsel else None
    return None


def session_still_stands(host: str, session_key: str | None) -> bool:
    """Whether a websocket's session still signs its user in: not signed out, not expired, not idle too long."""
    _, user = resolve_tenant_and_user(host, session_key)
    return bool(user.is_authenticated)


def resolve_tenant_and_user(host: str, session_key: str | None) -> tuple[Tenant | None, Any]:
    """The tenant that owns `host` and the user of `session_key` in that tenant's schema (or AnonymousUser)."""
    connection.set_schema_to_public()  # type: ignore[attr-defined]  # django-tenants adds it to the connection
    domain = Domain.objects.select_related("tenant").filter(domain=host).first()
    if domain is None:
        return None, AnonymousUser()
    tenant = domain.tenant
    with schema_context(tenant.schema_name):
        return tenant, _user_for_session(session_key)


def _user_for_session(session_key: str | None) -> Any:
    if not session_key:
        return AnonymousUser()
    session = SessionStore(session_key=session_key)
    if idle_expired(session):
        return AnonymousUser()  # idle beyond its limit: the next page request signs it out
    user_id = session.get(SESSION_KEY)
    backend_path = session.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return AnonymousUser()
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return AnonymousUser()
    if not session_passed_second_factor(user, session):
        return AnonymousUser()  # a session that skipped the second factor opens no live view
    return user


class TenantWebsocketMiddleware:
    """Puts `tenant` and `user` into the websocket scope; an unknown host is refused before the consumer runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> Any:
        tenant, user = await database_sync_to_async(resolve_tenant_and_user)(
            host_from_scope(scope), session_key_from_scope(scope)
        )
        if tenant is None:
            await send({"type": "websocket.close", "code": 4404})
            return None
        if not tenant.is_public and tenant.status != "active":
            await send({"type": "websocket.close", "code": 4403})  # a suspended tenant's live view is closed too
            return None
        return await self.inner({**scope, "tenant": tenant, "user": user,
                                 "session_key": session_key_from_scope(scope)}, receive, send)
