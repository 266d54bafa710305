# The audit log moved here from mitigation. Its table, index and append-only trigger keep their names: this
# migration only tells Django's state where the model now lives (no SQL runs).

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('mitigation', '0003_operator_overrides'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEvent',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(auto_now_add=True, db_index=True)),
                        ('actor_kind', models.CharField(max_length=20)),
                        ('actor', models.CharField(max_length=200)),
                        ('tenant_slug', models.CharField(blank=True, db_index=True, max_length=50)),
                        ('action', models.CharField(db_index=True, max_length=100)),
                        ('object_type', models.CharField(blank=True, max_length=100)),
                        ('object_id', models.CharField(blank=True, max_length=100)),
                        ('reason', models.TextField(blank=True)),
                        ('diff', models.JSONField(blank=True, default=dict)),
                    ],
                    options={
                        'db_table': 'mitigation_auditevent',
                        'ordering': ['-created_at', '-id'],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
