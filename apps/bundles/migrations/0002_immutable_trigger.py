"""On PostgreSQL the database itself refuses UPDATE and DELETE of bundle versions and
evaluations, so releases and their evidence stay immutable even for code that bypasses the
ORM. (TRUNCATE, a table owner's operation, stays possible: test runs flush tables with it.)"""

from django.db import migrations

TABLES = ["bundles_bundleversion", "bundles_evaluation"]

FORWARD = """
CREATE OR REPLACE FUNCTION bundles_refuse_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '% rows are immutable (% refused)', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
""" + "".join(
    f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
    "FOR EACH ROW EXECUTE FUNCTION bundles_refuse_change();\n"
    for table in TABLES
)

BACKWARD = "".join(
    f"DROP TRIGGER IF EXISTS {table}_immutable ON {table};\n" for table in TABLES
) + ("DROP FUNCTION IF EXISTS bundles_refuse_change();\n")


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("bundles", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
