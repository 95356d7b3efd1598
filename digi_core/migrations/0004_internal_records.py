from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('digi', '0003_deployment_stopped')]

    initial = False

    operations = [
        ops.CreateModel(
            name='InternalRecord',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=253)),
                ('addresses', fields.CharField(default='', max_length=512)),
                ('host_id', fields.CharField(db_index=True, max_length=128)),
                ('updated_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'internal_records', 'app': 'digi', 'pk_attr': 'name', 'table_description': "A name in Digi's internal DNS zone, resolved by Caddy's dynamic upstreams."},
            bases=['Model'],
        ),
    ]
