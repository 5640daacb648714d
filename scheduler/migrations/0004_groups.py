"""The two groups of the admin: `Schedule editors` and `Viewers` (read-only)."""

from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

BEAT_MODELS = [
    ("django_celery_beat", "periodictask"),
    ("django_celery_beat", "crontabschedule"),
    ("django_celery_beat", "intervalschedule"),
    ("django_celery_beat", "solarschedule"),
    ("django_celery_beat", "clockedschedule"),
]
SCHEDULES = [("scheduler", "schedule"), *BEAT_MODELS]
RECORDS = [
    ("scheduler", "jobrun"),
    ("jobs", "backup"),
    ("jobs", "report"),
    ("jobs", "workerheartbeat"),
]

GROUPS = {
    "Schedule editors": [
        *[
            (app, f"{action}_{model}")
            for app, model in SCHEDULES
            for action in ("add", "change", "delete", "view")
        ],
        ("scheduler", "run_schedule"),
        ("scheduler", "change_schedulepolicy"),
        ("scheduler", "view_schedulepolicy"),
        *[(app, f"view_{model}") for app, model in RECORDS],
    ],
    "Viewers": [(app, f"view_{model}") for app, model in [*SCHEDULES, *RECORDS]],
}


def create_groups(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Permissions (those of the proxy model Schedule included) are normally created by a
    # post_migrate signal, after every migration: too late for this one, so create them now.
    for label in ("scheduler", "jobs", "django_celery_beat"):
        config = apps.get_app_config(label)
        config.models_module = True  # type: ignore[assignment]  # a historical app has none; create_permissions needs one
        create_permissions(config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            permission = Permission.objects.get(
                content_type__app_label=app_label, codename=codename
            )
            group.permissions.add(permission)


def remove_groups(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("auth", "Group").objects.filter(name__in=list(GROUPS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("jobs", "0002_backup_report"),
        ("scheduler", "0003_schedule_policy"),
    ]

    operations = [migrations.RunPython(create_groups, remove_groups)]
