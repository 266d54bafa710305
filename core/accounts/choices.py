from django.db import models


class UserRoleChoices(models.TextChoices):
    """Roles for customer users (in a tenant's schema) and operators (in the public schema) alike.

    viewer sees; operator also approves, rejects and asks for withdrawals; admin also manages users, tokens,
    prefixes and the profile (customers) or the inventory and tenants (operators).
    """

    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"


class ApiTokenScopeChoices(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    SIGNALS = "signals", "Post attack signals"
    TELEMETRY = "telemetry", "Post telemetry (scrubbing-center load)"
