"""Deployment.status gains "stopped": only the field's description (its column comment) changes."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from digi_core.models import DeploymentStatus


class DescriptionOnly(ops.AlterField):
    """Moves the migration state without touching the database: the column keeps its type,
    and Tortoise 1.1's AlterField on SQLite rebuilds the table and loses its indexes."""

    async def database_forward(self, *args: object, **kwargs: object) -> None:
        return None

    async def database_backward(self, *args: object, **kwargs: object) -> None:
        return None


class Migration(migrations.Migration):
    dependencies = [("digi", "0002_domains_one_default")]

    initial = False

    operations = [
        DescriptionOnly(
            model_name="Deployment",
            name="status",
            field=fields.CharEnumField(
                default=DeploymentStatus.QUEUED,
                description="QUEUED: queued\nBUILDING: building\nDEPLOYING: deploying\n"
                "RUNNING: running\nFAILED: failed\nCANCELLED: cancelled\n"
                "SUPERSEDED: superseded\nSTOPPED: stopped",
                enum_type=DeploymentStatus,
                max_length=16,
            ),
        ),
    ]
