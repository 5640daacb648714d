"""Settings behave as documented under the environment an operator gives them."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def bare_env(**extra: str) -> dict[str, str]:
    """A process environment with no Nightshift configuration but the given values."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "NO_PROXY"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"ENV_FILE": os.devnull, "DJANGO_SETTINGS_MODULE": "config.settings"}, **extra)
    return env


SETUP = "import django; django.setup(); print('configured')"


def test_missing_secret_key_with_debug_off_names_the_variable() -> None:
    result = run_python(SETUP, bare_env(DEBUG="false"))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_runs_without_secret_key() -> None:
    result = run_python(SETUP, bare_env(DEBUG="true"))
    assert result.returncode == 0, result.stderr
    assert "configured" in result.stdout


def test_secret_key_can_come_from_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "nightshift.env"
    env_file.write_text("SECRET_KEY=from-the-file-" + "y" * 40 + "\n")
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    result = run_python(code, {**bare_env(), "ENV_FILE": str(env_file)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from-the-file-" + "y" * 40


def test_check_deploy_is_clean_with_production_settings() -> None:
    env = bare_env(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="nightshift.example.com",
        DATABASE_URL="postgres://nightshift@db.example.com:5432/nightshift",
        REDIS_URL="redis://redis.example.com:6379/0",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_time_zone_is_shanghai_everywhere() -> None:
    from config.celery import app

    assert settings.TIME_ZONE == "Asia/Shanghai"
    assert settings.USE_TZ is True
    assert str(app.conf.timezone) == "Asia/Shanghai"
    assert settings.DJANGO_CELERY_BEAT_TZ_AWARE is True


def test_celery_is_configured_for_redis_and_json() -> None:
    from config.celery import app

    conf = app.conf
    assert conf.broker_url == os.environ["REDIS_URL"]
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_transport_options["visibility_timeout"] > settings.LONGEST_JOB_SECONDS
    assert conf.task_time_limit > conf.task_soft_time_limit > 0


BROKER = """
import json, django
django.setup()
from config.celery import app
queues = app.amqp.queues
print(json.dumps({
    "broker": app.conf.broker_url,
    "options": app.conf.broker_transport_options,
    "celery": [queues["celery"].queue_arguments, queues["celery"].exchange.type],
    "named": [queues["family"].queue_arguments, queues["family"].exchange.type],
}))
"""


def test_the_broker_is_redis_unless_broker_url_names_rabbitmq() -> None:
    redis = run_python(BROKER, bare_env(DEBUG="true", REDIS_URL="redis://10.0.0.1:6379/3"))
    assert redis.returncode == 0, redis.stderr
    assert json.loads(redis.stdout) == {
        "broker": "redis://10.0.0.1:6379/3",
        "options": {"visibility_timeout": 7200 + 3600},
        "celery": [{}, "direct"],
        "named": [None, "direct"],
    }
    env = bare_env(DEBUG="true", REDIS_URL="redis://10.0.0.1:6379/3",
                   BROKER_URL="amqp://nightshift:pw@10.0.0.2:5672/jobs")  # fmt: skip
    rabbitmq = run_python(BROKER, env)
    assert rabbitmq.returncode == 0, rabbitmq.stderr
    # Durable quorum queues (the default one and one a schedule names), topic exchanges for
    # native delayed delivery, publisher confirms; Redis stays the cache and lock store.
    assert json.loads(rabbitmq.stdout) == {
        "broker": "amqp://nightshift:pw@10.0.0.2:5672/jobs",
        "options": {"confirm_publish": True},
        "celery": [{"x-queue-type": "quorum"}, "topic"],
        "named": [{"x-queue-type": "quorum"}, "topic"],
    }
    cache = run_python(
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.CACHES['default']['LOCATION'], settings.REDIS_URL)",
        env,
    )
    assert cache.stdout.split() == ["redis://10.0.0.1:6379/3"] * 2, cache.stderr


@pytest.mark.parametrize("dsn", ["", "http://key@127.0.0.1:9/1"])
def test_sentry_is_initialised_only_with_a_dsn(dsn: str) -> None:
    code = (
        "import django; django.setup(); import sentry_sdk; c = sentry_sdk.get_client(); "
        "print(c.is_active(), c.options.get('send_default_pii'), "
        "sorted(c.integrations).__contains__('celery'))"
    )
    result = run_python(code, bare_env(DEBUG="true", SENTRY_DSN=dsn))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (
        ["True", "False", "True"] if dsn else ["False", "None", "False"]
    )


LOGIN_PAGE = """
import re, django
django.setup()
from django.test import Client
client = Client(HTTP_HOST="localhost")
page = client.get("/admin/login/", secure=True)
print("login", page.status_code)
css = re.search(r'href="(/static/admin/css/base[^"]*\\.css)"', page.content.decode())[1]
print("css", css, client.get(css, secure=True).status_code)
"""


def test_static_files_collected_under_debug_serve_a_production_start(tmp_path: Path) -> None:
    """collectstatic run with DEBUG=true, the site then started with DEBUG=false: pages work."""
    env = bare_env(STATIC_ROOT=str(tmp_path / "static"), DATABASE_URL=f"sqlite:///{tmp_path}/db")
    collect = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env={**env, "DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert collect.returncode == 0, collect.stderr

    production = run_python(
        LOGIN_PAGE, {**env, "DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(50)}
    )
    assert production.returncode == 0, production.stderr
    lines = production.stdout.splitlines()
    assert lines[0] == "login 200"
    assert re.fullmatch(r"css /static/admin/css/base\.[0-9a-f]{12}\.css 200", lines[1])

    # A developer's DEBUG=true process serves the same pages without any collectstatic.
    development = run_python(LOGIN_PAGE, bare_env(DEBUG="true", STATIC_ROOT=str(tmp_path / "none")))
    assert development.returncode == 0, development.stderr
    assert development.stdout.splitlines() == ["login 200", "css /static/admin/css/base.css 200"]
