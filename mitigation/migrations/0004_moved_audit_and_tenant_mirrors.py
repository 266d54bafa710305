# AuditEvent moved to core, VerifiedPrefix and TenantPolicy to tenants, with their tables: mitigation's state lets go
# of them once the new apps hold them (no SQL runs).

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('mitigation', '0003_operator_overrides'),
        ('core', '0001_initial'),
        ('tenants', '0002_verifiedprefix_tenantpolicy'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='AuditEvent'),
                migrations.DeleteModel(name='TenantPolicy'),
                migrations.DeleteModel(name='VerifiedPrefix'),
            ],
            database_operations=[],
        ),
    ]
