"""Flower, the Procfile's `celery -A config flower`, against a real worker: its HTTP API shows
the worker and a job's task to a user with the basic-auth login from the environment, and answers
401 to anyone else; with DEBUG off and no login configured, it refuses to start."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from config.celery import app
from devtools.redis_server import free_port
from tests.processes import (
    CELERY,
    ROOT,
    Process,
    child_env,
    final_run,
    start_worker,
    wait_for,
    wait_until_ready,
)

pytestmark = pytest.mark.e2e

LOGIN = "ops:flower-test-password"


def get(url: str, login: str | None = None) -> tuple[int, Any]:
    """(status, JSON body or None) of a GET, with `login` (user:password) as basic auth."""
    request = urllib.request.Request(url)  # noqa: S310 (loopback http only)
    if login:
        token = base64.b64encode(login.encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            body = response.read()
            return response.status, json.loads(body) if body.startswith(b"{") else None
    except urllib.error.HTTPError as error:
        return error.code, None
    except OSError:
        return 0, None  # not listening yet


def flower_env(**extra: str) -> dict[str, str]:
    env = child_env(extra)
    for name in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_PORT", "FLOWER_ADDRESS"):
        if name not in extra:
            env.pop(name, None)
    return env


def test_flower_shows_the_worker_and_a_jobs_task_to_its_users_only(
    processes: list[Process],
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    worker = start_worker("flower-worker", child_env(), concurrency=1)
    processes.append(worker)
    wait_until_ready(worker)
    # The login comes from the environment: the command is the Procfile's, with nothing secret.
    flower = Process(
        "flower",
        [CELERY, "-A", "config", "flower"],
        flower_env(FLOWER_BASIC_AUTH=LOGIN, FLOWER_PORT=str(port)),
    )
    processes.append(flower)

    def workers() -> dict[str, Any] | None:
        status, body = get(f"{base}/api/workers?refresh=1", LOGIN)
        return body if status == 200 and body else None

    seen = wait_for(workers, 60, "Flower to list the worker", interval=1)
    assert any(name.startswith("flower-worker@") for name in seen), seen

    task_id = app.send_task("jobs.heartbeat").id
    run = final_run(task_id, timeout=60)

    def task() -> dict[str, Any] | None:
        status, body = get(f"{base}/api/tasks", LOGIN)
        found = (body or {}).get(task_id) if status == 200 else None
        return found if found and found.get("state") == "SUCCESS" else None

    shown = wait_for(task, 30, "Flower to show the job's task")
    assert shown["name"] == "jobs.heartbeat"
    assert shown["worker"] == run.worker
    assert shown["received"] and shown["succeeded"]

    for login in (None, "ops:wrong-password"):
        for path in ("/api/workers", "/api/tasks", f"/api/task/info/{task_id}", "/"):
            assert get(base + path, login)[0] == 401, (path, login)
    assert LOGIN.split(":")[1] not in flower.log(), "the password stays out of the log"


def test_flower_refuses_to_start_without_a_login_when_debug_is_off() -> None:
    port = free_port()
    done = subprocess.run(
        [CELERY, "-A", "config", "flower"],
        cwd=ROOT,
        env=flower_env(DEBUG="false", FLOWER_PORT=str(port)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert (
        "Flower refuses to start: DEBUG is off and no authentication is configured. Set "
        "FLOWER_BASIC_AUTH=user:password in the environment or the .env file (never on the "
        "command line), or set DEBUG=true on a developer machine."
    ) in done.stderr
    assert get(f"http://127.0.0.1:{port}/")[0] == 0, "nothing listens on its port"
