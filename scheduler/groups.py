"""The admin's two groups, `Schedule editors` and `Viewers`, and how an app grants them its models.

Each app grants the permissions of its own models from its `post_migrate` receiver (see
`scheduler/apps.py`, `jobs/apps.py`): a new model reaches the groups with the next `migrate`,
no migration of another app needed. The scheduler grants django-celery-beat's models too, whose
rows its admin edits. Granting only adds: a permission an operator gave a group by hand stays; one
taken away by hand is given back at the next `migrate`. `revoke` takes back, at every `migrate`,
what an older version granted and no longer should.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db import DEFAULT_DB_ALIAS, router

EDITORS = "Schedule editors"
VIEWERS = "Viewers"


def view(*models: str) -> list[str]:
    """The codenames that let a group see `models` (lower-case model names)."""
    return [f"view_{model}" for model in models]


def manage(*models: str) -> list[str]:
    """The codenames that let a group add, change, delete and see `models`."""
    return [
        f"{action}_{model}" for model in models for action in ("add", "change", "delete", "view")
    ]


def grant(
    app_config: AppConfig,
    grants: Mapping[str, Iterable[str]],
    using: str = DEFAULT_DB_ALIAS,
    apps: Apps = global_apps,
) -> None:
    """Give each named group (created if missing) these permission codenames of `app_config`'s
    models. Call it from a `post_migrate` receiver, passing the signal's `using` and `apps`."""
    # Django creates permissions from its own post_migrate receiver, perhaps not yet for an app
    # whose signal comes later: creating them here first is harmless (it skips existing ones).
    create_permissions(app_config, verbosity=0, using=using, apps=apps)
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:  # auth is not migrated (yet, or any more)
        return
    if not router.allow_migrate_model(using, Permission):
        return
    for name, codenames in grants.items():
        wanted = set(codenames)
        permissions = list(
            Permission.objects.using(using).filter(
                content_type__app_label=app_config.label, codename__in=wanted
            )
        )
        missing = wanted - {permission.codename for permission in permissions}
        if missing:
            raise LookupError(f"{app_config.label} has no permission {', '.join(sorted(missing))}")
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*permissions)


def revoke(
    app_config: AppConfig,
    revocations: Mapping[str, Iterable[str]],
    using: str = DEFAULT_DB_ALIAS,
    apps: Apps = global_apps,
) -> None:
    """Take these permission codenames of `app_config`'s models from each named group that
    exists: for a grant that an older version made and that no longer fits."""
    try:
        Group = apps.get_model("auth", "Group")
        Permission = apps.get_model("auth", "Permission")
    except LookupError:
        return
    if not router.allow_migrate_model(using, Permission):
        return
    for name, codenames in revocations.items():
        group = Group.objects.using(using).filter(name=name).first()
        if group is not None:
            group.permissions.remove(
                *Permission.objects.using(using).filter(
                    content_type__app_label=app_config.label, codename__in=set(codenames)
                )
            )
