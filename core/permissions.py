"""Who a request acts as, and what it may do: viewers read, operators act, admins manage."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from core.accounts.choices import UserRoleChoices
from core.accounts.models import ApiToken, User
from core.actors import Actor


def has_role(user: Any, role: str) -> bool:
    """Whether the request's user holds `role` or a stronger one; an anonymous user holds none."""
    return isinstance(user, User) and user.has_role(role)


def request_actor(request: Any) -> Actor:
    """The audit actor of a page or API request: a customer user carries its tenant's slug, an operator none, and
    a request authenticated by an API token names the token."""
    tenant = getattr(request, "tenant", None)
    slug = "" if tenant is None or tenant.schema_name == "public" else tenant.slug
    token = getattr(request, "auth", None)
    return Actor.for_user(request.user, tenant_slug=slug, token=token if isinstance(token, ApiToken) else None)


def token_allows(request: Request, scope: str) -> bool:
    token = request.auth
    return not isinstance(token, ApiToken) or scope in token.scopes


class RolePermission(BasePermission):
    """Reads need `read_role`, writes need `write_role`; API tokens also need the read or write scope."""

    read_role = UserRoleChoices.VIEWER
    write_role = UserRoleChoices.ADMIN

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not user or not user.is_authenticated:
            return False
        if request.method in SAFE_METHODS:
            return user.has_role(self.read_role) and token_allows(request, "read")
        return user.has_role(self.write_role) and token_allows(request, "write")


class OperatorWrites(RolePermission):
    write_role = UserRoleChoices.OPERATOR


class AdminWrites(RolePermission):
    write_role = UserRoleChoices.ADMIN
