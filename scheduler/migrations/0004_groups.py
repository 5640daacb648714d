"""Once created the admin's two groups; now a step kept for the databases that recorded it.

The groups and their permissions come from each app's `post_migrate` receiver
(`scheduler/groups.py`), after every `migrate`: on a fresh database as on one that ran this
step's former version, which gave the groups exactly what the receivers give them.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("scheduler", "0003_schedule_policy"),
    ]

    operations = [migrations.RunPython(migrations.RunPython.noop, migrations.RunPython.noop)]
