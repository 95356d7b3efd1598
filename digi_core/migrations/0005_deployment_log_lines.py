from tortoise import migrations
from tortoise.migrations import operations as ops
from digi_core.models import DeploymentStatus
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('digi', '0004_internal_records')]

    initial = False

    operations = [
        ops.CreateModel(
            name='DeploymentLogLine',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('deployment', fields.ForeignKeyField('digi.Deployment', source_field='deployment_id', db_constraint=True, to_field='id', related_name='log_lines', on_delete=OnDelete.CASCADE)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharEnumField(description='QUEUED: queued\nBUILDING: building\nDEPLOYING: deploying\nRUNNING: running\nFAILED: failed\nCANCELLED: cancelled\nSUPERSEDED: superseded\nSTOPPED: stopped', enum_type=DeploymentStatus, max_length=16)),
                ('line', fields.TextField(unique=False)),
            ],
            options={'table': 'deployment_log_lines', 'app': 'digi', 'indexes': [Index(fields=['deployment_id', 'id'], name='deployment_log_lines_idx')], 'pk_attr': 'id', 'table_description': "One line of a deployment's log: its steps and its build's output, in order (by id),"},
            bases=['Model'],
        ),
    ]
