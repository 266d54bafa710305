"""`manage.py rotate_credentials_key`: re-encrypt every stored secret under the first SLUICE_CREDENTIALS_KEY.

Rotation without downtime: set SLUICE_CREDENTIALS_KEY="NEW,OLD" on every process (both keys decrypt, the new one
encrypts), run this command, then drop OLD. Secrets live in the public schema (routers, operators) and in every
tenant schema (customer users, notification channels); each row is rewritten in its own schema, and the command
can be run again safely (a row already under the new key is rewritten the same way).
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, models, transaction
from django_tenants.utils import get_public_schema_name, schema_context

from core.actors import Actor
from core.audit import record_audit
from core.crypto import EncryptedTextField, rotate
from tenants.models import Tenant


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every model with encrypted columns, and the names of those columns."""
    found = []
    for model in apps.get_models():
        columns = [f.column for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if columns:
            found.append((model, columns))
    return found


def rotate_schema(schema: str) -> int:
    """Re-encrypt the secrets of the tables present in `schema`; the number of values rewritten.

    Works on the stored tokens with plain SQL, so the field's own encryption never runs twice on a value.
    """
    rewritten = 0
    with schema_context(schema), transaction.atomic(), connection.cursor() as cursor:
        tables = set(connection.introspection.table_names())
        for model, columns in encrypted_fields():
            table = model._meta.db_table
            if table not in tables:
                continue
            quote = connection.ops.quote_name
            pk = quote(model._meta.pk.column if model._meta.pk else "id")
            for column_name in columns:
                column = quote(column_name)
                cursor.execute(f"SELECT {pk}, {column} FROM {quote(table)} WHERE {column} <> ''")
                for key, token in cursor.fetchall():
                    cursor.execute(f"UPDATE {quote(table)} SET {column} = %s WHERE {pk} = %s", [rotate(token), key])
                    rewritten += 1
    return rewritten


class Command(BaseCommand):
    help = "Re-encrypt every stored secret under the first key of SLUICE_CREDENTIALS_KEY."

    def handle(self, *args: Any, **options: Any) -> None:
        public = get_public_schema_name()
        counts = {public: rotate_schema(public)}
        for schema in Tenant.objects.exclude(schema_name=public).values_list("schema_name", flat=True):
            counts[schema] = rotate_schema(schema)
        total = sum(counts.values())
        record_audit(Actor("system", "rotate_credentials_key"), "credentials.rotate",
                     reason="secrets re-encrypted under the first configured key", diff={"values": total})
        self.stdout.write(f"re-encrypted {total} secret(s) in {len(counts)} schema(s)")
