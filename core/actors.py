"""Who does something: a person, an API token, the engine, or the system itself. Every audit row names one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.accounts.models import ApiToken, User


@dataclass(frozen=True)
class Actor:
    kind: str
    name: str
    tenant_slug: str = ""
    role: str = ""

    @classmethod
    def for_user(cls, user: User, *, tenant_slug: str = "", token: ApiToken | None = None) -> Actor:
        """An actor for a logged-in user; `tenant_slug` empty means a provider operator."""
        if token is not None:
            return cls("token", f"{user.username} (token {token.key_prefix})", tenant_slug, user.role)
        return cls("user", user.username, tenant_slug, user.role)

    @property
    def is_operator(self) -> bool:
        return self.kind in {"user", "token"} and not self.tenant_slug

    def __str__(self) -> str:
        where = f"@{self.tenant_slug}" if self.tenant_slug else ""
        return f"{self.kind}:{self.name}{where}"


ENGINE = Actor("engine", "engine")
SYSTEM = Actor("system", "system")
# The engine acting on the closed loop's evidence: escalations, holds and returning attacks.
CLOSED_LOOP = Actor("engine", "engine (closed loop)")
