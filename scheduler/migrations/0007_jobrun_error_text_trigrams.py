"""On PostgreSQL, a trigram index on the error text of the runs with an error, for the run
search (icontains is UPPER(column) LIKE '%TERM%' there). Nothing on other databases.

pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+): the database's owner
may create it. Only runs with an error enter the index, so recording the others costs nothing.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

INDEX = "jobrun_error_text_trgm"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON scheduler_jobrun USING gin "
        "(UPPER(error_type) gin_trgm_ops, UPPER(error_message) gin_trgm_ops) "
        "WHERE NOT (error_type = '') OR NOT (error_message = '')"
    )


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0006_jobrun_errors_newest")]

    operations = [migrations.RunPython(create, drop)]
