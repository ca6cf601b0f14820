"""Release history as an explicit state machine: ``state``, ``sequence`` and ``restores``.

Existing rows are numbered per (agent, environment) in id order; the newest is ``live``;
an older row is ``rolled_back`` when the row that replaced it was a rollback, otherwise
``superseded``."""

import django.db.models.deletion
from django.db import migrations, models


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    Deployment = apps.get_model("rollouts", "Deployment")
    replaced_by_kind = dict(
        Deployment.objects.filter(previous__isnull=False).values_list("previous_id", "kind")
    )
    sequences: dict[tuple[int, int], int] = {}
    rows = list(Deployment.objects.order_by("id"))
    newest: dict[tuple[int, int], int] = {}
    for row in rows:
        newest[(row.agent_id, row.environment_id)] = row.pk
    for row in rows:
        key = (row.agent_id, row.environment_id)
        sequences[key] = sequences.get(key, 0) + 1
        row.sequence = sequences[key]
        if newest[key] == row.pk:
            row.state = "live"
        elif replaced_by_kind.get(row.pk) == "rollback":
            row.state = "rolled_back"
        else:
            row.state = "superseded"
        row.save(update_fields=["sequence", "state"])


class Migration(migrations.Migration):
    dependencies = [
        ("rollouts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="deployment",
            name="restores",
            field=models.ForeignKey(
                blank=True,
                help_text="for a rollback: the known-good deployment whose version it brings back",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="rollouts.deployment",
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="state",
            field=models.CharField(
                choices=[
                    ("live", "live"),
                    ("superseded", "superseded"),
                    ("rolled_back", "rolled back"),
                ],
                default="live",
                max_length=12,
            ),
        ),
        migrations.AddField(
            model_name="deployment",
            name="sequence",
            field=models.PositiveIntegerField(
                default=0,
                help_text="1, 2, 3… per agent and environment: the release history's version",
            ),
            preserve_default=False,
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="deployment",
            constraint=models.UniqueConstraint(
                fields=("agent", "environment", "sequence"),
                name="deployment_sequence_unique_per_agent_environment",
            ),
        ),
        migrations.AddConstraint(
            model_name="deployment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state", "live")),
                fields=("agent", "environment"),
                name="deployment_one_live_per_agent_environment",
            ),
        ),
    ]
