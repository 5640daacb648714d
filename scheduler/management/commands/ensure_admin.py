import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Make sure an admin account exists: from DJANGO_SUPERUSER_USERNAME / "
        "DJANGO_SUPERUSER_PASSWORD when set, else a generated 'admin' whose password is "
        "printed once."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if bool(username) != bool(password):
            raise CommandError(
                "Set both DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_PASSWORD, or neither."
            )
        if username:
            if User.objects.filter(username=username).exists():
                self.stdout.write(f"admin account {username!r} exists")
                return
            User.objects.create_superuser(
                username=username,
                email=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
                password=password,
            )
            self.stdout.write(self.style.SUCCESS(f"created admin account {username!r}"))
            return
        if User.objects.filter(is_superuser=True, is_active=True).exists():
            self.stdout.write("an admin account exists")
            return
        generated = secrets.token_urlsafe(18)
        User.objects.create_superuser(username="admin", email="", password=generated)
        self.stdout.write(
            self.style.WARNING(
                "created admin account 'admin' with password: "
                f"{generated}\n(shown once; change it with `python manage.py changepassword admin`)"
            )
        )
