"""Nightshift settings: one module, every deploy-specific value from the environment.

Values come from the process environment, then from the file named by `ENV_FILE`
(default `.env` in the project root), then from the safe local defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.sentry import init_sentry

# Generic admin/queryset classes (ModelAdmin[Model]) at run time, as django-stubs types them.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
ENV_FILE = Path(os.environ.get("ENV_FILE", BASE_DIR / ".env"))
if ENV_FILE.is_file():
    # Values already in the environment win over the file.
    env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable (or put it in "
            f"{ENV_FILE}); it is required when DEBUG is off."
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Public base URL of the admin, used to build links (e.g. in Sentry events).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "scheduler",
    "jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # config/templates overrides admin pages for the whole site (the admin index's link
        # to the health page); it is searched before the apps' templates.
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "config.context_processors.links",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'nightshift.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A fresh clone has no var/ yet; SQLite creates the file, not its directory.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat write to one file: WAL lets readers proceed during a write,
    # IMMEDIATE transactions and a busy timeout make writers queue instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory, so the worker and beat processes of end-to-end tests see it.
    _db_file = Path(DATABASES["default"]["NAME"])
    DATABASES["default"]["TEST"] = {"NAME": str(_db_file.with_name(f"test-{_db_file.name}"))}
# Workers keep their connection between jobs instead of reconnecting for each one. A health
# check would cost a round trip per job: a connection found broken fails that job with a
# transient error (retried) and is replaced.
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=False))

# PostgreSQL's synchronous_commit for worker processes (see scheduler.signals): off, local, on.
WORKER_SYNCHRONOUS_COMMIT = env.str("WORKER_SYNCHRONOUS_COMMIT", default="off")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis (locks, leases, presence, cache) and the broker ----------------------------------

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Celery's broker: Redis (the default, REDIS_URL) or RabbitMQ (amqp://USER:PASSWORD@HOST/VHOST).
BROKER_URL = env.str("BROKER_URL", default="") or REDIS_URL
BROKER_IS_RABBITMQ = BROKER_URL.split("://", 1)[0] in {"amqp", "amqps", "pyamqp"}
# Arguments of every queue Nightshift declares: on RabbitMQ durable quorum queues (replicated,
# and the queue type Celery's native delayed delivery needs for retries with a countdown).
BROKER_QUEUE_ARGUMENTS: dict[str, str] = {"x-queue-type": "quorum"} if BROKER_IS_RABBITMQ else {}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "nightshift",
    }
}

# --- Auth, i18n, time -----------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Static files (whitenoise) --------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))
# One storage whatever DEBUG is: files collected in a DEBUG run also serve a production start.
# Under DEBUG, Django's manifest storage links the unhashed names and whitenoise serves them
# from the apps (finders), so a developer needs no collectstatic.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Security (production defaults whenever DEBUG is off) -----------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# --- Celery ---------------------------------------------------------------------------------

CELERY_BROKER_URL = BROKER_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Hard time limit of the longest job (seconds). An unacknowledged (acks_late) message comes back
# BROKER_REDELIVERY_SECONDS after its delivery at the latest: Redis's visibility timeout, or on
# RabbitMQ the consumer_timeout its rabbitmq.conf must set (see the README); it must exceed
# LONGEST_JOB_SECONDS, or the broker hands a still-running job to a second worker.
LONGEST_JOB_SECONDS = env.int("LONGEST_JOB_SECONDS", default=2 * 3600)
BROKER_REDELIVERY_SECONDS = LONGEST_JOB_SECONDS + 3600
# A publish returns once RabbitMQ has the message (publisher confirms); Redis has no confirms.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = (
    {"confirm_publish": True}
    if BROKER_IS_RABBITMQ
    else {"visibility_timeout": BROKER_REDELIVERY_SECONDS}
)
# On RabbitMQ, topic exchanges: native delayed delivery (a countdown on a quorum queue, as a
# retry's backoff) routes through them, never through a direct one.
CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic" if BROKER_IS_RABBITMQ else "direct"
# A queue named only by a schedule's options is declared the same way as NIGHTSHIFT_QUEUES.
CELERY_TASK_CREATE_MISSING_QUEUE_TYPE = BROKER_QUEUE_ARGUMENTS.get("x-queue-type", "classic")
CELERY_TASK_CREATE_MISSING_QUEUE_EXCHANGE_TYPE = CELERY_TASK_DEFAULT_EXCHANGE_TYPE
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
# Jobs keep no Celery results (their outcome is the JobRun row). Without this, beat would add a
# daily `celery.backend_cleanup` schedule that has nothing to clean.
CELERY_RESULT_EXPIRES = None
# A job is acknowledged after it ran; one lost with its worker goes back to the queue.
# Jobs are idempotent, so a repeat is harmless.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=300)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=360)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fix-up closes the database connection around every task unless this is set;
# scheduler.signals closes it after a task only when broken or older than CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 1000
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=None)
# Queues, one per job family. `maintenance`: the quick, frequent jobs that must stay on time;
# `heavy`: those that may run for minutes, so a long backup never delays a heartbeat; `celery`,
# Celery's default: jobs routed nowhere else, and messages queued before an upgrade. A worker
# started without -Q (the Procfile's) consumes them all; `-Q heavy` and `-Q maintenance,celery`
# split them between hosts.
NIGHTSHIFT_QUEUES = ("maintenance", "heavy", "celery")
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = [
    Queue(
        name,
        Exchange(name, type=CELERY_TASK_DEFAULT_EXCHANGE_TYPE),
        routing_key=name,
        queue_arguments=BROKER_QUEUE_ARGUMENTS,
    )
    for name in NIGHTSHIFT_QUEUES
]
# Each job's queue, declared once: beat, "run now", `celery call`, retries and a lost run sent
# again all route by it (Celery's router, by job name, in every process); a schedule's own queue
# (the form's) overrides it for that schedule. A job not listed goes to `celery`.
CELERY_TASK_ROUTES = {
    "jobs.heartbeat": {"queue": "maintenance"},
    "scheduler.mark_lost_runs": {"queue": "maintenance"},
    "jobs.refresh_cache": {"queue": "maintenance"},
    "jobs.backup_database": {"queue": "heavy"},
    "jobs.daily_report": {"queue": "heavy"},
    "jobs.housekeeping": {"queue": "heavy"},
}
# Workers send task events: Flower shows tasks live from them (received, started, finished).
CELERY_WORKER_SEND_TASK_EVENTS = env.bool("CELERY_WORKER_SEND_TASK_EVENTS", default=True)
# A "sent" event from every publisher too (Flower then lists tasks still waiting): off by default,
# as it costs beat half its publishing speed (measured 2,500 -> 1,100 messages/s on Redis).
CELERY_TASK_SEND_SENT_EVENT = env.bool("CELERY_TASK_SEND_SENT_EVENT", default=False)
# Beyond that many seconds without renewal, a run's worker is presumed dead (and its locks free).
NIGHTSHIFT_RUN_LEASE_SECONDS = env.float("NIGHTSHIFT_RUN_LEASE_SECONDS", default=60.0)
# `celery -A config beat -S django` runs Nightshift's engine (scheduler.engine), a subclass of
# this stock scheduler; naming it here also keeps the stock admin's "wrong scheduler" note away.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Beat's leader lease: a standby takes over within this many seconds of the leader's death.
NIGHTSHIFT_BEAT_LEASE_SECONDS = env.float("NIGHTSHIFT_BEAT_LEASE_SECONDS", default=6.0)
# The schedule engine reads the change log this often (seconds): edits reach beat within it.
NIGHTSHIFT_BEAT_POLL_SECONDS = env.float("NIGHTSHIFT_BEAT_POLL_SECONDS", default=0.25)
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- Flower (`celery -A config flower`; its own options: flowerconfig.py) ---------------------

# Flower's address as the admin's users reach it, for the links from the admin; empty: no link.
FLOWER_URL = env.str("FLOWER_URL", default="")

# --- Maintenance jobs -----------------------------------------------------------------------

# Backups (jobs.backup_database): written here, mode 0600, in a directory only the owner may enter.
BACKUP_DIR = Path(env.str("BACKUP_DIR", default=str(VAR_DIR / "backups")))
# Retention: the newest verified backup of each of the last N days, M ISO weeks and K months.
BACKUP_KEEP_DAILY = env.int("BACKUP_KEEP_DAILY", default=7)
BACKUP_KEEP_WEEKLY = env.int("BACKUP_KEEP_WEEKLY", default=4)
BACKUP_KEEP_MONTHLY = env.int("BACKUP_KEEP_MONTHLY", default=12)
# Directory of pg_dump / pg_restore when they are not on PATH (e.g. /usr/lib/postgresql/16/bin).
PG_BIN_DIR = env.str("PG_BIN_DIR", default="")

# The daily report (jobs.daily_report) goes to REPORT_RECIPIENTS, or to ADMINS when that is empty.
REPORT_RECIPIENTS = env.list("REPORT_RECIPIENTS", default=[])
ADMINS = [("", address) for address in env.list("ADMINS", default=[])]
# Email: EMAIL_URL such as smtp+tls://USER:PASSWORD@smtp.example.com:587 (or smtp://localhost:25).
# Without it: printed to the console when DEBUG is on, sent to localhost:25 otherwise.
if "EMAIL_URL" in env:
    globals().update(env.email_url("EMAIL_URL"))
elif DEBUG:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="nightshift@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# Housekeeping (jobs.housekeeping): run history and reports older than this many days go.
JOB_HISTORY_DAYS = env.int("JOB_HISTORY_DAYS", default=90)
REPORT_RETENTION_DAYS = env.int("REPORT_RETENTION_DAYS", default=365)
# Rows deleted per transaction, so no clean-up holds a long lock.
HOUSEKEEPING_BATCH_SIZE = env.int("HOUSEKEEPING_BATCH_SIZE", default=5000)

# --- Logging --------------------------------------------------------------------------------

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}

# --- Sentry ---------------------------------------------------------------------------------

SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="") or None
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
# Minutes a Crons check-in may be late before Sentry reports a missed run.
SENTRY_CRONS_CHECKIN_MARGIN = env.int("SENTRY_CRONS_CHECKIN_MARGIN", default=2)
# Link to an event in Sentry's UI, e.g. https://acme.sentry.io/issues/?query={event_id}
SENTRY_EVENT_URL = env.str("SENTRY_EVENT_URL", default="")

# Settings are imported by every process (web, worker, beat, manage.py): initialising here
# covers them all, before Celery's beat patches or Django's request handling start.
init_sentry(
    dsn=SENTRY_DSN,
    environment=SENTRY_ENVIRONMENT,
    release=SENTRY_RELEASE,
    traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
)
