"""Bundle versions name the canonical form their bytes were signed in.

Every version that exists when this runs was serialised by Python's ``json.dumps`` (sorted,
compact): it is labelled ``python-json`` as the column is added (no row is updated: versions are
immutable, and a trigger refuses UPDATE), and keeps verifying in that form. New versions are
RFC 8785 (JCS). See docs/decisions/0006-canonical-json-jcs.md."""

from django.db import migrations, models

CHOICES = [
    ("rfc8785", "RFC 8785 (JCS)"),
    ("python-json", "legacy: Python json.dumps, sorted and compact"),
]
HELP = "how `canonical` was serialised; runtimes recompute the digest in this form"


class Migration(migrations.Migration):
    dependencies = [("bundles", "0002_immutable_trigger")]

    operations = [
        # Existing rows get the legacy label from the column default, not from an UPDATE.
        migrations.AddField(
            model_name="bundleversion",
            name="canonical_form",
            field=models.CharField(
                choices=CHOICES, default="python-json", help_text=HELP, max_length=16
            ),
        ),
        migrations.AlterField(
            model_name="bundleversion",
            name="canonical_form",
            field=models.CharField(
                choices=CHOICES, default="rfc8785", help_text=HELP, max_length=16
            ),
        ),
    ]
