"""Versions for optimistic concurrency (flags and kill switches) and one engaged kill switch
per identity. Released switches start at version 2. Engaged duplicates that concurrent
engages could create before this constraint are released (the oldest stays engaged), with a
reason saying so, so the constraint can be created."""

import django.db.models.functions.comparison
from django.conf import settings
from django.db import migrations, models


def released_version_and_duplicates(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.utils import timezone

    KillSwitch = apps.get_model("flags", "KillSwitch")
    KillSwitch.objects.filter(released_at__isnull=False).update(version=2)
    seen = set()
    for switch in KillSwitch.objects.filter(released_at__isnull=True).order_by("engaged_at", "id"):
        identity = (
            switch.kind,
            switch.scope,
            switch.tenant_id,
            switch.agent_id,
            switch.environment_id,
            switch.tool_pattern,
            switch.mode,
        )
        if identity in seen:
            switch.released_at = timezone.now()
            switch.released_by_label = "migration"
            switch.release_reason = "duplicate of an older engaged identical kill switch"
            switch.version = 2
            switch.save(
                update_fields=["released_at", "released_by_label", "release_reason", "version"]
            )
        seen.add(identity)


class Migration(migrations.Migration):
    dependencies = [
        ("flags", "0001_initial"),
        ("tenancy", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="flag",
            name="version",
            field=models.PositiveIntegerField(
                default=1,
                help_text="grows by one with every change: what edit and toggle forms and API calls carry as expected_version (optimistic concurrency)",
            ),
        ),
        migrations.AddField(
            model_name="killswitch",
            name="version",
            field=models.PositiveIntegerField(
                default=1,
                help_text="1 while engaged, 2 once released: what a release carries as expected_version (optimistic concurrency)",
            ),
        ),
        migrations.RunPython(released_version_and_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="killswitch",
            constraint=models.UniqueConstraint(
                models.F("kind"),
                models.F("scope"),
                django.db.models.functions.comparison.Coalesce("tenant", models.Value(0)),
                django.db.models.functions.comparison.Coalesce("agent", models.Value(0)),
                django.db.models.functions.comparison.Coalesce("environment", models.Value(0)),
                models.F("tool_pattern"),
                models.F("mode"),
                condition=models.Q(("released_at__isnull", True)),
                name="kill_switch_one_engaged_per_identity",
                violation_error_message="The same kill switch is already engaged.",
            ),
        ),
    ]
