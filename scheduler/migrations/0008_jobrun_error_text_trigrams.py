"""On PostgreSQL, a trigram index on the error text of the runs with an error, for the run
search (icontains is UPPER(column) LIKE '%TERM%' there). Nothing on other databases.

pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+): the database's owner
may create it. A user who may not is told so and the index is left out: the search still
works, reading the runs with an error (index jobrun_errors_newest) for error text. Only runs
with an error enter the index, so recording the others costs nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from django.db import DatabaseError, migrations, transaction

INDEX = "jobrun_error_text_trgm"


def create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as error:
        sys.stderr.write(
            f"\n  pg_trgm not created ({str(error).strip()}): the run search reads error text "
            "without a trigram index. To add it, run CREATE EXTENSION pg_trgm as a superuser, "
            "then `manage.py migrate scheduler 0007` and `manage.py migrate`.\n"
        )
        return
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON scheduler_jobrun USING gin "
        "(UPPER(error_type) gin_trgm_ops, UPPER(error_message) gin_trgm_ops) "
        "WHERE NOT (error_type = '') OR NOT (error_message = '')"
    )


def drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("scheduler", "0007_jobrun_errors_newest")]

    operations = [migrations.RunPython(create, drop)]
