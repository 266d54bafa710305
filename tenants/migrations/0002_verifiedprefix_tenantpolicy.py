# The public mirrors of what tenants own moved here from mitigation (tenants.services writes them). Their tables and
# the no-overlap exclusion constraint keep their names: this migration only moves Django's state (no SQL runs).

import django.contrib.postgres.fields
import django.db.models.deletion
import netfields.fields
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tenants', '0001_initial'),
        ('mitigation', '0003_operator_overrides'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='TenantPolicy',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('latency_threshold_ms', models.PositiveIntegerField()),
                        ('latency_overrides', models.JSONField(blank=True, default=dict, help_text='{"center:fra": 30, "region:eu": 40}')),
                        ('application_profile', models.CharField(choices=[('web', 'Web'), ('api', 'API'), ('dns', 'DNS'), ('gaming', 'Gaming / realtime'), ('voip', 'VoIP'), ('generic', 'Generic')], max_length=20)),
                        ('automation_mode', models.CharField(choices=[('automatic', 'Automatic'), ('manual', 'Manual approval'), ('auto_unless_rejected', 'Automatic unless rejected in time')], max_length=30)),
                        ('approval_window_minutes', models.PositiveIntegerField()),
                        ('allowed_actions', django.contrib.postgres.fields.ArrayField(base_field=models.CharField(max_length=20), size=None)),
                        ('hold_down_minutes', models.PositiveIntegerField()),
                        ('detection_threshold_bps', models.BigIntegerField()),
                        ('detection_threshold_pps', models.BigIntegerField()),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('tenant', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='policy', to='tenants.tenant')),
                    ],
                    options={
                        'db_table': 'mitigation_tenantpolicy',
                        'verbose_name_plural': 'tenant policies',
                    },
                ),
                migrations.CreateModel(
                    name='VerifiedPrefix',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('prefix', netfields.fields.CidrAddressField(max_length=43, unique=True)),
                        ('tenant_prefix_id', models.BigIntegerField(help_text="Id of the ProtectedPrefix in the tenant's schema")),
                        ('verified_at', models.DateTimeField(auto_now_add=True)),
                        ('verified_by', models.CharField(max_length=200)),
                        ('threshold_bps', models.BigIntegerField(blank=True, help_text='Per-prefix detection threshold', null=True)),
                        ('threshold_pps', models.BigIntegerField(blank=True, help_text='Per-prefix detection threshold', null=True)),
                        ('tenant', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='verified_prefixes', to='tenants.tenant')),
                    ],
                    options={
                        'db_table': 'mitigation_verifiedprefix',
                        'verbose_name_plural': 'verified prefixes',
                        'ordering': ['prefix'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
