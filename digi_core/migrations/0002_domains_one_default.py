from tortoise import migrations
from tortoise.migrations import operations as ops

# Tortoise 1.1 creates no partial unique index on SQLite and drops Meta constraints from
# CreateModel, so the "one default platform domain" rule is plain SQL that both databases take.


class Migration(migrations.Migration):
    dependencies = [('digi', '0001_initial')]

    initial = False

    operations = [
        ops.RunSQL(
            'CREATE UNIQUE INDEX "domains_one_default_uq" ON "domains" ("is_default") '
            "WHERE is_default = TRUE",
            reverse_sql='DROP INDEX "domains_one_default_uq"',
        ),
    ]
