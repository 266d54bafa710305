from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Accounts live in every schema: operators in the public schema, customer users in their tenant's schema.

    The schema split is the isolation: a login at acme's domain can only ever find acme's users.
    """

    name = "core.accounts"
    label = "accounts"
    verbose_name = "Accounts"
