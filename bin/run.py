"""`make run`: prepare a local Nightshift and start web, worker, beat and flower from the Procfile.

Runs with the project's virtualenv Python. Steps: make sure a `.env` exists (a generated
SECRET_KEY, DEBUG on for a loopback-only run) with a login for Flower (generated, printed once),
make sure Redis answers at REDIS_URL (else start
a private redis-server for this run), run the Procfile's release step, collect static files,
make sure an admin account exists, then hand over to honcho. Ctrl-C stops everything started.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools import redis_server, system_packages  # noqa: E402  (needs ROOT on the path)

VAR = ROOT / "var"
ENV_FILE = Path(os.environ.get("ENV_FILE", ROOT / ".env"))
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
FLOWER_LOCAL_URL = "http://127.0.0.1:5555/"


def say(message: str) -> None:
    print(f"[nightshift] {message}", flush=True)


def fail(message: str) -> NoReturn:
    print(f"[nightshift] error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def ensure_env_file() -> None:
    """Write a local .env (mode 0600) with a fresh SECRET_KEY unless one exists."""
    if ENV_FILE.exists() or os.environ.get("SECRET_KEY"):
        return
    example = (ROOT / ".env.example").read_text()
    lines = []
    for line in example.splitlines():
        if line.startswith("SECRET_KEY="):
            line = f"SECRET_KEY={secrets.token_urlsafe(50)}"
        elif line.startswith("DEBUG="):
            line = "DEBUG=true"
        lines.append(line)
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    say(f"wrote {ENV_FILE.name} for local use (DEBUG on, generated SECRET_KEY); edit it to change")


def env_file_sets(name: str) -> bool:
    """The env file gives `name` a value (a commented-out line does not count)."""
    if not ENV_FILE.is_file():
        return False
    for line in ENV_FILE.read_text().splitlines():
        key, _, value = line.strip().partition("=")
        if key == name and value.strip():
            return True
    return False


def ensure_flower_credentials() -> None:
    """Give Flower a generated login in the env file unless one is set; print it this once."""
    if os.environ.get("FLOWER_BASIC_AUTH") or env_file_sets("FLOWER_BASIC_AUTH"):
        return
    password = secrets.token_urlsafe(18)
    lines = ["# Written by `make run`: Flower's login, and the admin's link to Flower.",
             f"FLOWER_BASIC_AUTH=admin:{password}"]  # fmt: skip
    if not os.environ.get("FLOWER_URL") and not env_file_sets("FLOWER_URL"):
        lines.append(f"FLOWER_URL={FLOWER_LOCAL_URL}")
    fd = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write("\n".join(lines) + "\n")
    say(
        f"Flower at {FLOWER_LOCAL_URL}: user admin, password {password} "
        f"(FLOWER_BASIC_AUTH in {ENV_FILE.name}; shown this once)"
    )


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def find_or_install_redis_server() -> str:
    try:
        system_packages.ensure([system_packages.REDIS], "run")
    except system_packages.Missing as error:
        fail(f"nothing answers at REDIS_URL and {error} (or point REDIS_URL at a running Redis)")
    except subprocess.CalledProcessError as error:
        fail(f"installing redis-server failed: {shlex.join(map(str, error.cmd))}")
    found = shutil.which("redis-server")
    if found is None:
        fail("redis-server is installed but not on PATH")
    return found


def start_private_redis(url: str) -> subprocess.Popen[bytes]:
    parsed = urlparse(url)
    if parsed.hostname not in LOCAL_HOSTS:
        fail(f"nothing answers at REDIS_URL ({parsed.hostname}:{parsed.port or 6379}).")
    binary = find_or_install_redis_server()
    port = parsed.port or 6379
    say(f"nothing answers at REDIS_URL: starting a private redis-server on 127.0.0.1:{port}")
    try:
        return redis_server.start(binary, port, VAR / "redis")
    except RuntimeError as error:
        fail(str(error))


def procfile() -> dict[str, str]:
    """The Procfile's processes by name, read by honcho's own parser (what `honcho start` runs)."""
    from honcho.environ import parse_procfile

    processes: dict[str, str] = parse_procfile((ROOT / "Procfile").read_text()).processes
    return processes


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], check=True, cwd=ROOT)


def main() -> int:
    os.chdir(ROOT)
    VAR.mkdir(exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    ensure_env_file()
    ensure_flower_credentials()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    redis_url = settings.REDIS_URL
    redis_process = None if redis_answers(redis_url) else start_private_redis(redis_url)
    try:
        say("release: " + procfile()["release"])
        subprocess.run(["sh", "-c", procfile()["release"]], check=True)
        manage("collectstatic", "--noinput", "-v", "0")
        manage("ensure_admin")
        os.environ.setdefault("GUNICORN_CMD_ARGS", "--bind=127.0.0.1:8000")
        say("starting web, worker, beat and flower; the admin is at http://127.0.0.1:8000/admin/")
        say("Ctrl-C stops everything")
        processes = ["web", "worker", "beat", "flower"]
        honcho = [str(Path(bin_dir) / "honcho"), "-f", "Procfile", "start", *processes]
        say("running: " + shlex.join(honcho))
        child = subprocess.Popen(honcho)
        try:
            return child.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to honcho too; give it time to stop its processes.
            return child.wait()
    except subprocess.CalledProcessError as error:
        say(f"step failed with status {error.returncode}: {shlex.join(map(str, error.cmd))}")
        return error.returncode
    finally:
        if redis_process is not None:
            redis_process.send_signal(signal.SIGTERM)
            redis_process.wait(timeout=15)
            say("private redis-server stopped")


if __name__ == "__main__":
    raise SystemExit(main())
