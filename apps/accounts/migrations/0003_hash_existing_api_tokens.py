"""API tokens used to be DRF's ``authtoken`` rows, keys in plaintext. Each one becomes an
``ApiToken`` holding only the key's sha256 (so scripts keep working), and the plaintext table
goes, with the migration records of the app that made it (it is no longer installed;
``manage.py remove_stale_contenttypes`` tidies its content types)."""

import hashlib

from django.db import migrations

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return  # a fresh install never had it
    ApiToken = apps.get_model("accounts", "ApiToken")
    quoted = schema_editor.quote_name(LEGACY_TABLE)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id FROM {quoted}")  # noqa: S608 - a constant name
        rows = cursor.fetchall()
    ApiToken.objects.using(connection.alias).bulk_create(
        [
            ApiToken(
                user_id=user_id,
                key_hash=hashlib.sha256(key.encode("utf-8")).hexdigest(),
                display_prefix=key[:6],
            )
            for key, user_id in rows
        ]
    )
    schema_editor.execute(f"DROP TABLE {quoted}")
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_api_token"),
    ]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
