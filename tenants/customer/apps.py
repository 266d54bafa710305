from django.apps import AppConfig


class CustomerConfig(AppConfig):
    """Models that live in each tenant's own schema: what the customer owns and edits."""

    name = "tenants.customer"
    label = "customer"
    verbose_name = "Customer"
